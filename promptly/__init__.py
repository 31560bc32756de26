"""promptly: documents in; a fine-tuned, evaluated, published and served RAG model out."""

__version__ = "0.1.0"
