"""Join and trigger semantics as a pure state machine (spec §4.3-4.4, cases BR-01, BR-02, BR-16).

One :class:`JoinState` holds what has arrived for one request key at one step: entries per *slot*
(the step's data sources first, then its trigger groups) and data results still waiting for their
triggers. :func:`arrive` and :func:`expire` return the new state and what to emit; the runtime
persists the state (a Faust table with a changelog) and produces the emissions. Nothing here does
I/O, so every timing rule is tested in milliseconds.

Rules, and where we differ from the reference:

* ``inner``: a result as soon as every data slot has an entry and all their record timestamps lie
  within the window ``W`` of each other (one result per such combination, as the reference's cross
  product); unmatched entries are dropped when ``W`` passes. With three or more sources this is
  stricter than the reference's pairwise fold ``((A⋈B)⋈C)``, which can chain records up to 2W apart.
* ``outer``: as inner; and when ``W`` passes *on the wall clock* without a full match, whatever has
  arrived is emitted: records within ``W`` of each other merged in source order, the others alone.
  The reference waits for stream time, so an idle partition never emits (BR-01).
* ``any``: every arrival is emitted at once, on its own; nothing is buffered. (The reference pairs
  records that arrive within 1 ms of each other, which records from different models never do.)
* Triggers: trigger groups are combined with ``triggersJoinType`` (inner: all groups; outer/any:
  one is enough); each data result fires once, when the trigger condition holds within ``W`` (one
  trigger arrival fires every result waiting for it); the trigger payloads are discarded.
* Matched entries are consumed, so a cyclic pipeline's iteration ``t`` cannot pair with ``t-1``.
* A record seen twice (same topic, partition and offset: a replay after a crash) is not stored twice,
  but it does produce its emissions again: at-least-once, never lost.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from dataflow.updates import JoinType


@dataclass(slots=True)
class Entry:
    """One arrived record (already converted for this step): when, from where, what."""

    slot: int
    ts_ms: int  # record timestamp: windows compare these
    seen_ms: int  # wall clock at arrival: expiry runs on this
    ident: str  # topic:partition:offset, to recognise replays
    payload: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)  # for results emitted on expiry


@dataclass(slots=True)
class JoinState:
    partition: int
    entries: list[Entry] = field(default_factory=list)
    waiting: list[Entry] = field(default_factory=list)  # data results waiting for triggers (slot -1)

    @property
    def empty(self) -> bool:
        return not self.entries and not self.waiting

    def deadline_ms(self, window_ms: int) -> int | None:
        times = [e.seen_ms for e in self.entries] + [e.seen_ms for e in self.waiting]
        return min(times) + window_ms if times else None


@dataclass(frozen=True, slots=True)
class JoinShape:
    """What a step joins: ``sources`` data slots, ``triggers`` trigger slots, types and window."""

    sources: int
    triggers: int
    join: JoinType
    triggers_join: JoinType
    window_ms: int

    @property
    def buffers(self) -> bool:
        """Whether arrivals must be kept at all (a lone ``any`` join without triggers keeps nothing)."""
        return self.triggers > 0 or (self.sources > 1 and self.join is not JoinType.ANY)


@dataclass(frozen=True, slots=True)
class Emission:
    """Parts to merge in source order (one part: forward as is), with the result's record timestamp.

    ``headers`` is None when the result is emitted while a record is processed (it takes that
    record's headers, as Kafka Streams does); on expiry it carries the latest entry's headers.
    """

    parts: tuple[bytes, ...]
    ts_ms: int
    headers: list[tuple[str, bytes]] | None = None


def _within(a: int, b: int, window_ms: int) -> bool:
    return abs(a - b) <= window_ms


def _combos(
    entries: Sequence[Entry], slots: Sequence[int], new: Entry, window_ms: int
) -> list[tuple[Entry, ...]]:
    """Every choice of one entry per slot (``new`` fixed in its own) whose timestamps are within the window."""
    choices: list[list[Entry]] = []
    for slot in slots:
        if slot == new.slot:
            choices.append([new])
            continue
        cands = [e for e in entries if e.slot == slot and _within(e.ts_ms, new.ts_ms, window_ms)]
        if not cands:
            return []
        choices.append(cands)
    return [
        c
        for c in itertools.product(*choices)
        if max(e.ts_ms for e in c) - min(e.ts_ms for e in c) <= window_ms
    ]


def _consume(state: JoinState, used: Sequence[Entry]) -> None:
    gone = {id(e) for e in used}
    state.entries = [e for e in state.entries if id(e) not in gone]
    state.waiting = [e for e in state.waiting if id(e) not in gone]


def _trigger_match(state: JoinState, shape: JoinShape, ts_ms: int) -> list[Entry] | None:
    """Trigger entries that satisfy the trigger condition for a result at ``ts_ms``, or None."""
    first = shape.sources
    slots = range(first, first + shape.triggers)
    near = [e for e in state.entries if e.slot in slots and _within(e.ts_ms, ts_ms, shape.window_ms)]
    if shape.triggers_join in (JoinType.INNER, JoinType.UNKNOWN):
        picked = []
        for slot in slots:
            mine = [e for e in near if e.slot == slot]
            if not mine:
                return None
            picked.append(mine[0])
        return picked
    return [near[0]] if near else None


def _fire(
    state: JoinState,
    shape: JoinShape,
    result: Emission,
    seen_ms: int,
    ident: str,
    used_out: list[Entry] | None = None,
) -> list[Emission]:
    """A data result: emit now if the triggers are there, else wait for them (within the window)."""
    if shape.triggers == 0:
        return [result]
    used = _trigger_match(state, shape, result.ts_ms)
    if used is not None:
        if used_out is None:
            _consume(state, used)
        else:
            used_out.extend(used)
        return [result]
    payload = _pack_parts(result.parts)
    if not any(w.ident == ident for w in state.waiting):
        state.waiting.append(Entry(-1, result.ts_ms, seen_ms, ident, payload, result.headers or []))
    return []


def arrive(
    state: JoinState | None, shape: JoinShape, entry: Entry, partition: int
) -> tuple[JoinState, list[Emission]]:
    """Add one arrival; returns the new state (possibly empty: delete it) and what to emit now."""
    st = state or JoinState(partition)
    replay = any(e.ident == entry.ident and e.slot == entry.slot for e in st.entries)
    if entry.slot >= shape.sources:  # a trigger
        if not replay:
            st.entries.append(entry)
        out: list[Emission] = []
        gone: list[Entry] = []
        for waiting in list(st.waiting):
            used = _trigger_match(st, shape, waiting.ts_ms)
            if used is not None:
                gone.extend([*used, waiting])
                out.append(Emission(_unpack_parts(waiting.payload), waiting.ts_ms))
        _consume(st, gone)
        return st, out

    if shape.sources == 1:
        return st, _fire(st, shape, Emission((entry.payload,), entry.ts_ms), entry.seen_ms, entry.ident)

    window = shape.window_ms
    data_slots = list(range(shape.sources))
    peers = [e for e in st.entries if e.slot < shape.sources and e is not entry]
    if shape.join is JoinType.ANY:
        # eager: every arrival is a result on its own (the reference's 1 ms window never pairs
        # records that come from different models)
        return st, _fire(st, shape, Emission((entry.payload,), entry.ts_ms), entry.seen_ms, entry.ident)

    combos = _combos(peers, data_slots, entry, window)
    if not combos:
        if not replay:
            st.entries.append(entry)
        return st, []
    out = []
    used_all: list[Entry] = []
    for combo in combos:
        emission = Emission(tuple(e.payload for e in combo), max(e.ts_ms for e in combo))
        idents = "+".join(sorted(e.ident for e in combo))
        out.extend(_fire(st, shape, emission, entry.seen_ms, idents, used_all))
        used_all.extend(e for e in combo if e is not entry)
    _consume(st, used_all)
    return st, out


def expire(state: JoinState, shape: JoinShape, now_ms: int) -> tuple[JoinState, list[Emission]]:
    """Drop what is older than the window; an ``outer`` join first emits what it has (BR-01)."""
    window = shape.window_ms
    out: list[Emission] = []
    if shape.join is JoinType.OUTER and shape.sources > 1:
        data = [e for e in state.entries if e.slot < shape.sources]
        if data and min(e.seen_ms for e in data) + window <= now_ms:
            present = sorted({e.slot for e in data})
            groups = [
                c
                for c in itertools.product(*[[e for e in data if e.slot == s] for s in present])
                if max(e.ts_ms for e in c) - min(e.ts_ms for e in c) <= window
            ]
            covered = {id(e) for c in groups for e in c}
            groups += [(e,) for e in data if id(e) not in covered]
            _consume(state, data)
            used: list[Entry] = []
            for c in groups:
                last = max(c, key=lambda e: e.seen_ms)
                emission = Emission(tuple(e.payload for e in c), max(e.ts_ms for e in c), list(last.headers))
                idents = "+".join(sorted(e.ident for e in c))
                out.extend(_fire(state, shape, emission, now_ms, idents, used))
            _consume(state, used)
    state.entries = [e for e in state.entries if e.seen_ms + window > now_ms]
    state.waiting = [e for e in state.waiting if e.seen_ms + window > now_ms]
    return state, out


# ---------------------------------------------------------------------- serialization
def _pack_parts(parts: Sequence[bytes]) -> bytes:
    return orjson.dumps([base64.b64encode(p).decode() for p in parts])


def _unpack_parts(blob: bytes) -> tuple[bytes, ...]:
    return tuple(base64.b64decode(p) for p in orjson.loads(blob))


def dumps(state: JoinState) -> bytes:
    def enc(e: Entry) -> list[object]:
        headers = [[k, base64.b64encode(v).decode()] for k, v in e.headers]
        return [e.slot, e.ts_ms, e.seen_ms, e.ident, base64.b64encode(e.payload).decode(), headers]

    return orjson.dumps(
        {"p": state.partition, "e": [enc(e) for e in state.entries], "w": [enc(e) for e in state.waiting]}
    )


def loads(blob: bytes) -> JoinState:
    raw = orjson.loads(blob)

    def dec(item: list[Any]) -> Entry:
        slot, ts, seen, ident, payload, headers = item
        return Entry(
            int(slot),
            int(ts),
            int(seen),
            str(ident),
            base64.b64decode(payload),
            [(str(k), base64.b64decode(v)) for k, v in headers],
        )

    return JoinState(int(raw["p"]), [dec(i) for i in raw["e"]], [dec(i) for i in raw["w"]])
