"""From step updates to an executable plan: step classes (chainer / joiner) and the routing index.

Pure: the runtime asks the plan "which steps read this topic?" for every record, so the index is
built once per pipeline change, not per record (spec §4.1, §2.4).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dataflow.errors import DataflowError
from dataflow.topics import ChainKind, chain_kind
from dataflow.updates import Batch, JoinType, PipelineTopic, PipelineUpdate, StepUpdate


class PlanError(DataflowError):
    """A pipeline whose steps cannot be run; the message names pipeline and step."""


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """One grouped source of a step: a topic read with one expected ``pipeline`` header value."""

    topic: str
    pipeline_name: str
    desired: frozenset[str] | None  # None: every tensor
    renames: Mapping[str, str]  # "<topic>.<tensor>" -> new name, only this source's mappings
    kind: ChainKind

    @property
    def plain(self) -> bool:
        """True when records pass without tensor selection or renaming (bytes-level fast path)."""
        return self.desired is None and not self.renames


@dataclass(frozen=True, slots=True)
class StepPlan:
    pipeline: str
    version: int
    uid: str
    step_id: str
    sink: str
    sources: tuple[SourcePlan, ...]
    triggers: tuple[SourcePlan, ...]
    join: JoinType
    triggers_join: JoinType
    window_ms: int
    batch: Batch | None

    @property
    def is_joiner(self) -> bool:
        return len(self.sources) > 1


@dataclass(frozen=True, slots=True)
class PipelinePlan:
    update: PipelineUpdate
    steps: tuple[StepPlan, ...]

    @property
    def topics(self) -> frozenset[str]:
        """Every topic the pipeline reads or writes (to be created before it runs)."""
        names: set[str] = set()
        for step in self.steps:
            names.add(step.sink)
            names.update(s.topic for s in step.sources)
            names.update(t.topic for t in step.triggers)
        return frozenset(names)

    @property
    def source_topics(self) -> frozenset[str]:
        return frozenset(s.topic for step in self.steps for s in (*step.sources, *step.triggers))


def step_id(update: StepUpdate, pipeline: str) -> str:
    """A step's stable id: the model name for model steps, else ``(input)``, ``(output)`` or ``(error)``.

    Derived from topics, never from list position, so reordering YAML keeps ids (and state) stable.
    The parentheses cannot occur in step names, so a model called ``output`` keeps its own id.
    """
    parts = update.sink.topic_name.split(".")
    if len(parts) >= 4 and parts[-3] == "model":
        return parts[-2]
    if parts[-1] == "inputs":
        return "(input)"
    if len(update.sources) == 1 and update.sources[0].topic_name.rsplit(".", 1)[-1] == "errors":
        return "(error)"
    return "(output)"


def _group(
    refs: Iterable[PipelineTopic], renames: Iterable[tuple[str, str, str]], sink: str, *, rename: bool
) -> tuple[SourcePlan, ...]:
    """Group references by (topic, pipeline): tensors of one group are unioned (spec §2.4).

    A plain reference to a topic is overridden by tensor references to the same topic.
    """
    order: list[tuple[str, str]] = []
    tensors: dict[tuple[str, str], set[str]] = {}
    for ref in refs:
        key = (ref.topic_name, ref.pipeline_name)
        if key not in tensors:
            order.append(key)
            tensors[key] = set()
        if ref.tensor:
            tensors[key].add(ref.tensor)
    rename_list = list(renames)
    out = []
    for topic, pipeline in order:
        maps = (
            {k: v for (p, k, v) in rename_list if p == pipeline and k.startswith(topic + ".")}
            if rename
            else {}
        )
        desired = frozenset(tensors[(topic, pipeline)]) or None
        out.append(SourcePlan(topic, pipeline, desired, MappingProxyType(maps), chain_kind(topic, sink)))
    return tuple(out)


def plan_step(update: StepUpdate, pipeline: PipelineUpdate, default_window_ms: int) -> StepPlan:
    sid = step_id(update, pipeline.pipeline)
    where = f"pipeline {pipeline.pipeline!r} step {sid!r}"
    renames = [(m.pipeline_name, m.topic_and_tensor, m.tensor_name) for m in update.tensor_map]
    sources = _group(update.sources, renames, update.sink.topic_name, rename=True)
    if not sources:
        raise PlanError(f"{where}: the step has no sources (failed to create all pipeline steps)")
    if len(sources) > 1 and any(s.kind is ChainKind.PASSTHROUGH for s in sources):
        names = ", ".join(s.topic for s in sources)
        raise PlanError(f"{where}: cannot join opaque (non-V2) topics: {names}")
    # Triggers are read as responses whatever their topic, converted to requests, never renamed (§4.4).
    # Their order means nothing, so it is canonical: join state numbers trigger slots in this order,
    # and workers sharing a step's partitions must number them alike (BR-24).
    triggers = tuple(
        sorted(
            _group(update.triggers, (), update.sink.topic_name, rename=False),
            key=lambda t: (t.topic, t.pipeline_name),
        )
    )
    window = update.join_window_ms or default_window_ms
    return StepPlan(
        pipeline=pipeline.pipeline,
        version=pipeline.version,
        uid=pipeline.uid,
        step_id=sid,
        sink=update.sink.topic_name,
        sources=sources,
        triggers=triggers,
        join=update.input_join,
        triggers_join=update.triggers_join,
        window_ms=window,
        batch=update.batch,
    )


def plan_pipeline(update: PipelineUpdate, default_window_ms: int) -> PipelinePlan:
    """Plan every step, in the reference's stable order (sink, then comma-joined sources)."""
    ordered = sorted(
        update.updates, key=lambda u: (u.sink.topic_name, ",".join(s.topic_name for s in u.sources))
    )
    steps = tuple(plan_step(u, update, default_window_ms) for u in ordered)
    counts = Counter(s.step_id for s in steps)
    dupes = sorted(i for i, n in counts.items() if n > 1)
    if dupes:
        raise PlanError(
            f"pipeline {update.pipeline!r}: several steps write the same topic: {', '.join(dupes)}"
        )
    return PipelinePlan(update, steps)


@dataclass(frozen=True, slots=True)
class Route:
    """Records of ``step.sources[source_index]`` (or of a trigger) arrive on this topic."""

    step: StepPlan
    source: SourcePlan
    is_trigger: bool = False


@dataclass(frozen=True)
class Router:
    """Immutable routing index over all running pipelines: topic -> routes.

    A pipeline change builds a new Router and swaps it in one assignment, so a record is always
    routed by one consistent snapshot.
    """

    pipelines: Mapping[str, PipelinePlan] = field(default_factory=dict)  # by uid
    _index: Mapping[str, tuple[Route, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, plans: Iterable[PipelinePlan]) -> Router:
        # the same pipelines give the same index whatever order they were loaded in (BR-24)
        ordered = sorted(plans, key=lambda p: (p.update.pipeline, p.update.version, p.update.uid))
        by_uid = {p.update.uid: p for p in ordered}
        index: dict[str, list[Route]] = {}
        for plan in by_uid.values():
            for step in plan.steps:
                for source in step.sources:
                    index.setdefault(source.topic, []).append(Route(step, source))
                for trigger in step.triggers:
                    index.setdefault(trigger.topic, []).append(Route(step, trigger, is_trigger=True))
        return cls(MappingProxyType(by_uid), MappingProxyType({k: tuple(v) for k, v in index.items()}))

    def routes(self, topic: str) -> tuple[Route, ...]:
        return self._index.get(topic, ())

    @property
    def source_topics(self) -> frozenset[str]:
        return frozenset(self._index)

    @property
    def topics(self) -> frozenset[str]:
        names: set[str] = set()
        for plan in self.pipelines.values():
            names |= plan.topics
        return frozenset(names)

    def with_pipeline(self, plan: PipelinePlan) -> Router:
        return Router.build([*self.pipelines.values(), plan])

    def without(self, uid: str) -> Router:
        return Router.build(p for u, p in self.pipelines.items() if u != uid)


def copartition_problems(router: Router, counts: Mapping[str, int], expected: int) -> list[str]:
    """Steps that join or wait for triggers need every topic they read to have ``expected`` partitions.

    A request keeps its partition number on every topic, and join state is kept per partition; a
    topic with another count would send fragments of one request to different workers (BR-03).
    """
    problems = []
    for plan in router.pipelines.values():
        for step in plan.steps:
            if len(step.sources) < 2 and not step.triggers:
                continue
            topics = [s.topic for s in (*step.sources, *step.triggers)]
            odd = {t: counts.get(t) for t in topics if counts.get(t, expected) != expected}
            if odd:
                listed = ", ".join(f"{t} has {n}" for t, n in sorted(odd.items()))
                problems.append(
                    f"pipeline {step.pipeline!r} step {step.step_id!r} joins topics with different partition "
                    f"counts ({listed}; expected {expected} like the join state): recreate them with {expected} "
                    f"partitions or set SELDON_KAFKA_PARTITIONS_DEFAULT to match"
                )
    return problems
