"""Seldon ``Pipeline`` resources: models, loading and validation. Pure: imports neither faust nor aiokafka."""

from dataflow.spec.load import LoadedPipeline, load_paths, load_text
from dataflow.spec.models import Pipeline

__all__ = ["LoadedPipeline", "Pipeline", "load_paths", "load_text"]
