"""The language model: Hugging Face causal LMs (or the tiny local one), PEFT, and the LightningModule."""
