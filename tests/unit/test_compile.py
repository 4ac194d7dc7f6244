"""Unit tests of the Pipeline -> step updates compiler: the Create message the scheduler would send
(spec §3.2, worked example §4.10 A)."""

from __future__ import annotations

import textwrap

import pytest

from dataflow.compile import compile_pipeline, default_uid
from dataflow.spec import Pipeline, load_text
from dataflow.topics import TopicNamer
from dataflow.updates import (
    Batch,
    JoinType,
    Operation,
    PipelineTopic,
    PipelineUpdate,
    StepUpdate,
    TensorMapping,
)

NAMER = TopicNamer(prefix="seldon", namespace="seldon-mesh")
S = "seldon.seldon-mesh."


def pipeline(name: str, body: str) -> Pipeline:
    head = f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n"
    text = head + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"
    [loaded] = load_text(text, f"{name}.yaml")
    return loaded.pipeline


def compiled(name: str, body: str, namer: TopicNamer = NAMER) -> PipelineUpdate:
    return compile_pipeline(pipeline(name, body), namer)


def step_for(update: PipelineUpdate, sink: str) -> StepUpdate:
    matches = [u for u in update.updates if u.sink.topic_name == sink]
    assert len(matches) == 1, [u.sink.topic_name for u in update.updates]
    return matches[0]


def engine_order(update: PipelineUpdate) -> list[StepUpdate]:
    """The reference engine's sort (spec §4.1): sink topic, then comma-joined source topics."""
    return sorted(
        update.updates, key=lambda u: (u.sink.topic_name, ",".join(s.topic_name for s in u.sources))
    )


TFSIMPLES = """
    steps:
      - name: tfsimple1
      - name: tfsimple2
        inputs:
        - tfsimple1
        tensorMap:
          tfsimple1.outputs.OUTPUT0: INPUT0
          tfsimple1.outputs.OUTPUT1: INPUT1
    output:
      steps:
      - tfsimple2
"""


def test_example_a_tfsimples_exactly() -> None:
    update = compiled("tfsimples", TFSIMPLES)
    p = "tfsimples"
    assert engine_order(update) == [
        StepUpdate(
            sources=(PipelineTopic(p, S + "pipeline.tfsimples.inputs"),),
            sink=PipelineTopic(p, S + "model.tfsimple1.inputs"),
            input_join=JoinType.INNER,
            join_window_ms=None,
        ),
        StepUpdate(
            sources=(PipelineTopic(p, S + "model.tfsimple1.outputs"),),
            sink=PipelineTopic(p, S + "model.tfsimple2.inputs"),
            input_join=JoinType.INNER,
            tensor_map=(
                TensorMapping(p, S + "model.tfsimple1.outputs.OUTPUT0", "INPUT0"),
                TensorMapping(p, S + "model.tfsimple1.outputs.OUTPUT1", "INPUT1"),
            ),
        ),
        # error step: the namespace's shared errors topic, filtered by this pipeline's name
        StepUpdate(
            sources=(PipelineTopic(p, S + "errors.errors"),),
            sink=PipelineTopic(p, S + "pipeline.tfsimples.outputs"),
            input_join=JoinType.INNER,
        ),
        # output step: window always sent, 0 meaning "engine default"
        StepUpdate(
            sources=(PipelineTopic(p, S + "model.tfsimple2.outputs"),),
            sink=PipelineTopic(p, S + "pipeline.tfsimples.outputs"),
            input_join=JoinType.INNER,
            join_window_ms=0,
        ),
    ]


def test_example_a_message_fields() -> None:
    update = compile_pipeline(pipeline("tfsimples", TFSIMPLES), NAMER, version=7, uid="uid-1", timestamp=42)
    assert update.op is Operation.CREATE
    assert update.pipeline == "tfsimples"
    assert update.version == 7
    assert update.uid == "uid-1"
    assert update.timestamp == 42
    assert update.output_topic == S + "pipeline.tfsimples.outputs"
    assert update.error_topic == S + "errors.errors"
    assert update.allow_cycles is False
    assert update.max_step_revisits == 0
    assert update.stream == ""
    assert len(update.updates) == 4
    topics = {t.topic_name for u in update.updates for t in (*u.sources, u.sink, *u.triggers)}
    assert len(topics) == 7  # "7 topics ensured" (§4.10 A)


def test_default_uid_is_stable_per_pipeline_and_version() -> None:
    first = compile_pipeline(pipeline("tfsimples", TFSIMPLES), NAMER)
    again = compile_pipeline(pipeline("tfsimples", TFSIMPLES), NAMER)
    assert first.version == 1
    assert first.uid == again.uid == default_uid("tfsimples", 1)
    assert default_uid("tfsimples", 2) != default_uid("tfsimples", 1)
    assert default_uid("other", 1) != default_uid("tfsimples", 1)


def test_every_topic_is_namespaced() -> None:
    update = compile_pipeline(pipeline("tfsimples", TFSIMPLES), TopicNamer(prefix="pfx", namespace=""))
    names = {t.topic_name for u in update.updates for t in (*u.sources, u.sink)}
    assert all(n.startswith("pfx.default.") for n in names), names
    assert update.error_topic == "pfx.default.errors.errors"


def test_step_without_inputs_reads_the_pipeline_inputs() -> None:
    update = compiled("p", "steps:\n- name: m\n")
    step = step_for(update, S + "model.m.inputs")
    assert step.sources == (PipelineTopic("p", S + "pipeline.p.inputs"),)
    assert step.triggers == ()
    assert step.tensor_map == ()
    assert step.batch is None


def test_no_output_means_error_step_only() -> None:
    update = compiled("p", "steps:\n- name: m\n")
    assert [u.sink.topic_name for u in update.updates] == [S + "model.m.inputs", S + "pipeline.p.outputs"]
    error = update.updates[-1]
    assert error.sources == (PipelineTopic("p", S + "errors.errors"),)
    assert error.join_window_ms is None


def test_pipeline_input_references_with_tensors() -> None:
    update = compiled(
        "pipeline-inputs",
        """
        steps:
        - name: mul10
          inputs:
          - pipeline-inputs.inputs.INPUT0
          tensorMap:
            pipeline-inputs.inputs.INPUT0: INPUT
        - name: add10
          inputs:
          - pipeline-inputs
        output:
          steps:
          - mul10
          - add10
        """,
    )
    mul10 = step_for(update, S + "model.mul10.inputs")
    assert mul10.sources == (
        PipelineTopic("pipeline-inputs", S + "pipeline.pipeline-inputs.inputs", "INPUT0"),
    )
    assert mul10.tensor_map == (
        TensorMapping("pipeline-inputs", S + "pipeline.pipeline-inputs.inputs.INPUT0", "INPUT"),
    )
    add10 = step_for(update, S + "model.add10.inputs")
    assert add10.sources == (PipelineTopic("pipeline-inputs", S + "pipeline.pipeline-inputs.inputs"),)
    output = engine_order(update)[-1]
    assert output.sources == (
        PipelineTopic("pipeline-inputs", S + "model.mul10.outputs"),
        PipelineTopic("pipeline-inputs", S + "model.add10.outputs"),
    )


@pytest.mark.parametrize(
    ("ref", "topic", "tensor"),
    [
        ("a", "model.a.outputs", None),
        ("a.outputs", "model.a.outputs", None),
        ("a.outputs.T", "model.a.outputs", "T"),
        ("a.inputs", "model.a.inputs", None),
        ("a.inputs.T", "model.a.inputs", "T"),
        ("p", "pipeline.p.inputs", None),
        ("p.inputs", "pipeline.p.inputs", None),
        ("p.inputs.T", "pipeline.p.inputs", "T"),
    ],
)
def test_step_reference_forms(ref: str, topic: str, tensor: str | None) -> None:
    update = compiled("p", f"steps:\n- name: a\n- name: b\n  inputs: ['{ref}']\n  triggers: ['{ref}']\n")
    step = step_for(update, S + "model.b.inputs")
    assert step.sources == (PipelineTopic("p", S + topic, tensor),)
    assert step.triggers == (PipelineTopic("p", S + topic, tensor),)


@pytest.mark.parametrize(
    ("ref", "topic", "tensor"),
    [
        ("q", "pipeline.q.outputs", None),
        ("q.outputs", "pipeline.q.outputs", None),
        ("q.outputs.t", "pipeline.q.outputs", "t"),
        ("q.inputs", "pipeline.q.inputs", None),
        ("q.inputs.t", "pipeline.q.inputs", "t"),
        ("q.step.s", "model.s.outputs", None),
        ("q.step.s.outputs", "model.s.outputs", None),
        ("q.step.s.outputs.t", "model.s.outputs", "t"),
        ("q.step.s.inputs.t", "model.s.inputs", "t"),
    ],
)
def test_external_input_forms(ref: str, topic: str, tensor: str | None) -> None:
    update = compiled(
        "p", f"input:\n  externalInputs: ['{ref}']\n  externalTriggers: ['{ref}']\nsteps:\n- name: m\n"
    )
    input_step = step_for(update, S + "pipeline.p.inputs")
    # the records on the upstream topics carry the upstream pipeline's name in their `pipeline` header
    assert input_step.sources == (PipelineTopic("q", S + topic, tensor),)
    assert input_step.triggers == (PipelineTopic("q", S + topic, tensor),)
    assert input_step.sink == PipelineTopic("p", S + "pipeline.p.inputs")
    assert input_step.batch is None


def test_external_inputs_with_input_tensor_map_three_part_keys() -> None:
    update = compiled(
        "tfsimple-extended",
        """
        input:
          externalInputs:
            - tfsimple.outputs
          tensorMap:
            tfsimple.outputs.OUTPUT0: INPUT0
            tfsimple.outputs.OUTPUT1: INPUT1
        steps:
          - name: tfsimple2
        output:
          steps:
          - tfsimple2
        """,
    )
    input_step = step_for(update, S + "pipeline.tfsimple-extended.inputs")
    assert input_step.sources == (PipelineTopic("tfsimple", S + "pipeline.tfsimple.outputs"),)
    assert input_step.tensor_map == (
        TensorMapping("tfsimple", S + "pipeline.tfsimple.outputs.OUTPUT0", "INPUT0"),
        TensorMapping("tfsimple", S + "pipeline.tfsimple.outputs.OUTPUT1", "INPUT1"),
    )
    assert input_step.input_join is JoinType.INNER
    # the pipeline's own step then reads its inputs topic, with its own name in the header
    step = step_for(update, S + "model.tfsimple2.inputs")
    assert step.sources == (PipelineTopic("tfsimple-extended", S + "pipeline.tfsimple-extended.inputs"),)
    assert len(update.updates) == 4


def test_example_c_combined_step_five_part_keys() -> None:
    update = compiled(
        "tfsimple-combined-step",
        """
        input:
          externalInputs:
            - tfsimple-extended.step.tfsimple2.outputs.OUTPUT0
            - tfsimple-extended2.step.tfsimple2.outputs.OUTPUT0
          tensorMap:
            tfsimple-extended.step.tfsimple2.outputs.OUTPUT0: INPUT0
            tfsimple-extended2.step.tfsimple2.outputs.OUTPUT0: INPUT1
        steps:
          - name: tfsimple2
        output:
          steps:
          - tfsimple2
        """,
    )
    input_step = step_for(update, S + "pipeline.tfsimple-combined-step.inputs")
    model_out = S + "model.tfsimple2.outputs"
    assert input_step.sources == (
        PipelineTopic("tfsimple-extended", model_out, "OUTPUT0"),
        PipelineTopic("tfsimple-extended2", model_out, "OUTPUT0"),
    )
    assert input_step.tensor_map == (
        TensorMapping("tfsimple-extended", model_out + ".OUTPUT0", "INPUT0"),
        TensorMapping("tfsimple-extended2", model_out + ".OUTPUT0", "INPUT1"),
    )
    assert input_step.input_join is JoinType.INNER
    assert input_step.join_window_ms is None


def test_external_triggers() -> None:
    update = compiled(
        "tfsimple-combined-trigger",
        """
        input:
          externalInputs:
            - tfsimple-extended.outputs
          externalTriggers:
            - tfsimple-extended2.outputs
          triggersJoinType: any
        steps:
          - name: tfsimple2
        """,
    )
    input_step = step_for(update, S + "pipeline.tfsimple-combined-trigger.inputs")
    assert input_step.triggers == (
        PipelineTopic("tfsimple-extended2", S + "pipeline.tfsimple-extended2.outputs"),
    )
    assert input_step.triggers_join is JoinType.ANY


def test_step_triggers_example_b() -> None:
    update = compiled(
        "trigger-joins",
        """
        steps:
        - name: mul10
          inputs:
          - trigger-joins.inputs.INPUT
          triggers:
          - trigger-joins.inputs.ok1
          - trigger-joins.inputs.ok2
          triggersJoinType: any
        - name: add10
          inputs:
          - trigger-joins.inputs.INPUT
          triggers:
          - trigger-joins.inputs.ok3
        output:
          steps:
          - mul10
          - add10
          stepsJoin: any
        """,
    )
    inputs = S + "pipeline.trigger-joins.inputs"
    mul10 = step_for(update, S + "model.mul10.inputs")
    assert mul10.sources == (PipelineTopic("trigger-joins", inputs, "INPUT"),)
    assert mul10.triggers == (
        PipelineTopic("trigger-joins", inputs, "ok1"),
        PipelineTopic("trigger-joins", inputs, "ok2"),
    )
    assert mul10.triggers_join is JoinType.ANY
    add10 = step_for(update, S + "model.add10.inputs")
    assert add10.triggers_join is JoinType.INNER
    assert engine_order(update)[-1].input_join is JoinType.ANY


@pytest.mark.parametrize(
    ("kind", "expected"), [("inner", JoinType.INNER), ("outer", JoinType.OUTER), ("any", JoinType.ANY)]
)
def test_join_types(kind: str, expected: JoinType) -> None:
    update = compiled(
        "p",
        f"""
        input:
          externalInputs: [q, r]
          externalTriggers: [t]
          joinType: {kind}
          triggersJoinType: {kind}
        steps:
        - name: a
        - name: b
        - name: c
          inputs: [a, b]
          triggers: [a.outputs.go]
          inputsJoinType: {kind}
          triggersJoinType: {kind}
        output:
          steps: [a, c]
          stepsJoin: {kind}
        """,
    )
    c = step_for(update, S + "model.c.inputs")
    assert (c.input_join, c.triggers_join) == (expected, expected)
    inp = step_for(update, S + "pipeline.p.inputs")
    assert (inp.input_join, inp.triggers_join) == (expected, expected)
    out = [u for u in update.updates if u.sink.topic_name.endswith("p.outputs") and len(u.sources) == 2]
    assert [u.input_join for u in out] == [expected]


def test_join_type_defaults_are_inner() -> None:
    update = compiled(
        "p",
        "input:\n  externalInputs: [q, r]\nsteps:\n- name: a\n- name: b\n  inputs: [a, p]\noutput:\n  steps: [a, b]\n",
    )
    for u in update.updates:
        assert (u.input_join, u.triggers_join) == (JoinType.INNER, JoinType.INNER)


def test_batch() -> None:
    update = compiled(
        "iris-batch",
        """
        steps:
          - name: iris
            batch:
             size: 2
          - name: other
            inputs: [iris]
            batch:
              windowMs: 50
              rolling: true
          - name: plain
            batch: {}
        """,
    )
    assert step_for(update, S + "model.iris.inputs").batch == Batch(size=2, window_ms=None, rolling=False)
    assert step_for(update, S + "model.other.inputs").batch == Batch(size=None, window_ms=50, rolling=True)
    assert step_for(update, S + "model.plain.inputs").batch is None
    for u in update.updates:
        if u.sink.topic_name.startswith(S + "pipeline."):
            assert u.batch is None


def test_join_window_ms() -> None:
    update = compiled(
        "p",
        """
        input:
          externalInputs: [q]
          joinWindowMs: 300
        steps:
        - name: a
          joinWindowMs: 1500
        - name: b
        output:
          steps: [a, b]
          joinWindowMs: 2500
        """,
    )
    assert step_for(update, S + "model.a.inputs").join_window_ms == 1500
    assert step_for(update, S + "model.b.inputs").join_window_ms is None
    assert step_for(update, S + "pipeline.p.inputs").join_window_ms == 300
    output, error = _outputs(update)
    assert output.join_window_ms == 2500
    assert error.join_window_ms is None


def _outputs(update: PipelineUpdate) -> tuple[StepUpdate, StepUpdate]:
    """(output step, error step) of a pipeline that has an output."""
    sinks = [u for u in update.updates if u.sink.topic_name.endswith(".outputs")]
    errors = [u for u in sinks if u.sources[0].topic_name.endswith(".errors")]
    outputs = [u for u in sinks if u not in errors]
    assert len(errors) == 1 and len(outputs) == 1
    return outputs[0], errors[0]


def test_output_tensor_map_and_cycles_flags() -> None:
    update = compiled(
        "p",
        """
        allowCycles: true
        maxStepRevisits: 5
        steps:
        - name: a
          inputs: [p, b.outputs.back]
        - name: b
          inputs: [a]
        output:
          steps: [b.outputs.OUT]
          tensorMap:
            b.outputs.OUT: result
        """,
    )
    assert update.allow_cycles is True
    assert update.max_step_revisits == 5
    a = step_for(update, S + "model.a.inputs")
    assert a.sources == (
        PipelineTopic("p", S + "pipeline.p.inputs"),
        PipelineTopic("p", S + "model.b.outputs", "back"),
    )
    output, _ = _outputs(update)
    assert output.sources == (PipelineTopic("p", S + "model.b.outputs", "OUT"),)
    assert output.tensor_map == (TensorMapping("p", S + "model.b.outputs.OUT", "result"),)


TFSIMPLES_REORDERED = """
    output:
      steps:
      - tfsimple2
    steps:
      - name: tfsimple2
        tensorMap:
          tfsimple1.outputs.OUTPUT1: INPUT1
          tfsimple1.outputs.OUTPUT0: INPUT0
        inputs:
        - tfsimple1
      - name: tfsimple1
"""


def test_compile_does_not_depend_on_yaml_order() -> None:
    forward = compiled("tfsimples", TFSIMPLES)
    backward = compiled("tfsimples", TFSIMPLES_REORDERED)
    assert [u.sink.topic_name for u in backward.updates][:2] == [
        S + "model.tfsimple2.inputs",
        S + "model.tfsimple1.inputs",
    ]
    assert engine_order(forward) == engine_order(backward)
    assert forward.uid == backward.uid
