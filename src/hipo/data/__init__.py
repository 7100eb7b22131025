"""Segmented preference data: schema, segmenters, sources, tokenization, collation, datamodule."""
