"""Unit tests of the planner: step classification (the reference's ``PipelineStepTest``, spec §8.1, §4.1),
tensor selection grouping (§2.4), rename maps (§2.3), chain kinds (§2.2), step ids, join windows, the
stable step order, and the routing index."""

from __future__ import annotations

import pytest

from dataflow.errors import DataflowError
from dataflow.plan import (
    PipelinePlan,
    PlanError,
    Router,
    SourcePlan,
    plan_pipeline,
    plan_step,
    step_id,
)
from dataflow.topics import ChainKind
from dataflow.updates import (
    Batch,
    JoinType,
    Operation,
    PipelineTopic,
    PipelineUpdate,
    StepUpdate,
    TensorMapping,
)

S = "seldon.seldon-mesh."
P = "p"
DEFAULT_WINDOW = 60_000


def topic(name: str, tensor: str | None = None, pipeline: str = P) -> PipelineTopic:
    return PipelineTopic(pipeline, S + name, tensor)


def update(*steps: StepUpdate, name: str = P, uid: str = "uid-p", version: int = 1) -> PipelineUpdate:
    return PipelineUpdate(Operation.CREATE, name, version, uid, updates=steps)


def plan_one(step: StepUpdate, window: int = DEFAULT_WINDOW) -> tuple[SourcePlan, ...]:
    return plan_step(step, update(step), window).sources


def summary(sources: tuple[SourcePlan, ...]) -> list[tuple[str, frozenset[str] | None]]:
    return [(s.topic, s.desired) for s in sources]


# ------------------------------------------------------------------------------ classification (§8.1)

SINK = topic("model.m.inputs")


def test_no_sources_is_an_error() -> None:
    step = StepUpdate(sources=(), sink=SINK)
    with pytest.raises(PlanError) as info:
        plan_step(step, update(step), DEFAULT_WINDOW)
    assert isinstance(info.value, DataflowError)
    assert "pipeline 'p' step 'm'" in str(info.value)
    assert "no sources" in str(info.value)


def test_single_source_no_tensors_is_a_chainer_of_all_tensors() -> None:
    step = StepUpdate(sources=(topic("model.a.outputs"),), sink=SINK)
    plan = plan_step(step, update(step), DEFAULT_WINDOW)
    assert not plan.is_joiner
    assert plan.sink == S + "model.m.inputs"
    assert summary(plan.sources) == [(S + "model.a.outputs", None)]
    assert plan.sources[0].plain


def test_single_source_one_tensor() -> None:
    step = StepUpdate(sources=(topic("model.a.outputs", "OUTPUT0"),), sink=SINK)
    plan = plan_step(step, update(step), DEFAULT_WINDOW)
    assert not plan.is_joiner
    assert summary(plan.sources) == [(S + "model.a.outputs", frozenset({"OUTPUT0"}))]
    assert not plan.sources[0].plain


def test_single_source_two_tensors_are_unioned_not_joined() -> None:
    step = StepUpdate(sources=(topic("model.a.outputs", "x"), topic("model.a.outputs", "y")), sink=SINK)
    plan = plan_step(step, update(step), DEFAULT_WINDOW)
    assert not plan.is_joiner
    assert summary(plan.sources) == [(S + "model.a.outputs", frozenset({"x", "y"}))]


def test_two_sources_no_tensors_is_a_joiner() -> None:
    step = StepUpdate(sources=(topic("model.a.outputs"), topic("model.b.outputs")), sink=SINK)
    plan = plan_step(step, update(step), DEFAULT_WINDOW)
    assert plan.is_joiner
    assert summary(plan.sources) == [(S + "model.a.outputs", None), (S + "model.b.outputs", None)]


def test_two_sources_with_tensors_keep_per_topic_sets() -> None:
    step = StepUpdate(
        sources=(
            topic("model.a.outputs", "x"),
            topic("model.b.outputs"),
            topic("model.a.outputs", "z"),
            topic("model.b.outputs", "w"),
            topic("model.c.outputs"),
        ),
        sink=SINK,
    )
    plan = plan_step(step, update(step), DEFAULT_WINDOW)
    assert plan.is_joiner
    # first-appearance order of topics; topics without tensors pass every tensor
    assert summary(plan.sources) == [
        (S + "model.a.outputs", frozenset({"x", "z"})),
        (S + "model.b.outputs", frozenset({"w"})),
        (S + "model.c.outputs", None),
    ]


def test_tensors_override_plain_topic() -> None:
    for refs in (
        (topic("model.a.outputs"), topic("model.a.outputs", "t")),
        (topic("model.a.outputs", "t"), topic("model.a.outputs")),
    ):
        assert summary(plan_one(StepUpdate(sources=refs, sink=SINK))) == [
            (S + "model.a.outputs", frozenset({"t"}))
        ]


def test_same_topic_from_two_pipelines_is_two_sources() -> None:
    # example C: one model topic, told apart by the `pipeline` header only
    out = S + "model.tfsimple2.outputs"
    step = StepUpdate(
        sources=(
            PipelineTopic("ext1", out, "OUTPUT0"),
            PipelineTopic("ext2", out, "OUTPUT0"),
        ),
        sink=topic("pipeline.p.inputs"),
        tensor_map=(
            TensorMapping("ext1", out + ".OUTPUT0", "INPUT0"),
            TensorMapping("ext2", out + ".OUTPUT0", "INPUT1"),
        ),
    )
    plan = plan_step(step, update(step), DEFAULT_WINDOW)
    assert plan.is_joiner
    assert [(s.topic, s.pipeline_name, s.desired) for s in plan.sources] == [
        (out, "ext1", frozenset({"OUTPUT0"})),
        (out, "ext2", frozenset({"OUTPUT0"})),
    ]
    assert [dict(s.renames) for s in plan.sources] == [
        {out + ".OUTPUT0": "INPUT0"},
        {out + ".OUTPUT0": "INPUT1"},
    ]
    assert {s.kind for s in plan.sources} == {ChainKind.OUTPUT_INPUT}


# ------------------------------------------------------------------------------------------- renames


def test_renames_are_filtered_by_pipeline_name_and_topic() -> None:
    a, b = S + "model.a.outputs", S + "model.b.outputs"
    step = StepUpdate(
        sources=(topic("model.a.outputs"), topic("model.b.outputs")),
        sink=SINK,
        tensor_map=(
            TensorMapping(P, a + ".OUTPUT0", "INPUT0"),
            TensorMapping(P, b + ".OUTPUT0", "INPUT1"),
            TensorMapping("other", a + ".OUTPUT1", "NOPE"),  # another pipeline's records
            TensorMapping(P, S + "model.c.outputs.OUTPUT0", "NOPE"),  # a topic this step does not read
            TensorMapping(P, S + "model.a.outputsX.OUTPUT0", "NOPE"),  # prefix of the name, not the topic
        ),
    )
    first, second = plan_one(step)
    assert dict(first.renames) == {a + ".OUTPUT0": "INPUT0"}
    assert dict(second.renames) == {b + ".OUTPUT0": "INPUT1"}
    assert not first.plain


def test_renames_are_read_only() -> None:
    step = StepUpdate(
        sources=(topic("model.a.outputs"),),
        sink=SINK,
        tensor_map=(TensorMapping(P, S + "model.a.outputs.X", "Y"),),
    )
    [source] = plan_one(step)
    with pytest.raises(TypeError):
        source.renames["k"] = "v"  # type: ignore[index]


def test_triggers_are_grouped_but_never_renamed() -> None:
    inputs = S + "pipeline.p.inputs"
    step = StepUpdate(
        sources=(topic("pipeline.p.inputs", "INPUT"),),
        triggers=(topic("pipeline.p.inputs", "ok1"), topic("pipeline.p.inputs", "ok2")),
        sink=SINK,
        triggers_join=JoinType.ANY,
        tensor_map=(TensorMapping(P, inputs + ".ok1", "renamed"),),
    )
    plan = plan_step(step, update(step), DEFAULT_WINDOW)
    assert not plan.is_joiner
    assert [(t.topic, t.desired, dict(t.renames)) for t in plan.triggers] == [
        (inputs, frozenset({"ok1", "ok2"}), {})
    ]
    assert plan.triggers_join is JoinType.ANY


# --------------------------------------------------------------------------------------- chain kinds


@pytest.mark.parametrize(
    ("source", "sink", "kind"),
    [
        ("pipeline.p.inputs", "model.m.inputs", ChainKind.INPUT_INPUT),
        ("model.a.outputs", "model.m.inputs", ChainKind.OUTPUT_INPUT),
        ("model.a.outputs", "pipeline.p.outputs", ChainKind.OUTPUT_OUTPUT),
        ("model.a.inputs", "pipeline.p.outputs", ChainKind.INPUT_OUTPUT),
        ("pipeline.q.outputs", "pipeline.p.inputs", ChainKind.OUTPUT_INPUT),
        ("errors.errors", "pipeline.p.outputs", ChainKind.PASSTHROUGH),
    ],
)
def test_chain_kind_per_source(source: str, sink: str, kind: ChainKind) -> None:
    [plan] = plan_one(StepUpdate(sources=(topic(source),), sink=topic(sink)))
    assert plan.kind is kind


def test_chain_kinds_differ_per_source_of_one_step() -> None:
    step = StepUpdate(sources=(topic("pipeline.p.inputs"), topic("model.a.outputs")), sink=SINK)
    assert [s.kind for s in plan_one(step)] == [ChainKind.INPUT_INPUT, ChainKind.OUTPUT_INPUT]


def test_opaque_source_in_a_join_is_refused() -> None:
    step = StepUpdate(
        sources=(topic("errors.errors"), topic("model.a.outputs")), sink=topic("pipeline.p.outputs")
    )
    with pytest.raises(PlanError) as info:
        plan_step(step, update(step), DEFAULT_WINDOW)
    message = str(info.value)
    assert "pipeline 'p' step '(output)'" in message
    assert S + "errors.errors" in message


def test_single_opaque_source_is_a_passthrough_chainer() -> None:
    step = StepUpdate(sources=(topic("errors.errors"),), sink=topic("pipeline.p.outputs"))
    [source] = plan_one(step)
    assert source.kind is ChainKind.PASSTHROUGH
    assert source.plain


# ---------------------------------------------------------------------------------- ids and windows


@pytest.mark.parametrize(
    ("sources", "sink", "expected"),
    [
        (("pipeline.p.inputs",), "model.tfsimple1.inputs", "tfsimple1"),
        (("model.a.outputs", "model.b.outputs"), "model.my-model.inputs", "my-model"),
        (("pipeline.q.outputs",), "pipeline.p.inputs", "(input)"),
        (("model.a.outputs",), "pipeline.p.outputs", "(output)"),
        (("model.a.outputs", "model.b.outputs"), "pipeline.p.outputs", "(output)"),
        (("errors.errors",), "pipeline.p.outputs", "(error)"),
    ],
)
def test_step_ids(sources: tuple[str, ...], sink: str, expected: str) -> None:
    step = StepUpdate(sources=tuple(topic(s) for s in sources), sink=topic(sink))
    assert step_id(step, P) == expected
    assert plan_step(step, update(step), DEFAULT_WINDOW).step_id == expected


def test_step_id_ignores_prefix_with_dots() -> None:
    step = StepUpdate(
        sources=(PipelineTopic(P, "a.b.ns.pipeline.p.inputs"),),
        sink=PipelineTopic(P, "a.b.ns.model.m.inputs"),
    )
    assert step_id(step, P) == "m"


@pytest.mark.parametrize(("window", "expected"), [(None, 1234), (0, 1234), (1, 1), (500, 500)])
def test_effective_join_window(window: int | None, expected: int) -> None:
    step = StepUpdate(
        sources=(topic("model.a.outputs"), topic("model.b.outputs")), sink=SINK, join_window_ms=window
    )
    assert plan_step(step, update(step), 1234).window_ms == expected


def test_step_plan_carries_pipeline_identity_join_and_batch() -> None:
    step = StepUpdate(
        sources=(topic("model.a.outputs"), topic("model.b.outputs")),
        sink=SINK,
        input_join=JoinType.OUTER,
        batch=Batch(size=4),
    )
    plan = plan_step(step, update(step, uid="u-9", version=3), DEFAULT_WINDOW)
    assert (plan.pipeline, plan.version, plan.uid) == (P, 3, "u-9")
    assert plan.join is JoinType.OUTER
    assert plan.triggers_join is JoinType.INNER
    assert plan.batch == Batch(size=4)
    assert plan.triggers == ()


# -------------------------------------------------------------------------------------- whole plans


def example_a(name: str = "tfsimples", uid: str = "uid-a") -> PipelineUpdate:
    def t(suffix: str) -> PipelineTopic:
        return PipelineTopic(name, S + suffix)

    steps = (
        StepUpdate(sources=(t(f"pipeline.{name}.inputs"),), sink=t("model.tfsimple1.inputs")),
        StepUpdate(
            sources=(t("model.tfsimple1.outputs"),),
            sink=t("model.tfsimple2.inputs"),
            tensor_map=(
                TensorMapping(name, S + "model.tfsimple1.outputs.OUTPUT0", "INPUT0"),
                TensorMapping(name, S + "model.tfsimple1.outputs.OUTPUT1", "INPUT1"),
            ),
        ),
        StepUpdate(
            sources=(t("model.tfsimple2.outputs"),), sink=t(f"pipeline.{name}.outputs"), join_window_ms=0
        ),
        StepUpdate(sources=(t("errors.errors"),), sink=t(f"pipeline.{name}.outputs")),
    )
    return PipelineUpdate(Operation.CREATE, name, 2, uid, updates=steps)


def test_example_a_plan() -> None:
    plan = plan_pipeline(example_a(), DEFAULT_WINDOW)
    assert isinstance(plan, PipelinePlan)
    assert [(s.step_id, [src.kind for src in s.sources]) for s in plan.steps] == [
        ("tfsimple1", [ChainKind.INPUT_INPUT]),
        ("tfsimple2", [ChainKind.OUTPUT_INPUT]),
        ("(error)", [ChainKind.PASSTHROUGH]),
        ("(output)", [ChainKind.OUTPUT_OUTPUT]),
    ]
    assert all(s.window_ms == DEFAULT_WINDOW for s in plan.steps)
    assert all(not s.is_joiner for s in plan.steps)
    assert len(plan.topics) == 7
    assert plan.source_topics == {
        S + "pipeline.tfsimples.inputs",
        S + "model.tfsimple1.outputs",
        S + "model.tfsimple2.outputs",
        S + "errors.errors",
    }


def test_step_order_is_stable_whatever_the_update_order() -> None:
    a = example_a()
    expected = [s.step_id for s in plan_pipeline(a, DEFAULT_WINDOW).steps]
    for order in ((3, 2, 1, 0), (2, 0, 3, 1), (1, 3, 0, 2)):
        shuffled = PipelineUpdate(
            a.op, a.pipeline, a.version, a.uid, updates=tuple(a.updates[i] for i in order)
        )
        assert [s.step_id for s in plan_pipeline(shuffled, DEFAULT_WINDOW).steps] == expected


def test_plan_topics_include_triggers() -> None:
    step = StepUpdate(
        sources=(topic("model.a.outputs"),), triggers=(topic("model.t.outputs", "go"),), sink=SINK
    )
    plan = plan_pipeline(update(step), DEFAULT_WINDOW)
    assert plan.topics == {S + "model.a.outputs", S + "model.t.outputs", S + "model.m.inputs"}
    assert plan.source_topics == {S + "model.a.outputs", S + "model.t.outputs"}


def test_plan_pipeline_reports_a_step_without_sources() -> None:
    good = StepUpdate(sources=(topic("model.a.outputs"),), sink=SINK)
    bad = StepUpdate(sources=(), sink=topic("model.n.inputs"))
    with pytest.raises(PlanError, match="step 'n'"):
        plan_pipeline(update(good, bad), DEFAULT_WINDOW)


def test_two_steps_writing_one_topic_are_refused() -> None:
    one = StepUpdate(sources=(topic("model.a.outputs"),), sink=SINK)
    two = StepUpdate(sources=(topic("model.b.outputs"),), sink=SINK)
    with pytest.raises(PlanError, match="several steps write the same topic: m"):
        plan_pipeline(update(one, two), DEFAULT_WINDOW)


# -------------------------------------------------------------------------------------------- router


def test_router_index_topic_to_routes() -> None:
    first = plan_pipeline(example_a("tfsimples", "uid-1"), DEFAULT_WINDOW)
    second = plan_pipeline(example_a("other", "uid-2"), DEFAULT_WINDOW)
    router = Router.build([first, second])
    # both pipelines read the shared model topic; each route knows its step and expected header
    routes = router.routes(S + "model.tfsimple1.outputs")
    # in canonical order, whatever order the pipelines were given in
    assert [(r.step.pipeline, r.step.step_id, r.source.pipeline_name, r.is_trigger) for r in routes] == [
        ("other", "tfsimple2", "other", False),
        ("tfsimples", "tfsimple2", "tfsimples", False),
    ]
    assert Router.build([second, first]).routes(S + "model.tfsimple1.outputs") == routes
    assert routes[0].source is routes[0].step.sources[0]
    errors = router.routes(S + "errors.errors")
    assert [r.step.step_id for r in errors] == ["(error)", "(error)"]
    assert router.routes(S + "model.unknown.outputs") == ()
    assert router.routes(S + "model.tfsimple1.inputs") == ()  # written, not read
    assert S + "pipeline.other.inputs" in router.source_topics
    assert S + "model.tfsimple1.inputs" not in router.source_topics
    assert S + "model.tfsimple1.inputs" in router.topics
    assert set(router.pipelines) == {"uid-1", "uid-2"}


def test_router_trigger_routes() -> None:
    step = StepUpdate(
        sources=(topic("pipeline.p.inputs", "INPUT"),),
        triggers=(topic("pipeline.p.inputs", "ok"),),
        sink=SINK,
    )
    router = Router.build([plan_pipeline(update(step), DEFAULT_WINDOW)])
    routes = router.routes(S + "pipeline.p.inputs")
    assert [(r.is_trigger, r.source.desired) for r in routes] == [
        (False, frozenset({"INPUT"})),
        (True, frozenset({"ok"})),
    ]


def test_router_with_pipeline_and_without() -> None:
    empty = Router()
    assert empty.routes(S + "errors.errors") == ()
    assert empty.source_topics == frozenset()
    assert empty.topics == frozenset()

    first = plan_pipeline(example_a("tfsimples", "uid-1"), DEFAULT_WINDOW)
    one = empty.with_pipeline(first)
    assert len(one.routes(S + "errors.errors")) == 1
    assert empty.routes(S + "errors.errors") == ()  # immutable: the old snapshot is untouched

    second = plan_pipeline(example_a("other", "uid-2"), DEFAULT_WINDOW)
    two = one.with_pipeline(second)
    assert len(two.routes(S + "errors.errors")) == 2

    # a new plan for a known uid replaces the old one instead of doubling routes
    newer = plan_pipeline(example_a("other", "uid-2"), 5)
    replaced = two.with_pipeline(newer)
    assert len(replaced.routes(S + "errors.errors")) == 2
    assert replaced.pipelines["uid-2"] is newer
    assert {r.step.window_ms for r in replaced.routes(S + "pipeline.other.inputs")} == {5}

    back = two.without("uid-2")
    assert set(back.pipelines) == {"uid-1"}
    assert [r.step.pipeline for r in back.routes(S + "model.tfsimple1.outputs")] == ["tfsimples"]
    assert S + "pipeline.other.inputs" not in back.source_topics
    assert back.without("unknown").pipelines.keys() == back.pipelines.keys()
    assert len(two.routes(S + "errors.errors")) == 2


def test_two_versions_of_one_pipeline_route_side_by_side() -> None:
    v1 = plan_pipeline(example_a("tfsimples", "uid-v1"), DEFAULT_WINDOW)
    v2 = plan_pipeline(example_a("tfsimples", "uid-v2"), DEFAULT_WINDOW)
    router = Router.build([v1, v2])
    assert [r.step.uid for r in router.routes(S + "pipeline.tfsimples.inputs")] == ["uid-v1", "uid-v2"]


def test_models_named_like_synthetic_steps() -> None:
    steps = (
        StepUpdate(sources=(topic("pipeline.p.inputs"),), sink=topic("model.output.inputs")),
        StepUpdate(sources=(topic("model.output.outputs"),), sink=topic("pipeline.p.outputs")),
        StepUpdate(sources=(topic("errors.errors"),), sink=topic("pipeline.p.outputs")),
    )
    plan = plan_pipeline(update(*steps), DEFAULT_WINDOW)
    assert len({s.step_id for s in plan.steps}) == 3
