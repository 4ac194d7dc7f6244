"""Routing of one consumed record through every step that reads its topic.

The engine knows nothing of Faust: it gets records as plain values and a ``send`` coroutine, so the
same code runs under the Faust agent and in broker-less tests. Per record it parses the payload at
most once, and not at all when every step that reads it forwards all tensors unrenamed (then the
bytes are rewritten at the top level only, see :mod:`dataflow.wire`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from google.protobuf.message import DecodeError

from dataflow import batching, joins, tensors, wire
from dataflow.errors import CodecError
from dataflow.metrics import Metrics
from dataflow.plan import Route, Router, SourcePlan, StepPlan
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.topics import (
    ERROR_HEADER,
    PIPELINE_HEADER,
    VERSION_HEADER,
    ChainKind,
    Headers,
    PayloadKind,
    TopicNamer,
    has_pipeline,
    partition_for_key,
    payload_kind,
    rewrite_headers,
)
from dataflow.updates import PipelineUpdate

log = logging.getLogger(__name__)

# Headers on dead-letter records; the original headers follow them.
DLQ_REASON = "dataflow-error-reason"
DLQ_TOPIC = "dataflow-source-topic"
DLQ_PARTITION = "dataflow-source-partition"
DLQ_OFFSET = "dataflow-source-offset"
DLQ_PIPELINE = "dataflow-pipeline"
DLQ_VALUE_DROPPED = "dataflow-value-dropped"  # the record was too large to keep; why

Send = Callable[[str, bytes | None, bytes | None, int, float | None, Headers], Awaitable[Awaitable[Any]]]


class StateStore(Protocol):
    """Durable per-key step state (a Faust table with a changelog in the worker; a dict in tests)."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, partition: int) -> None: ...

    def delete(self, key: bytes, partition: int) -> None: ...

    def all_keys(self) -> list[bytes]: ...


class MemoryStore:
    """A StateStore without durability, for tests and tools."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self.data[key] = value

    def delete(self, key: bytes, partition: int) -> None:
        self.data.pop(key, None)

    def all_keys(self) -> list[bytes]:
        return list(self.data)


VISITS = "(visits)"  # state key segment of a request's loop counters
# Counters of a request that never reached the pipeline output are dropped after this long.
VISITS_TTL_MS = 10 * 60 * 1000


BATCH_OPEN = "#batch"  # suffix of a step's open-batch state key: <uid>|<step>#batch|<partition>
BATCH_MEMBERS = "(batch)"  # <uid>|(batch)|<batch id>: who is in a batch sent to a model
# A batch's member list is kept this long for its answer to be split (and for replays).
BATCH_MEMBERS_TTL_MS = 10 * 60 * 1000


def _kind(key: bytes) -> str:
    """Which kind of state a key holds: VISITS, BATCH_MEMBERS, BATCH_OPEN, or "" for a join."""
    segment = key.split(b"|", 2)[1].decode()
    if segment in (VISITS, BATCH_MEMBERS):
        return segment
    return BATCH_OPEN if segment.endswith(BATCH_OPEN) else ""


def shape_of(step: StepPlan) -> joins.JoinShape:
    return joins.JoinShape(
        len(step.sources), len(step.triggers), step.join, step.triggers_join, step.window_ms
    )


def batches(step: StepPlan) -> bool:
    """A single-source step writing requests with a batch size or window (the reference batches only
    request-producing chains, and never joiners)."""
    b = step.batch
    return (
        b is not None
        and bool(b.size or b.window_ms)
        and len(step.sources) == 1
        and payload_kind(step.sink) is PayloadKind.REQUEST
    )


def needs_state(step: StepPlan) -> bool:
    """Steps that wait for other records (joins, triggers); a lone source is stateless."""
    return shape_of(step).buffers


def state_key(step: StepPlan, key: bytes | None) -> bytes:
    return f"{step.uid}|{step.step_id}|".encode() + (key or b"")


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
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        skip_replays: bool = True,
    ) -> None:
        self.router = router
        self.store: StateStore = store or MemoryStore()
        self.clock = clock
        # expiry index: (deadline ms, state key); stale heap items are skipped when popped
        self._done: dict[tuple[str, int], int] = {}  # highest offset processed per topic partition
        # highest offset processed since the partition was last handed over (see take_done)
        self._uncommitted: dict[tuple[str, int], int] = {}
        # next offset due per partition assigned here: where the last record done leaves off
        self._next: dict[tuple[str, int], int] = {}
        # where topics added for a newly created pipeline start: earlier records predate it (BR-13)
        self.start_offsets: dict[tuple[str, int], int] = {}
        self.skip_replays = skip_replays
        self._deadlines: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        self._send = send
        self.namer = namer
        self.metrics = metrics
        self.partitions = dict(partitions or {})
        self.default_partitions = default_partitions

    # ------------------------------------------------------------------ per record
    async def process(self, record: Record) -> None:
        """Route one consumed record, unless this process already did (a rebalance replay).

        A consumer-group rebalance makes Faust seek back to the last committed offset, so records
        this worker finished a moment ago arrive again when it keeps the partition. The highest
        offset done per partition is remembered here and such replays are skipped: a pipeline
        change, which rebalances the group, neither repeats nor loses other pipelines' messages.
        Callers check :meth:`missing` first, so that no offset is passed over.
        """
        tp = (record.topic, record.partition)
        if self.skip_replays and record.offset >= 0 and self._done.get(tp, -1) >= record.offset:
            self.metrics.replays_skipped.inc()
            self._advance(tp, record.offset)  # done here before: not a gap to read again
            return
        if 0 <= record.offset < self.start_offsets.get(tp, -1):
            self.metrics.step_dropped.labels("", "", "before-pipeline-created").inc()
            self._advance(tp, record.offset)
            return
        try:
            await self._route(record)
        except Exception as exc:  # never let one record stop the partition (or be replayed for ever)
            log.exception("could not process %s", record.where)
            routes = [
                r
                for r in self.router.routes(record.topic)
                if has_pipeline(record.headers, r.source.pipeline_name)
            ]
            await self._reject(record, routes, f"could not process the record: {exc!r}")
        if record.offset >= 0:
            self._done[tp] = record.offset
            self._uncommitted[tp] = record.offset
            self._advance(tp, record.offset)

    # ------------------------------------------------------------------ offset continuity
    def _advance(self, tp: tuple[str, int], offset: int) -> None:
        if offset >= self._next.get(tp, -1):
            self._next[tp] = offset + 1

    def expect(self, tp: tuple[str, int], offset: int) -> None:
        """Where the partition resumes (its committed offset) when this worker has no record of it."""
        self._next.setdefault(tp, offset)

    def knows(self, tp: tuple[str, int]) -> bool:
        return tp in self._next

    def next_expected(self, tp: tuple[str, int]) -> int | None:
        """The offset due next on ``tp`` (None when this worker has no record of the partition)."""
        return self._next.get(tp)

    def expect_from(self, record: Record) -> None:
        """Accept ``record`` as where its partition now resumes (the gap before it is not read back)."""
        self._next[(record.topic, record.partition)] = record.offset

    def keep_only(self, tps: Iterable[tuple[str, int]]) -> None:
        """Forget where partitions no longer assigned here stood: their next owner moves them on."""
        keep = set(tps)
        for tp in [tp for tp in self._next if tp not in keep]:
            del self._next[tp]

    def missing(self, record: Record) -> tuple[int, int] | None:
        """The offsets [start, end) between the last record done on this partition and ``record``.

        Offsets of the topics the engine reads have no holes (no transactions, no compaction), so a
        record arriving past the next expected offset means the consumer passed records over. That
        happens around rebalances in the consumer library; processing ``record`` now would let the
        periodic commit move past the skipped ones, losing them. The caller fetches them first.
        """
        expected = self._next.get((record.topic, record.partition))
        if expected is None or record.offset <= expected:
            return None
        return expected, record.offset

    def take_done(self, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset to commit for each of ``tps`` this worker processed records of since the
        last call, and forget them.

        Called when partitions are revoked: committing these lets the partition's next owner resume
        exactly where this worker stopped. Only offsets reached since the previous hand-over count,
        so a partition that moved away and came back never has its commit moved backwards.
        """
        out: dict[tuple[str, int], int] = {}
        for tp in tps:
            offset = self._uncommitted.pop(tp, None)
            if offset is not None:
                out[tp] = offset + 1
        return out

    async def _route(self, record: Record) -> None:
        routes = self.router.routes(record.topic)
        kind = payload_kind(record.topic)
        self.metrics.records_in.labels(kind.value).inc()
        matching = [r for r in routes if has_pipeline(record.headers, r.source.pipeline_name)]
        if not matching:
            if routes and not any(k == PIPELINE_HEADER and v for k, v in record.headers):
                # Another pipeline's record is normal on a shared topic; a record that names no
                # pipeline at all belongs to none, and is kept rather than dropped silently.
                await self._reject(record, [], "record without a pipeline header")
            return
        if kind is not PayloadKind.OPAQUE and any(k == ERROR_HEADER for k, _ in record.headers):
            await self._pass_on_error(record, matching)
            return
        if record.value is not None and any(k == batching.BATCH_HEADER for k, _ in record.headers):
            members = self._split_batch(record)
            if members is not None:
                for member in members:
                    await self._route(member)
                return
            log.warning("record for an unknown batch (%s): passed on whole", record.where)
            record = dataclasses.replace(
                record, headers=[(k, v) for k, v in record.headers if k != batching.BATCH_HEADER]
            )
        if record.value is None:
            await self._reject(record, matching, "empty record (null value)")
            return
        payload = _Payload(record.value, kind is PayloadKind.REQUEST)
        if kind is not PayloadKind.OPAQUE:
            try:
                payload.fields()  # framing, and data that fits each tensor's datatype and shape
            except CodecError as exc:
                await self._reject(record, matching, str(exc))
                return
        fired = False
        for route in matching:
            try:
                started = time.perf_counter()
                if route.is_trigger:
                    if _has_tensors(payload, route.source.desired):
                        fired = True
                        for emission in self._arrive(route, record, b""):
                            await self._emit_joined(route.step, record, emission)
                    continue
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
                self.metrics.step_dropped.labels(step.pipeline, step.step_id, "no-wanted-tensors").inc()
                continue
            fired = True
            if needs_state(step):
                for emission in self._arrive(route, record, out):
                    await self._emit_joined(step, record, emission)
            elif batches(step):
                await self._add_to_batch(step, record, out)
            else:
                await self._emit(step, record, out)
        if not fired:
            await self._unanswerable(record, matching)

    async def _pass_on_error(self, record: Record, routes: Sequence[Route]) -> None:
        """An error answer of another pipeline (read through ``externalInputs``) is no tensor data:
        the request failed upstream, so each pipeline that reads it answers with that same error
        (its text and its ``seldon-pipeline-errors`` value, naming the failed model), once."""
        answered: set[str] = set()
        for route in routes:
            step = route.step
            self.metrics.step_dropped.labels(step.pipeline, step.step_id, "upstream-error").inc()
            plan = self.router.pipelines.get(step.uid)
            if plan is None or plan.update.output_topic in answered:
                continue
            topic = plan.update.output_topic
            answered.add(topic)
            headers = rewrite_headers(record.headers, step.pipeline, step.version)
            fut = await self._produce(
                topic, record.key, record.value, self.partition_for(topic, record.key), None, headers
            )
            self.metrics.error_replies.labels(step.pipeline).inc()
            _on_done(fut, functools.partial(_log_undelivered, topic))

    async def _unanswerable(self, record: Record, routes: Sequence[Route]) -> None:
        """A request on a pipeline's inputs that no step takes (no tensor any step reads) can never be
        answered: tell its caller now rather than let it wait for its timeout."""
        answered: set[str] = set()
        for route in routes:
            pipeline = route.step.pipeline
            plan = self.router.pipelines.get(route.step.uid)
            if (
                plan is None
                or pipeline in answered
                or not record.topic.endswith(f".pipeline.{pipeline}.inputs")
            ):
                continue
            answered.add(pipeline)
            reason = f"no step of pipeline {pipeline} takes any tensor of this request"
            log.warning("dead-letter: %s: %s", record.where, reason)
            await self._error_reply(
                plan.update.output_topic, route.step, record, f"{reason} ({record.where})"
            )
        if answered:
            reason = f"no step of pipeline {', '.join(sorted(answered))} takes any tensor of this request"
            await self._dead_letter(record, reason, sorted(answered))

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

    # ------------------------------------------------------------------ joins and triggers
    def _arrive(self, route: Route, record: Record, payload: bytes) -> list[joins.Emission]:
        """Feed one converted record into its step's join state; returns the results to emit now.

        Synchronous on purpose: read, update and write of one key's state happen without an await,
        so the actors of the step's other source topics (same event loop) cannot interleave.
        """
        step = route.step
        shape = shape_of(step)
        if route.is_trigger:
            slot = len(step.sources) + step.triggers.index(route.source)
        else:
            slot = step.sources.index(route.source)
        now_ms = int(self.clock() * 1000)
        ts_ms = int(record.timestamp * 1000) if record.timestamp is not None else now_ms
        entry = joins.Entry(
            slot,
            ts_ms,
            now_ms,
            f"{record.topic}:{record.partition}:{record.offset}",
            payload,
            list(record.headers),
        )
        key = state_key(step, record.key)
        blob = self.store.get(key)
        state = joins.loads(blob) if blob is not None else None
        state, emissions = joins.arrive(state, shape, entry, record.partition)
        self._save(key, state, shape)
        return emissions

    def _save(self, key: bytes, state: joins.JoinState, shape: joins.JoinShape) -> None:
        if state.empty:
            self.store.delete(key, state.partition)
            self._deadlines.pop(key, None)
            return
        self.store.put(key, joins.dumps(state), state.partition)
        deadline = state.deadline_ms(shape.window_ms)
        if deadline is not None:
            self._arm(key, deadline)

    async def _emit_joined(self, step: StepPlan, record: Record, emission: joins.Emission) -> None:
        try:
            value = merge_parts(step.sink, emission.parts)
        except CodecError as exc:  # a stored part that no longer decodes: count and report, never crash
            log.error("pipeline %s step %s: cannot merge join result: %s", step.pipeline, step.step_id, exc)
            self.metrics.step_dropped.labels(step.pipeline, step.step_id, "merge-error").inc()
            return
        await self._emit(step, record, value)

    async def sweep(self, partitions: Callable[[int], bool] | None = None) -> int:
        """Act on due deadlines: expire join windows (emitting outer results), flush batches whose
        ``windowMs`` passed, drop abandoned loop counters and old batch records. Returns how many
        states were handled.

        ``partitions`` says whether this worker currently owns a partition: states of partitions
        that moved away are left to their new owner.
        """
        now_ms = int(self.clock() * 1000)
        done = 0
        while self._heap and self._heap[0][0] <= now_ms:
            deadline, key = heapq.heappop(self._heap)
            if self._deadlines.get(key) != deadline:
                continue
            del self._deadlines[key]
            blob = self.store.get(key)
            if blob is None:
                continue
            kind = _kind(key)
            partition = int(orjson.loads(blob)["p"])
            if partitions is not None and not partitions(partition):
                continue
            done += 1
            step = self._step_for_key(key)
            if kind in (VISITS, BATCH_MEMBERS) or step is None:
                # TTL reached, or the pipeline is gone: nothing left to do with it
                self.store.delete(key, partition)
            elif kind == BATCH_OPEN:
                await self._flush_batch(step, key, batching.loads(blob))
            else:
                await self._expire_join(step, key, joins.loads(blob), now_ms)
        return done

    async def _expire_join(self, step: StepPlan, key: bytes, state: joins.JoinState, now_ms: int) -> None:
        shape = shape_of(step)
        state, emissions = joins.expire(state, shape, now_ms)
        self._save(key, state, shape)
        for emission in emissions:
            # no record is being processed: the result takes the key and the latest entry's headers
            expired = Record(
                f"(expired join state of step {step.step_id})",
                state.partition,
                -1,
                key.split(b"|", 2)[2] or None,
                None,
                emission.headers or [],
                emission.ts_ms / 1000,
            )
            await self._emit_joined(step, expired, emission)

    def rebuild_index(self, partitions: Callable[[int], bool] | None = None) -> int:
        """Re-arm deadlines for every stored state this worker owns (after start-up or a rebalance)."""
        self._deadlines.clear()
        self._heap.clear()
        count = 0
        for key in self.store.all_keys():
            blob = self.store.get(key)
            if blob is None:
                continue
            raw = orjson.loads(blob)
            if partitions is not None and not partitions(int(raw["p"])):
                continue
            kind = _kind(key)
            step = self._step_for_key(key)
            deadline: int | None = None
            if kind == VISITS:
                deadline = int(raw.get("t", 0)) + VISITS_TTL_MS
            elif kind == BATCH_MEMBERS:
                deadline = int(raw.get("t", 0)) + BATCH_MEMBERS_TTL_MS
            elif step is None:
                deadline = 0  # its pipeline is gone: the next sweep drops it
            elif kind == BATCH_OPEN:
                if step.batch is not None and step.batch.window_ms:
                    deadline = int(raw["t"]) + step.batch.window_ms
            else:
                deadline = joins.loads(blob).deadline_ms(step.window_ms)
            if deadline is not None:
                self._arm(key, deadline)
                count += 1
        return count

    # ------------------------------------------------------------------ batching (spec §4.6, S-01)
    async def _add_to_batch(self, step: StepPlan, record: Record, payload: bytes) -> None:
        assert step.batch is not None
        key = f"{step.uid}|{step.step_id}{BATCH_OPEN}|{record.partition}".encode()
        blob = self.store.get(key)
        state = batching.loads(blob) if blob is not None else None
        now_ms = int(self.clock() * 1000)
        ts_ms = int(record.timestamp * 1000) if record.timestamp is not None else now_ms
        parsed = ModelInferRequest.FromString(payload)
        member = batching.Member(
            record.key, list(record.headers), ts_ms, batching.rows_of(parsed), payload, parsed.id
        )
        state = batching.add(state, member, record.partition, now_ms)
        try:
            merged = batching.merged(state)
        except CodecError as exc:
            # this request does not batch with the others: answer it with the reason, keep the rest
            state.members.pop()
            await self._reject(
                record, [r for r in self.router.routes(record.topic) if r.step is step], str(exc)
            )
            if not state.members:
                return
            merged = batching.merged(state)
        if batching.is_full(merged, step.batch.size):
            self.store.delete(key, state.partition)
            self._deadlines.pop(key, None)
            await self._send_batch(step, state, merged)
            return
        self.store.put(key, batching.dumps(state), state.partition)
        if step.batch.window_ms:
            self._arm(key, state.first_seen_ms + step.batch.window_ms)

    async def _flush_batch(self, step: StepPlan, key: bytes, state: batching.BatchState) -> None:
        """``windowMs`` passed: send what the batch has (the reference would wait for ever)."""
        self.store.delete(key, state.partition)
        if state.members:
            await self._send_batch(step, state, batching.merged(state))

    async def _send_batch(
        self, step: StepPlan, state: batching.BatchState, merged: ModelInferRequest
    ) -> None:
        """Send the merged request under the last member's key, naming the batch for the split."""
        batch_id = uuid.uuid4().hex
        members_key = f"{step.uid}|{BATCH_MEMBERS}|{batch_id}".encode()
        now_ms = int(self.clock() * 1000)
        listed = [
            batching.Member(m.key, m.headers, m.ts_ms, m.rows, b"", m.request_id) for m in state.members
        ]
        self.store.put(
            members_key, batching.dumps(batching.BatchState(state.partition, now_ms, listed)), state.partition
        )
        self._arm(members_key, now_ms + BATCH_MEMBERS_TTL_MS)
        last = state.members[-1]
        headers = [*last.headers, (batching.BATCH_HEADER, f"{step.uid}|{batch_id}".encode())]
        record = Record(
            f"(batch of step {step.step_id})", state.partition, -1, last.key, None, headers, last.ts_ms / 1000
        )
        self.metrics.batches.labels(step.pipeline, step.step_id).inc()
        await self._emit(step, record, merged.SerializeToString())

    def _split_batch(self, record: Record) -> list[Record] | None:
        """One record per member of the batch this record belongs to; None if the batch is unknown.

        Row-wise messages are split by rows (each caller its own rows); others go whole to each
        caller. Each part carries its request's own id and headers, plus the headers the model side
        added; never another member's.
        """
        ref = next(v for k, v in record.headers if k == batching.BATCH_HEADER) or b""
        uid, _, batch_id = ref.decode("utf-8", "replace").partition("|")
        blob = self.store.get(f"{uid}|{BATCH_MEMBERS}|{batch_id}".encode())
        if blob is None or record.value is None:
            return None
        members = batching.loads(blob).members
        rows = [m.rows for m in members]
        kind = payload_kind(record.topic)
        parts: list[Any] | None = None
        try:
            if kind is PayloadKind.RESPONSE:
                whole: Any = ModelInferResponse.FromString(record.value)
                parts = batching.split_response(whole, rows)
            elif kind is PayloadKind.REQUEST:
                whole = ModelInferRequest.FromString(record.value)
                parts = batching.split_request(whole, rows)
            else:
                whole = None
        except (CodecError, DecodeError) as exc:
            log.warning(
                "batched record %s cannot be split (%s): each request gets all of it", record.where, exc
            )
            whole, parts = None, None
        values: list[bytes] = []
        for index, member in enumerate(members):
            if whole is None:
                values.append(record.value)
                continue
            part = parts[index] if parts is not None else type(whole).FromString(record.value)
            part.id = member.request_id
            values.append(part.SerializeToString())
        last = set(members[-1].headers)
        keep = (PIPELINE_HEADER, VERSION_HEADER, ERROR_HEADER)
        # the answer echoes the last member's request headers: keep only what the model side added
        shared = [
            (k, v)
            for k, v in record.headers
            if k != batching.BATCH_HEADER and (k in keep or (k, v) not in last)
        ]
        out = []
        for member, value in zip(members, values, strict=True):
            own = [(k, v) for k, v in member.headers if k not in (PIPELINE_HEADER, VERSION_HEADER)]
            names = {k for k, _ in own}
            headers = own + [(k, v) for k, v in shared if k not in names]
            out.append(
                Record(
                    record.topic,
                    record.partition,
                    record.offset,
                    member.key,
                    value,
                    headers,
                    record.timestamp,
                )
            )
        return out

    # ------------------------------------------------------------------ cycles (spec §4.7, BR-16)
    def _count_visit(self, update: PipelineUpdate, step: StepPlan, record: Record) -> int | None:
        """Count one more visit of ``step.sink`` by this request; the count if it is over the limit.

        Counters live per request key in the state table; the output step clears them (the
        request is done), as does the error. A step may be entered ``maxStepRevisits + 1`` times.
        """
        key = f"{step.uid}|{VISITS}|".encode() + (record.key or b"")
        blob = self.store.get(key)
        visits: dict[str, Any] = orjson.loads(blob) if blob is not None else {"p": record.partition, "n": {}}
        if step.sink == update.output_topic:
            if blob is not None:
                self.store.delete(key, visits["p"])
                self._deadlines.pop(key, None)
            return None
        seen = int(visits["n"].get(step.sink, 0))
        if seen > update.max_step_revisits:
            self.store.delete(key, visits["p"])
            self._deadlines.pop(key, None)
            return seen
        visits["n"][step.sink] = seen + 1
        visits["t"] = int(self.clock() * 1000)
        self.store.put(key, orjson.dumps(visits), visits["p"])
        self._arm(key, visits["t"] + VISITS_TTL_MS)
        return None

    async def _revisits_exceeded(
        self, update: PipelineUpdate, step: StepPlan, record: Record, headers: Headers, visits: int
    ) -> None:
        """Stop a runaway loop: an error record on the errors topic, which the error step answers with."""
        text = (
            f"ERROR: Max step revisits ({update.max_step_revisits}) exceeded for request "
            f"{(record.key or b'').decode('utf-8', 'replace')} in topic {step.sink}"
        )
        log.warning("pipeline %s: %s", step.pipeline, text)
        self.metrics.step_dropped.labels(step.pipeline, step.step_id, "max-revisits").inc()
        error_headers = [*headers, (ERROR_HEADER, step.pipeline.encode())]
        topic = update.error_topic or self.namer.errors
        partition = self.partition_for(topic, record.key)
        fut = await self._produce(
            topic, record.key, text.encode(), partition, record.timestamp, error_headers
        )
        _on_done(fut, lambda exc: log.error("could not write revisit error to %s: %r", topic, exc))

    def _arm(self, key: bytes, deadline: int) -> None:
        if self._deadlines.get(key) != deadline:
            self._deadlines[key] = deadline
            heapq.heappush(self._heap, (deadline, key))

    def _step_for_key(self, key: bytes) -> StepPlan | None:
        uid, step_id, _ = key.split(b"|", 2)
        plan = self.router.pipelines.get(uid.decode())
        if plan is None:
            return None
        name = step_id.decode().removesuffix(BATCH_OPEN)
        return next((s for s in plan.steps if s.step_id == name), None)

    # ------------------------------------------------------------------ output
    async def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        timestamp: float | None,
        headers: Headers,
    ) -> Awaitable[Any]:
        """Hand a record to the producer; a refusal is returned as a failed future, never raised.

        aiokafka refuses some records at once (a record over the size limit raises inside ``send``)
        and others later (the broker's answer): both must reach the same error path, or the caller
        would wait for an answer that never comes (case BR-07).
        """
        try:
            return await self._send(topic, key, value, partition, timestamp, headers)
        except Exception as exc:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    def partition_for(self, topic: str, key: bytes | None) -> int:
        return partition_for_key(key, self.partitions.get(topic, self.default_partitions))

    async def _emit(self, step: StepPlan, record: Record, value: bytes) -> None:
        headers = rewrite_headers(record.headers, step.pipeline, step.version)
        plan = self.router.pipelines.get(step.uid)
        if plan is not None and plan.update.allow_cycles and step.step_id != "(error)":
            over = self._count_visit(plan.update, step, record)
            if over is not None:
                await self._revisits_exceeded(plan.update, step, record, headers, over)
                return
        partition = self.partition_for(step.sink, record.key)
        fut = await self._produce(step.sink, record.key, value, partition, record.timestamp, headers)
        self.metrics.step_records.labels(step.pipeline, step.step_id).inc()
        self.metrics.bytes_out.labels(step.pipeline, step.step_id).inc(len(value))
        _on_done(fut, lambda exc: self._produce_failed(step, record, exc))

    def _produce_failed(self, step: StepPlan, record: Record, exc: BaseException) -> None:
        """Kafka refused a record we produced (too large, topic gone...): dead-letter the record it
        came from, tell the caller, count it."""
        self.metrics.produce_errors.labels(step.pipeline, step.step_id).inc()
        reason = f"step {step.step_id} of pipeline {step.pipeline} could not write to {step.sink}: {exc!r}"
        log.error("%s (from %s)", reason, record.where)
        plan = self.router.pipelines.get(step.uid)

        async def report() -> None:
            await self._dead_letter(record, reason, [step.pipeline])
            if plan is not None:
                await self._error_reply(plan.update.output_topic, step, record, reason)

        task = asyncio.ensure_future(report())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _error_reply(self, output_topic: str, step: StepPlan, record: Record, reason: str) -> None:
        """An error answer on the pipeline's outputs, as the gateway expects one from a failed model."""
        headers = rewrite_headers(record.headers, step.pipeline, step.version)
        headers.append((ERROR_HEADER, step.pipeline.encode()))
        partition = self.partition_for(output_topic, record.key)
        fut = await self._produce(
            output_topic, record.key, f"dataflow: {reason}".encode(), partition, None, headers
        )
        self.metrics.error_replies.labels(step.pipeline).inc()
        _on_done(fut, lambda exc: log.error("could not deliver error answer to %s: %r", output_topic, exc))

    async def _reject(self, record: Record, routes: Sequence[Route], reason: str) -> None:
        """Dead-letter a record no step can process, and answer its caller with an error."""
        log.warning("dead-letter: %s: %s", record.where, reason)
        await self._dead_letter(record, reason, sorted({r.step.pipeline for r in routes}))
        answered: set[str] = set()
        for route in routes:
            plan = self.router.pipelines.get(route.step.uid)
            if plan is None or plan.update.output_topic in answered:
                continue
            answered.add(plan.update.output_topic)
            text = f"{reason} ({record.where})"
            await self._error_reply(plan.update.output_topic, route.step, record, text)

    async def _dead_letter(self, record: Record, reason: str, pipelines: Sequence[str]) -> None:
        """Keep ``record`` on the dead-letter topic with headers saying why and where it came from.

        Should the broker refuse even that (the record plus headers over the size limit), the
        headers are kept without the value, so the record's coordinates are never lost.
        """
        headers: Headers = [
            (DLQ_REASON, reason.encode()),
            (DLQ_TOPIC, record.topic.encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
            (DLQ_PIPELINE, ",".join(pipelines).encode()),
            *record.headers,
        ]
        dlq = self.namer.dead_letter()
        partition = self.partition_for(dlq, record.key)
        self.metrics.dead_letters.labels(_reason_label(reason)).inc()

        def without_value(exc: BaseException) -> None:
            log.error("could not write dead-letter record for %s: %r; keeping its headers", record.where, exc)
            dropped = [*headers, (DLQ_VALUE_DROPPED, repr(exc).encode())]

            async def retry() -> None:
                fut = await self._produce(dlq, record.key, None, partition, None, dropped)
                _on_done(fut, lambda e: log.error("could not dead-letter %s at all: %r", record.where, e))

            task = asyncio.ensure_future(retry())
            _background.add(task)
            task.add_done_callback(_background.discard)

        fut = await self._produce(dlq, record.key, record.value, partition, None, headers)
        _on_done(fut, without_value)


_background: set[asyncio.Future[Any]] = set()


def _log_undelivered(topic: str, exc: BaseException) -> None:
    log.error("could not pass an error on to %s: %r", topic, exc)


def merge_parts(sink: str, parts: tuple[bytes, ...]) -> bytes:
    """Merge join parts left to right (spec §2.6); one part is forwarded unchanged."""
    if len(parts) == 1:
        return parts[0]
    try:
        if payload_kind(sink) is PayloadKind.REQUEST:
            merged_req = ModelInferRequest.FromString(parts[0])
            for part in parts[1:]:
                merged_req = tensors.merge_requests(merged_req, ModelInferRequest.FromString(part))
            return merged_req.SerializeToString()
        merged_resp = ModelInferResponse.FromString(parts[0])
        for part in parts[1:]:
            merged_resp = tensors.merge_responses(merged_resp, ModelInferResponse.FromString(part))
        return merged_resp.SerializeToString()
    except DecodeError as exc:
        raise CodecError(f"join part does not decode: {exc}") from None


def _has_tensors(payload: _Payload, desired: frozenset[str] | None) -> bool:
    """Trigger test: any tensor (or any wanted one) present. Triggers are read whatever their topic."""
    message = payload.message()
    names = [t.name for t in (message.inputs if isinstance(message, ModelInferRequest) else message.outputs)]
    return bool(names) if not desired else any(n in desired for n in names)


def _reason_label(reason: str) -> str:
    """A low-cardinality label from a reason text (its first clause)."""
    return re.sub(r"'[^']*'", "'…'", reason.split(":", 1)[0])[:60]


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
