"""Routing of one consumed record through every step that reads its topic.

The engine knows nothing of Faust: it gets records as plain values and a ``send`` coroutine, so the
same code runs under the Faust agent and in broker-less tests. Per record it parses the payload at
most once, and not at all when every step that reads it forwards all tensors unrenamed (then the
bytes are rewritten at the top level only, see :mod:`dataflow.wire`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from dataflow import tensors, wire
from dataflow.errors import CodecError
from dataflow.metrics import Metrics
from dataflow.plan import Route, Router, SourcePlan, StepPlan
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.topics import (
    ERROR_HEADER,
    ChainKind,
    Headers,
    PayloadKind,
    TopicNamer,
    has_pipeline,
    partition_for_key,
    payload_kind,
    rewrite_headers,
)

log = logging.getLogger(__name__)

# Headers on dead-letter records; the original headers follow them.
DLQ_REASON = "dataflow-error-reason"
DLQ_TOPIC = "dataflow-source-topic"
DLQ_PARTITION = "dataflow-source-partition"
DLQ_OFFSET = "dataflow-source-offset"
DLQ_PIPELINE = "dataflow-pipeline"

Send = Callable[[str, bytes | None, bytes | None, int, float | None, Headers], Awaitable[Awaitable[Any]]]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record, independent of the client library that read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: float | None  # seconds since the epoch, as Kafka stamped it

    @property
    def where(self) -> str:
        return f"topic {self.topic} partition {self.partition} offset {self.offset}"


class _Payload:
    """The record's value, parsed lazily and at most once (top-level scan, or full protobuf)."""

    __slots__ = ("_fields", "_message", "data", "request")

    def __init__(self, data: bytes, request: bool) -> None:
        self.data = data
        self.request = request
        self._fields: list[wire.Field] | None = None
        self._message: ModelInferRequest | ModelInferResponse | None = None

    def fields(self) -> list[wire.Field]:
        if self._fields is None:
            self._fields = wire.scan(self.data, request=self.request)
        return self._fields

    def message(self) -> ModelInferRequest | ModelInferResponse:
        if self._message is None:
            cls = ModelInferRequest if self.request else ModelInferResponse
            try:
                self._message = cls.FromString(self.data)
            except DecodeError as exc:
                raise CodecError(f"not a valid {cls.__name__}: {exc}") from None
        return self._message


class Engine:
    def __init__(
        self,
        router: Router,
        send: Send,
        namer: TopicNamer,
        metrics: Metrics,
        partitions: dict[str, int] | None = None,
        default_partitions: int = 1,
    ) -> None:
        self.router = router
        self._send = send
        self.namer = namer
        self.metrics = metrics
        self.partitions = dict(partitions or {})
        self.default_partitions = default_partitions

    # ------------------------------------------------------------------ per record
    async def process(self, record: Record) -> None:
        routes = self.router.routes(record.topic)
        kind = payload_kind(record.topic)
        self.metrics.records_in.labels(kind.value).inc()
        matching = [
            r for r in routes if not r.is_trigger and has_pipeline(record.headers, r.source.pipeline_name)
        ]
        if not matching:
            return
        if record.value is None:
            await self._reject(record, matching, "empty record (null value)")
            return
        payload = _Payload(record.value, kind is PayloadKind.REQUEST)
        for route in matching:
            try:
                started = time.perf_counter()
                out = self._convert(payload, route.source)
            except CodecError as exc:
                # A payload that does not decode is bad for every step that reads it: reject once.
                await self._reject(record, matching, str(exc))
                return
            step = route.step
            self.metrics.step_seconds.labels(step.pipeline, step.step_id).observe(
                time.perf_counter() - started
            )
            if out is None:
                self.metrics.step_dropped.labels(step.pipeline, step.step_id, "empty").inc()
                continue
            await self._emit(step, record, out)

    def _convert(self, payload: _Payload, source: SourcePlan) -> bytes | None:
        if source.kind is ChainKind.PASSTHROUGH:
            return payload.data
        if source.plain:
            fields = payload.fields()
            if wire.fast_path_applies(fields, request=payload.request):
                return wire.rebuild(payload.data, fields, source.kind)
        converted = tensors.convert(
            payload.message(),
            source.kind,
            source_topic=source.topic,
            desired=source.desired,
            renames=source.renames,
        )
        return None if converted is None else converted.SerializeToString()

    # ------------------------------------------------------------------ output
    def partition_for(self, topic: str, key: bytes | None) -> int:
        return partition_for_key(key, self.partitions.get(topic, self.default_partitions))

    async def _emit(self, step: StepPlan, record: Record, value: bytes) -> None:
        headers = rewrite_headers(record.headers, step.pipeline, step.version)
        partition = self.partition_for(step.sink, record.key)
        fut = await self._send(step.sink, record.key, value, partition, record.timestamp, headers)
        self.metrics.step_records.labels(step.pipeline, step.step_id).inc()
        self.metrics.bytes_out.labels(step.pipeline, step.step_id).inc(len(value))
        _on_done(fut, lambda exc: self._produce_failed(step, record, exc))

    def _produce_failed(self, step: StepPlan, record: Record, exc: BaseException) -> None:
        """Kafka refused a record we produced (too large, topic gone...): tell the caller, count it."""
        self.metrics.produce_errors.labels(step.pipeline, step.step_id).inc()
        reason = f"step {step.step_id} of pipeline {step.pipeline} could not write to {step.sink}: {exc!r}"
        log.error("%s (from %s)", reason, record.where)
        plan = self.router.pipelines.get(step.uid)
        if plan is not None:
            task = asyncio.ensure_future(self._error_reply(plan.update.output_topic, step, record, reason))
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def _error_reply(self, output_topic: str, step: StepPlan, record: Record, reason: str) -> None:
        """An error answer on the pipeline's outputs, as the gateway expects one from a failed model."""
        headers = rewrite_headers(record.headers, step.pipeline, step.version)
        headers.append((ERROR_HEADER, step.pipeline.encode()))
        partition = self.partition_for(output_topic, record.key)
        fut = await self._send(
            output_topic, record.key, f"dataflow: {reason}".encode(), partition, None, headers
        )
        self.metrics.error_replies.labels(step.pipeline).inc()
        _on_done(fut, lambda exc: log.error("could not deliver error answer to %s: %r", output_topic, exc))

    async def _reject(self, record: Record, routes: Sequence[Route], reason: str) -> None:
        """Dead-letter a record no step can process, and answer its caller with an error."""
        log.warning("dead-letter: %s: %s", record.where, reason)
        pipelines = sorted({r.step.pipeline for r in routes})
        headers: Headers = [
            (DLQ_REASON, reason.encode()),
            (DLQ_TOPIC, record.topic.encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
            (DLQ_PIPELINE, ",".join(pipelines).encode()),
            *record.headers,
        ]
        dlq = self.namer.dead_letter()
        fut = await self._send(
            dlq, record.key, record.value, self.partition_for(dlq, record.key), None, headers
        )
        self.metrics.dead_letters.labels(_reason_label(reason)).inc()
        _on_done(
            fut, lambda exc: log.error("could not write dead-letter record for %s: %r", record.where, exc)
        )
        answered: set[str] = set()
        for route in routes:
            plan = self.router.pipelines.get(route.step.uid)
            if plan is None or plan.update.output_topic in answered:
                continue
            answered.add(plan.update.output_topic)
            text = f"{reason} ({record.where})"
            await self._error_reply(plan.update.output_topic, route.step, record, text)


_background: set[asyncio.Future[Any]] = set()


def _reason_label(reason: str) -> str:
    """A low-cardinality label from a reason text (its first clause)."""
    return reason.split(":", 1)[0][:60]


def _on_done(fut: Awaitable[Any], on_error: Callable[[BaseException], None]) -> None:
    """Call ``on_error`` if the produce future fails; futures that are not asyncio futures are ignored."""
    if not isinstance(fut, asyncio.Future):
        return

    def done(f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            return
        exc = f.exception()
        if exc is not None:
            on_error(exc)

    fut.add_done_callback(done)
