"""Hydra's `hydra/launcher=kaggle`: each job of a multirun as a Kaggle kernel (promptly.launch does the work)."""
