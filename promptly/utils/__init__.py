"""Glue shared by the entry points: instantiation, failure handling, secret redaction, run naming."""
