"""Runs on Kaggle: the kernel bundle, the official client, the sweep's kernels, and `promptly launch`."""
