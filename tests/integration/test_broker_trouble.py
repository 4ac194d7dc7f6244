"""Broker trouble: a worker reports not-ready while Kafka is gone, recovers when it is back, and exits
non-zero with one line once it has been gone longer than the grace period. Uses a broker of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflow.testing.gateway import running_models
from tests.conftest import KAFKA_SCRIPT, free_port
from tests.integration.load import MODELS, PIPELINES, Load

pytestmark = pytest.mark.integration

CHAIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: echoes}
spec:
  steps:
    - name: echo
  output:
    steps: [echo]
"""


class Broker:
    def __init__(self, run_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_RUN_DIR": str(run_dir),
        }

    def run(self, action: str) -> None:
        done = subprocess.run(
            [str(KAFKA_SCRIPT), action],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "kafka")
    broker.env["KAFKA_FRESH"] = "1"
    broker.run("start")
    broker.env.pop("KAFKA_FRESH")
    try:
        yield broker
    finally:
        broker.run("stop")


def wait_for(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False


async def test_broker_gone_then_back_then_gone_for_good(own_broker: Broker, workers, write_pipeline) -> None:
    proc = workers(
        write_pipeline(CHAIN),
        extra_env={
            "SELDON_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{own_broker.port}",
            "DATAFLOW_BROKER_GRACE_SECONDS": "20",
        },
    )
    await asyncio.to_thread(own_broker.run, "stop")
    assert await asyncio.to_thread(wait_for, lambda: proc.probe("/ready")[0] == 503, 10)
    _, body = proc.probe("/ready")
    assert "cannot reach Kafka" in str(body)
    await asyncio.to_thread(own_broker.run, "start")
    assert await asyncio.to_thread(wait_for, lambda: proc.probe("/ready")[0] == 200, 30), proc.log_tail()
    await asyncio.to_thread(own_broker.run, "stop")
    assert proc.proc is not None
    code = await asyncio.to_thread(proc.proc.wait, 60)
    assert code != 0
    log = proc.log_tail(400)
    assert "for 20 s (DATAFLOW_BROKER_GRACE_SECONDS)" in log


async def test_broker_restart_under_load(own_broker: Broker, write_pipeline, workers, settings) -> None:
    """The broker restarts while requests flow: workers reconnect by themselves and nothing is lost.

    Requests a caller could not hand to Kafka while it was down are reported to that caller (they are
    not lost); every request Kafka accepted is answered."""
    bootstrap = f"127.0.0.1:{own_broker.port}"
    env = {"SELDON_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SELDON_KAFKA_PARTITIONS_DEFAULT": "4"}
    four = settings.model_copy(update={"bootstrap_servers": bootstrap, "partitions": 4})
    folder = write_pipeline(PIPELINES)
    crew = [workers(folder, extra_env=env) for _ in range(2)]
    load = Load(four)
    async with running_models(four, MODELS), load.running():
        await asyncio.sleep(3)
        stopped_at = time.monotonic()
        await asyncio.to_thread(own_broker.run, "stop")
        await asyncio.sleep(3)
        await asyncio.to_thread(own_broker.run, "start")
        back_at = time.monotonic()
        ready = await asyncio.to_thread(wait_for, lambda: all(w.probe("/ready")[0] == 200 for w in crew), 60)
        ready_after = time.monotonic() - back_at
        await asyncio.sleep(5)
    firsts = load.first_answers_after(back_at)
    await load.report(
        "broker restarted under load, 2 workers, 4 partitions, chain + join",
        f", broker away {back_at - stopped_at:.1f} s, workers ready {ready_after:.1f} s after it was back,"
        f" first answer on every partition {max(firsts.values(), default=-1):.1f} s after it was back,"
        f" {len(load.unsent)} request(s) the callers could not send meanwhile",
    )
    assert ready, [w.log_tail() for w in crew]
    assert all(w.proc is not None and w.proc.poll() is None for w in crew)
    assert len(firsts) == 4
