"""Reading passed-over offsets back from the real broker (the worker's offset-continuity guard)."""

from __future__ import annotations

import pytest

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
