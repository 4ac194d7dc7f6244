"""A stand-in for Seldon's scheduler: a real gRPC server speaking the ``Chainer`` service (spec §3).

The engine in scheduler mode only ever sees the scheduler through two RPCs - a server stream of
``PipelineUpdateMessage`` per replica and unary status replies - so a fake that keeps the scheduler's
observable rules is enough to test the control plane end to end without Kubernetes:

* Create contents are those of :func:`dataflow.compile.compile_pipeline` (the scheduler's compiler, §3.2);
* every version gets a new xid-shaped uid, versions count up per pipeline name and restart at 1 after
  a delete, and ``timestamp`` is a per-name logical clock bumped on every send (§3.1, §3.3);
* a (re)subscribing replica is sent a Create for every created version, as the scheduler's rebalance
  does, so reconnecting engines must treat a Create for a running uid as idempotent (§3.6);
* when a new version reports ready, older versions are deleted with their topics kept (§3.3).

Simplifications: no hash ring (every replica gets every pipeline), replies are never discarded as
outdated, and no retries of failed operations. Tests drive it through :meth:`FakeScheduler.create`,
:meth:`~FakeScheduler.delete` and :meth:`~FakeScheduler.send_raw`, and observe replies with
:meth:`~FakeScheduler.wait_for_reply`::

    async with FakeScheduler(namer) as scheduler:
        ...  # point the engine at 127.0.0.1:scheduler.port
        msg = await scheduler.create(yaml_text)
        await scheduler.wait_for_reply(msg.pipeline, Operation.CREATE, uid=msg.uid)

No faust or aiokafka here: the fake must keep working when the engine under test is broken.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import grpc

from dataflow.compile import compile_pipeline
from dataflow.control.chainer import to_message
from dataflow.errors import SpecError
from dataflow.proto import chainer_pb2 as pb
from dataflow.proto import chainer_pb2_grpc as pb_grpc
from dataflow.spec import Pipeline, load_text
from dataflow.topics import TopicNamer
from dataflow.updates import Operation, PipelineTopic, PipelineUpdate, StepUpdate

__all__ = ["FakeScheduler", "new_uid"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0

# The engine pings every 60 s (spec §3.4). grpc's default server policy tolerates pings without data
# only every 5 min and would close a quiet stream with "too many pings"; Seldon's Go server allows them.
_SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # grpc binds with SO_REUSEPORT by default: a second scheduler on a busy port would "start" silently
    ("grpc.so_reuseport", 0),
]

# xid layout: 4 bytes of seconds, 5 bytes of machine/process identity, 3 bytes of counter.
_XID_ORIGIN = os.urandom(5)
_xid_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_uid() -> str:
    """A new uid shaped like the scheduler's xids (20 lowercase base32hex characters, unique)."""
    count = next(_xid_counter) % (1 << 24)
    raw = int(time.time()).to_bytes(4, "big") + _XID_ORIGIN + count.to_bytes(3, "big")
    return base64.b32hexencode(raw).decode().rstrip("=").lower()


def _op_name(op: int) -> str:
    return pb.PipelineUpdateMessage.PipelineOperation.Name(op)


class FakeScheduler(pb_grpc.ChainerServicer):
    """Seldon's scheduler as the engine sees it, on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        namer: TopicNamer,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_reply: Callable[[pb.PipelineUpdateStatusMessage], None] | None = None,
    ) -> None:
        self.namer = namer
        self.host = host
        self.port = port
        self.on_reply = on_reply
        self.replies: list[pb.PipelineUpdateStatusMessage] = []
        self._server: Any = None
        self._streams: dict[str, asyncio.Queue[pb.PipelineUpdateMessage | None]] = {}
        # pipeline name -> Creates of its versions that are not being deleted, oldest first
        self._versions: dict[str, list[PipelineUpdate]] = {}
        self._clock: dict[str, int] = {}
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        pb_grpc.add_ChainerServicer_to_server(self, server)  # type: ignore[no-untyped-call]
        address = f"{self.host}:{self.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc reports a busy or bad address this way
            raise OSError(f"fake scheduler cannot listen on {address}: {exc}") from None
        if not port:
            raise OSError(f"fake scheduler cannot listen on {address}")
        await server.start()
        self._server, self.port = server, port
        log.info("fake scheduler listening on %s:%d", self.host, port)

    async def stop(self, grace: float | None = 1.0) -> None:
        """End every stream normally (as the scheduler does on shutdown), then stop the server.

        Streams never end by themselves, so without the first step ``grace`` would always be used up.
        """
        for queue in self._streams.values():
            queue.put_nowait(None)
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def __aenter__(self) -> FakeScheduler:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ Chainer service
    async def SubscribePipelineUpdates(
        self, request: pb.PipelineSubscriptionRequest, context: Any
    ) -> AsyncIterator[pb.PipelineUpdateMessage]:
        """Stream messages to replica ``request.name`` until it goes away.

        A new subscription under a name already connected replaces (ends) the old stream, since the
        scheduler serialises subscriptions per replica name.
        """
        name = request.name
        queue: asyncio.Queue[pb.PipelineUpdateMessage | None] = asyncio.Queue()
        previous = self._streams.get(name)
        if previous is not None:
            previous.put_nowait(None)
        self._streams[name] = queue
        # Queued before any await, so nothing created meanwhile can overtake these.
        for versions in self._versions.values():
            for update in versions:
                queue.put_nowait(self._stamp(update))
        log.info("fake scheduler: %s subscribed", name)
        self._notify()
        try:
            while (message := await queue.get()) is not None:
                yield message
        finally:
            if self._streams.get(name) is queue:
                del self._streams[name]
                self._notify()
            log.info("fake scheduler: %s unsubscribed", name)

    async def PipelineUpdateEvent(
        self, request: pb.PipelineUpdateStatusMessage, context: Any
    ) -> pb.PipelineUpdateStatusResponse:
        self.replies.append(request)
        update = request.update
        current = self._versions.get(update.pipeline)
        # A version that is ready replaces all older ones, whose topics the new one goes on using.
        if (
            request.success
            and update.op in (pb.PipelineUpdateMessage.Create, pb.PipelineUpdateMessage.Ready)
            and current
            and current[-1].uid == update.uid
        ):
            older, current[:-1] = current[:-1], []
            for old in older:
                self._send(self._delete_message(old, clean_topics=False))
        if self.on_reply is not None:
            try:
                self.on_reply(request)
            except Exception:  # a broken observer must not fail the engine's reply
                log.exception("fake scheduler: on_reply failed")
        self._notify()
        return pb.PipelineUpdateStatusResponse()

    # ------------------------------------------------------------------ driving it
    @property
    def subscribers(self) -> list[str]:
        """Replica names with an open stream."""
        return list(self._streams)

    async def create(self, pipeline: str | Pipeline) -> pb.PipelineUpdateMessage:
        """Create a new version of ``pipeline`` (YAML text of one Pipeline, or a validated one).

        Raises SpecError for invalid YAML. The message is sent to every connected replica and kept for
        replicas that subscribe later.
        """
        if isinstance(pipeline, str):
            loaded = load_text(pipeline, "<fake scheduler>")
            if len(loaded) != 1:
                raise SpecError([f"<fake scheduler>: expected one pipeline, got {len(loaded)}"])
            pipeline = loaded[0].pipeline
        versions = self._versions.setdefault(pipeline.name, [])
        version = versions[-1].version + 1 if versions else 1
        update = compile_pipeline(pipeline, self.namer, version=version, uid=new_uid())
        versions.append(update)
        message = self._stamp(update)
        self._send(message)
        return message

    async def delete(self, pipeline_name: str, *, clean_topics: bool = False) -> pb.PipelineUpdateMessage:
        """Delete the pipeline: every version still created gets a Delete; returns the current one's.

        With ``clean_topics`` (``cleanTopicsOnDelete``) the current version's Delete names the
        pipeline's own topics for the engine to remove. Raises LookupError for an unknown pipeline.
        """
        versions = self._versions.pop(pipeline_name, None)
        if not versions:
            raise LookupError(f"pipeline {pipeline_name!r} is not created")
        *older, current = versions
        for old in older:
            self._send(self._delete_message(old, clean_topics=False))
        message = self._delete_message(current, clean_topics=clean_topics)
        self._send(message)
        return message

    async def send_raw(self, message: pb.PipelineUpdateMessage) -> None:
        """Send ``message`` as is to every connected replica (no clock, no bookkeeping)."""
        self._send(message)

    async def wait_for_subscriber(self, name: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> str:
        """The name of a connected replica (``name`` itself, or any when None)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    found = [s for s in self._streams if name is None or s == name]
                    if found:
                        return found[0]
                    await changed.wait()
        except TimeoutError:
            who = repr(name) if name else "any replica"
            raise TimeoutError(f"no subscription from {who} within {timeout}s") from None

    async def wait_for_reply(
        self,
        pipeline: str,
        op: Operation | int,
        uid: str | None = None,
        timestamp: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        success: bool | None = None,
    ) -> pb.PipelineUpdateStatusMessage:
        """The first reply (already received or coming) for ``pipeline`` and ``op``, and ``uid``,
        ``timestamp`` and ``success`` when given."""

        def matches(r: pb.PipelineUpdateStatusMessage) -> bool:
            u = r.update
            return (
                u.pipeline == pipeline
                and u.op == int(op)
                and (uid is None or u.uid == uid)
                and (timestamp is None or u.timestamp == timestamp)
                and (success is None or r.success == success)
            )

        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    for r in self.replies:
                        if matches(r):
                            return r
                    await changed.wait()
        except TimeoutError:
            seen = [
                f"{_op_name(r.update.op)} {r.update.pipeline} uid={r.update.uid} ts={r.update.timestamp}"
                for r in self.replies
            ]
            raise TimeoutError(
                f"no {_op_name(int(op))} reply for {pipeline!r} (uid={uid}, timestamp={timestamp}, "
                f"success={success}) "
                f"within {timeout}s; replies: {seen}"
            ) from None

    # ------------------------------------------------------------------ internals
    def _tick(self, pipeline: str) -> int:
        """The pipeline name's logical clock, advanced once per send (never reset, so it only grows)."""
        self._clock[pipeline] = self._clock.get(pipeline, 0) + 1
        return self._clock[pipeline]

    def _stamp(self, update: PipelineUpdate) -> pb.PipelineUpdateMessage:
        return to_message(dataclasses.replace(update, timestamp=self._tick(update.pipeline)))

    def _delete_message(self, create: PipelineUpdate, *, clean_topics: bool) -> pb.PipelineUpdateMessage:
        """Delete of one version: op, pipeline, version, uid and timestamp, plus the pipeline's own
        topics when they are to be removed (spec §3.2)."""
        name = create.pipeline
        steps: tuple[StepUpdate, ...] = ()
        if clean_topics:
            steps = (
                StepUpdate(
                    sources=(PipelineTopic(name, self.namer.pipeline_inputs(name)),),
                    sink=PipelineTopic(name, self.namer.pipeline_outputs(name)),
                ),
            )
        delete = PipelineUpdate(
            op=Operation.DELETE, pipeline=name, version=create.version, uid=create.uid, updates=steps
        )
        return self._stamp(delete)

    def _send(self, message: pb.PipelineUpdateMessage) -> None:
        log.info(
            "fake scheduler: %s %s v%d uid=%s ts=%d to %s",
            _op_name(message.op),
            message.pipeline,
            message.version,
            message.uid,
            message.timestamp,
            self.subscribers or "nobody",
        )
        for queue in self._streams.values():
            queue.put_nowait(message)

    def _notify(self) -> None:
        """Wake every waiter; each re-checks its condition and waits on the fresh event."""
        self._changed.set()
        self._changed = asyncio.Event()
