"""Experiment tracking: MLflow run lifecycle, Lightning logger, sweep grouping."""
