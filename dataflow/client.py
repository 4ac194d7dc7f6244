"""Send one request to a pipeline over Kafka and wait for its answer, as Seldon's pipeline gateway does.

The pipeline gateway is the engine's only synchronous caller (spec §0, §0.1): it picks a partition ``k``
of the pipeline's outputs topic, keys the request ``"<k>.<pipeline>.<request id>"``, writes it to
partition ``k`` of the inputs topic with header ``pipeline: <pipeline>``, and returns the first record
with that key on partition ``k`` of the outputs topic. Tests and the ``dataflow infer`` command need
exactly that contract, so this module reproduces it - including the order that makes it race-free: the
consumer's position at the end of the outputs partition is fixed *before* the request is produced, so
an answer can never arrive unseen.

Failures are classified: :class:`PipelineError` (the answer is an error record, text formatted as the
gateway's HTTP 400 body), :class:`InferTimeout`, :class:`PipelineNotFound` (no topics: the pipeline is
not loaded; we never create them), :class:`~dataflow.errors.ConnectError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from google.protobuf.message import DecodeError

from dataflow.config import Settings
from dataflow.errors import CodecError, ConnectError, DataflowError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.tensors import response_to_json
from dataflow.topics import (
    ERROR_HEADER,
    PIPELINE_HEADER,
    REQUEST_ID_HEADER,
    Headers,
    header_values,
    make_key,
    partition_for_key,
)

__all__ = [
    "InferResult",
    "InferTimeout",
    "PipelineError",
    "PipelineNotFound",
    "infer",
    "response_json",
]

log = logging.getLogger(__name__)

FETCH_BYTES = 64 * 1024 * 1024  # answers of a few 10 MB records fit in one fetch (cases BR-06/07)
POLL_S = 0.5  # longest single fetch wait, so the deadline is checked at least this often
CLOSE_TIMEOUT_S = 5.0
DIAGNOSE_TIMEOUT_S = 3.0  # the hint on a timeout: short, the caller has waited long already


class PipelineError(DataflowError):
    """The pipeline answered with an error record (header ``seldon-pipeline-errors``).

    The message is ``"<header value> : <payload>"``, the body Seldon's gateway returns with HTTP 400,
    e.g. ``tfsimple1 : rpc error: code = InvalidArgument desc = …``.
    """

    def __init__(self, source: str, text: str, *, pipeline: str, key: str) -> None:
        self.source = source
        self.text = text
        self.pipeline = pipeline
        self.key = key
        super().__init__(f"{source} : {text}")


class InferTimeout(DataflowError):
    """No answer with the request's key arrived on the outputs partition before the deadline."""

    def __init__(
        self, *, pipeline: str, topic: str, partition: int, key: str, timeout: float, hint: str = ""
    ) -> None:
        self.pipeline = pipeline
        self.topic = topic
        self.partition = partition
        self.key = key
        self.hint = hint
        super().__init__(
            f"no answer from pipeline {pipeline!r} within {timeout:g}s "
            f"(waited on {topic} partition {partition} for key {key})" + (f"; {hint}" if hint else "")
        )


class PipelineNotFound(DataflowError):
    """The pipeline's topics do not exist: it is not loaded, or prefix/namespace settings differ."""


@dataclass(frozen=True, slots=True)
class InferResult:
    """The answer to one request, with where it was found (for logs and assertions)."""

    pipeline: str
    key: str
    topic: str
    partition: int
    offset: int
    headers: Headers
    response: ModelInferResponse
    elapsed_s: float
    also: dict[str, InferResult] = field(default_factory=dict)  # answers of downstream pipelines

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` as text, or None."""
        values = header_values(self.headers, name)
        return values[0].decode("utf-8", "replace") if values else None

    def to_json(self) -> dict[str, Any]:
        return response_json(self)


def response_json(result: InferResult | ModelInferResponse) -> dict[str, Any]:
    """The V2 JSON form of an answer (``data`` decoded from typed or raw contents), as the HTTP gateway
    returns it. Plain function, no I/O."""
    response = result.response if isinstance(result, InferResult) else result
    return response_to_json(response)


def _encode_headers(headers: Iterable[tuple[str, str | bytes]]) -> Headers:
    return [(k, v.encode("utf-8") if isinstance(v, str) else bytes(v)) for k, v in headers]


async def start_with_retry(start: Any, servers: str, deadline: float) -> None:
    """Start an aiokafka client, retrying until the deadline: aiokafka gives up after one pass over the
    bootstrap list, and a broker still starting (or a typo) must give one clear line after a bounded wait."""
    last: BaseException | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            await asyncio.wait_for(start(), remaining)
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise ConnectError(f"cannot reach Kafka at {servers}: {last or 'timed out'}")


async def infer(
    settings: Settings,
    pipeline: str,
    request: ModelInferRequest,
    *,
    timeout: float,
    headers: Iterable[tuple[str, str | bytes]] = (),
    also: Sequence[str] = (),
) -> InferResult:
    """Send ``request`` to ``pipeline`` and return the first answer with its key.

    ``also`` names further pipelines fed by this one (pipeline-to-pipeline inputs): the call then
    also waits for the same key on their outputs and returns those answers in ``result.also``.

    ``timeout`` bounds the whole call; reaching the broker is also bounded by
    ``settings.connect_timeout_s``. ``headers`` are added to the request record (Seldon's gateway
    forwards the caller's ``x-*`` headers); an ``x-request-id`` among them becomes the key's request id,
    otherwise a random one is made. Later answers with the same key (duplicates) are never read.
    """
    started = time.monotonic()
    deadline = started + timeout
    namer = settings.namer
    in_topic, out_topic = namer.pipeline_inputs(pipeline), namer.pipeline_outputs(pipeline)
    extra = _encode_headers(headers)
    given_ids = header_values(extra, REQUEST_ID_HEADER)
    request_id = given_ids[0].decode("utf-8", "replace") if given_ids else uuid.uuid4().hex
    extra = [(k, v) for k, v in extra if k not in (PIPELINE_HEADER, REQUEST_ID_HEADER)]

    kafka = settings.kafka_kwargs()
    consumer = AIOKafkaConsumer(
        **kafka,
        group_id=None,  # manual assignment: no group, no commits, no rebalance delay
        enable_auto_commit=False,
        auto_offset_reset="latest",
        max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_bytes=FETCH_BYTES,
    )
    producer = AIOKafkaProducer(**kafka, max_request_size=settings.max_message_size, linger_ms=0, acks="all")
    partition, key = -1, "(not built yet)"  # named in the timeout error, whenever it happens
    try:
        connect_deadline = min(deadline, started + settings.connect_timeout_s)
        await start_with_retry(consumer.start, settings.bootstrap_servers, connect_deadline)
        await start_with_retry(producer.start, settings.bootstrap_servers, connect_deadline)
        partitions = await _partitions(
            consumer, producer, pipeline, (in_topic, out_topic), settings, deadline
        )

        # Same rule as the gateway: a random partition of the outputs topic, named in the key's prefix.
        partition = random.choice(sorted(partitions[out_topic]))
        key = make_key(partition, pipeline, request_id)
        out_tp = TopicPartition(out_topic, partition)
        others = {TopicPartition(namer.pipeline_outputs(p), partition): p for p in also}
        tps = [out_tp, *others]
        consumer.assign(tps)
        await asyncio.wait_for(consumer.seek_to_end(*tps), _left(deadline))
        for tp in tps:
            await asyncio.wait_for(consumer.position(tp), _left(deadline))

        record_headers: Headers = [
            (PIPELINE_HEADER, pipeline.encode()),
            (REQUEST_ID_HEADER, request_id.encode()),
            *extra,
        ]
        sent = await producer.send(
            in_topic,
            value=request.SerializeToString(),
            key=key.encode(),
            # The gateway writes to the same partition number; clamp only if the inputs topic is smaller.
            partition=partition_for_key(key, len(partitions[in_topic])),
            headers=record_headers,
        )
        await asyncio.wait_for(sent, _left(deadline))
        log.debug("sent %s to %s[%d]", key, in_topic, partition)
        result = await _await_answer(consumer, out_tp, pipeline, key, started, deadline)
        for tp, other in others.items():
            result.also[other] = await _await_answer(consumer, tp, other, key, started, deadline)
        return result
    except TimeoutError:
        hint = await why_unanswered(settings)
        raise InferTimeout(
            pipeline=pipeline, topic=out_topic, partition=partition, key=key, timeout=timeout, hint=hint
        ) from None
    except KafkaError as exc:  # the broker went away mid-call: a connection problem, said as one
        raise ConnectError(f"lost Kafka at {settings.bootstrap_servers} during the call: {exc}") from None
    finally:
        for client in (producer, consumer):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), CLOSE_TIMEOUT_S)


async def why_unanswered(settings: Settings, timeout: float = DIAGNOSE_TIMEOUT_S) -> str:
    """A hint for a request nobody answered: is any dataflow worker a member of the engine's group?

    The commonest cause of a timeout is that no worker runs (or runs under another namespace or app
    id, so in another group); the next is a model step that nobody serves. Best effort: "" when the
    broker cannot say within ``timeout``.
    """
    admin = AIOKafkaAdminClient(**settings.kafka_kwargs())
    group = settings.group_id
    try:
        await asyncio.wait_for(admin.start(), timeout)
        responses = await asyncio.wait_for(admin.describe_consumer_groups([group]), timeout)
    except Exception:  # a hint must never hide the timeout it explains
        return ""
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), CLOSE_TIMEOUT_S)
    # DescribeGroups entries: (error_code, group_id, state, protocol_type, protocol, members, ...)
    members = [
        entry[5]
        for response in responses
        for entry in response.groups
        if len(entry) > 5 and entry[1] == group and isinstance(entry[5], list)
    ]
    count = sum(len(m) for m in members)
    if not count:
        return (
            f"no dataflow worker is running in consumer group {group} (is `dataflow worker` up, with "
            "the same SELDON_POD_NAMESPACE and DATAFLOW_APP_ID as this call?)"
        )
    return (
        f"{count} dataflow worker(s) in group {group}; is every model of the pipeline served "
        "(something consuming its model's inputs topic)?"
    )


def _left(deadline: float) -> float:
    """Seconds until ``deadline``; TimeoutError (turned into :class:`InferTimeout`) once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


async def _partitions(
    consumer: Any, producer: Any, pipeline: str, topics: tuple[str, str], settings: Settings, deadline: float
) -> dict[str, set[int]]:
    """Partition ids of the pipeline's topics; :class:`PipelineNotFound` if either is missing.

    Asking for all topics' metadata (not these two by name) never auto-creates them on brokers that
    allow it: a mistyped pipeline name must fail, not create stray topics.
    """
    existing = await asyncio.wait_for(consumer.topics(), _left(deadline))
    missing = [t for t in topics if t not in existing]
    if missing:
        raise PipelineNotFound(
            f"pipeline {pipeline!r} is not loaded: topic(s) {', '.join(missing)} do not exist on "
            f"{settings.bootstrap_servers} (topic prefix {settings.topic_prefix!r}, namespace "
            f"{settings.namespace!r})"
        )
    result: dict[str, set[int]] = {}
    for topic in topics:
        # The producer's metadata wait is the public way to get partitions; the topic is known to exist.
        parts = await asyncio.wait_for(producer.partitions_for(topic), _left(deadline))
        if not parts:
            raise PipelineNotFound(f"pipeline {pipeline!r}: topic {topic} has no partitions yet")
        result[topic] = set(parts)
    return result


async def _await_answer(
    consumer: Any,
    tp: Any,
    pipeline: str,
    key: str,
    started: float,
    deadline: float,
) -> InferResult:
    """Read the outputs partition until the first record with ``key``; skip every other key."""
    wanted = key.encode()
    while True:
        remaining = _left(deadline)
        batches = await consumer.getmany(tp, timeout_ms=int(min(remaining, POLL_S) * 1000) or 1)
        for record in batches.get(tp, ()):
            if record.key != wanted:
                continue
            headers: Headers = [(k, bytes(v)) for k, v in record.headers or ()]
            value: bytes = record.value or b""
            errors = header_values(headers, ERROR_HEADER)
            if errors:
                raise PipelineError(
                    errors[0].decode("utf-8", "replace"),
                    value.decode("utf-8", "replace"),
                    pipeline=pipeline,
                    key=key,
                )
            try:
                response = ModelInferResponse.FromString(value)
            except DecodeError as exc:
                raise CodecError(
                    f"answer for key {key} on {tp.topic}[{tp.partition}]@{record.offset} is not a "
                    f"ModelInferResponse: {exc}"
                ) from None
            return InferResult(
                pipeline=pipeline,
                key=key,
                topic=tp.topic,
                partition=tp.partition,
                offset=record.offset,
                headers=headers,
                response=response,
                elapsed_s=time.monotonic() - started,
            )
