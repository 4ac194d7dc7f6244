"""dataflow: a faust-streaming engine that runs Seldon Core 2 inference pipelines over Kafka."""

__version__ = "0.1.0"
