"""Start-up before Kafka answers (case BR-21): wait visibly, then start, without anyone's help.

A worker whose broker is not there yet (a fresh cluster, Kafka still rolling out) must neither die in a
crash loop nor sit silent. Until the broker answers and the pipelines' topics exist, the worker serves
its health port itself:

* ``/live`` and ``/startup`` are healthy (the process is alive and doing what it should: waiting), so
  Kubernetes leaves the pod alone; in scheduler mode ``/startup`` also checks the scheduler channel;
* ``/ready`` answers 503 with the reason, ``cannot reach Kafka at <addr>: <cause>``;
* in scheduler mode the worker subscribes already and refuses every Create with that reason, so the
  pipeline's status says why it is not ready (the scheduler sends the Creates again when the running
  worker subscribes, and retries failed ones).

Attempts back off from 1 s to 15 s, one log line each (the Kafka client's own per-attempt errors are
silenced). Once Kafka answers, the topics are created and the Faust worker starts as usual.
``DATAFLOW_STARTUP_WAIT_SECONDS`` bounds the wait (0, the default: for ever); past it the worker exits 1.
SIGTERM or SIGINT while waiting stops the worker cleanly (exit 0, one line), as it would a running one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from aiohttp import web

from dataflow.config import Settings
from dataflow.control import chainer
from dataflow.control.scheduler_client import PipelineHost, SchedulerClient
from dataflow.errors import ConnectError, DataflowError
from dataflow.health import Check, CheckResult, evaluate
from dataflow.metrics import Metrics
from dataflow.plan import Router
from dataflow.runtime import admin
from dataflow.updates import PipelineUpdate

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 15.0
ATTEMPT_S = 5.0  # one connection attempt; a refused port fails at once, a black hole takes this long


class Waiting(PipelineHost):
    """What the worker is while it waits for Kafka: the reason it is not ready, and, towards the
    scheduler, a host that runs nothing and says why."""

    def __init__(self, settings: Settings) -> None:
        self.reason = f"connecting to Kafka at {settings.bootstrap_servers}"
        self.scheduler: SchedulerClient | None = None
        self.attempts = 0

    def is_running(self, uid: str) -> bool:
        return False

    async def create(self, update: PipelineUpdate) -> None:
        raise DataflowError(chainer.TOPIC_CREATION_ERROR.format(self.reason))

    async def delete(self, update: PipelineUpdate) -> None:
        # nothing runs here; topics to delete must wait for Kafka (the scheduler retries the Delete)
        if any(True for step in update.updates for _ in (*step.sources, step.sink)):
            raise DataflowError(chainer.TOPIC_DELETION_ERROR.format(self.reason))

    # ------------------------------------------------------------------ health
    def live_check(self) -> CheckResult:
        return CheckResult(True, "waiting for Kafka", {"attempts": str(self.attempts)})

    def ready_check(self) -> CheckResult:
        return CheckResult(False, self.reason, {"attempts": str(self.attempts)})

    def startup_checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {"service": self.live_check}
        if self.scheduler is not None:
            checks["grpc-chainer"] = self.scheduler.health
        return checks


async def _serve_health(settings: Settings, waiting: Waiting) -> web.AppRunner:
    """The health port while no Faust app exists yet: the same paths and JSON as the running worker."""
    metrics = Metrics()
    metrics.ready.set(0)

    def respond(checks: dict[str, Check]) -> web.Response:
        status, body = evaluate(checks)
        return web.json_response(body, status=status)

    async def live(request: web.Request) -> web.Response:
        return respond({"service": waiting.live_check})

    async def ready(request: web.Request) -> web.Response:
        return respond({"service": waiting.ready_check})

    async def startup(request: web.Request) -> web.Response:
        return respond(waiting.startup_checks())

    async def render(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain")

    app = web.Application()
    app.add_routes(
        [
            web.get("/live", live),
            web.get("/ready", ready),
            web.get("/startup", startup),
            web.get("/metrics", render),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if settings.health_port:
        await web.TCPSite(runner, "0.0.0.0", settings.health_port, reuse_address=True).start()
    return runner


async def wait_for_kafka(settings: Settings, router: Router) -> dict[str, int]:
    """Wait until Kafka answers and ``router``'s topics exist; returns their partition counts.

    Raises ConnectError once ``DATAFLOW_STARTUP_WAIT_SECONDS`` have passed without Kafka, and lets
    other DataflowErrors (joins over topics of different partition counts) through at once: those
    do not mend by waiting.
    """
    waiting = Waiting(settings)
    stop_signal = _stop_on_signals()
    runner = await _serve_health(settings, waiting)
    client: SchedulerClient | None = None
    subscription: asyncio.Task[None] | None = None
    if settings.upstream_host:
        client = waiting.scheduler = SchedulerClient(settings, waiting)
        subscription = asyncio.ensure_future(client.run())
    try:
        return await _attempt(settings, router, waiting)
    except asyncio.CancelledError:
        if stop_signal.is_set():
            raise Stopped(f"stopped by a signal while waiting for Kafka ({waiting.reason})") from None
        raise
    finally:
        _restore_signals()
        if client is not None and subscription is not None:
            await client.stop()
            subscription.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(subscription, timeout=5)
        await asyncio.wait_for(runner.cleanup(), timeout=5)


class Stopped(Exception):
    """SIGTERM or SIGINT came while waiting: a clean stop (exit 0), as for a running worker."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop_on_signals() -> asyncio.Event:
    """Make SIGTERM/SIGINT cancel the wait (Kubernetes stops a pod that way), and say they came."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    came = asyncio.Event()

    def stop() -> None:
        came.set()
        if main is not None:
            main.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    return came


def _restore_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)


async def _attempt(settings: Settings, router: Router, waiting: Waiting) -> dict[str, int]:
    started = time.monotonic()
    limit = settings.startup_wait_s
    delay = FIRST_RETRY_S
    while True:
        waiting.attempts += 1
        left = limit - (time.monotonic() - started) if limit else ATTEMPT_S
        try:
            # an attempt ends by the limit, so the worker gives up when it says it will
            await admin.check_broker(settings, max(0.5, min(settings.connect_timeout_s, ATTEMPT_S, left)))
            # a Create refused now says what really holds it up
            waiting.reason = f"starting: Kafka at {settings.bootstrap_servers} answers, creating topics"
            counts = await admin.prepare(settings, router)
            if waiting.attempts > 1:
                log.warning("dataflow: Kafka at %s answers; starting", settings.bootstrap_servers)
            return counts
        except (ConnectError, admin.TopicError) as exc:
            waiting.reason = str(exc)
        waited = time.monotonic() - started
        if limit and waited >= limit:
            raise ConnectError(
                f"{waiting.reason}; gave up after {limit:g} s (DATAFLOW_STARTUP_WAIT_SECONDS)"
            ) from None
        pause = min(delay, limit - waited) if limit else delay
        log.warning("dataflow: %s; not ready, retrying in %.3g s", waiting.reason, pause)
        await asyncio.sleep(pause)
        delay = min(delay * 2, MAX_RETRY_S)
