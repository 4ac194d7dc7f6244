"""Changelog partitions whose start offset Faust had not resolved are seeked from their earliest
offset, not with None (which crashed a worker while scaling down)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import faust.tables.recovery
from faust.types import TP

import dataflow.runtime.app  # noqa: F401  (installs the seek fix)

CHANGELOG = "g-dataflow-join-state-changelog"


class Consumer:
    def __init__(self, earliest: dict[TP, int]) -> None:
        self.earliest = earliest
        self.seeks: list[dict[TP, int]] = []

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest[tp] for tp in tps}

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        assert all(isinstance(o, int) and o >= 0 for o in offsets.values()), offsets
        self.seeks.append(dict(offsets))


class Log:
    def info(self, *args: Any) -> None:
        pass


class RecoveryStub:
    log = Log()
    _build_offsets = faust.tables.recovery.Recovery._build_offsets
    _start_offsets_logtable = faust.tables.recovery.Recovery._start_offsets_logtable
    _consolidate_table_keys = faust.tables.recovery.Recovery._consolidate_table_keys
    _seek_offsets = faust.tables.recovery.Recovery._seek_offsets


async def test_a_standby_whose_offset_was_never_resolved_is_seeked_from_its_earliest_offset() -> None:
    fresh, compacted, known = TP(CHANGELOG, 0), TP(CHANGELOG, 1), TP(CHANGELOG, 2)
    consumer = Consumer({fresh: 0, compacted: 40, known: 0})
    offsets: Counter[TP] = Counter()
    offsets[fresh] = None  # type: ignore[assignment]  # what Faust's in-memory store leaves
    offsets[compacted] = None  # type: ignore[assignment]
    offsets[known] = 17
    await RecoveryStub()._seek_offsets(consumer, {fresh, compacted, known}, offsets, "standby")
    assert consumer.seeks == [{fresh: 0, compacted: 39, known: 17}]
