"""Training data: QA pairs and chunks from a ChunkStore, turned into token batches for the LM."""
