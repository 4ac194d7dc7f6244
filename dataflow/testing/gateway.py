"""A stand-in for Seldon's model gateway: serves :mod:`dataflow.testing.models` over real Kafka topics.

Seldon's model gateway consumes ``<prefix>.<ns>.model.<m>.inputs``, calls the model server and writes
the answer to ``…model.<m>.outputs`` with the **same key, the same partition number and the input
headers copied**; on failure it writes the error text to the namespace's ``…errors.errors`` topic with
the input headers plus ``seldon-pipeline-errors: <model>`` (spec §0, §4.5). The engine relies on every
one of those rules (joins meet on the key, the answer returns to the partition the caller waits on, the
error step filters on the ``pipeline`` header), so this gateway keeps them exactly and nothing else.

It is an asyncio service on aiokafka, deliberately not on faust: it must keep working when the engine
under test is broken. Offsets are read from ``earliest`` by default, unlike Seldon's ``latest`` - see
:class:`ModelGateway`.

Integration tests use :func:`running_models`::

    async with running_models(settings, ["tfsimple1", "loop=echo"]) as gateway:
        ...
        assert gateway.calls["tfsimple1"] == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from google.protobuf.message import DecodeError

from dataflow.client import start_with_retry
from dataflow.config import Settings
from dataflow.errors import DataflowError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.runtime import admin
from dataflow.testing.models import Model, ModelError, get_model
from dataflow.topics import ERROR_HEADER, Headers

__all__ = ["Call", "GatewayError", "ModelGateway", "ensure_topics", "running_models"]

log = logging.getLogger(__name__)

OffsetReset = Literal["earliest", "latest"]

PRODUCE_TIMEOUT_S = 30.0  # one send; aiokafka's own request timeout is 40 s, so ours fires first
POLL_INTERVAL_S = 0.05  # readiness and bootstrap polling: short, the broker is local in tests
FETCH_BYTES = 64 * 1024 * 1024  # per-partition fetch: a few 10 MB records at once (cases BR-06/07)
HISTORY_PER_MODEL = 10_000  # calls remembered per model for assertions; bounded so soak runs don't grow


class GatewayError(DataflowError):
    """The gateway could not start, become ready, or keep serving."""


@dataclass(frozen=True, slots=True)
class Call:
    """One record the gateway handled, kept so tests can assert what reached a model (case BR-17:
    "add10 receives zero requests"; BR-16: "counter is invoked exactly 10 times")."""

    model: str
    key: bytes | None
    partition: int
    headers: Headers
    request: ModelInferRequest | None  # None when the payload was not a valid request
    error: str | None  # the text written to the errors topic, None on success


async def ensure_topics(
    settings: Settings,
    topics: Sequence[str],
    *,
    partitions: int | None = None,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create the missing ``topics`` as the engine does and return their partition counts.

    The engine's own topic administration is used, so model topics get the same partition count,
    replication and ``max.message.bytes`` as the topics the engine creates (case BR-06).
    """
    target = settings if partitions is None else settings.model_copy(update={"partitions": partitions})
    try:
        return await asyncio.wait_for(admin.ensure_topics(target, topics), timeout)
    except TimeoutError:
        raise GatewayError(f"topics {list(topics)} not ready within {timeout:g}s") from None
    except DataflowError as exc:
        raise GatewayError(str(exc)) from None


def _left(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Counts rebalances so :meth:`ModelGateway.wait_ready` can tell a fresh assignment from an old one."""

    def __init__(self) -> None:
        self.generation = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.generation += 1
        log.debug("model gateway assigned %s", sorted(map(str, assigned)))


class ModelGateway:
    """Serves stand-in models between their ``inputs`` and ``outputs`` topics.

    ``offset_reset`` defaults to ``"earliest"``, where Seldon's gateway uses ``"latest"``. With
    ``latest`` a record produced between topic creation and the end of the first rebalance is silently
    skipped, and so is one produced to a partition that moves to this consumer before it was ever
    committed - a test then hangs until its timeout with nothing to show. With ``earliest`` the worst case
    is re-serving old records of a reused topic, which produce answers under keys nobody waits for.
    :meth:`wait_ready` is still needed in both modes: it guarantees the group has assigned every input
    partition to this gateway before the test starts producing.

    Records are handled one at a time in partition order; models with ``delay_s`` (``slow-*``) hold up
    the records behind them, which is enough for the ordering tests that use them.
    """

    def __init__(
        self,
        settings: Settings,
        models: Iterable[str | Model],
        *,
        group_id: str | None = None,
        offset_reset: OffsetReset = "earliest",
    ) -> None:
        resolved = [m if isinstance(m, Model) else get_model(m) for m in models]
        if not resolved:
            raise GatewayError("no models to serve")
        self.settings = settings
        self.models: dict[str, Model] = {m.name: m for m in resolved}
        namer = settings.namer
        self._by_topic = {namer.model_inputs(name): model for name, model in self.models.items()}
        self.group_id = group_id or f"{settings.group_id}-modelgateway"
        self.offset_reset: OffsetReset = offset_reset
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.history: dict[str, deque[Call]] = {n: deque(maxlen=HISTORY_PER_MODEL) for n in self.models}
        self._consumer: Any = None
        self._producer: Any = None
        self._listener = _Assignments()
        self._partitions: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def input_topics(self) -> list[str]:
        return list(self._by_topic)

    async def start(self, timeout: float = 30.0) -> None:
        """Create the model topics (and the errors topic) if missing, connect, subscribe, start serving.

        Raises :class:`~dataflow.errors.ConnectError` when the broker cannot be reached in ``timeout``
        (or ``settings.connect_timeout_s``), :class:`GatewayError` when topics cannot be created.
        """
        deadline = time.monotonic() + timeout
        namer = self.settings.namer
        topics = [*self._by_topic]
        topics += [namer.model_outputs(name) for name in self.models]
        topics.append(namer.errors)
        self._partitions = await ensure_topics(self.settings, topics, timeout=timeout)
        kafka = self.settings.kafka_kwargs()
        self._producer = AIOKafkaProducer(
            **kafka,
            max_request_size=self.settings.max_message_size,
            linger_ms=0,  # the engine's producers use 0 too (spec §5.3); latency matters more here
            acks="all",
        )
        self._consumer = AIOKafkaConsumer(
            **kafka,
            group_id=self.group_id,
            auto_offset_reset=self.offset_reset,
            enable_auto_commit=True,
            auto_commit_interval_ms=1000,
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(self.settings.session_timeout_s * 1000) // 3),
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
        )
        try:
            await start_with_retry(self._producer.start, self.settings.bootstrap_servers, deadline)
            self._consumer.subscribe(self.input_topics, listener=self._listener)
            await start_with_retry(self._consumer.start, self.settings.bootstrap_servers, deadline)
        except BaseException:
            await self._close_clients(5.0)
            raise
        self._stopping.clear()
        self._task = asyncio.create_task(self._serve(), name="model-gateway")
        log.info("model gateway serving %s (group %s)", ", ".join(self.models), self.group_id)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once every partition of every input topic is assigned to this gateway and its position
        is known, i.e. any record produced from now on will be served.

        Two gateways serving the same model in one consumer group split its partitions, and neither
        becomes ready: give each its own ``group_id``.
        """
        deadline = time.monotonic() + timeout
        wanted = {
            TopicPartition(topic, p)
            for topic in self._by_topic
            for p in range(self._partitions.get(topic, 1))
        }
        consumer = self._require_started()
        while True:
            self._raise_if_dead()
            generation = self._listener.generation
            assigned = set(consumer.assignment())
            ready = bool(generation) and wanted <= assigned
            ready = ready and await self._positions_known(consumer, wanted, deadline)
            if ready and self._listener.generation == generation:  # no rebalance while we looked
                return
            if time.monotonic() >= deadline:
                missing = sorted(str(tp) for tp in wanted - set(consumer.assignment()))
                raise GatewayError(
                    f"model gateway (group {self.group_id}) not ready within {timeout:g}s; "
                    f"unassigned: {', '.join(missing) or 'none'}"
                )
            await asyncio.sleep(POLL_INTERVAL_S)

    @staticmethod
    async def _positions_known(consumer: Any, partitions: set[Any], deadline: float) -> bool:
        """Fetch every partition's position (committed offset or reset), within the deadline."""
        try:
            for tp in sorted(partitions):
                await asyncio.wait_for(consumer.position(tp), _left(deadline))
        except (KafkaError, TimeoutError):  # unassigned by a rebalance meanwhile, or out of time
            return False
        return True

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, commit, leave the group, flush the producer - within ``timeout``."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            except BaseException as exc:  # the serving task had failed: stopping is still possible
                log.debug("model gateway task ended with %r", exc)
        await self._close_clients(max(0.1, deadline - time.monotonic()))

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; raise if serving fails first (used by ``dataflow models serve``)."""
        task = self._task
        if task is None:
            raise GatewayError("model gateway not started")
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task.done() and not stop.is_set():
            self._raise_if_dead()
            raise GatewayError("model gateway stopped serving unexpectedly")

    # -- serving -----------------------------------------------------------------------------------------

    async def _serve(self) -> None:
        consumer = self._require_started()
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=100)
            for records in batches.values():
                for record in records:
                    await self._handle(record)

    async def _handle(self, record: Any) -> None:
        """Answer one record on the model's outputs topic, or report it on the errors topic.

        If even the error record cannot be written the exception ends the gateway (``run_until`` and
        ``wait_ready`` raise it): a test instrument that dropped records silently would turn a broker
        problem into a mysterious timeout.
        """
        model = self._by_topic[record.topic]
        headers: Headers = [(k, bytes(v)) for k, v in record.headers or ()]
        request, outcome = await self._infer(model, record)
        self.calls[model.name] += 1
        if isinstance(outcome, ModelInferResponse):
            error = await self._send_output(model, record, headers, outcome)
        else:
            error = outcome
        if error is not None:
            self.errors[model.name] += 1
            await self._send(
                self.settings.namer.errors,
                record,
                error.encode("utf-8"),
                [*headers, (ERROR_HEADER, model.name.encode())],
            )
        self.history[model.name].append(
            Call(model.name, record.key, record.partition, headers, request, error)
        )

    async def _infer(
        self, model: Model, record: Any
    ) -> tuple[ModelInferRequest | None, ModelInferResponse | str]:
        """Parse and run the model: the request (None if unparsable) and the response or error text."""
        try:
            request = ModelInferRequest.FromString(record.value or b"")
        except DecodeError as exc:
            return None, f"model {model.name}: cannot parse ModelInferRequest ({exc})"
        if model.delay_s:
            await asyncio.sleep(model.delay_s)
        try:
            # In a thread: big-* builds tens of MB, and heartbeats must keep flowing meanwhile.
            return request, await asyncio.to_thread(model, request)
        except ModelError as exc:
            return request, str(exc)
        except Exception as exc:  # a stand-in bug must reach the caller, not kill the gateway
            log.exception("model %s raised on key %r", model.name, record.key)
            return request, f"model {model.name} failed: {type(exc).__name__}: {exc}"

    async def _send_output(
        self, model: Model, record: Any, headers: Headers, response: ModelInferResponse
    ) -> str | None:
        """Write the answer; on failure (e.g. larger than the topic allows, case BR-07) return the text
        to report on the errors topic instead - Seldon's gateway used to log such failures and drop them,
        leaving the caller waiting."""
        topic = self.settings.namer.model_outputs(model.name)
        try:
            await self._send(topic, record, response.SerializeToString(), headers)
        except (KafkaError, TimeoutError) as exc:
            log.warning("model %s: cannot write output for key %r: %r", model.name, record.key, exc)
            return f"model {model.name}: cannot write output to {topic}: {type(exc).__name__}: {exc}"
        return None

    async def _send(self, topic: str, record: Any, value: bytes, headers: Headers) -> None:
        """Same key, same partition number as the input record - the engine routes answers by them."""
        producer = self._producer
        future = await producer.send(
            topic, value=value, key=record.key, partition=record.partition, headers=headers
        )
        await asyncio.wait_for(future, PRODUCE_TIMEOUT_S)

    # -- helpers -----------------------------------------------------------------------------------------

    def _require_started(self) -> Any:
        if self._consumer is None:
            raise GatewayError("model gateway not started")
        return self._consumer

    def _raise_if_dead(self) -> None:
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                raise GatewayError(f"model gateway stopped serving: {type(exc).__name__}: {exc}") from exc

    async def _close_clients(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for client in (self._consumer, self._producer):
            if client is None:
                continue
            try:
                await asyncio.wait_for(client.stop(), max(0.1, deadline - time.monotonic()))
            except Exception as exc:  # closing is best effort; the broker expires what we leave
                log.warning("model gateway: closing %s: %r", type(client).__name__, exc)
        self._consumer = self._producer = None


@contextlib.asynccontextmanager
async def running_models(
    settings: Settings,
    names: Iterable[str | Model],
    *,
    group_id: str | None = None,
    offset_reset: OffsetReset = "earliest",
    timeout: float = 30.0,
) -> AsyncIterator[ModelGateway]:
    """A started and ready :class:`ModelGateway`, stopped on exit (each step bounded by ``timeout``).

    Give every test its own ``group_id`` (or its own topic prefix in ``settings``) so tests do not share
    offsets.
    """
    gateway = ModelGateway(settings, names, group_id=group_id, offset_reset=offset_reset)
    await gateway.start(timeout)
    try:
        await gateway.wait_ready(timeout)
        yield gateway
    finally:
        await gateway.stop(timeout)
