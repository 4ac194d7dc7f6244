"""Chainer messages <-> step updates, and the reply texts the scheduler shows in Pipeline status.

The scheduler sends ``PipelineUpdateMessage`` protobufs; the rest of the engine works on the plain
dataclasses of :mod:`dataflow.updates`, which YAML mode produces too, so both modes run one path.
"""

from __future__ import annotations

from dataflow.proto import chainer_pb2 as pb
from dataflow.updates import (
    Batch,
    JoinType,
    Operation,
    PipelineTopic,
    PipelineUpdate,
    StepUpdate,
    TensorMapping,
)

# Reply reasons, word for word as the reference engine sends them (spec §3.10).
READY = "pipeline data streams: ready"
REMOVED = "pipeline removed"
TOPIC_CREATION_ERROR = "kafka streams topic creation error Exception: {}"
TOPIC_DELETION_ERROR = "kafka streams topic deletion error Exception: {}"
INIT_ERROR = "failed to initialize kafka streams for pipeline Exception: {}"
NOT_ALL_STEPS = "failed to create all pipeline steps"
STOPPED_BEFORE = "pipeline data streams: stopped, before stop: {}"
OPERATION_FAILED = "Pipeline {} operation failed: {}"


def _topic(t: pb.PipelineTopic) -> PipelineTopic:
    return PipelineTopic(t.pipelineName, t.topicName, t.tensor if t.HasField("tensor") else None)


def _step(s: pb.PipelineStepUpdate) -> StepUpdate:
    batch = None
    if s.HasField("batch"):
        b = s.batch
        batch = Batch(
            b.size if b.HasField("size") else None, b.windowMs if b.HasField("windowMs") else None, b.rolling
        )
    return StepUpdate(
        sources=tuple(_topic(t) for t in s.sources),
        sink=_topic(s.sink),
        triggers=tuple(_topic(t) for t in s.triggers),
        input_join=JoinType(s.inputJoinTy),
        triggers_join=JoinType(s.triggersJoinTy),
        join_window_ms=s.joinWindowMs if s.HasField("joinWindowMs") else None,
        tensor_map=tuple(TensorMapping(m.pipelineName, m.topicAndTensor, m.tensorName) for m in s.tensorMap),
        batch=batch,
    )


def from_message(msg: pb.PipelineUpdateMessage) -> PipelineUpdate:
    return PipelineUpdate(
        op=Operation(msg.op),
        pipeline=msg.pipeline,
        version=msg.version,
        uid=msg.uid,
        updates=tuple(_step(s) for s in msg.updates),
        output_topic=msg.pipelineOutputTopic,
        error_topic=msg.pipelineErrorTopic,
        allow_cycles=msg.allowCycles,
        max_step_revisits=msg.maxStepRevisits,
        timestamp=msg.timestamp,
        stream=msg.stream,
    )


def _pb_topic(t: PipelineTopic) -> pb.PipelineTopic:
    out = pb.PipelineTopic(pipelineName=t.pipeline_name, topicName=t.topic_name)
    if t.tensor is not None:
        out.tensor = t.tensor
    return out


def to_message(update: PipelineUpdate) -> pb.PipelineUpdateMessage:
    """The Create/Delete message the scheduler would send for ``update`` (used by the fake scheduler)."""
    msg = pb.PipelineUpdateMessage(
        op=int(update.op),  # type: ignore[arg-type]
        pipeline=update.pipeline,
        version=update.version,
        uid=update.uid,
        pipelineOutputTopic=update.output_topic,
        pipelineErrorTopic=update.error_topic,
        allowCycles=update.allow_cycles,
        maxStepRevisits=update.max_step_revisits,
        timestamp=update.timestamp,
        stream=update.stream,
    )
    for step in update.updates:
        s = msg.updates.add()
        s.sources.extend(_pb_topic(t) for t in step.sources)
        s.triggers.extend(_pb_topic(t) for t in step.triggers)
        s.sink.CopyFrom(_pb_topic(step.sink))
        s.inputJoinTy = int(step.input_join)  # type: ignore[assignment]
        s.triggersJoinTy = int(step.triggers_join)  # type: ignore[assignment]
        if step.join_window_ms is not None:
            s.joinWindowMs = step.join_window_ms
        for m in step.tensor_map:
            s.tensorMap.add(
                pipelineName=m.pipeline_name, topicAndTensor=m.topic_and_tensor, tensorName=m.tensor_name
            )
        if step.batch is not None:
            if step.batch.size is not None:
                s.batch.size = step.batch.size
            if step.batch.window_ms is not None:
                s.batch.windowMs = step.batch.window_ms
            s.batch.rolling = step.batch.rolling
    return msg


def reply(update: PipelineUpdate, stream: str, success: bool, reason: str) -> pb.PipelineUpdateStatusMessage:
    """A status reply echoing op, pipeline, version, uid and timestamp, with our replica as stream:
    the scheduler discards replies whose timestamp or stream it does not expect."""
    echo = pb.PipelineUpdateMessage(
        op=int(update.op),  # type: ignore[arg-type]
        pipeline=update.pipeline,
        version=update.version,
        uid=update.uid,
        timestamp=update.timestamp,
        stream=stream,
    )
    return pb.PipelineUpdateStatusMessage(update=echo, success=success, reason=reason)
