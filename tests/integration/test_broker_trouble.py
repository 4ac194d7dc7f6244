"""Broker trouble: a worker reports not-ready while Kafka is gone, recovers when it is back, and exits
non-zero with one line once it has been gone longer than the grace period. Uses a broker of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.control import chainer
from dataflow.tensors import request_from_json
from dataflow.testing.gateway import running_models
from dataflow.testing.scheduler import FakeScheduler
from dataflow.updates import Operation
from tests.integration.brokers import Broker, wait_for
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


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "kafka")
    broker.run("start")
    try:
        yield broker
    finally:
        broker.run("stop")


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


LATE = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: late-sched}
spec:
  steps:
    - name: echo
  output:
    steps: [echo]
"""

FOUR = request_from_json(
    {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
)


async def test_worker_started_before_kafka_waits_then_serves(
    tmp_path: Path, write_pipeline, workers, settings: Settings
) -> None:
    """BR-21: workers started before their broker stay up, say why they are not ready (health and, in
    scheduler mode, the Create reply), log one line per attempt with backoff, and start serving once
    Kafka is there, without help."""
    late = Broker(tmp_path / "late-kafka")
    reason = f"cannot reach Kafka at {late.bootstrap}"
    env = {"SELDON_KAFKA_BOOTSTRAP_SERVERS": late.bootstrap}
    async with FakeScheduler(settings.namer) as scheduler:
        yaml_mode = workers(write_pipeline(CHAIN), extra_env=env, ready=False)
        scheduler_mode = workers(
            extra_env={
                **env,
                "SELDON_UPSTREAM_HOST": "127.0.0.1",
                "SELDON_UPSTREAM_PORT": str(scheduler.port),
                "SELDON_DATAFLOW_REPLICA_ID": "late-replica",
                "DATAFLOW_APP_ID": "late-scheduled",  # a consumer group of its own
            },
            ready=False,
        )
        crew = (yaml_mode, scheduler_mode)

        def waiting_with_reason() -> bool:
            return all(w.probe("/ready")[0] == 503 and reason in str(w.probe("/ready")[1]) for w in crew)

        assert await asyncio.to_thread(wait_for, waiting_with_reason, 30), [w.log_tail() for w in crew]
        for w in crew:
            assert w.probe("/live")[0] == 200 and w.probe("/startup")[0] == 200
        _, startup = scheduler_mode.probe("/startup")
        assert startup is not None and startup["checks"]["grpc-chainer"]["isHealthy"]
        # the pipeline's status carries the same reason
        await scheduler.wait_for_subscriber("late-replica", timeout=30)
        sent = await scheduler.create(LATE)
        refused = await scheduler.wait_for_reply("late-sched", Operation.CREATE, uid=sent.uid, timeout=10)
        assert not refused.success and reason in refused.reason, refused.reason
        try:
            await asyncio.to_thread(late.run, "start")
            broker_up = time.monotonic()
            for w in crew:  # the longest pause between attempts is 15 s
                await w.wait_ready_async(timeout=60)
            ready_after = time.monotonic() - broker_up
            ready = await scheduler.wait_for_reply(
                "late-sched", Operation.CREATE, uid=sent.uid, success=True, timeout=30
            )
            assert ready.reason == chainer.READY
            late_settings = settings.model_copy(update={"bootstrap_servers": late.bootstrap})
            async with running_models(late_settings, ["echo"], timeout=30):
                for pipeline in ("echoes", "late-sched"):
                    answer = await client.infer(late_settings, pipeline, FOUR, timeout=30)
                    assert answer.to_json()["outputs"][0]["data"] == [1, 2, 3, 4]
        finally:
            for w in crew:  # before the broker goes: a worker without one takes long to stop
                await asyncio.to_thread(w.stop, 30)
            await asyncio.to_thread(late.run, "stop")
    counts = []
    for w in crew:
        log = w.log_tail(2000)
        attempts = [line for line in log.splitlines() if "not ready, retrying in" in line]
        counts.append(len(attempts))
        # one line per attempt, with backoff: a handful over the wait, and no other client's noise
        assert 1 <= len(attempts) <= 8, attempts
        assert all(reason in line for line in attempts)
        assert not [line for line in log.splitlines() if "aiokafka" in line and "bootstrap" in line]
        assert "Traceback" not in log
    print(
        f"\nworkers started before Kafka: {counts} attempt lines (YAML, scheduler mode), both ready "
        f"{ready_after:.1f} s after the broker answered, the refused Create then ready"
    )
