"""Training data beyond the QA file: synthetic pairs generated from chunks, and served conversations."""
