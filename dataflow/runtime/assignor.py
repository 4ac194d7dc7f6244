"""Partition assignment that gives every worker its share of a pipeline's partitions.

Faust's sticky co-partitioned assignor keeps a worker's partitions as long as it holds no more than
``ceil(partitions / workers)``. Once tables keep standby replicas (ours keeps one, so a failover finds
the join state warm) it never trims a worker below that ceiling, so a newcomer can be left with nothing:
four partitions shared by three workers stay 2, 2, 0, and the third replica only waits. Kafka Streams
would run three active tasks there (case BR-24: active replicas = min(workers, partitions)).

:class:`BalancedCopartitionedAssignor` lets Faust make its sticky assignment, then moves
partitions one at a time from the fullest worker to the emptiest until every worker holds ``floor``
or ``ceil`` of ``partitions / workers``, so as few partitions move as can. Faust builds its
co-partitioned assignor by name inside its partition assignor, so :func:`install` points that name
at ours; the app calls it before it joins its group.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from faust.assignor import partition_assignor
from faust.assignor.client_assignment import CopartitionedAssignment
from faust.assignor.copartitioned_assignor import CopartitionedAssignor


class BalancedCopartitionedAssignor(CopartitionedAssignor):  # type: ignore[misc]
    """Faust's sticky co-partitioned assignment, then actives spread as evenly as they can be."""

    def get_assignment(self) -> MutableMapping[str, CopartitionedAssignment]:
        assignment: MutableMapping[str, CopartitionedAssignment] = super().get_assignment()
        spread_actives(assignment)
        return assignment


def spread_actives(assignment: MutableMapping[str, CopartitionedAssignment]) -> None:
    """Move active partitions from the fullest worker to the emptiest until they differ by one at most.

    Each move takes one partition, so the assignment stays as sticky as Faust made it. The partition
    moved is one the receiver keeps as a standby when there is one (its state is warm there), and the
    giver keeps it as a standby instead, so every partition keeps as many standbys as before.
    """
    if not assignment:
        return
    clients = sorted(assignment)  # deterministic: every run of the leader moves the same partitions
    while True:
        fullest = max(clients, key=lambda c: (len(assignment[c].actives), c))
        emptiest = min(clients, key=lambda c: (len(assignment[c].actives), c))
        giver, taker = assignment[fullest], assignment[emptiest]
        if len(giver.actives) - len(taker.actives) <= 1:
            return
        warm = sorted(giver.actives & taker.standbys)
        partition = warm[0] if warm else max(giver.actives)
        giver.actives.discard(partition)
        taker.actives.add(partition)
        if partition in taker.standbys:
            taker.standbys.discard(partition)
            giver.standbys.add(partition)


def install() -> None:
    """Make Faust's partition assignor build :class:`BalancedCopartitionedAssignor`."""
    partition_assignor.CopartitionedAssignor = BalancedCopartitionedAssignor
