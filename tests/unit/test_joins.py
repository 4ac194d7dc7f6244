"""Join and trigger semantics of :mod:`dataflow.joins` as a pure state machine (spec §4.3-4.4,
cases BR-01, BR-02, BR-16): every rule is exercised in milliseconds, without a broker."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from dataflow.joins import Emission, Entry, JoinShape, JoinState, arrive, dumps, expire, loads
from dataflow.updates import JoinType

W = 1000  # the window of most tests
PART = 3  # the partition every state lives on

INNER, OUTER, ANY, UNKNOWN = JoinType.INNER, JoinType.OUTER, JoinType.ANY, JoinType.UNKNOWN

_offsets = itertools.count()


def ent(
    slot: int,
    ts: int,
    *,
    seen: int | None = None,
    ident: str | None = None,
    payload: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> Entry:
    """One arrival; by default seen at its record timestamp, with a fresh ident and a telling payload."""
    return Entry(
        slot=slot,
        ts_ms=ts,
        seen_ms=ts if seen is None else seen,
        ident=ident if ident is not None else f"topic{slot}:0:{next(_offsets)}",
        payload=payload if payload is not None else f"s{slot}@{ts}".encode(),
        headers=headers if headers is not None else [],
    )


def shape(
    sources: int,
    join: JoinType = INNER,
    *,
    triggers: int = 0,
    triggers_join: JoinType = INNER,
    window: int = W,
) -> JoinShape:
    return JoinShape(
        sources=sources, triggers=triggers, join=join, triggers_join=triggers_join, window_ms=window
    )


def feed(
    sh: JoinShape, entries: Iterable[Entry], state: JoinState | None = None
) -> tuple[JoinState | None, list[list[Emission]]]:
    """Arrive each entry in turn; returns the final state and the emissions of each arrival."""
    out: list[list[Emission]] = []
    for e in entries:
        state, emitted = arrive(state, sh, e, PART)
        out.append(emitted)
    return state, out


def parts(emissions: Iterable[Emission]) -> list[tuple[bytes, ...]]:
    return [em.parts for em in emissions]


def snapshot(state: JoinState) -> JoinState:
    """An independent copy (``arrive`` may change the state it is given), as the changelog would restore it."""
    return loads(dumps(state))


# ---------------------------------------------------------------------- inner
class TestInner:
    def test_two_sources_nothing_until_both_then_one_result(self) -> None:
        sh = shape(2)
        a, b = ent(0, 1000), ent(1, 1200)
        state, out = feed(sh, [a, b])
        assert out[0] == []
        assert out[1] == [Emission((a.payload, b.payload), 1200)]
        assert out[1][0].headers is None  # emitted while a record is processed: takes its headers
        assert state is not None and state.empty

    @pytest.mark.parametrize("join", [INNER, UNKNOWN])
    def test_three_sources_nothing_until_all_slots_filled(self, join: JoinType) -> None:
        sh = shape(3, join)
        a, b, c = ent(0, 1000), ent(1, 1100), ent(2, 1050)
        state, out = feed(sh, [a, b, c])
        assert out[:2] == [[], []]
        assert parts(out[2]) == [(a.payload, b.payload, c.payload)]
        assert state is not None and state.empty

    def test_two_present_of_three_stay_buffered(self) -> None:
        sh = shape(3)
        a, c = ent(0, 1000), ent(2, 1000)
        state, out = feed(sh, [a, c])
        assert out == [[], []]
        assert state is not None
        assert sorted(e.slot for e in state.entries) == [0, 2]

    @pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
    def test_parts_in_slot_order_whatever_the_arrival_order(self, order: tuple[int, ...]) -> None:
        sh = shape(3)
        entries = [ent(0, 1000), ent(1, 1001), ent(2, 1002)]
        state, out = feed(sh, [entries[i] for i in order])
        flat = [em for ems in out for em in ems]
        assert parts(flat) == [(b"s0@1000", b"s1@1001", b"s2@1002")]
        assert out[-1] == flat  # emitted by the last arrival only
        assert flat[0].ts_ms == 1002  # the max, not the last arrival's
        assert state is not None and state.empty

    def test_parts_in_slot_order_when_the_later_slot_comes_first(self) -> None:
        sh = shape(2)
        b, a = ent(1, 1000, payload=b"B"), ent(0, 1500, payload=b"A")
        _, out = feed(sh, [b, a])
        assert out[1] == [Emission((b"A", b"B"), 1500)]

    def test_timestamp_is_the_max_even_when_the_later_record_arrives_first(self) -> None:
        sh = shape(2)
        a, b = ent(0, 1900, seen=10), ent(1, 1200, seen=20)
        _, out = feed(sh, [a, b])
        assert [em.ts_ms for em in out[1]] == [1900]

    @pytest.mark.parametrize(
        ("ta", "tb", "matches"),
        [
            (1000, 2000, True),
            (2000, 1000, True),
            (1000, 2001, False),
            (2001, 1000, False),
            (1000, 1000, True),
        ],
    )
    def test_window_boundary(self, ta: int, tb: int, matches: bool) -> None:
        sh = shape(2)
        state, out = feed(sh, [ent(0, ta, seen=0), ent(1, tb, seen=1)])
        assert out[0] == []
        assert len(out[1]) == (1 if matches else 0)
        assert state is not None
        assert state.empty is matches  # an unmatched pair stays buffered until expiry

    def test_window_applies_across_all_three_slots(self) -> None:
        # c is within W of a and of b, but a and b are 2 W apart: no result
        sh = shape(3)
        _, out = feed(sh, [ent(0, 0), ent(1, 2000), ent(2, 1000)])
        assert out == [[], [], []]

    def test_record_timestamps_not_arrival_times_decide(self) -> None:
        sh = shape(2)
        # seen far apart, record timestamps close: matches
        _, out = feed(sh, [ent(0, 1000, seen=0), ent(1, 1000, seen=5000)])
        assert len(out[1]) == 1

    def test_two_candidates_give_the_cross_product(self) -> None:
        sh = shape(2)
        a1, a2, b = ent(0, 1000, payload=b"A1"), ent(0, 1100, payload=b"A2"), ent(1, 1200, payload=b"B")
        state, out = feed(sh, [a1, a2, b])
        assert out[:2] == [[], []]
        assert sorted(out[2], key=lambda em: em.parts) == [
            Emission((b"A1", b"B"), 1200),
            Emission((b"A2", b"B"), 1200),
        ]
        assert state is not None and state.empty

    def test_cross_product_over_three_sources(self) -> None:
        sh = shape(3)
        entries = [
            ent(0, 1000, payload=b"A1"),
            ent(0, 1000, payload=b"A2"),
            ent(1, 1000, payload=b"B1"),
            ent(1, 1000, payload=b"B2"),
            ent(2, 1000, payload=b"C"),
        ]
        state, out = feed(sh, entries)
        assert out[:4] == [[], [], [], []]
        assert sorted(parts(out[4])) == [
            (b"A1", b"B1", b"C"),
            (b"A1", b"B2", b"C"),
            (b"A2", b"B1", b"C"),
            (b"A2", b"B2", b"C"),
        ]
        assert state is not None and state.empty

    def test_cross_product_keeps_only_candidates_within_the_window(self) -> None:
        sh = shape(2)
        near, far = ent(0, 1000, payload=b"near"), ent(0, 5000, payload=b"far")
        state, out = feed(sh, [near, far, ent(1, 1500, payload=b"B")])
        assert parts(out[2]) == [(b"near", b"B")]
        assert state is not None
        assert [e.payload for e in state.entries] == [b"far"]

    def test_matched_entries_are_consumed(self) -> None:
        sh = shape(2)
        state, out = feed(sh, [ent(0, 1000), ent(1, 1000), ent(1, 1001)])
        assert [len(o) for o in out] == [0, 1, 0]  # the second B finds no A: it was consumed
        assert state is not None
        assert [e.slot for e in state.entries] == [1]

    def test_expiry_drops_unmatched_without_emitting(self) -> None:
        sh = shape(2)
        state, _ = feed(sh, [ent(0, 1000, seen=100)])
        assert state is not None
        state, out = expire(state, sh, 100 + W)
        assert out == []
        assert state.empty


# ---------------------------------------------------------------------- outer
class TestOuter:
    def test_full_match_emits_at_once_like_inner(self) -> None:
        sh = shape(2, OUTER, window=500)  # BR-02 case 1
        a, b = ent(0, 1000, payload=b"X"), ent(1, 1010, payload=b"Y")
        state, out = feed(sh, [a, b])
        assert out == [[], [Emission((b"X", b"Y"), 1010)]]
        assert state is not None and state.empty
        assert expire(state, sh, 10**9)[1] == []  # nothing left to emit later

    def test_lone_side_emitted_by_expire_once_the_window_passed(self) -> None:
        sh = shape(2, OUTER, window=500)  # BR-02 case 2
        a = ent(0, 1000, seen=2000, payload=b"X", headers=[("seldon-puid", b"req-1")])
        state, out = feed(sh, [a])
        assert out == [[]]
        assert state is not None
        state, early = expire(state, sh, 2499)
        assert early == []
        assert not state.empty
        state, late = expire(state, sh, 2500)
        assert late == [Emission((b"X",), 1000, [("seldon-puid", b"req-1")])]
        assert state.empty

    def test_lone_later_slot_alone(self) -> None:
        sh = shape(2, OUTER)
        state, _ = feed(sh, [ent(1, 1000, seen=0, payload=b"Y")])
        assert state is not None
        state, out = expire(state, sh, W)
        assert parts(out) == [(b"Y",)]
        assert state.empty

    def test_expire_emits_on_the_wall_clock_without_further_arrivals(self) -> None:
        # BR-01: the reference waits for stream time (another record); we must not
        sh = shape(2, OUTER)
        state, _ = feed(sh, [ent(0, 5, seen=100)])
        assert state is not None
        assert state.deadline_ms(W) == 100 + W
        _, out = expire(state, sh, 100 + W)
        assert len(out) == 1

    def test_three_sources_two_present_merge_in_slot_order(self) -> None:
        sh = shape(3, OUTER)
        c, a = ent(2, 1100, seen=0, payload=b"C"), ent(0, 1000, seen=10, payload=b"A")
        state, out = feed(sh, [c, a])
        assert out == [[], []]
        assert state is not None
        state, none_yet = expire(state, sh, W - 1)
        assert none_yet == []
        state, done = expire(state, sh, W)
        assert len(done) == 1
        assert done[0].parts == (b"A", b"C")
        assert done[0].ts_ms == 1100
        assert state.empty

    def test_expiry_carries_the_latest_entrys_headers(self) -> None:
        sh = shape(3, OUTER)
        first = ent(0, 1000, seen=0, headers=[("h", b"first")])
        latest = ent(1, 1000, seen=300, headers=[("h", b"latest"), ("bin", b"\x00\xff")])
        state, _ = feed(sh, [latest, first])  # arrival order is not seen order
        assert state is not None
        _, out = expire(state, sh, W)
        assert out[0].headers == [("h", b"latest"), ("bin", b"\x00\xff")]

    def test_after_expiry_a_late_partner_does_not_pair(self) -> None:
        sh = shape(2, OUTER)
        state, _ = feed(sh, [ent(0, 1000, seen=0)])
        assert state is not None
        state, _ = expire(state, sh, W)
        state, out = arrive(state, sh, ent(1, 1000, seen=W + 1), PART)
        assert out == []


# ---------------------------------------------------------------------- any
class TestAny:
    def test_every_arrival_emits_alone_at_once(self) -> None:
        sh = shape(2, ANY)
        a, b = ent(0, 1000, payload=b"A"), ent(1, 1000, payload=b"B")
        state, out = feed(sh, [a, b])
        assert out == [[Emission((b"A",), 1000)], [Emission((b"B",), 1000)]]
        assert state is not None and state.empty

    def test_three_sources_each_alone(self) -> None:
        sh = shape(3, ANY)
        state, out = feed(sh, [ent(2, 1), ent(0, 2), ent(1, 3)])
        assert [parts(o) for o in out] == [[(b"s2@1",)], [(b"s0@2",)], [(b"s1@3",)]]
        assert state is not None and state.empty

    @pytest.mark.parametrize(
        ("sh", "buffers"),
        [
            (shape(2, ANY), False),
            (shape(3, ANY), False),
            (shape(1, INNER), False),
            (shape(1, OUTER), False),
            (shape(2, INNER), True),
            (shape(2, UNKNOWN), True),
            (shape(2, OUTER), True),
            (shape(2, ANY, triggers=1), True),
            (shape(1, INNER, triggers=1), True),
        ],
    )
    def test_buffers(self, sh: JoinShape, buffers: bool) -> None:
        assert sh.buffers is buffers

    def test_single_source_without_triggers_passes_through(self) -> None:
        sh = shape(1)
        state, out = feed(sh, [ent(0, 7, payload=b"D")])
        assert out == [[Emission((b"D",), 7)]]
        assert state is not None and state.empty


# ---------------------------------------------------------------------- triggers
class TestTriggers:
    def test_data_then_trigger_fires_at_trigger_with_data_payload(self) -> None:
        sh = shape(1, triggers=1)
        d, t = ent(0, 1000, payload=b"DATA"), ent(1, 1100, payload=b"TRIGGER")
        state, out = feed(sh, [d, t])
        assert out[0] == []
        assert out[1] == [Emission((b"DATA",), 1000)]
        assert state is not None and state.empty

    def test_trigger_then_data_fires_at_data(self) -> None:
        sh = shape(1, triggers=1)
        t, d = ent(1, 1000, payload=b"TRIGGER"), ent(0, 1100, payload=b"DATA")
        state, out = feed(sh, [t, d])
        assert out == [[], [Emission((b"DATA",), 1100)]]
        assert state is not None and state.empty

    @pytest.mark.parametrize("tj", [INNER, UNKNOWN])
    def test_inner_trigger_join_needs_every_group(self, tj: JoinType) -> None:
        sh = shape(1, triggers=2, triggers_join=tj)
        d, t1, t2 = ent(0, 1000, payload=b"DATA"), ent(1, 1000, payload=b"T1"), ent(2, 1000, payload=b"T2")
        state, out = feed(sh, [d, t1, t2])
        assert out == [[], [], [Emission((b"DATA",), 1000)]]
        assert state is not None and state.empty

    @pytest.mark.parametrize("tj", [INNER, UNKNOWN])
    def test_inner_trigger_join_with_triggers_first(self, tj: JoinType) -> None:
        sh = shape(1, triggers=2, triggers_join=tj)
        state, out = feed(sh, [ent(2, 1000), ent(1, 1000), ent(0, 1000, payload=b"DATA")])
        assert out == [[], [], [Emission((b"DATA",), 1000)]]
        assert state is not None and state.empty

    @pytest.mark.parametrize("tj", [INNER, UNKNOWN])
    def test_inner_trigger_join_one_group_is_not_enough(self, tj: JoinType) -> None:
        sh = shape(1, triggers=2, triggers_join=tj)
        for trig in (1, 2):
            state, out = feed(sh, [ent(0, 1000), ent(trig, 1000)])
            assert out == [[], []]
            assert state is not None and len(state.waiting) == 1

    @pytest.mark.parametrize("tj", [ANY, OUTER])
    @pytest.mark.parametrize("trig", [1, 2])
    @pytest.mark.parametrize("data_first", [True, False])
    def test_any_or_outer_trigger_join_needs_one_group(
        self, tj: JoinType, trig: int, data_first: bool
    ) -> None:
        sh = shape(1, triggers=2, triggers_join=tj)
        d, t = ent(0, 1000, payload=b"DATA"), ent(trig, 1000, payload=b"T")
        state, out = feed(sh, [d, t] if data_first else [t, d])
        assert [em for ems in out for em in ems] == [Emission((b"DATA",), 1000)]
        assert out[-1] != []  # at the second arrival
        assert state is not None and state.empty

    def test_waiting_result_dropped_by_expire_without_emission(self) -> None:
        sh = shape(1, triggers=1)
        state, out = feed(sh, [ent(0, 1000, seen=50)])
        assert out == [[]]
        assert state is not None and len(state.waiting) == 1
        state, early = expire(state, sh, 50 + W - 1)
        assert early == [] and len(state.waiting) == 1
        state, late = expire(state, sh, 50 + W)
        assert late == []
        assert state.empty
        # and a trigger arriving afterwards finds nothing to fire
        state, out2 = arrive(state, sh, ent(1, 1000, seen=50 + W + 1), PART)
        assert out2 == []

    @pytest.mark.parametrize("data_first", [True, False])
    def test_data_and_trigger_further_apart_than_the_window_do_not_fire(self, data_first: bool) -> None:
        sh = shape(1, triggers=1)
        d, t = ent(0, 1000, seen=0), ent(1, 1000 + W + 1, seen=1)
        _, out = feed(sh, [d, t] if data_first else [t, d])
        assert out == [[], []]

    @pytest.mark.parametrize("data_first", [True, False])
    def test_data_and_trigger_exactly_the_window_apart_fire(self, data_first: bool) -> None:
        sh = shape(1, triggers=1)
        d, t = ent(0, 1000, seen=0), ent(1, 1000 + W, seen=1)
        _, out = feed(sh, [d, t] if data_first else [t, d])
        assert len([em for ems in out for em in ems]) == 1

    def test_a_data_result_fires_once(self) -> None:
        sh = shape(1, triggers=1)
        state, out = feed(sh, [ent(0, 1000, payload=b"DATA"), ent(1, 1000), ent(1, 1001)])
        assert [parts(o) for o in out] == [[], [(b"DATA",)], []]
        assert state is not None
        assert state.waiting == []
        assert [e.slot for e in state.entries] == [1]  # the spare trigger, not a re-fire

    def test_a_data_result_fires_once_when_triggers_came_first(self) -> None:
        sh = shape(1, triggers=1)
        _, out = feed(sh, [ent(1, 1000), ent(1, 1001), ent(0, 1000, payload=b"DATA")])
        assert [parts(o) for o in out] == [[], [], [(b"DATA",)]]

    def test_trigger_payload_never_appears(self) -> None:
        sh = shape(2, triggers=2, triggers_join=INNER)
        entries = [
            ent(2, 1000, payload=b"T1"),
            ent(0, 1000, payload=b"A"),
            ent(3, 1000, payload=b"T2"),
            ent(1, 1000, payload=b"B"),
        ]
        _, out = feed(sh, entries)
        flat = [em for ems in out for em in ems]
        assert parts(flat) == [(b"A", b"B")]

    def test_joiner_result_waits_for_the_trigger(self) -> None:
        sh = shape(2, triggers=1)
        a, b, t = ent(0, 1000, payload=b"A"), ent(1, 1100, payload=b"B"), ent(2, 1050, payload=b"T")
        state, out = feed(sh, [a, b])
        assert out == [[], []]
        assert state is not None
        assert state.entries == []  # the pair was joined and consumed ...
        assert len(state.waiting) == 1  # ... into one result waiting for its trigger
        state, fired = arrive(state, sh, t, PART)
        assert fired == [Emission((b"A", b"B"), 1100)]
        assert state.empty

    def test_joiner_with_trigger_first(self) -> None:
        sh = shape(2, triggers=1)
        state, out = feed(sh, [ent(2, 1000), ent(1, 1000, payload=b"B"), ent(0, 1000, payload=b"A")])
        assert out == [[], [], [Emission((b"A", b"B"), 1000)]]
        assert state is not None and state.empty

    def test_joiner_trigger_alone_does_not_fire_a_half_join(self) -> None:
        sh = shape(2, triggers=1)
        _, out = feed(sh, [ent(0, 1000), ent(2, 1000)])
        assert out == [[], []]

    def test_any_joiner_with_trigger_each_source_result_waits(self) -> None:
        sh = shape(2, ANY, triggers=1)
        state, out = feed(sh, [ent(0, 1000, payload=b"A")])
        assert out == [[]]
        assert state is not None and len(state.waiting) == 1
        state, fired = arrive(state, sh, ent(2, 1000), PART)
        assert parts(fired) == [(b"A",)]
        assert state.empty

    def test_outer_expiry_result_still_waits_for_its_trigger(self) -> None:
        sh = shape(2, OUTER, triggers=1)
        state, _ = feed(sh, [ent(0, 1000, seen=0, payload=b"A")])
        assert state is not None
        state, out = expire(state, sh, W)
        assert out == []
        assert len(state.waiting) == 1
        state, fired = arrive(state, sh, ent(2, 1000, seen=W + 1), PART)
        assert parts(fired) == [(b"A",)]
        assert state.empty

    def test_outer_expiry_fires_at_once_when_the_trigger_is_there(self) -> None:
        sh = shape(2, OUTER, triggers=1)
        state, _ = feed(sh, [ent(2, 1000, seen=500), ent(0, 1000, seen=0, payload=b"A")])
        assert state is not None
        state, out = expire(state, sh, W)
        assert parts(out) == [(b"A",)]
        assert state.empty


# ---------------------------------------------------------------------- replays
class TestReplays:
    def test_same_ident_same_slot_stored_once(self) -> None:
        sh = shape(2)
        a = ent(0, 1000, ident="t:0:7")
        state, out = feed(sh, [a, ent(0, 1000, ident="t:0:7")])
        assert out == [[], []]
        assert state is not None
        assert len(state.entries) == 1
        state, fired = arrive(state, sh, ent(1, 1000), PART)
        assert len(fired) == 1  # not a cross product with a duplicate of itself

    def test_same_ident_in_another_slot_is_a_different_entry(self) -> None:
        # one record feeding two sources of the same step (same topic, two tensor selections)
        sh = shape(2)
        state, out = feed(
            sh, [ent(0, 1000, ident="t:0:7", payload=b"x"), ent(1, 1000, ident="t:0:7", payload=b"y")]
        )
        assert parts(out[1]) == [(b"x", b"y")]
        assert state is not None and state.empty

    def test_same_ident_in_another_slot_is_stored_too(self) -> None:
        sh = shape(3)
        state, out = feed(
            sh, [ent(0, 1000, ident="t:0:7", payload=b"x"), ent(1, 1000, ident="t:0:7", payload=b"y")]
        )
        assert out == [[], []]
        assert state is not None
        assert sorted(e.slot for e in state.entries) == [0, 1]
        _, fired = arrive(state, sh, ent(2, 1000, payload=b"z"), PART)
        assert parts(fired) == [(b"x", b"y", b"z")]

    def test_trigger_replay_stored_once(self) -> None:
        sh = shape(1, triggers=1)
        state, _ = feed(sh, [ent(1, 1000, ident="g:0:1"), ent(1, 1000, ident="g:0:1")])
        assert state is not None
        assert len(state.entries) == 1

    def test_waiting_result_replay_stored_once(self) -> None:
        sh = shape(1, triggers=1)
        state, _ = feed(sh, [ent(0, 1000, ident="d:0:1"), ent(0, 1000, ident="d:0:1")])
        assert state is not None
        assert len(state.waiting) == 1
        state, fired = arrive(state, sh, ent(1, 1000), PART)
        assert len(fired) == 1

    def test_replay_that_completes_a_match_emits_again(self) -> None:
        # crash after the emission, before the state was committed: the restored state replays
        sh = shape(2)
        state, _ = feed(sh, [ent(0, 1000, payload=b"A")])
        assert state is not None
        committed = snapshot(state)
        b = ent(1, 1000, ident="t1:0:9", payload=b"B")
        _, first = arrive(state, sh, b, PART)
        _, again = arrive(committed, sh, ent(1, 1000, ident="t1:0:9", payload=b"B"), PART)
        assert first == again == [Emission((b"A", b"B"), 1000)]

    def test_replayed_trigger_fires_again_from_the_committed_state(self) -> None:
        sh = shape(1, triggers=1)
        state, _ = feed(sh, [ent(0, 1000, payload=b"D")])
        assert state is not None
        committed = snapshot(state)
        _, first = arrive(state, sh, ent(1, 1000, ident="g:0:3"), PART)
        _, again = arrive(committed, sh, ent(1, 1000, ident="g:0:3"), PART)
        assert parts(first) == parts(again) == [(b"D",)]


# ---------------------------------------------------------------------- cycles (BR-16)
class TestCycles:
    """The ``loop`` step of BR-16: data ``counter.outputs.x`` gated by ``counter.outputs.continue``, W = 1 ms."""

    SH = shape(1, triggers=1, window=1)

    @pytest.mark.parametrize("trigger_first", [True, False])
    def test_each_iteration_fires_its_own_data_once(self, trigger_first: bool) -> None:
        state: JoinState | None = None
        emitted: list[Emission] = []
        for ts, value in [(1000, b"x=1"), (1005, b"x=2")]:
            d, t = ent(0, ts, payload=value), ent(1, ts, payload=b"continue")
            state, out = feed(self.SH, [t, d] if trigger_first else [d, t], state)
            emitted += [em for ems in out for em in ems]
            assert state is not None and state.empty
        assert emitted == [Emission((b"x=1",), 1000), Emission((b"x=2",), 1005)]

    def test_leftover_trigger_of_t_does_not_fire_data_of_t_plus_1(self) -> None:
        # iteration t leaves a spare trigger (e.g. a duplicate), iteration t+1's data must wait for its own
        state, out = feed(self.SH, [ent(0, 1000, payload=b"x=1"), ent(1, 1000), ent(1, 1000)])
        assert parts([em for ems in out for em in ems]) == [(b"x=1",)]
        state, out = feed(self.SH, [ent(0, 1005, payload=b"x=2")], state)
        assert out == [[]]
        state, out = feed(self.SH, [ent(1, 1005)], state)
        assert parts(out[0]) == [(b"x=2",)]

    def test_leftover_data_of_t_is_not_fired_by_trigger_of_t_plus_1(self) -> None:
        # iteration t's data never got its trigger (the counter said stop); t+1's trigger fires only t+1
        state, out = feed(self.SH, [ent(0, 1000, payload=b"x=1")])
        assert out == [[]]
        state, out = feed(self.SH, [ent(1, 1005), ent(0, 1005, payload=b"x=2")], state)
        assert [parts(o) for o in out] == [[], [(b"x=2",)]]
        assert state is not None
        assert [w.ts_ms for w in state.waiting] == [1000]

    def test_inner_joiner_does_not_pair_across_iterations(self) -> None:
        sh = shape(2, window=1)
        state, out = feed(sh, [ent(0, 1000, payload=b"a1"), ent(1, 1005, payload=b"b2")])
        assert out == [[], []]
        state, out = feed(sh, [ent(0, 1005, payload=b"a2")], state)
        assert parts(out[0]) == [(b"a2", b"b2")]


# ---------------------------------------------------------------------- expire, deadline
class TestExpire:
    def test_deadline_is_earliest_seen_plus_window(self) -> None:
        sh = shape(3)
        assert JoinState(PART).deadline_ms(W) is None
        state, _ = feed(sh, [ent(0, 1, seen=700), ent(1, 1, seen=300), ent(2, 9000, seen=900)])
        assert state is not None
        assert state.deadline_ms(W) == 300 + W
        assert state.deadline_ms(50) == 350

    def test_deadline_counts_waiting_results(self) -> None:
        sh = shape(1, triggers=1)
        state, _ = feed(sh, [ent(1, 5000, seen=800), ent(0, 1000, seen=200)])
        assert state is not None
        assert len(state.waiting) == 1
        assert state.deadline_ms(W) == 200 + W

    def test_expire_removes_only_what_is_older_than_the_window(self) -> None:
        sh = shape(3, triggers=1)
        old, young = ent(0, 1000, seen=0), ent(1, 9000, seen=600)
        trig_old, trig_young = ent(3, 50_000, seen=100), ent(3, 60_000, seen=700)
        state, _ = feed(sh, [old, young, trig_old, trig_young])
        assert state is not None
        state.waiting.append(Entry(-1, 20_000, 120, "w1", b"[]"))
        state.waiting.append(Entry(-1, 30_000, 650, "w2", b"[]"))
        state, out = expire(state, sh, 120 + W)  # seen 0, 100, 120 go; 600, 650, 700 stay
        assert out == []
        assert [e.seen_ms for e in state.entries] == [600, 700]
        assert [e.ident for e in state.waiting] == ["w2"]
        assert state.deadline_ms(W) == 600 + W
        state, _ = expire(state, sh, 700 + W)
        assert state.empty

    def test_expire_before_the_deadline_keeps_everything(self) -> None:
        sh = shape(2, OUTER)
        state, _ = feed(sh, [ent(0, 1000, seen=10)])
        assert state is not None
        before = dumps(state)
        state, out = expire(state, sh, 10 + W - 1)
        assert out == []
        assert dumps(state) == before

    def test_expire_of_an_empty_state(self) -> None:
        state, out = expire(JoinState(PART), shape(2, OUTER), 10**12)
        assert out == []
        assert state.empty


# ---------------------------------------------------------------------- serialization
class TestSerialization:
    def test_round_trip_with_binary_headers_and_waiting(self) -> None:
        headers = [
            ("seldon-puid", b"abc"),
            ("bin", bytes(range(256))),
            ("empty", b""),
            ("dup", b"1"),
            ("dup", b"2"),
        ]
        state = JoinState(
            7,
            entries=[
                Entry(0, 1000, 1100, "t:1:2", b"\x00\x01\xfe\xff", headers),
                Entry(3, -5, 0, "g:0:0", b"", []),
            ],
            waiting=[Entry(-1, 2000, 2100, "a+b", b'["AA=="]', [("x", b"\xff")])],
        )
        blob = dumps(state)
        assert isinstance(blob, bytes)
        back = loads(blob)
        assert back == state
        assert back.entries[0].headers == headers
        assert dumps(back) == blob

    def test_round_trip_of_empty_state(self) -> None:
        assert loads(dumps(JoinState(0))) == JoinState(0)

    def test_restored_waiting_result_still_fires_with_its_parts(self) -> None:
        sh = shape(2, triggers=1)
        a, b = ent(0, 1000, payload=b"\x00A\xff"), ent(1, 1000, payload=b"")
        state, _ = feed(sh, [a, b])
        assert state is not None
        restored = loads(dumps(state))
        assert restored == state
        _, fired = arrive(restored, sh, ent(2, 1000), PART)
        assert fired == [Emission((b"\x00A\xff", b""), 1000)]

    def test_restored_state_joins_like_the_original(self) -> None:
        sh = shape(3)
        state, _ = feed(
            sh, [ent(0, 1000, payload=b"A", headers=[("k", b"\x80")]), ent(2, 1000, payload=b"C")]
        )
        assert state is not None
        restored = loads(dumps(state))
        _, out = arrive(restored, sh, ent(1, 1000, payload=b"B"), PART)
        assert parts(out) == [(b"A", b"B", b"C")]


# ---------------------------------------------------------------------- cross products and outer expiry
class TestSeveralEntriesPerSlot:
    """Several records on one slot: every result fires, every lone record is emitted (spec §4.3-4.4)."""

    @pytest.mark.parametrize("trigger_first", [True, False])
    def test_one_trigger_fires_every_result_of_a_cross_product(self, trigger_first: bool) -> None:
        sh = shape(2, triggers=1)
        data = [ent(0, 1000, payload=b"A1"), ent(0, 1000, payload=b"A2"), ent(1, 1000, payload=b"B")]
        t = ent(2, 1000)
        state, out = feed(sh, [t, *data] if trigger_first else [*data, t])
        assert sorted(parts(em for ems in out for em in ems)) == [(b"A1", b"B"), (b"A2", b"B")]
        assert state is not None and state.empty

    def test_one_trigger_fires_every_waiting_result_within_the_window(self) -> None:
        sh = shape(1, triggers=1)
        state, out = feed(sh, [ent(0, 1000, payload=b"D1"), ent(0, 1001, payload=b"D2"), ent(1, 1000)])
        assert sorted(parts(out[2])) == [(b"D1",), (b"D2",)]
        assert state is not None and state.empty

    def test_outer_expiry_emits_every_lone_entry_of_a_slot(self) -> None:
        sh = shape(2, OUTER)
        state, _ = feed(sh, [ent(0, 1000, seen=0, payload=b"A1"), ent(0, 1200, seen=10, payload=b"A2")])
        assert state is not None
        _, out = expire(state, sh, 10 + W)
        assert sorted((em.parts, em.ts_ms) for em in out) == [((b"A1",), 1000), ((b"A2",), 1200)]

    def test_outer_expiry_does_not_merge_sides_outside_the_window(self) -> None:
        sh = shape(2, OUTER)
        state, _ = feed(sh, [ent(0, 0, seen=0, payload=b"A"), ent(1, 5000, seen=10, payload=b"B")])
        assert state is not None
        _, out = expire(state, sh, 10 + W)
        assert sorted((em.parts, em.ts_ms) for em in out) == [((b"A",), 0), ((b"B",), 5000)]
