"""Scheduler mode: pipelines arrive from Seldon's scheduler over the Chainer gRPC service (spec §3.4-3.6).

The client subscribes with the replica id and resubscribes for ever with backoff (50 ms doubling to
5 s). Operations are kept per pipeline uid in a latest-wins slot: a newer Create or Delete for a uid
replaces one not yet started, and each uid's operations run one at a time while different uids
progress in parallel. Every operation is answered through ``PipelineUpdateEvent``, echoing op,
pipeline, version, uid and timestamp with our replica as ``stream``.

Where we differ from the reference: a Delete for a uid we do not run is answered with success (the
reference stays silent and the pipeline hangs in Terminating, BR-23), and a dropped subscription
never tears down running pipelines.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

import grpc

from dataflow.config import Settings
from dataflow.control import chainer
from dataflow.errors import DataflowError
from dataflow.health import CheckResult
from dataflow.proto import chainer_pb2 as pb
from dataflow.proto import chainer_pb2_grpc as pb_grpc
from dataflow.updates import Operation, PipelineUpdate

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 5.0
# Status replies: full-jitter backoff 100 ms .. 3.2 s, at most 5 attempts (as the reference).
REPLY_ATTEMPTS = 5
REPLY_BACKOFF_S = (0.1, 3.2)
REPLY_TIMEOUT_S = 5.0


class PipelineHost:
    """What the client drives: create and delete pipeline versions. Implemented by the worker app."""

    def is_running(self, uid: str) -> bool:
        raise NotImplementedError

    async def create(self, update: PipelineUpdate) -> None:
        """Run the pipeline version; raises DataflowError with the reply reason on failure."""
        raise NotImplementedError

    async def delete(self, update: PipelineUpdate) -> None:
        """Stop it (and delete the topics the message names); DataflowError on failure."""
        raise NotImplementedError


@dataclass
class _Slot:
    """The latest pending operation of one uid, and the task running its operations."""

    pending: PipelineUpdate | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class SchedulerClient:
    def __init__(self, settings: Settings, host: PipelineHost) -> None:
        self.settings = settings
        self.host = host
        self.target = f"{settings.upstream_host}:{settings.upstream_port}"
        self.replica = settings.replica_id
        self._channel: grpc.aio.Channel | None = None
        self._slots: dict[str, _Slot] = {}
        self.connected = False
        self.subscriptions = 0  # how many times we (re)subscribed, for health details and tests
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ connection
    def channel_state(self) -> str:
        if self._channel is None:
            return "SHUTDOWN"
        return str(self._channel.get_state(try_to_connect=True).name)

    def health(self) -> CheckResult:
        """The reference's startup probe: the scheduler channel is READY, CONNECTING or IDLE."""
        state = self.channel_state()
        details = {"target": self.target, "state": state, "subscribed": str(self.connected)}
        return CheckResult(state in ("READY", "CONNECTING", "IDLE"), f"chainer channel {state}", details)

    async def run(self) -> None:
        """Subscribe for ever; a broken stream is resubscribed after a growing pause."""
        # keepalive as the reference: 60 s time, 2 s timeout (the Go server's policy allows it)
        options = [("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 2_000)]
        self._channel = grpc.aio.insecure_channel(self.target, options=options)
        stub = pb_grpc.ChainerStub(self._channel)  # type: ignore[no-untyped-call]
        backoff = BACKOFF_START_S
        try:
            while not self._stopping.is_set():
                try:
                    stream = stub.SubscribePipelineUpdates(pb.PipelineSubscriptionRequest(name=self.replica))
                    self.subscriptions += 1
                    log.info("scheduler %s: subscribed as %s", self.target, self.replica)
                    async for message in stream:
                        self.connected = True
                        backoff = BACKOFF_START_S
                        self._enqueue(message, stub)
                    log.info("scheduler %s: stream ended; resubscribing", self.target)
                except grpc.aio.AioRpcError as exc:
                    log.warning(
                        "scheduler %s: %s (%s); retrying in %.2f s",
                        self.target,
                        exc.code().name,
                        exc.details(),
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                finally:
                    self.connected = False
        finally:
            await self._channel.close()

    async def stop(self) -> None:
        self._stopping.set()
        if self._channel is not None:
            await self._channel.close()
        for slot in self._slots.values():
            if slot.task is not None:
                slot.task.cancel()

    # ------------------------------------------------------------------ operations
    def _enqueue(self, message: pb.PipelineUpdateMessage, stub: pb_grpc.ChainerStub) -> None:
        update = chainer.from_message(message)
        if update.op not in (Operation.CREATE, Operation.DELETE):
            log.info("scheduler: ignoring %s for %s", update.op.name, update.pipeline)
            return
        slot = self._slots.setdefault(update.uid, _Slot())
        slot.pending = update  # latest wins: an older operation not yet started is dropped
        slot.wake.set()
        if slot.task is None or slot.task.done():
            slot.task = asyncio.ensure_future(self._drain(update.uid, stub))

    async def _drain(self, uid: str, stub: pb_grpc.ChainerStub) -> None:
        slot = self._slots[uid]
        while slot.pending is not None:
            update, slot.pending = slot.pending, None
            slot.wake.clear()
            success, reason = await self._perform(update)
            await self._reply(stub, update, success, reason)
        if slot.pending is None and not self.host.is_running(uid):
            self._slots.pop(uid, None)

    async def _perform(self, update: PipelineUpdate) -> tuple[bool, str]:
        op = "create" if update.op is Operation.CREATE else "delete"
        try:
            if update.op is Operation.CREATE:
                if self.host.is_running(update.uid):
                    return True, chainer.READY  # idempotent re-create on rebalance or reconnect
                await self.host.create(update)
                log.info("pipeline %s v%d (uid %s): ready", update.pipeline, update.version, update.uid)
                return True, chainer.READY
            await self.host.delete(update)
            log.info("pipeline %s v%d (uid %s): removed", update.pipeline, update.version, update.uid)
            return True, chainer.REMOVED
        except DataflowError as exc:
            log.error("pipeline %s v%d %s failed: %s", update.pipeline, update.version, op, exc)
            return False, str(exc)
        except Exception as exc:  # anything else is still answered, never left hanging
            log.exception("pipeline %s %s failed", update.pipeline, op)
            return False, chainer.OPERATION_FAILED.format(op, exc)

    async def _reply(
        self, stub: pb_grpc.ChainerStub, update: PipelineUpdate, success: bool, reason: str
    ) -> None:
        message = chainer.reply(update, self.replica, success, reason)
        for attempt in range(REPLY_ATTEMPTS):
            try:
                await stub.PipelineUpdateEvent(message, timeout=REPLY_TIMEOUT_S)
                return
            except grpc.aio.AioRpcError as exc:
                if attempt == REPLY_ATTEMPTS - 1:
                    log.error("scheduler: reply for %s lost: %s", update.pipeline, exc.code().name)
                    return
                low, high = REPLY_BACKOFF_S
                await asyncio.sleep(random.uniform(0, min(high, low * 2**attempt)))
