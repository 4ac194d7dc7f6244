"""Small Kafka helpers for tests and tools: make a topic, produce one record, read what a topic holds.

They use plain aiokafka so they observe the broker exactly as another Kafka client would.
Every call has a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dataflow.config import Settings
from dataflow.topics import Headers


@dataclass(frozen=True, slots=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


async def create_topic(settings: Settings, topic: str, partitions: int, *, timeout: float = 20.0) -> None:
    """Create ``topic`` with ``partitions`` partitions (replication 1), as someone else's tool would."""
    admin = AIOKafkaAdminClient(**settings.kafka_kwargs())
    await asyncio.wait_for(admin.start(), timeout)
    try:
        await asyncio.wait_for(admin.create_topics([NewTopic(topic, partitions, 1)]), timeout)
    finally:
        await asyncio.wait_for(admin.close(), timeout)


async def produce(
    settings: Settings,
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
    partition: int | None = None,
    timestamp_ms: int | None = None,
    timeout: float = 20.0,
) -> None:
    producer = AIOKafkaProducer(**settings.kafka_kwargs(), max_request_size=16 * 1024 * 1024)
    await asyncio.wait_for(producer.start(), timeout)
    try:
        await asyncio.wait_for(
            producer.send_and_wait(
                topic, value, key=key, headers=list(headers), partition=partition, timestamp_ms=timestamp_ms
            ),
            timeout,
        )
    finally:
        await asyncio.wait_for(producer.stop(), timeout)


async def read_all(settings: Settings, topic: str, *, count: int, timeout: float = 20.0) -> list[Consumed]:
    """Read ``topic`` from the beginning until ``count`` records arrived or ``timeout`` passed."""
    consumer = AIOKafkaConsumer(**settings.kafka_kwargs(), enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), timeout)
    out: list[Consumed] = []
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] | None = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # the topic may be new to this client
                await asyncio.sleep(0.1)
        if not partitions:
            return out
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(
                    Consumed(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers or ()))
                    for r in records
                )
        return out
    finally:
        await asyncio.wait_for(consumer.stop(), timeout)
