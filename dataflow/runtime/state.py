"""Join state in one pre-declared Faust table, written with an explicit changelog partition.

Faust tables cannot be added after start, so one table serves every pipeline and step; its keys are
``<pipeline uid>|<step id>|<record key>``. Writes go to the changelog partition of the record that
caused them (a request keeps its partition number on every topic), so partition p's state is
recovered by whichever worker is assigned partition p of the step's topics. Faust's own
``table[key] = …`` needs a current event; expiry runs from a timer, so we write the store and the
changelog directly.
"""

from __future__ import annotations

from typing import Any

TABLE_NAME = "dataflow-join-state"


class TableStore:
    """A :class:`~dataflow.runtime.engine.StateStore` over a Faust table (raw bytes keys and values)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def _store(self) -> Any:
        return self.table.data

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._store.get(key)
        return value

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self._store[key] = value
        self._track(key, partition)
        self.table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")

    def delete(self, key: bytes, partition: int) -> None:
        if self._store.pop(key, None) is None:
            return
        self.table.send_changelog(partition, key, None, key_serializer="raw", value_serializer="raw")

    def all_keys(self) -> list[bytes]:
        return list(self._store.keys())

    def _track(self, key: bytes, partition: int) -> None:
        # the memory store drops keys of partitions that moved away, using this map
        mapping = getattr(self._store, "_key_partition", None)
        if mapping is not None:
            mapping[key] = partition
