"""Start-up before Kafka answers: what the worker says meanwhile, and the bound on the wait.

No broker is needed: the address is a port nothing listens on, so every attempt is refused at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest

from dataflow.config import load_settings
from dataflow.control import chainer
from dataflow.errors import ConnectError, DataflowError
from dataflow.plan import Router
from dataflow.runtime import startup
from dataflow.updates import Operation, PipelineTopic, PipelineUpdate, StepUpdate


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting is refused


def _update(*steps: StepUpdate) -> PipelineUpdate:
    return PipelineUpdate(op=Operation.DELETE, pipeline="p", version=1, uid="u1", updates=steps)


async def test_the_waiting_worker_refuses_creates_with_the_reason_and_runs_nothing() -> None:
    waiting = startup.Waiting(load_settings(SELDON_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"))
    waiting.reason = "cannot reach Kafka at 127.0.0.1:1: refused"
    assert not waiting.is_running("u1")
    with pytest.raises(DataflowError) as refused:
        await waiting.create(_update())
    assert str(refused.value) == chainer.TOPIC_CREATION_ERROR.format(waiting.reason)
    await waiting.delete(_update())  # nothing runs, nothing to delete: success
    topic = PipelineTopic("p", "seldon.ns.pipeline.p.inputs")
    with pytest.raises(DataflowError, match="topic deletion error"):
        await waiting.delete(_update(StepUpdate(sources=(topic,), sink=topic)))
    assert waiting.live_check().healthy and not waiting.ready_check().healthy
    assert waiting.ready_check().message == waiting.reason


async def test_wait_is_bounded_and_health_says_why_meanwhile(clean_settings_env: None) -> None:
    kafka, health = _closed_port(), _closed_port()
    settings = load_settings(
        SELDON_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka}",
        SELDON_HEALTH_SERVER_PORT=health,
        DATAFLOW_STARTUP_WAIT_SECONDS=1.5,
    )
    seen: dict[str, tuple[int, dict[str, object]]] = {}

    def probe(path: str) -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}{path}", timeout=2) as resp:
                seen[path] = (resp.status, json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            seen[path] = (exc.code, json.loads(exc.read()))

    async def probe_all() -> None:
        await asyncio.sleep(0.5)
        for path in ("/live", "/ready", "/startup"):
            await asyncio.to_thread(probe, path)

    prober = asyncio.ensure_future(probe_all())
    with pytest.raises(ConnectError) as gave_up:
        await startup.wait_for_kafka(settings, Router.build([]))
    await prober
    assert f"cannot reach Kafka at 127.0.0.1:{kafka}" in str(gave_up.value)
    assert "gave up after 1.5 s (DATAFLOW_STARTUP_WAIT_SECONDS)" in str(gave_up.value)
    assert seen["/live"][0] == 200 and seen["/startup"][0] == 200
    status, body = seen["/ready"]
    assert status == 503
    assert f"cannot reach Kafka at 127.0.0.1:{kafka}" in json.dumps(body)
    # the health port is free again for the worker proper (which binds it as this does)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", health))
