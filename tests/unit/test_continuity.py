"""The worker's offset-continuity guard: records the consumer passed over are read back and processed
first, in order, and a failure to read them stops the worker rather than let it lose them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dataflow.metrics import Metrics
from dataflow.runtime import app as app_module
from dataflow.runtime.app import DataflowApp
from dataflow.runtime.engine import Record
from tests.unit.test_engine import NAMER, make_engine, record, response


class FakeApp(SimpleNamespace):
    """What ``ensure_continuity`` uses of the app: engine, metrics, settings, committed offsets."""

    crashed: list[BaseException]

    async def _committed(self, topic: str, partition: int) -> int | None:
        return self.committed_offset  # type: ignore[no-any-return]

    async def fatal(self, reason: str) -> None:
        self.crashed.append(RuntimeError(reason))

    _read_passed_over = DataflowApp._read_passed_over


def fake_app(committed: int | None) -> tuple[FakeApp, Any]:
    engine, sent = make_engine(skip_replays=True)
    fake = FakeApp(engine=engine, metrics=Metrics(), settings=None, committed_offset=committed, crashed=[])
    return fake, sent


def at(offset: int) -> Record:
    base = record(NAMER.model_outputs("m1"), response("OUTPUT0"))
    return Record(base.topic, 2, offset, base.key, base.value, base.headers, 1.0)


async def test_passed_over_records_are_processed_first(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, sent = fake_app(committed=3)
    asked: list[tuple[str, int, int, int]] = []

    async def fetch(settings: Any, topic: str, partition: int, start: int, end: int) -> list[Record]:
        asked.append((topic, partition, start, end))
        return [at(o) for o in range(start, end)]

    monkeypatch.setattr(app_module, "fetch_range", fetch)
    first = at(5)  # the first record seen after an assignment, but the partition resumes at 3
    await DataflowApp.ensure_continuity(fake, first)  # type: ignore[arg-type]
    await fake.engine.process(first)
    assert asked == [(first.topic, 2, 3, 5)]
    assert len(sent.to(NAMER.model_inputs("m2"))) == 3
    assert fake.metrics.offset_gaps._value.get() == 1
    assert fake.metrics.offset_gap_records._value.get() == 2
    await DataflowApp.ensure_continuity(fake, at(6))  # type: ignore[arg-type]
    assert len(asked) == 1  # no gap any more


async def test_a_gap_that_cannot_be_read_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, sent = fake_app(committed=0)

    async def fetch(*args: Any) -> list[Record]:
        raise TimeoutError("broker gone")

    monkeypatch.setattr(app_module, "fetch_range", fetch)
    with pytest.raises(TimeoutError):
        await DataflowApp.ensure_continuity(fake, at(2))  # type: ignore[arg-type]
    assert "offsets 0..1" in str(fake.crashed[0])
    assert sent.records == []


async def test_without_a_committed_offset_the_first_record_is_where_it_starts() -> None:
    fake, _ = fake_app(committed=None)
    await DataflowApp.ensure_continuity(fake, at(9))  # type: ignore[arg-type]
    await fake.engine.process(at(9))
    assert fake.engine.missing(at(10)) is None


async def test_a_jump_beyond_any_consumer_buffer_is_a_reset_not_read_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resuming far past the committed offset (it fell out of retention) is accepted, not a flood."""
    fake, _ = fake_app(committed=0)

    async def fetch(*args: Any) -> list[Record]:
        raise AssertionError("must not read a whole retention's worth back")

    monkeypatch.setattr(app_module, "fetch_range", fetch)
    far = at(app_module.MAX_FILL + 10)
    await DataflowApp.ensure_continuity(fake, far)  # type: ignore[arg-type]
    await fake.engine.process(far)
    assert fake.engine.missing(at(far.offset + 1)) is None
    assert fake.crashed == []
