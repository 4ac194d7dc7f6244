"""Compile a Pipeline resource into the step updates the scheduler would send (spec §3.2).

Pure: no Kafka. The output is what the worker runs in YAML mode and what the fake scheduler sends
in scheduler mode, so both modes exercise one runtime path.
"""

from __future__ import annotations

import hashlib

from dataflow.spec.models import JoinKind, Pipeline
from dataflow.spec.refs import Ref, parse_external_ref, parse_step_ref
from dataflow.topics import TopicNamer
from dataflow.updates import (
    Batch,
    JoinType,
    Operation,
    PipelineTopic,
    PipelineUpdate,
    StepUpdate,
    TensorMapping,
)

_JOIN = {JoinKind.INNER: JoinType.INNER, JoinKind.OUTER: JoinType.OUTER, JoinKind.ANY: JoinType.ANY}


def _topic(ref: Ref, namer: TopicNamer) -> str:
    if ref.is_pipeline:
        return namer.pipeline_topic(ref.owner, ref.io)
    return namer.model_topic(ref.owner, ref.io)


def _pipeline_topic(ref: Ref, namer: TopicNamer) -> PipelineTopic:
    return PipelineTopic(ref.source_pipeline, _topic(ref, namer), ref.tensor)


def _tensor_map(
    mapping: dict[str, str] | None, pipeline: str, namer: TopicNamer, *, external: bool
) -> tuple[TensorMapping, ...]:
    out = []
    for key, new_name in sorted((mapping or {}).items()):
        ref = parse_external_ref(key) if external else parse_step_ref(key, pipeline)
        out.append(TensorMapping(ref.source_pipeline, f"{_topic(ref, namer)}.{ref.tensor}", new_name))
    return tuple(out)


def default_uid(pipeline: str, version: int) -> str:
    """A stable uid for YAML mode (the scheduler makes xids; we only need uniqueness per version)."""
    return hashlib.sha1(f"{pipeline}:{version}".encode()).hexdigest()[:20]


def compile_pipeline(
    pipeline: Pipeline,
    namer: TopicNamer,
    *,
    version: int = 1,
    uid: str | None = None,
    timestamp: int = 0,
) -> PipelineUpdate:
    """The Create message for ``pipeline``. Assumes ``pipeline`` passed :func:`validate_pipeline`."""
    name = pipeline.name
    spec = pipeline.spec
    updates: list[StepUpdate] = []
    for step in spec.steps:
        if step.inputs:
            sources = tuple(_pipeline_topic(parse_step_ref(r, name), namer) for r in step.inputs)
        else:
            sources = (PipelineTopic(name, namer.pipeline_inputs(name)),)
        batch = None
        if step.batch is not None and (step.batch.size or step.batch.window_ms):
            batch = Batch(step.batch.size, step.batch.window_ms, step.batch.rolling)
        updates.append(
            StepUpdate(
                sources=sources,
                sink=PipelineTopic(name, namer.model_inputs(step.name)),
                triggers=tuple(_pipeline_topic(parse_step_ref(r, name), namer) for r in step.triggers or ()),
                input_join=_JOIN[step.inputs_join_type],
                triggers_join=_JOIN[step.triggers_join_type],
                join_window_ms=step.join_window_ms,
                tensor_map=_tensor_map(step.tensor_map, name, namer, external=False),
                batch=batch,
            )
        )
    if spec.input is not None:
        inp = spec.input
        updates.append(
            StepUpdate(
                sources=tuple(
                    _pipeline_topic(parse_external_ref(r), namer) for r in inp.external_inputs or ()
                ),
                sink=PipelineTopic(name, namer.pipeline_inputs(name)),
                triggers=tuple(
                    _pipeline_topic(parse_external_ref(r), namer) for r in inp.external_triggers or ()
                ),
                input_join=_JOIN[inp.join_type],
                triggers_join=_JOIN[inp.triggers_join_type],
                join_window_ms=inp.join_window_ms,
                tensor_map=_tensor_map(inp.tensor_map, name, namer, external=True),
            )
        )
    if spec.output is not None:
        out = spec.output
        updates.append(
            StepUpdate(
                sources=tuple(_pipeline_topic(parse_step_ref(r, name), namer) for r in out.steps or ()),
                sink=PipelineTopic(name, namer.pipeline_outputs(name)),
                input_join=_JOIN[out.steps_join],
                # the scheduler always sends the output window; 0 means the engine default
                join_window_ms=out.join_window_ms or 0,
                tensor_map=_tensor_map(out.tensor_map, name, namer, external=False),
            )
        )
    updates.append(
        StepUpdate(
            sources=(PipelineTopic(name, namer.errors),),
            sink=PipelineTopic(name, namer.pipeline_outputs(name)),
        )
    )
    return PipelineUpdate(
        op=Operation.CREATE,
        pipeline=name,
        version=version,
        uid=uid or default_uid(name, version),
        updates=tuple(updates),
        output_topic=namer.pipeline_outputs(name),
        error_topic=namer.errors,
        allow_cycles=spec.allow_cycles,
        max_step_revisits=spec.max_step_revisits,
        timestamp=timestamp,
    )
