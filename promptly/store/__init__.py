"""Stores for documents, chunks and QA pairs; see base.ChunkStore."""
