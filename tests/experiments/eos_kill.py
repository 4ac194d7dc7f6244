"""Evaluation of Faust's exactly-once mode on the real broker: the kill -9 test of
tests/integration/test_scaling.py, with workers running ``tests.experiments.eos_worker``.

Run it on purpose (it is not part of ``make test``)::

    .venv/bin/pytest -s -p no:cacheprovider tests/experiments/eos_kill.py

It passes only if no request is lost and a read_committed reader of the output topics sees every
answer exactly once. docs/reliability.md records the outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from dataflow.config import Settings
from dataflow.testing.gateway import running_models
from dataflow.testing.worker import WorkerProcess
from tests.integration.load import EXPECTED, MODELS, PIPELINES, Load

pytestmark = pytest.mark.integration


async def committed_answers(settings: Settings, topic: str) -> Counter[bytes | None]:
    consumer = AIOKafkaConsumer(**settings.kafka_kwargs(), isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(tps)
        keys: Counter[bytes | None] = Counter()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                keys.update(r.key for r in records)
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
        return keys
    finally:
        await consumer.stop()


async def test_exactly_once_survives_kill_9(write_pipeline, env, tmp_path: Path, settings: Settings) -> None:
    four = settings.model_copy(update={"partitions": 4})
    folder = write_pipeline(PIPELINES)
    worker_env = {**env, "SELDON_KAFKA_PARTITIONS_DEFAULT": "4"}
    crew = [
        WorkerProcess(
            [folder], worker_env, tmp_path / f"worker{i}.log", module="tests.experiments.eos_worker"
        )
        for i in range(2)
    ]
    try:
        for w in crew:
            w.start()
            await w.wait_ready_async(90)
        survivor, victim = crew
        load = Load(four)
        async with running_models(four, MODELS), load.running():
            await asyncio.sleep(3)
            victim.kill()
            await asyncio.sleep(20)
        duplicated = 0
        for pipeline in EXPECTED:
            keys = await committed_answers(four, four.namer.pipeline_outputs(pipeline))
            duplicated += sum(n - 1 for n in keys.values())
        print(
            f"\nexactly-once mode, kill -9 one of two workers: sent {load.sent}, answered "
            f"{len(load.answers)}, lost {len(load.failures)}, duplicated (read_committed) {duplicated}"
        )
        print("survivor log tail:\n" + survivor.log_tail(30))
        assert not load.failures, load.failures[:3]
        assert duplicated == 0
    finally:
        for w in crew:
            w.stop(30)
