"""Reading passed-over offsets back from the real broker (the worker's offset-continuity guard)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from dataflow.config import Settings
from dataflow.runtime import admin
from dataflow.runtime.app import fetch_range
from dataflow.testing.kafka import produce

pytestmark = pytest.mark.integration


async def test_fetch_range_returns_exactly_the_missing_records(settings: Settings) -> None:
    topic = f"seldon.{settings.namespace}.model.gap.outputs"
    await admin.ensure_topics(settings, {topic})
    for i in range(6):
        await produce(
            settings, topic, f"v{i}".encode(), key=f"k{i}".encode(), headers=[("h", b"%d" % i)], partition=0
        )
    got = await fetch_range(settings, topic, 0, 2, 5)
    assert [(r.offset, r.key, r.value, r.headers) for r in got] == [
        (i, f"k{i}".encode(), f"v{i}".encode(), [("h", b"%d" % i)]) for i in (2, 3, 4)
    ]
    assert all(r.topic == topic and r.partition == 0 and r.timestamp and r.timestamp > 1e9 for r in got)
    assert await fetch_range(settings, topic, 0, 6, 6) == []


async def test_fetch_range_starts_at_the_log_start_when_older_offsets_are_gone(settings: Settings) -> None:
    topic = f"seldon.{settings.namespace}.model.trimmed.outputs"
    await admin.ensure_topics(settings, {topic})
    for i in range(5):
        await produce(settings, topic, f"v{i}".encode(), partition=0)
    client = AIOKafkaAdminClient(**settings.kafka_kwargs())
    await client.start()
    try:
        await client.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=3)})
    finally:
        await client.close()
    got = await fetch_range(settings, topic, 0, 1, 5)
    assert [r.offset for r in got] == [3, 4]
