"""The Faust application: one long-lived routing agent with an actor per partition.

Pipelines are data for this agent (a :class:`~dataflow.plan.Router`), not Faust topology: the agent
is declared once over every source topic, and each record is dispatched through the router's index.
Topics are created before the consumer subscribes; the worker reports ready only once its
partitions are assigned and their start positions resolved, so a request sent after ``/ready``
cannot be skipped by ``auto.offset.reset=latest``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiokafka
import faust
import faust.tables.recovery
import faust.topics
import faust.transport.conductor
from faust.types import TP

from dataflow.config import Settings
from dataflow.control import chainer
from dataflow.control.scheduler_client import PipelineHost, SchedulerClient
from dataflow.errors import DataflowError
from dataflow.health import CheckResult, evaluate
from dataflow.metrics import Metrics
from dataflow.plan import PlanError, Router, copartition_problems, plan_pipeline
from dataflow.runtime import admin, assignor
from dataflow.runtime.engine import Engine, Record
from dataflow.runtime.state import TABLE_NAME, TableStore
from dataflow.updates import PipelineUpdate

log = logging.getLogger(__name__)

AGENT_NAME = "dataflow.route"


class DataflowApp(faust.App, PipelineHost):  # type: ignore[misc]
    """A Faust app that owns the engine, the router and the readiness state.

    It is also the :class:`PipelineHost` the scheduler client drives in scheduler mode.
    """

    settings: Settings
    engine: Engine
    metrics: Metrics

    def __init__(self, settings: Settings, router: Router, **kwargs: Any) -> None:
        assignor.install()  # every worker its share of the partitions (case BR-24)
        super().__init__(settings.group_id, **kwargs)
        self.settings = settings
        self.metrics = Metrics()
        self.engine = Engine(
            router,
            self._send,
            settings.namer,
            self.metrics,
            default_partitions=settings.partitions,
        )
        self.join_table = self.Table(
            TABLE_NAME,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            help="Join and trigger buffers of every pipeline step, keyed by uid|step|record key.",
        )
        self.engine.store = TableStore(self.join_table)
        self.is_ready = False
        self.started_at = time.monotonic()
        self._assignment_seen: frozenset[TP] | None = None
        self._owned: set[int] = set()
        self._subscribed: set[str] = set(router.source_topics)
        self._generation_seen: int | None = None
        self._topic_list: list[str] = []  # shared by the agent's channel and all its clones
        self._apply_lock = asyncio.Lock()
        self._pending_edits: list[tuple[Callable[[Router], Router], asyncio.Future[None]]] = []
        self._from_files: set[str] = set(router.pipelines)  # uids of the pipelines YAML files gave
        self._applier: asyncio.Future[None] | None = None  # applies queued pipeline changes
        self._partition_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self.scheduler: SchedulerClient | None = None
        self.broker_down = False
        self.prepared: dict[str, int] | None = None  # topic partition counts, once topics exist

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        timestamp: float | None,
        headers: list[tuple[str, bytes]],
    ) -> Any:
        return await self.producer.send(topic, key, value, partition, timestamp, headers)

    # ------------------------------------------------------------------ live pipeline changes
    async def apply(self, router: Router, *, timeout: float = 60.0) -> None:
        """Run ``router``'s pipelines from now on; returns once their topics are consumed here.

        Topics are created first; a pipeline whose joins span topics of different partition counts is
        refused (DataflowError) before anything changes. Pipelines whose topics are already
        subscribed switch at once (one assignment of the router). New topics are added to the
        consumer's subscription, which costs one consumer-group rebalance; records replayed by that
        rebalance are recognised and skipped (see ``Engine.process``), so other pipelines neither
        lose nor repeat messages.
        """
        async with self._apply_lock:
            await self._apply_locked(router, timeout)

    async def _apply_locked(
        self, router: Router, timeout: float = 60.0, *, counts: dict[str, int] | None = None
    ) -> None:
        if counts is None or not set(router.topics) <= set(counts):
            counts = await admin.ensure_topics(self.settings, router.topics)
        problems = copartition_problems(router, counts, self.settings.partitions)
        if problems:
            raise DataflowError("; ".join(problems))
        self.engine.partitions.update(counts)
        new = set(router.source_topics) - self._subscribed
        # route first: records of new topics can only arrive after the subscription changes
        self.engine.router = router
        self.metrics.pipelines.set(len(router.pipelines))
        if new:
            await self._subscribe(new, timeout)

    async def change(self, edit: Callable[[Router], Router]) -> None:
        """Apply ``edit`` to the running pipelines, together with every change that came meanwhile.

        The scheduler's operations on different pipelines run in parallel. Each is an edit of the
        router as it is when the edit is applied (never of a snapshot taken before waiting, which
        would drop the changes applied in between), and edits that queue up while a batch is being
        applied are applied as the next batch: their topics are created in one go and their new
        topics cost one rebalance, not one each (case BR-24: fifty pipelines load together). A
        faulty edit fails alone, with its own reason (see ``_apply_edits``). Each caller returns as
        soon as its own edit is settled, not when the whole batch is.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_edits.append((edit, done))
        if self._applier is None or self._applier.done():
            self._applier = asyncio.ensure_future(self._apply_pending())
        await done

    async def _apply_pending(self) -> None:
        """Apply queued edits, batch after batch, until none is left (one task at a time)."""
        while self._pending_edits:
            async with self._apply_lock:
                batch, self._pending_edits = self._pending_edits, []
                try:
                    await self._apply_edits(batch)
                except Exception as exc:  # a bug here must fail the edits, not leave them waiting
                    log.exception("dataflow: applying %d pipeline change(s) failed", len(batch))
                    for _, done in batch:
                        _settle(done, exc)
                finally:
                    # cancelled half-way (the worker stops): the edits are in an unknown state
                    for _, done in batch:
                        _settle(done, DataflowError("the pipeline change was interrupted"))

    async def _apply_edits(
        self, batch: list[tuple[Callable[[Router], Router], asyncio.Future[None]]]
    ) -> None:
        """Apply a batch of edits with one topic creation and one subscription change.

        Each edit is checked on top of the edits accepted before it: one that raises, whose topics
        Kafka refuses (an invalid name), or whose joins span topics of different partition counts
        fails alone with its own reason, and the rest go on together.
        """
        topics: set[str] = set()
        router = self.engine.router
        for edit, done in batch:
            try:
                router = edit(router)
            except Exception as exc:
                _settle(done, exc)
                continue
            topics.update(router.topics)
        pending = [(edit, done) for edit, done in batch if not done.done()]
        if not pending:
            return
        try:
            counts = await admin.ensure_topics(self.settings, sorted(topics))
        except Exception as exc:
            if len(pending) == 1:
                _settle(pending[0][1], exc)
                return
            log.warning(
                "dataflow: topics of %d pipeline changes could not be made together (%s); "
                "making each change's topics on its own",
                len(pending),
                exc,
            )
            counts = await self._topics_one_by_one(pending)
        router, accepted = self.engine.router, []
        for edit, done in pending:
            if done.done():
                continue
            try:
                candidate = edit(router)
            except Exception as exc:
                _settle(done, exc)
                continue
            known = set(copartition_problems(router, counts, self.settings.partitions))
            problems = [
                p for p in copartition_problems(candidate, counts, self.settings.partitions) if p not in known
            ]
            if problems:  # this edit's own joins: it fails alone
                _settle(done, DataflowError("; ".join(problems)))
                continue
            router = candidate
            accepted.append(done)
        if not accepted:
            return
        try:
            await self._apply_locked(router, counts=counts)
        except Exception as exc:
            for done in accepted:
                _settle(done, exc)
            return
        for done in accepted:
            _settle(done)

    async def _topics_one_by_one(
        self, pending: list[tuple[Callable[[Router], Router], asyncio.Future[None]]]
    ) -> dict[str, int]:
        """Make each edit's new topics on its own; an edit whose topics fail is settled with that
        error. Returns the partition counts of every topic made or found."""
        base = self.engine.router
        counts = await admin.ensure_topics(self.settings, base.topics)
        for edit, done in pending:
            try:
                own = sorted(set(edit(base).topics) - set(counts))
                if own:
                    counts.update(await admin.ensure_topics(self.settings, own))
            except Exception as exc:
                _settle(done, exc)
        return counts

    # ------------------------------------------------------------------ scheduler mode (PipelineHost)
    def is_running(self, uid: str) -> bool:
        return uid in self.engine.router.pipelines

    async def create(self, update: PipelineUpdate) -> None:
        try:
            plan = plan_pipeline(update, self.settings.join_window_ms)
        except PlanError as exc:
            reason = chainer.NOT_ALL_STEPS if "no sources" in str(exc) else chainer.INIT_ERROR.format(exc)
            raise DataflowError(reason) from None
        await self.change(lambda router: router.with_pipeline(plan))

    async def delete(self, update: PipelineUpdate) -> None:
        if update.uid in self.engine.router.pipelines:
            await self.change(lambda router: router.without(update.uid))
        topics = {t.topic_name for step in update.updates for t in (*step.sources, step.sink)}
        if topics:
            try:
                await admin.delete_topics(self.settings, topics)
            except Exception as exc:  # the reply carries the reason; the pipeline is stopped either way
                raise DataflowError(chainer.TOPIC_DELETION_ERROR.format(exc)) from exc

    async def watch_folder(self, paths: list[str], interval: float = 1.0) -> None:
        """YAML mode: apply files added, changed (a new version) or removed while the worker runs.

        A file that no longer validates is reported and changes nothing: the running pipelines stay.
        """
        from dataflow.control.yaml_source import fingerprint, plans_from_paths
        from dataflow.errors import SpecError

        seen = fingerprint(paths)
        while not self.should_stop:
            await asyncio.sleep(interval)
            now = fingerprint(paths)
            if now == seen:
                continue
            seen = now
            try:
                plans = plans_from_paths(paths, self.settings) if now else []
            except SpecError as exc:
                for line in exc.problems:
                    log.error("pipelines not changed: %s", line)
                continue
            except Exception:  # a file must never take down the pipelines already running
                log.exception("pipelines not changed: unexpected error reading %s", ", ".join(paths))
                continue
            try:
                await self.switch_to(Router.build(plans))
            except DataflowError as exc:
                log.error("pipelines not changed: %s", exc)
            except Exception:  # a file must never take down the pipelines already running
                log.exception("pipelines not changed: unexpected error applying %s", ", ".join(paths))

    async def switch_to(self, target: Router) -> None:
        """Move from the pipelines the files gave to ``target``'s, a new version beside its old one
        until the new one's topics are consumed (spec §3.3), then the old one stops.

        Only pipelines that came from files are replaced: a worker that also takes pipelines from
        the scheduler keeps those. The changes go through :meth:`change`, so they are ordered with
        the scheduler's and never overwrite one applied meanwhile.
        """
        current = self.engine.router
        added = [p for uid, p in target.pipelines.items() if uid not in current.pipelines]
        gone = self._from_files - set(target.pipelines)
        removed = [current.pipelines[uid] for uid in sorted(gone) if uid in current.pipelines]

        def add(router: Router) -> Router:
            return Router.build(
                [*router.pipelines.values(), *(p for p in added if p.update.uid not in router.pipelines)]
            )

        def add_and_remove(router: Router) -> Router:
            return Router.build(p for uid, p in add(router).pipelines.items() if uid not in gone)

        if added and set(target.source_topics) - self._subscribed:
            await self.change(add)  # the new version runs before the old one stops
        await self.change(add_and_remove)
        self._from_files = set(target.pipelines)
        for plan in added:
            u = plan.update
            log.info("pipeline %s v%d (uid %s): ready", u.pipeline, u.version, u.uid)
        for plan in removed:
            u = plan.update
            log.info("pipeline %s v%d (uid %s): removed", u.pipeline, u.version, u.uid)

    async def _subscribe(self, names: set[str], timeout: float) -> None:
        self._subscribed |= names
        await self._resubscribe(timeout, added=names)

    async def _resubscribe(self, timeout: float, added: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Make the consumer's subscription equal ``self._subscribed`` and wait for the rebalance.

        Every actor's channel is a clone of the agent's and shares its list of topic names, so one
        in-place change of that list is seen by the agent, its actors and the conductor alike.
        """
        self._topic_list[:] = sorted(self._subscribed)
        if added:
            await self._skip_history(added)
        self.agents.update_topic_index()
        self.topics._flag_changes()
        self.metrics.subscribed_topics.set(len(self._subscribed))
        generation = self.consumer_generation_id
        deadline = time.monotonic() + timeout
        next_flag = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            assigned = {tp.topic for tp in self.consumer.assignment()}
            settled = not self.rebalancing and self.consumer_generation_id != generation and self.is_ready
            if (
                settled
                and not (assigned - self._subscribed - self._internal_topics())
                and (added <= assigned or self._peers_may_own(added, assigned))
            ):
                return
            if time.monotonic() > next_flag:
                # a change flagged during a rebalance is dropped by Faust's conductor: flag it again
                self.topics._flag_changes()
                next_flag = time.monotonic() + 3.0
        raise DataflowError(f"subscription not updated within {timeout:g} s: {', '.join(sorted(added))}")

    async def _skip_history(self, topics: set[str]) -> None:
        """Records already on topics a newly created pipeline brings are not its requests (BR-13).

        Their end offsets now are where the pipeline starts, on whichever worker gets the partitions;
        the engine skips anything below them, also when a committed offset from an earlier version
        of the pipeline would replay it.
        """
        counts = {t: self.engine.partitions.get(t, 1) for t in topics}
        self.engine.start_offsets.update(await admin.end_offsets(self.settings, counts))

    def _internal_topics(self) -> set[str]:
        return {t for t in self.topics._topic_name_index if t not in self._topic_list}

    async def unsubscribe_unused(self) -> None:
        """Stop consuming topics no pipeline reads any more, once they stayed unused for a while.

        The grace (``DATAFLOW_UNSUBSCRIBE_AFTER_SECONDS``) keeps a pipeline that is deleted and
        created again, or replaced by a new version, from costing two rebalances.
        """
        unused_since: dict[str, float] = {}
        while not self.should_stop:
            await asyncio.sleep(1.0)
            wanted = set(self.engine.router.source_topics) | {self.settings.namer.errors}
            now = time.monotonic()
            for name in self._subscribed - wanted:
                unused_since.setdefault(name, now)
            for name in list(unused_since):
                if name in wanted or name not in self._subscribed:
                    del unused_since[name]
            due = {n for n, t in unused_since.items() if now - t >= self.settings.unsubscribe_after_s}
            if not due or not self.is_ready:
                continue
            async with self._apply_lock:
                due &= self._subscribed - (
                    set(self.engine.router.source_topics) | {self.settings.namer.errors}
                )
                if not due:
                    continue
                self._subscribed -= due
                try:
                    await self._resubscribe(60.0)
                    log.info("dataflow: no longer consuming %s", ", ".join(sorted(due)))
                except DataflowError as exc:
                    log.error("dataflow: %s", exc)
            for name in due:
                unused_since.pop(name, None)

    def _peers_may_own(self, names: set[str], assigned: set[str]) -> bool:
        """With several workers another one may hold the new partitions; the subscription is what
        this worker can vouch for."""
        return bool(self.consumer.assignment()) and names <= set(self.topics._topic_name_index)

    async def on_first_start(self) -> None:
        """Create every topic before the consumer subscribes (Faust only creates its own topics)."""
        Path(self.conf.datadir).mkdir(parents=True, exist_ok=True)
        await super().on_first_start()
        self.add_future(self.watch_coordination())
        router = self.engine.router
        if self.prepared is None:
            self.prepared = await admin.prepare(self.settings, router)
        self.engine.partitions = dict(self.prepared)
        self.metrics.pipelines.set(len(router.pipelines))
        self.metrics.subscribed_topics.set(len(self._subscribed))
        log.info(
            "dataflow: %d pipeline(s), %d source topic(s), group %s",
            len(router.pipelines),
            len(router.source_topics),
            self.settings.group_id,
        )
        # the uid digests what the spec means, so replicas that log the same uid run one topology
        for plan in sorted(router.pipelines.values(), key=lambda plan: plan.update.pipeline):
            u = plan.update
            log.info(
                "pipeline %s v%d (uid %s): loaded, %d step(s)", u.pipeline, u.version, u.uid, len(plan.steps)
            )

    # ------------------------------------------------------------------ commit on revoke
    async def commit_revoked(self, revoked: set[TP]) -> None:
        """Commit, for each revoked partition, the offset after the last record this worker finished.

        Faust drops its acknowledgement bookkeeping for revoked partitions before it lets the app
        react, so without this the next owner resumes at the last periodic commit and repeats up to
        ``DATAFLOW_COMMIT_INTERVAL_SECONDS`` of work. By the time this runs Faust has waited for the
        events in flight and flushed the producer, so every offset committed here has its output
        acknowledged by the broker. The group is preparing to rebalance but this member's generation
        is still valid, so the broker accepts the commit. A failure only costs duplicates.
        """
        done = self.engine.take_done((tp.topic, tp.partition) for tp in revoked)
        if not done:
            return
        from aiokafka.structs import OffsetAndMetadata, TopicPartition

        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in done.items()}
        thread = self.consumer._thread
        try:
            consumer = thread._ensure_consumer()
            await asyncio.wait_for(
                thread.call_thread(consumer.commit, offsets), timeout=self.settings.session_timeout_s / 2
            )
        except Exception as exc:  # duplicates, not loss: the next owner replays from the last commit
            self.metrics.revoke_commit_failures.inc(len(offsets))
            if "No partitions assigned" in str(exc):
                # A subscription change (a pipeline added or removed) drops the assignment before
                # this callback; partitions this worker keeps are not repeated (see Engine.process).
                log.info(
                    "dataflow: subscription changed; progress of %d partition(s) not committed", len(offsets)
                )
                return
            log.warning(
                "dataflow: could not commit %d revoked partition(s) (%r); their next owner repeats "
                "records since the last commit",
                len(offsets),
                exc,
            )
            return
        self.metrics.revoke_commits.inc(len(offsets))
        log.info("dataflow: committed progress of %d revoked partition(s)", len(offsets))

    # ------------------------------------------------------------------ offset continuity
    async def ensure_continuity(self, record: Record) -> None:
        """Process, before ``record``, any records of its partition the consumer passed over.

        The first record of a partition newly assigned here is checked against the partition's
        committed offset. A gap is filled by reading the missing offsets with a consumer of our
        own, so this does not depend on how the consumer library got there. Should that fail, the
        worker stops (exit 1): restarting from the committed offsets is safe, going on is not.
        """
        tp = (record.topic, record.partition)
        if record.offset < 0:
            return
        if not self.engine.knows(tp):
            committed = await self._committed(record.topic, record.partition)
            if committed is not None:
                self.engine.expect(tp, committed)
        gap = self.engine.missing(record)
        if gap is None:
            return
        start, end = gap
        if end - start > MAX_FILL:
            # Not a skip by the consumer but a reset (say, the committed offset fell out of
            # retention and the consumer resumed at the end): reading it all back is not wanted.
            log.warning(
                "dataflow: %s[%d]: resuming at %d, %d offsets after the committed one; not reading them",
                record.topic,
                record.partition,
                end,
                end - start,
            )
            self.engine.expect_from(record)
            return
        try:
            await self._read_passed_over(
                tp, start, end, "were passed over by the consumer; reading them first"
            )
        except Exception as exc:
            where = f"{record.topic}[{record.partition}]"
            await self.fatal(f"could not read passed-over offsets {start}..{end - 1} of {where}: {exc!r}")
            raise

    async def _read_passed_over(self, tp: tuple[str, int], start: int, end: int, how: str) -> None:
        """Read offsets [start, end) of ``tp`` with a consumer of our own and process them, counted."""
        topic, partition = tp
        log.warning("dataflow: %s[%d]: offsets %d..%d %s", topic, partition, start, end - 1, how)
        self.metrics.offset_gaps.inc()
        filled = await fetch_range(self.settings, topic, partition, start, end)
        self.metrics.offset_gap_records.inc(len(filled))
        for missed in filled:
            await self.engine.process(missed)

    def partition_lock(self, tp: tuple[str, int]) -> asyncio.Lock:
        """Serialises a partition's records with a fill of offsets the consumer passed over."""
        lock = self._partition_locks.get(tp)
        if lock is None:
            lock = self._partition_locks[tp] = asyncio.Lock()
        return lock

    async def watch_stalls(self) -> None:
        """Read offsets the consumer fetched past but never delivered, also when no record follows.

        :meth:`ensure_continuity` finds passed-over offsets when the next record of the partition
        arrives. Around a rebalance the consumer was seen to resume a newly assigned partition
        beyond its committed offset; when no later record came (every caller of that partition
        was waiting for the skipped requests) nothing found them, and they were lost. So every
        ``STALL_CHECK_S`` each owned partition whose consumer position is past the offset due next,
        and has been at two checks in a row without progress, has the missing offsets read and
        processed here.
        """
        lagging: dict[tuple[str, int], int] = {}
        while not self.should_stop:
            await asyncio.sleep(STALL_CHECK_S)
            if not self.is_ready:
                lagging.clear()
                continue
            try:
                await self._check_stalls(lagging)
            except Exception as exc:  # a rebalance under way, say: the next check tries again
                lagging.clear()
                log.debug("dataflow: stalled-partition check skipped: %r", exc)

    async def _check_stalls(self, lagging: dict[tuple[str, int], int]) -> None:
        current = self.consumer.assignment()
        for tp in sorted(self._assignment_seen or ()):
            if tp.topic not in self._subscribed or tp not in current or not self.is_ready:
                continue  # moving away in a rebalance: its next owner checks it
            key = (tp.topic, tp.partition)
            expected = self.engine.next_expected(key)
            highwater = self.consumer.highwater(tp) if expected is not None else None
            if expected is None or highwater is None or highwater <= expected:
                lagging.pop(key, None)
                continue
            position = await asyncio.wait_for(self.consumer.position(tp), timeout=5)
            if position is None or position <= expected:
                lagging.pop(key, None)
                continue
            if lagging.get(key) != expected:  # first sighting: the records may be on their way
                lagging[key] = expected
                continue
            del lagging[key]
            await self._fill(key, position)

    async def _fill(self, tp: tuple[str, int], end: int) -> None:
        async with self.partition_lock(tp):
            start = self.engine.next_expected(tp)
            if start is None or start >= end:
                return  # delivered meanwhile
            await self._read_passed_over(
                tp, start, end, "were fetched past and not delivered by the consumer; reading them"
            )

    async def _committed(self, topic: str, partition: int) -> int | None:
        thread = self.consumer._thread
        try:
            consumer = thread._ensure_consumer()
            from aiokafka.structs import TopicPartition

            committed: int | None = await asyncio.wait_for(
                thread.call_thread(consumer.committed, TopicPartition(topic, partition)), timeout=10
            )
            return committed
        except Exception as exc:  # without a baseline the first gap goes unseen; say so
            log.warning("dataflow: committed offset of %s[%d] unknown: %r", topic, partition, exc)
            return None

    # ------------------------------------------------------------------ readiness
    async def watch_readiness(self) -> None:
        """Ready = not rebalancing and every assigned partition has a resolved start position."""
        while not self.should_stop:
            try:
                await self._check_assignment()
            except Exception:  # keep watching; a transient metadata error is not fatal
                log.debug("readiness check failed", exc_info=True)
            await asyncio.sleep(0.2)

    async def watch_coordination(self) -> None:
        """Exit (non-zero) when the consumer's group coordination task dies.

        aiokafka then logs "Unexpected error in coordinator routine" and stops taking part in the
        group: the worker would stay alive, never assigned, never fetching. Started before the first
        assignment, since that is where it happens (Faust's app tasks only start after it).
        """
        while not self.should_stop:
            await asyncio.sleep(0.5)
            died = self._coordination_failure()
            if died is not None:
                reason = f"Kafka consumer group coordination stopped: {died!r}"
                if self.settings.static_membership:
                    reason += (
                        f" (with DATAFLOW_STATIC_MEMBERSHIP a replica keeps its assignment across a "
                        f"restart, so its id and health port must not change: {self.conf.canonical_url})"
                    )
                await self.fatal(reason)
                return

    def _coordination_failure(self) -> BaseException | None:
        """The exception that ended the consumer's coordination task, if it ended."""
        try:
            consumer = self.consumer._thread._consumer
            task = consumer._coordinator._coordination_task if consumer is not None else None
        except AttributeError:  # not started yet, or already closed
            return None
        if task is None or not task.done() or task.cancelled() or self.should_stop:
            return None
        exc: BaseException | None = task.exception()
        return exc.__cause__ or exc if exc is not None else None

    async def _check_assignment(self) -> None:
        if self.rebalancing:
            self._set_ready(False)
            return
        assignment = frozenset(self.consumer.assignment())
        if (
            assignment == self._assignment_seen
            and self.is_ready
            and self._generation_seen == self.consumer_generation_id
        ):
            return
        if self.consumer_generation_id is None or self.consumer_generation_id < 0:
            return
        fresh = assignment - (self._assignment_seen or frozenset())
        await self._pin_start_positions([tp for tp in fresh if tp.topic in self._subscribed])
        self._assignment_seen = assignment
        self._generation_seen = self.consumer_generation_id
        # Partitions of the topics this worker consumes; the assignment also holds changelog
        # partitions kept as standbys, whose join state belongs to another worker's partitions.
        self._owned = {tp.partition for tp in assignment if tp.topic in self._subscribed}
        armed = self.engine.rebuild_index(self.owns_partition)
        if armed:
            log.info("dataflow: %d join state(s) restored and armed for expiry", armed)
        self.metrics.assigned_partitions.set(len(assignment))
        self._set_ready(True)

    async def watch_broker(self) -> None:
        """Not ready while the broker does not answer; exit (non-zero) once that lasts longer than
        ``DATAFLOW_BROKER_GRACE_SECONDS``, so Kubernetes restarts the pod and the restart is visible.

        One line when the broker is lost, one when it is back; no line per retry.
        """
        lost_at: float | None = None
        while not self.should_stop:
            await asyncio.sleep(1.0)
            ok = await self._broker_answers()
            now = time.monotonic()
            if ok:
                if lost_at is not None:
                    log.warning(
                        "dataflow: Kafka at %s is back after %.0f s",
                        self.settings.bootstrap_servers,
                        now - lost_at,
                    )
                lost_at = None
                self.broker_down = False
                continue
            if lost_at is None:
                lost_at = now
                self.broker_down = True
                log.error("dataflow: cannot reach Kafka at %s; not ready", self.settings.bootstrap_servers)
            if now - lost_at > self.settings.broker_grace_s:
                reason = (
                    f"cannot reach Kafka at {self.settings.bootstrap_servers} for "
                    f"{self.settings.broker_grace_s:g} s (DATAFLOW_BROKER_GRACE_SECONDS)"
                )
                await self.fatal(reason)
                return

    async def fatal(self, reason: str) -> None:
        """Stop the worker with exit code 1 and one line naming ``reason``, so Kubernetes restarts it.

        A clean stop commits offsets and leaves the group, which can hang for the request timeout
        when the broker or the consumer is what failed: the process exits after 10 s regardless.
        """
        log.error("dataflow: %s; exiting", reason)
        asyncio.get_running_loop().call_later(10.0, _hard_exit, reason)
        await self.crash(DataflowError(reason))

    async def _broker_answers(self) -> bool:
        """A metadata request through the producer's connection, with a short deadline."""
        try:
            client = self.producer._ensure_producer().client
            await asyncio.wait_for(client.fetch_all_metadata(), timeout=3.0)
            return True
        except Exception:  # any failure to get an answer counts as "not reachable"
            return False

    async def wait_until_ready(self) -> None:
        while not self.is_ready and not self.should_stop:
            await asyncio.sleep(0.1)

    async def _pin_start_positions(self, tps: list[TP]) -> None:
        """Resolve where each newly assigned partition starts, and commit it if nothing is committed.

        With ``auto.offset.reset=latest`` a partition that has no committed offset restarts at the
        end after every rebalance, skipping whatever arrived meanwhile; Faust commits only offsets
        of processed records, so a quiet partition can stay uncommitted for a long time. Committing
        the start position once makes every later rebalance resume exactly where we were.
        """
        if not tps:
            return
        thread = self.consumer._thread
        aiokafka_consumer = thread._ensure_consumer()
        pinned: dict[TP, int] = {}
        for tp in tps:
            # resolving the position first also keeps Faust's livelock detector from reading an
            # unset one (it crashes the consumer on that)
            position = await asyncio.wait_for(self.consumer.position(tp), timeout=10)
            committed = await asyncio.wait_for(
                thread.call_thread(aiokafka_consumer.committed, _aiokafka_tp(tp)), timeout=10
            )
            if committed is None and position is not None:
                pinned[tp] = position
            start = committed if committed is not None else position
            if start is not None:
                # where the partition resumes, known now: offsets the consumer fetches past without
                # delivering are found even when no later record comes (see watch_stalls)
                self.engine.expect((tp.topic, tp.partition), start)
        if pinned:
            await asyncio.wait_for(thread.commit(pinned), timeout=10)
            log.info("dataflow: start positions committed for %d new partition(s)", len(pinned))

    def owns_partition(self, partition: int) -> bool:
        return partition in self._owned

    async def sweep_joins(self) -> None:
        """Expire join windows on the wall clock, every 100 ms, also when no record arrives (BR-01)."""
        while not self.should_stop:
            await asyncio.sleep(0.1)
            if not self.is_ready:
                continue
            try:
                await self.engine.sweep(self.owns_partition)
            except Exception:  # a failing sweep must not stop the next one
                log.exception("join expiry sweep failed")
            self.metrics.state_entries.set(len(self.engine.store.all_keys()))
            self.metrics.tasks.set(len(asyncio.all_tasks()))

    def _set_ready(self, ready: bool) -> None:
        if ready != self.is_ready:
            log.info("dataflow: %s", "ready" if ready else "not ready (rebalancing)")
        self.is_ready = ready
        self.metrics.ready.set(1 if ready else 0)

    def live_check(self) -> CheckResult:
        return CheckResult(not self.should_stop, "event loop answers")

    def ready_check(self) -> CheckResult:
        details = {
            "assigned_partitions": str(len(self._assignment_seen or ())),
            "owned_partitions": ",".join(str(p) for p in sorted(self._owned)),
            "generation": str(self._generation_seen),
        }
        if self.broker_down:
            return CheckResult(False, f"cannot reach Kafka at {self.settings.bootstrap_servers}", details)
        if self.is_ready:
            return CheckResult(True, "partitions assigned and positioned", details)
        return CheckResult(False, "waiting for partition assignment", details)


def _settle(done: asyncio.Future[None], error: BaseException | None = None) -> None:
    """Give a waiting pipeline change its outcome, unless it has one (or its caller gave up)."""
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def faust_credentials(settings: Settings) -> Any:
    """The same TLS / SASL set-up as every other client of the project (``Settings.kafka_kwargs``),
    in Faust's terms, so the worker's own consumer and producer connect as the start-up checks did."""
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(settings.ssl_context())
    if settings.security_protocol == "SASL_SSL":
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=settings.ssl_context(),
            mechanism=settings.sasl_mechanism,
        )
    return None


STALL_CHECK_S = 1.0  # how often owned partitions are checked for offsets fetched past, not delivered
MAX_FILL = 50_000  # more offsets than a consumer buffers: a reset, not a skip


async def fetch_range(settings: Settings, topic: str, partition: int, start: int, end: int) -> list[Record]:
    """The records at offsets [start, end) of one partition, read by a group-less consumer.

    Offsets missing from the log (none in topics the engine reads) are simply not returned.
    """
    from aiokafka.structs import TopicPartition

    consumer = aiokafka.AIOKafkaConsumer(
        **settings.kafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=min(settings.max_message_size, 64 * 1024 * 1024),
        fetch_max_bytes=min(settings.max_message_size, 64 * 1024 * 1024),
    )
    await asyncio.wait_for(consumer.start(), timeout=10)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]  # older offsets left with retention
        consumer.seek(tp, max(start, first))
        records: list[Record] = []
        deadline = time.monotonic() + 15 + (end - start) / 5000
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise DataflowError(f"offsets up to {end - 1} not read within 15 s")
            batch = await consumer.getmany(tp, timeout_ms=500)
            for m in batch.get(tp, []):
                if m.offset >= end:
                    return records
                headers = [(k, b"" if v is None else bytes(v)) for k, v in (m.headers or ())]
                records.append(
                    Record(topic, partition, m.offset, m.key, m.value, headers, m.timestamp / 1000)
                )
        return records
    finally:
        await asyncio.wait_for(consumer.stop(), timeout=5)


def _hard_exit(reason: str) -> None:
    print(f"error: worker stopped after a fatal error: {reason}", file=sys.stderr, flush=True)
    os._exit(1)


def _aiokafka_tp(tp: TP) -> Any:
    from aiokafka.structs import TopicPartition

    return TopicPartition(tp.topic, tp.partition)


async def _seek_to_committed(self: Any, *partitions: Any) -> dict[Any, int | None]:
    """aiokafka's ``seek_to_committed`` with one fix: a committed offset of 0 is a position too.

    The original seeks only when the committed offset is > 0, so a partition committed at 0 (our
    start position on a topic that was empty when first assigned) falls back to
    ``auto.offset.reset=latest`` at the next rebalance and skips the records at its start. Faust calls
    this on every assignment, before fetching resumes.
    """
    from aiokafka.errors import IllegalStateError

    if not partitions:
        partitions = tuple(self._subscription.assigned_partitions())
    not_assigned = set(partitions) - self._subscription.assigned_partitions()
    if not_assigned:
        raise IllegalStateError(f"Partitions {not_assigned} are not assigned")
    committed_offsets: dict[Any, int | None] = {}
    for tp in partitions:
        offset = await self.committed(tp)
        committed_offsets[tp] = offset
        if offset is not None and offset >= 0:
            self._fetcher.seek_to(tp, offset)
    return committed_offsets


aiokafka.AIOKafkaConsumer.seek_to_committed = _seek_to_committed

_faust_seek_offsets = faust.tables.recovery.Recovery._seek_offsets


async def _seek_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
    """Faust's changelog seek, with every start offset resolved first.

    With the in-memory store a changelog partition's start offset is None until Faust looks up
    the partition's earliest offset, and a standby partition assigned in a generation whose
    recovery had nothing else to do was seeked with None still: aiokafka raised "Offset must be a
    positive integer" and the worker crashed (seen when scaling four workers down to one). Such
    offsets are resolved the way Faust resolves the others (from the earliest offset) first.
    """
    unresolved = {tp for tp in tps if not isinstance(offsets.get(tp), int) or offsets[tp] < -1}
    for tp in unresolved:
        offsets[tp] = None
    if unresolved:
        await self._build_offsets(consumer, unresolved, offsets, title)
    await _faust_seek_offsets(self, consumer, tps, offsets, title)


faust.tables.recovery.Recovery._seek_offsets = _seek_offsets

# Faust waits 45 s to coalesce subscription changes before it resubscribes; pipelines are created one
# at a time and callers wait for them, so a short pause is the better trade.
faust.transport.conductor.Conductor._resubscribe_sleep_lock_seconds = 0.5


def create_app(
    settings: Settings,
    router: Router,
    *,
    watch: list[str] | None = None,
    partitions: dict[str, int] | None = None,
) -> DataflowApp:
    """Build the app and its routing agent for ``router``'s pipelines; ``watch`` names pipeline files
    or folders to follow while running (YAML mode); ``partitions`` are the topics' partition counts
    when the caller has already created them (``admin.prepare``), so start-up does not do it again."""
    # Faust keeps local state here; tables arrive with joins.
    data_dir = Path(settings.data_dir) / settings.group_id
    app = DataflowApp(
        settings,
        router,
        broker=[f"kafka://{b}" for b in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        datadir=str(data_dir),
        autodiscover=False,
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        consumer_auto_offset_reset="latest",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        # a survivor learns of a dead peer's expiry at its next heartbeat: keep that short
        broker_heartbeat_interval=max(0.3, settings.session_timeout_s / 10),
        broker_request_timeout=max(40.0, settings.session_timeout_s + 5),
        broker_max_poll_records=500,
        producer_max_request_size=settings.max_message_size,
        consumer_max_fetch_size=min(settings.max_message_size, 64 * 1024 * 1024),
        producer_acks=-1,
        # an event whose processing a rebalance cancelled must be processed again, not committed
        stream_ack_cancelled_tasks=False,
        # Static membership (a StatefulSet's stable pod names): a worker restarted within the session
        # timeout gets its partitions back without a rebalance of the whole group. Off by default:
        # a static member does not leave the group on SIGTERM, so its partitions wait for the timeout.
        consumer_group_instance_id=settings.replica_id if settings.static_membership else None,
        web_enabled=True,
        web_port=settings.health_port,
        web_bind="0.0.0.0",
        web_host=settings.replica_id,
        web_tables_enabled=False,
        web_in_thread=False,
    )
    # The namespace's errors topic is read by every pipeline (its error step), so the agent always has
    # a topic, also before the first pipeline arrives; others are added as pipelines need them.
    app.prepared = partitions
    app._subscribed.add(settings.namer.errors)
    channel = app.topic(*sorted(app._subscribed), key_type=bytes, value_type=bytes)
    app._topic_list[:] = sorted(app._subscribed)
    channel.topics = app._topic_list  # one list object, shared with every clone (see _resubscribe)
    engine = app.engine

    async def route(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            raw = msg.headers.items() if isinstance(msg.headers, dict) else (msg.headers or ())
            headers = [(k, b"" if v is None else v) for k, v in raw]  # Kafka allows null header values
            record = Record(msg.topic, msg.partition, msg.offset, msg.key, msg.value, headers, msg.timestamp)
            async with app.partition_lock((record.topic, record.partition)):
                await app.ensure_continuity(record)
                await engine.process(record)

    app.agent(channel, name=AGENT_NAME, isolated_partitions=True)(route)

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await app.commit_revoked(revoked)

    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        engine.keep_only((tp.topic, tp.partition) for tp in assigned)

    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)

    @app.task  # type: ignore[untyped-decorator]
    async def readiness() -> None:
        await app.watch_readiness()

    @app.task  # type: ignore[untyped-decorator]
    async def join_expiry() -> None:
        await app.sweep_joins()

    @app.task  # type: ignore[untyped-decorator]
    async def stalls() -> None:
        await app.watch_stalls()

    @app.task  # type: ignore[untyped-decorator]
    async def broker_watch() -> None:
        await app.wait_until_ready()
        await app.watch_broker()

    @app.task  # type: ignore[untyped-decorator]
    async def unused_topics() -> None:
        await app.wait_until_ready()
        await app.unsubscribe_unused()

    if settings.upstream_host:
        app.scheduler = SchedulerClient(settings, app)

        @app.task  # type: ignore[untyped-decorator]
        async def scheduler_subscription() -> None:
            assert app.scheduler is not None
            await app.wait_until_ready()
            await app.scheduler.run()

    if watch:

        @app.task  # type: ignore[untyped-decorator]
        async def pipeline_files() -> None:
            await app.wait_until_ready()
            await app.watch_folder(watch)

    def _respond(web: Any, checks: dict[str, Any]) -> Any:
        status, body = evaluate(checks)
        return web.json(body, status=status)

    @app.page("/live")  # type: ignore[untyped-decorator]
    async def live(web: Any, request: Any) -> Any:
        return _respond(web, {"service": app.live_check})

    @app.page("/ready")  # type: ignore[untyped-decorator]
    async def ready(web: Any, request: Any) -> Any:
        return _respond(web, {"service": app.ready_check})

    @app.page("/startup")  # type: ignore[untyped-decorator]
    async def startup(web: Any, request: Any) -> Any:
        checks = {"service": app.live_check}
        if app.scheduler is not None:
            checks["grpc-chainer"] = app.scheduler.health
        return _respond(web, checks)

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(app.metrics.render(), content_type="text/plain; version=0.0.4")

    return app
