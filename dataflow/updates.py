"""Step updates: a pipeline as the scheduler sends it to the engine (Chainer ``PipelineUpdateMessage``).

Both sources of pipelines meet here — YAML compiled by :mod:`dataflow.compile`, and messages from
the scheduler's Chainer service — so everything downstream (plan, runtime) sees one shape.
Plain frozen dataclasses; field meanings and numbering follow ``chainer.proto`` (spec §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class JoinType(IntEnum):
    """``PipelineJoinType``; UNKNOWN behaves as INNER."""

    UNKNOWN = 0
    INNER = 1
    OUTER = 2
    ANY = 3


class Operation(IntEnum):
    """``PipelineOperation``."""

    UNKNOWN = 0
    CREATE = 1
    DELETE = 2
    REBALANCE = 3
    READY = 4


@dataclass(frozen=True, slots=True)
class PipelineTopic:
    """A topic read or written by a step; ``pipeline_name`` is the ``pipeline`` header its records carry."""

    pipeline_name: str
    topic_name: str
    tensor: str | None = None


@dataclass(frozen=True, slots=True)
class TensorMapping:
    """Rename ``topic_and_tensor`` (``<topic>.<tensor>``) to ``tensor_name`` for records of ``pipeline_name``."""

    pipeline_name: str
    topic_and_tensor: str
    tensor_name: str


@dataclass(frozen=True, slots=True)
class Batch:
    size: int | None = None
    window_ms: int | None = None
    rolling: bool = False


@dataclass(frozen=True, slots=True)
class StepUpdate:
    sources: tuple[PipelineTopic, ...]
    sink: PipelineTopic
    triggers: tuple[PipelineTopic, ...] = ()
    input_join: JoinType = JoinType.INNER
    triggers_join: JoinType = JoinType.INNER
    join_window_ms: int | None = None
    tensor_map: tuple[TensorMapping, ...] = ()
    batch: Batch | None = None


@dataclass(frozen=True, slots=True)
class PipelineUpdate:
    op: Operation
    pipeline: str
    version: int
    uid: str
    updates: tuple[StepUpdate, ...] = ()
    output_topic: str = ""
    error_topic: str = ""
    allow_cycles: bool = False
    max_step_revisits: int = 0
    timestamp: int = 0
    stream: str = ""
