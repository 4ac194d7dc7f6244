"""Every worker gets its share of a pipeline's partitions, also when tables keep standbys (BR-24)."""

from __future__ import annotations

import random

import pytest
from faust.assignor.client_assignment import CopartitionedAssignment
from faust.assignor.copartitioned_assignor import CopartitionedAssignor

from dataflow.runtime.assignor import BalancedCopartitionedAssignor, spread_actives

TOPICS = {"seldon.ns.pipeline.p.inputs", "seldon.ns.model.m.outputs"}


def client(actives: set[int], standbys: set[int] = frozenset()) -> CopartitionedAssignment:  # type: ignore[assignment]
    return CopartitionedAssignment(actives=set(actives), standbys=set(standbys), topics=set(TOPICS))


def sticky_two_then_a_third() -> dict[str, CopartitionedAssignment]:
    """Two workers shared four partitions, each the other's standby; a third has just joined."""
    return {"a": client({0, 1}, {2, 3}), "b": client({2, 3}, {0, 1}), "c": client(set())}


def shares(assignment: dict[str, CopartitionedAssignment]) -> list[int]:
    return sorted(len(a.actives) for a in assignment.values())


def test_faust_alone_leaves_the_third_worker_idle() -> None:
    """The fault: with one standby replica Faust keeps 2, 2, 0 (what the balanced assignor fixes)."""
    result = CopartitionedAssignor(TOPICS, sticky_two_then_a_third(), num_partitions=4, replicas=1)
    assert shares(result.get_assignment()) == [0, 2, 2]


def test_the_third_worker_gets_a_partition_and_only_one_moves() -> None:
    before = sticky_two_then_a_third()
    kept = {name: set(a.actives) for name, a in before.items()}
    after = BalancedCopartitionedAssignor(TOPICS, before, num_partitions=4, replicas=1).get_assignment()
    assert shares(after) == [1, 1, 2]
    moved = sum(len(kept[name] - a.actives) for name, a in after.items())
    assert moved == 1


def test_the_partition_moved_is_one_the_taker_holds_warm() -> None:
    assignment = {"a": client({0, 1, 2}, set()), "b": client({3}, {1})}
    spread_actives(assignment)
    assert assignment["a"].actives == {0, 2} and assignment["b"].actives == {1, 3}
    assert assignment["b"].standbys == set() and assignment["a"].standbys == {1}  # still one standby


@pytest.mark.parametrize("seed", range(200))
def test_any_prior_assignment_ends_balanced_and_whole(seed: int) -> None:
    rng = random.Random(seed)
    partitions, workers = rng.randint(1, 8), rng.randint(1, 6)
    owners = {p: rng.randrange(workers + 1) for p in range(partitions)}  # workers + 1: unassigned
    before = {
        f"w{w}": client(
            {p for p, o in owners.items() if o == w}, {p for p in range(partitions) if rng.random() < 0.3}
        )
        for w in range(workers)
    }
    for a in before.values():
        a.validate()
    after = BalancedCopartitionedAssignor(
        TOPICS, before, num_partitions=partitions, replicas=1
    ).get_assignment()
    actives = sorted(p for a in after.values() for p in a.actives)
    assert actives == list(range(partitions))  # each partition active exactly once
    counts = shares(after)
    assert counts[-1] - counts[0] <= 1
    assert all(a.actives.isdisjoint(a.standbys) for a in after.values())
