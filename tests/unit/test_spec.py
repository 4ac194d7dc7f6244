"""Unit tests of Pipeline loading and validation (spec §3.2) and of ``dataflow validate``.

Every problem must name ``<file>:<line>: <field path>`` so a user can fix a folder in one pass; these
tests pin file, line and path for each kind of problem. YAML is written inline (line numbers are
counted from the first line of each text).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataflow.cli.main import main
from dataflow.cli.validate import validate
from dataflow.errors import SpecError
from dataflow.spec import LoadedPipeline, Pipeline, load_paths, load_text
from dataflow.spec.models import JoinKind


def pipeline_yaml(name: str, body: str) -> str:
    """A Pipeline resource whose ``spec`` is ``body`` (any common indent); ``body`` starts on line 6."""
    head = f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n"
    return head + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


def problems_of(text: str, source: str = "p.yaml") -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(text, source)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def only_problem(text: str, source: str = "p.yaml") -> str:
    problems = problems_of(text, source)
    assert len(problems) == 1, problems
    return problems[0]


def load_one(text: str) -> Pipeline:
    loaded = load_text(text, "p.yaml")
    assert len(loaded) == 1
    assert loaded[0].source == "p.yaml"
    return loaded[0].pipeline


# --------------------------------------------------------------------------------------------- syntax


def test_not_yaml_names_file_and_line() -> None:
    problem = only_problem("apiVersion: v1\nkind: [Pipeline\n", "bad.yaml")
    assert problem.startswith("bad.yaml:3: not valid YAML: ")


def test_not_yaml_tab_indentation() -> None:
    problem = only_problem("apiVersion: v1\n\tkind: Pipeline\n", "bad.yaml")
    assert problem.startswith("bad.yaml:2: not valid YAML: ")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "---\n---\n", "---\n# c\n...\n"])
def test_empty_file(text: str) -> None:
    problem = only_problem(text, "empty.yaml")
    assert problem.startswith("empty.yaml: ")
    assert "no pipeline" in problem


@pytest.mark.parametrize(("text", "type_name"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_document_that_is_not_a_mapping(text: str, type_name: str) -> None:
    problem = only_problem(text)
    assert problem == f"p.yaml:1: expected a Pipeline mapping, got {type_name}"


# --------------------------------------------------------------------------------------------- schema


def test_unknown_field_on_a_step_points_at_the_key() -> None:
    # sample error-bad-spec.yaml: `input:` instead of `inputs:` must not become a default-input step
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
          - name: b
            input:
            - a
        """,
    )
    assert only_problem(text) == "p.yaml:9: spec.steps[1].input: unknown field"


def test_a_wrong_value_is_quoted_in_its_problem() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
            inputsJoinType: sideways
            batch: {size: many}
        """,
    )
    problems = problems_of(text)
    assert (
        "p.yaml:8: spec.steps[0].inputsJoinType: Input should be 'inner', 'outer' or 'any' (got 'sideways')"
        in problems
    )
    assert any("spec.steps[0].batch.size" in p and "(got 'many')" in p for p in problems), problems


def test_unknown_field_at_top_and_in_spec() -> None:
    text = pipeline_yaml(
        "p",
        """
          stepz: []
          steps:
          - name: a
        """,
    ).replace("kind: Pipeline\n", "kind: Pipeline\nextra: 1\n")
    problems = problems_of(text)
    assert "p.yaml:3: extra: unknown field" in problems
    assert "p.yaml:7: spec.stepz: unknown field" in problems
    assert len(problems) == 2


def test_missing_steps() -> None:
    text = pipeline_yaml("p", "  output:\n    steps: [a]\n")
    assert only_problem(text) == "p.yaml:5: spec.steps: required field is missing"


def test_missing_step_name() -> None:
    text = pipeline_yaml("p", "  steps:\n  - inputs: [x]\n")
    assert only_problem(text) == "p.yaml:7: spec.steps[0].name: required field is missing"


def test_missing_metadata_name_and_spec() -> None:
    text = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  namespace: x\n"
    problems = problems_of(text)
    assert "p.yaml:3: metadata.name: required field is missing" in problems
    assert "p.yaml:1: spec: required field is missing" in problems
    assert len(problems) == 2


def test_wrong_api_version() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n").replace("v1alpha1", "v1")
    problem = only_problem(text)
    assert problem.startswith("p.yaml:1: apiVersion: ")
    assert "'mlops.seldon.io/v1'" in problem


def test_wrong_kind() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n").replace("kind: Pipeline", "kind: Model")
    problem = only_problem(text)
    assert problem.startswith("p.yaml:2: kind: ")
    assert "'Model'" in problem


def test_missing_api_version_and_kind() -> None:
    text = "metadata:\n  name: p\nspec:\n  steps:\n  - name: a\n"
    problems = problems_of(text)
    assert sorted(problems) == [
        "p.yaml:1: apiVersion: required field is missing",
        "p.yaml:1: kind: required field is missing",
    ]


@pytest.mark.parametrize(
    ("field", "value", "message_part"),
    [
        ("inputsJoinType", "sideways", "'inner', 'outer' or 'any'"),
        ("joinWindowMs", "-1", "greater than or equal to 0"),
        ("name", "5", "valid string"),
    ],
)
def test_wrong_value_types(field: str, value: str, message_part: str) -> None:
    name_line = "" if field == "name" else "  - name: a\n"
    item = f"  - {field}: {value}\n" if field == "name" else f"    {field}: {value}\n"
    text = pipeline_yaml("p", "  steps:\n" + name_line + item)
    problem = only_problem(text)
    line = 7 if field == "name" else 8
    assert problem.startswith(f"p.yaml:{line}: spec.steps[0].{field}: ")
    assert message_part in problem


# -------------------------------------------------------------------------------------- references


def test_unknown_step_in_inputs() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
          - name: b
            inputs:
            - a
            - nope.outputs.X
        """,
    )
    assert only_problem(text) == "p.yaml:11: spec.steps[1].inputs[1]: 'nope.outputs.X': unknown step 'nope'"


def test_unknown_step_in_triggers() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
            triggers:
            - ghost
        """,
    )
    assert only_problem(text) == "p.yaml:9: spec.steps[0].triggers[0]: 'ghost': unknown step 'ghost'"


def test_unknown_step_in_output_steps() -> None:
    # sample error-empty-input.yaml also names `iris`, a step that does not exist
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
          output:
            steps:
            - a
            - iris
        """,
    )
    assert only_problem(text) == "p.yaml:11: spec.output.steps[1]: 'iris': unknown step 'iris'"


def test_unknown_step_in_step_tensor_map_points_at_its_own_key() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
          - name: b
            inputs: [a]
            tensorMap:
              a.outputs.OUTPUT0: INPUT0
              zz.outputs.OUTPUT1: INPUT1
        """,
    )
    assert (
        only_problem(text)
        == "p.yaml:12: spec.steps[1].tensorMap.zz.outputs.OUTPUT1: 'zz.outputs.OUTPUT1': unknown step 'zz'"
    )


def test_unknown_step_in_output_tensor_map() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
          output:
            steps: [a]
            tensorMap:
              a.outputs.X: Y
              b.outputs.X: Z
        """,
    )
    assert (
        only_problem(text) == "p.yaml:12: spec.output.tensorMap.b.outputs.X: 'b.outputs.X': unknown step 'b'"
    )


def test_tensor_map_key_must_name_a_tensor() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
            tensorMap:
              a.outputs.X: Y
              a.outputs: Z
        """,
    )
    problem = only_problem(text)
    assert problem.startswith("p.yaml:10: spec.steps[0].tensorMap.a.outputs: ")
    assert "must name a tensor" in problem


def test_tensor_map_key_with_too_many_segments() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n    tensorMap:\n      a.outputs.x.y: z\n")
    problem = only_problem(text)
    assert problem.startswith("p.yaml:9: spec.steps[0].tensorMap.a.outputs.x.y: ")
    assert "at most 3 segments" in problem


def test_tensor_map_empty_new_name() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
            tensorMap:
              a.outputs.X: ''
        """,
    )
    problem = only_problem(text)
    assert problem.startswith("p.yaml:9: spec.steps[0].tensorMap.a.outputs.X: ")
    assert "non-empty" in problem


def test_step_named_like_the_pipeline() -> None:
    # sample error-step-name.yaml
    text = pipeline_yaml("iris", "  steps:\n  - name: iris\n  output:\n    steps:\n    - iris\n")
    assert only_problem(text) == "p.yaml:7: spec.steps[0].name: step 'iris' has the same name as the pipeline"


@pytest.mark.parametrize("field", ["inputs", "triggers"])
def test_empty_list(field: str) -> None:
    text = pipeline_yaml("p", f"  steps:\n  - name: a\n  - name: b\n    {field}: []\n")
    problem = only_problem(text)
    assert problem.startswith(f"p.yaml:9: spec.steps[1].{field}: ")
    assert "must not be empty" in problem


@pytest.mark.parametrize("field", ["inputs", "triggers"])
def test_list_item_with_nothing_after_the_dash(field: str) -> None:
    # samples error-empty-input.yaml / error-empty-trigger.yaml: `-` alone is a null item
    text = pipeline_yaml("p", f"  steps:\n  - name: a\n  - name: b\n    {field}:\n      -\n")
    problem = only_problem(text)
    assert problem.startswith(f"p.yaml:10: spec.steps[1].{field}[0]: ")
    assert "empty value" in problem


@pytest.mark.parametrize("text_item", ["''", "'  '"])
def test_blank_reference(text_item: str) -> None:
    text = pipeline_yaml("p", f"  steps:\n  - name: a\n  - name: b\n    inputs:\n    - {text_item}\n")
    assert only_problem(text) == "p.yaml:10: spec.steps[1].inputs[0]: empty reference"


def test_empty_output_steps() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n  output:\n    steps: []\n")
    problem = only_problem(text)
    assert problem.startswith("p.yaml:9: spec.output.steps: ")


def test_no_steps() -> None:
    text = pipeline_yaml("p", "  steps: []\n")
    assert only_problem(text) == "p.yaml:6: spec.steps: a pipeline needs at least one step"


@pytest.mark.parametrize(
    ("ref", "message_part"),
    [
        ("a.foo", "expected 'inputs' or 'outputs'"),
        ("a.step", "expected 'inputs' or 'outputs'"),
        ("a..b", "empty segment"),
        ("a.outputs.", "empty segment"),
        ("a.", "empty segment"),
        (".a", "empty segment"),
        ("a.inputs..X", "empty segment"),
        ("a.outputs.x.y", "at most 3 segments"),  # the scheduler refuses 4+ segments
        ("p.inputs.x.y", "at most 3 segments"),
        ("p.outputs", "pipeline's inputs, not its outputs"),
        ("p.outputs.X", "pipeline's inputs, not its outputs"),
    ],
)
def test_bad_reference_syntax(ref: str, message_part: str) -> None:
    text = pipeline_yaml("p", f"  steps:\n  - name: a\n  - name: b\n    inputs:\n    - '{ref}'\n")
    problem = only_problem(text)
    assert problem.startswith(f"p.yaml:10: spec.steps[1].inputs[0]: '{ref}': ")
    assert message_part in problem


@pytest.mark.parametrize(
    "ref", ["a", "a.outputs", "a.outputs.X", "a.inputs", "a.inputs.X", "p", "p.inputs.X"]
)
def test_good_reference_forms(ref: str) -> None:
    text = pipeline_yaml("p", f"  steps:\n  - name: a\n  - name: b\n    inputs:\n    - '{ref}'\n")
    assert load_one(text).spec.steps[1].inputs == [ref]


# ------------------------------------------------------------------------------------------- cycles


CYCLE = """
  steps:
  - name: a
    inputs: [c]
  - name: b
    inputs: [a.outputs.X]
  - name: c
    inputs: [b]
"""


def test_cycle_without_allow_cycles_shows_the_cycle_in_data_flow_order() -> None:
    problem = only_problem(pipeline_yaml("p", CYCLE))
    assert problem.startswith("p.yaml:6: spec.steps: ")
    assert "cycle a -> b -> c -> a" in problem
    assert "allowCycles" in problem


def test_cycle_is_accepted_with_allow_cycles() -> None:
    pipeline = load_one(pipeline_yaml("p", "  allowCycles: true\n  maxStepRevisits: 3\n" + CYCLE))
    assert pipeline.spec.allow_cycles is True
    assert pipeline.spec.max_step_revisits == 3


def test_self_loop_is_a_cycle() -> None:
    problem = only_problem(pipeline_yaml("p", "  steps:\n  - name: a\n    inputs: [a.outputs.X]\n"))
    assert "cycle a -> a" in problem


def test_trigger_edges_count_for_cycles() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n    triggers: [b]\n  - name: b\n    inputs: [a]\n")
    assert "cycle a -> b -> a" in only_problem(text)


def test_diamond_is_not_a_cycle() -> None:
    text = pipeline_yaml(
        "p",
        """
          steps:
          - name: a
          - name: b
            inputs: [a]
          - name: c
            inputs: [a]
          - name: d
            inputs: [b, c]
        """,
    )
    assert [s.name for s in load_one(text).spec.steps] == ["a", "b", "c", "d"]


# -------------------------------------------------------------------------------------------- names


def test_duplicate_step_names() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n  - name: b\n  - name: a\n")
    assert only_problem(text) == "p.yaml:9: spec.steps[2].name: duplicate step name 'a'"


def test_names_with_dots_are_refused() -> None:
    text = pipeline_yaml("p.v2", "  steps:\n  - name: a.b\n")
    problems = problems_of(text)
    assert len(problems) == 2
    assert problems[0].startswith("p.yaml:4: metadata.name: invalid name 'p.v2'")
    assert problems[1].startswith("p.yaml:7: spec.steps[0].name: invalid name 'a.b'")
    assert all("no dots" in p for p in problems)


@pytest.mark.parametrize("name", ["-a", "a-", "a b", "a/b", "_a"])
def test_other_bad_names(name: str) -> None:
    problem = only_problem(pipeline_yaml("p", f"  steps:\n  - name: '{name}'\n"))
    assert problem.startswith("p.yaml:7: spec.steps[0].name: invalid name")


# ---------------------------------------------------------------------------------- external inputs


@pytest.mark.parametrize(
    ("ref", "message_part"),
    [
        ("q.step", "'step' must be followed by a step name"),
        ("q.step.s.outputs.t.u", "at most 5 segments"),
        ("q.outputs.t.u", "at most 3 segments"),
        ("q.foo", "expected 'inputs' or 'outputs'"),
        ("q.step.s.foo", "expected 'inputs' or 'outputs'"),
        ("q..outputs", "empty segment"),
        ("p", "cannot take its own topics"),
        ("p.step.a.outputs", "cannot take its own topics"),
    ],
)
def test_bad_external_input(ref: str, message_part: str) -> None:
    text = pipeline_yaml("p", f"  input:\n    externalInputs:\n    - '{ref}'\n  steps:\n  - name: a\n")
    problem = only_problem(text)
    assert problem.startswith(f"p.yaml:8: spec.input.externalInputs[0]: '{ref}': ")
    assert message_part in problem


def test_bad_external_trigger() -> None:
    text = pipeline_yaml(
        "p",
        """
          input:
            externalInputs: [q]
            externalTriggers:
            - r.step
          steps:
          - name: a
        """,
    )
    problem = only_problem(text)
    assert problem.startswith("p.yaml:9: spec.input.externalTriggers[0]: 'r.step': ")


def test_empty_external_inputs() -> None:
    text = pipeline_yaml("p", "  input:\n    externalInputs: []\n  steps:\n  - name: a\n")
    assert only_problem(text).startswith("p.yaml:7: spec.input.externalInputs: ")


def test_input_without_external_inputs() -> None:
    text = pipeline_yaml("p", "  input:\n    joinType: any\n  steps:\n  - name: a\n")
    assert only_problem(text).startswith("p.yaml:6: spec.input.externalInputs: ")


def test_bad_input_tensor_map_key_points_at_its_own_key() -> None:
    text = pipeline_yaml(
        "p",
        """
          input:
            externalInputs: [q]
            tensorMap:
              q.outputs.A: B
              q.step.s.outputs: C
          steps:
          - name: a
        """,
    )
    problem = only_problem(text)
    assert problem.startswith("p.yaml:10: spec.input.tensorMap.q.step.s.outputs: ")
    assert "must name a tensor" in problem


# ---------------------------------------------------------------------------------- valid pipelines


def test_chain_with_tensor_map() -> None:
    pipeline = load_one(
        pipeline_yaml(
            "tfsimples",
            """
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
            """,
        )
    )
    assert pipeline.name == "tfsimples"
    first, second = pipeline.spec.steps
    assert first.inputs is None
    assert second.inputs == ["tfsimple1"]
    assert second.tensor_map == {"tfsimple1.outputs.OUTPUT0": "INPUT0", "tfsimple1.outputs.OUTPUT1": "INPUT1"}
    assert pipeline.spec.output is not None
    assert pipeline.spec.output.steps == ["tfsimple2"]
    assert pipeline.spec.output.steps_join is JoinKind.INNER
    assert pipeline.spec.input is None
    assert pipeline.spec.allow_cycles is False


def test_conditional_with_steps_join_any() -> None:
    pipeline = load_one(
        pipeline_yaml(
            "tfsimple-conditional",
            """
              steps:
              - name: conditional
              - name: mul10
                inputs:
                - conditional.outputs.OUTPUT0
                tensorMap:
                  conditional.outputs.OUTPUT0: INPUT
              - name: add10
                inputs:
                - conditional.outputs.OUTPUT1
                tensorMap:
                  conditional.outputs.OUTPUT1: INPUT
              output:
                steps:
                - mul10
                - add10
                stepsJoin: any
            """,
        )
    )
    assert pipeline.spec.output is not None
    assert pipeline.spec.output.steps_join is JoinKind.ANY


def test_pipeline_inputs_references() -> None:
    pipeline = load_one(
        pipeline_yaml(
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
                - pipeline-inputs.inputs.INPUT1
                tensorMap:
                  pipeline-inputs.inputs.INPUT1: INPUT
              output:
                steps:
                - mul10
                - add10
            """,
        )
    )
    assert [s.inputs for s in pipeline.spec.steps] == [
        ["pipeline-inputs.inputs.INPUT0"],
        ["pipeline-inputs.inputs.INPUT1"],
    ]


def test_trigger_pipeline() -> None:
    pipeline = load_one(
        pipeline_yaml(
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
    )
    mul10, add10 = pipeline.spec.steps
    assert mul10.triggers == ["trigger-joins.inputs.ok1", "trigger-joins.inputs.ok2"]
    assert mul10.triggers_join_type is JoinKind.ANY
    assert add10.triggers_join_type is JoinKind.INNER


def test_external_pipeline_inputs() -> None:
    pipeline = load_one(
        pipeline_yaml(
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
    )
    assert pipeline.spec.input is not None
    assert pipeline.spec.input.external_inputs == ["tfsimple.outputs"]
    assert pipeline.spec.input.join_type is JoinKind.INNER


def test_external_step_inputs_and_triggers() -> None:
    pipeline = load_one(
        pipeline_yaml(
            "tfsimple-combined-step",
            """
              input:
                externalInputs:
                  - tfsimple-extended.step.tfsimple2.outputs.OUTPUT0
                  - tfsimple-extended2.step.tfsimple2.outputs.OUTPUT0
                externalTriggers:
                  - tfsimple-extended3
                  - other.step.m
                joinType: outer
                joinWindowMs: 500
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
    )
    assert pipeline.spec.input is not None
    assert pipeline.spec.input.join_type is JoinKind.OUTER
    assert pipeline.spec.input.join_window_ms == 500
    assert pipeline.spec.input.external_triggers == ["tfsimple-extended3", "other.step.m"]


def test_batch() -> None:
    pipeline = load_one(
        pipeline_yaml(
            "iris-batch",
            """
              steps:
                - name: iris
                  batch:
                   size: 2
                   windowMs: 100
              output:
                steps:
                - iris
            """,
        )
    )
    batch = pipeline.spec.steps[0].batch
    assert batch is not None
    assert (batch.size, batch.window_ms, batch.rolling) == (2, 100, False)


def test_kubernetes_extras_are_accepted() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n  dataflow:\n    cleanTopicsOnDelete: true\n")
    text = text.replace("  name: p\n", "  name: p\n  namespace: seldon-mesh\n  labels: {team: x}\n")
    text += "status:\n  conditions: []\n"
    pipeline = load_one(text)
    assert pipeline.metadata.namespace == "seldon-mesh"
    assert pipeline.spec.dataflow is not None
    assert pipeline.spec.dataflow.clean_topics_on_delete is True


def test_step_without_inputs_and_empty_inputs_key() -> None:
    # `inputs:` with nothing after it is null, i.e. omitted: the step reads the pipeline inputs
    pipeline = load_one(pipeline_yaml("p", "  steps:\n  - name: a\n    inputs:\n"))
    assert pipeline.spec.steps[0].inputs is None


# ------------------------------------------------------------------------------------ multi-document


def test_multi_document_yaml() -> None:
    text = (
        pipeline_yaml("p", "  steps:\n  - name: a\n")
        + "---\n"
        + pipeline_yaml("q", "  steps:\n  - name: b\n    inputs: [q]\n")
    )
    loaded = load_text(text, "both.yaml")
    assert [(lp.pipeline.name, lp.source) for lp in loaded] == [("p", "both.yaml#1"), ("q", "both.yaml#2")]
    assert [lp.line for lp in loaded] == [4, 12]


def test_blank_documents_around_a_pipeline_are_ignored() -> None:
    # kubectl-style files often start or end with `---`, or double it
    text = "---\n" + pipeline_yaml("p", "  steps:\n  - name: a\n") + "---\n---\n"
    loaded = load_text(text, "p.yaml")
    assert [(lp.pipeline.name, lp.source, lp.line) for lp in loaded] == [("p", "p.yaml", 5)]


def test_null_document_is_not_a_pipeline() -> None:
    text = pipeline_yaml("p", "  steps:\n  - name: a\n") + "--- ~\n"
    assert only_problem(text) == "p.yaml:8: expected a Pipeline mapping, got NoneType"


def test_multi_document_problem_lines_count_from_the_file_start() -> None:
    text = (
        pipeline_yaml("p", "  steps:\n  - name: a\n")
        + "---\n"
        + pipeline_yaml("q", "  steps:\n  - name: q\n")
    )
    assert only_problem(text, "both.yaml") == (
        "both.yaml:15: spec.steps[0].name: step 'q' has the same name as the pipeline"
    )


def test_all_problems_of_a_file_are_reported() -> None:
    text = (
        pipeline_yaml("p", "  steps:\n  - name: a\n    inputs: [x]\n  - name: a\n")
        + "---\n"
        + pipeline_yaml("q", "  steps:\n  - name: b\n    input: [q]\n")
    )
    assert problems_of(text, "f.yaml") == [
        "f.yaml:9: spec.steps[1].name: duplicate step name 'a'",
        "f.yaml:8: spec.steps[0].inputs[0]: 'x': unknown step 'x'",
        "f.yaml:18: spec.steps[0].input: unknown field",
    ]


# ------------------------------------------------------------------------------------------- folders


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_duplicate_pipeline_names_across_two_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline_yaml("same", "  steps:\n  - name: m\n"))
    write(tmp_path / "b.yaml", pipeline_yaml("same", "  steps:\n  - name: n\n"))
    with pytest.raises(SpecError) as info:
        load_paths([tmp_path])
    assert info.value.problems == [
        f"{tmp_path / 'b.yaml'}:4: metadata.name: pipeline 'same' is also defined at {tmp_path / 'a.yaml'}:4"
    ]


def test_duplicate_pipeline_names_in_one_file(tmp_path: Path) -> None:
    doc = pipeline_yaml("same", "  steps:\n  - name: m\n")
    path = write(tmp_path / "a.yaml", doc + "---\n" + doc)
    with pytest.raises(SpecError) as info:
        load_paths([path])
    assert info.value.problems == [f"{path}:12: metadata.name: pipeline 'same' is also defined at {path}:4"]


def test_folder_reports_every_problem_in_sorted_file_order(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", pipeline_yaml("c", "  steps:\n  - name: c\n"))
    write(tmp_path / "a.yaml", "key: [unclosed\n")
    write(tmp_path / "ok.yml", pipeline_yaml("fine", "  steps:\n  - name: m\n"))
    write(tmp_path / "sub" / "d.yaml", pipeline_yaml("d", "  steps:\n  - name: m\n    inputs: [zz]\n"))
    write(tmp_path / "b.yaml", "")
    write(tmp_path / "notes.txt", "not a pipeline")
    with pytest.raises(SpecError) as info:
        load_paths([tmp_path])
    problems = info.value.problems
    assert [p.split(":", 1)[0] for p in problems] == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yaml"),
        str(tmp_path / "c.yaml"),
        str(tmp_path / "sub" / "d.yaml"),
    ]
    assert problems[0].startswith(f"{tmp_path / 'a.yaml'}:2: not valid YAML")
    assert (
        problems[2]
        == f"{tmp_path / 'c.yaml'}:7: spec.steps[0].name: step 'c' has the same name as the pipeline"
    )
    assert problems[3] == f"{tmp_path / 'sub' / 'd.yaml'}:8: spec.steps[0].inputs[0]: 'zz': unknown step 'zz'"


def test_folder_of_valid_pipelines(tmp_path: Path) -> None:
    write(tmp_path / "z.yaml", pipeline_yaml("z", "  steps:\n  - name: m\n"))
    write(tmp_path / "a.yml", pipeline_yaml("a", "  steps:\n  - name: m\n"))
    loaded = load_paths([tmp_path])
    assert all(isinstance(lp, LoadedPipeline) for lp in loaded)
    assert [lp.pipeline.name for lp in loaded] == ["a", "z"]
    assert loaded[0].source == str(tmp_path / "a.yml")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_paths([tmp_path / "nope.yaml"])
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file or folder"]


# ---------------------------------------------------------------------------------------------- CLI

VALID = pipeline_yaml(
    "tfsimples",
    """
      steps:
        - name: tfsimple1
        - name: tfsimple2
          inputs:
          - tfsimple1
          tensorMap:
            tfsimple1.outputs.OUTPUT0: INPUT0
      output:
        steps:
        - tfsimple2
    """,
)


@pytest.mark.usefixtures("clean_settings_env")
def test_cli_validate_valid_folder_exits_zero(tmp_path: Path) -> None:
    write(tmp_path / "tfsimples.yaml", VALID)
    result = CliRunner().invoke(validate, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: tfsimples (2 model steps)\n"
    assert result.stderr == ""


@pytest.mark.usefixtures("clean_settings_env")
def test_cli_validate_invalid_prints_one_line_per_problem(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline_yaml("a", "  steps:\n  - name: a\n"))
    write(tmp_path / "b.yaml", pipeline_yaml("b", "  steps:\n  - name: m\n    input: [b]\n"))
    result = CliRunner().invoke(validate, [str(tmp_path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'a.yaml'}:7: spec.steps[0].name: step 'a' has the same name as the pipeline",
        f"{tmp_path / 'b.yaml'}:8: spec.steps[0].input: unknown field",
    ]
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.mark.usefixtures("clean_settings_env")
def test_cli_main_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.yaml", VALID)
    main(["validate", str(good)])  # returns normally: exit status 0
    assert capsys.readouterr().out == "ok: tfsimples (2 model steps)\n"

    bad = write(tmp_path / "bad.yaml", "apiVersion: [\n")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(bad)])
    assert info.value.code == 1
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith(f"{bad}:2: not valid YAML")
    assert "Traceback" not in captured.err


@pytest.mark.usefixtures("clean_settings_env")
def test_cli_validate_missing_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(validate, [str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr == f"{tmp_path / 'nope'}: no such file or folder\n"


@pytest.mark.usefixtures("clean_settings_env")
def test_cli_validate_empty_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(validate, [str(tmp_path)])
    assert result.exit_code == 1
    assert "no pipeline files found" in result.stderr


@pytest.mark.usefixtures("clean_settings_env")
def test_cli_validate_bad_setting_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SELDON_KAFKA_PARTITIONS_DEFAULT", "lots")
    good = write(tmp_path / "good.yaml", VALID)
    with pytest.raises(SystemExit) as info:
        main(["validate", str(good)])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: setting SELDON_KAFKA_PARTITIONS_DEFAULT: ")
    assert len(err.splitlines()) == 1


def test_hidden_folders_are_skipped(tmp_path) -> None:
    """A ConfigMap volume's ``..<timestamp>/`` copy must not define every pipeline twice."""
    from dataflow.spec.load import load_paths

    text = (
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
        "spec:\n  steps:\n    - name: m\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    hidden = tmp_path / "..2026_12_03_10_00_00.123"
    hidden.mkdir()
    (hidden / "p.yaml").write_text(text)
    (tmp_path / ".backup.yaml").write_text("not: [valid")
    assert [lp.pipeline.name for lp in load_paths([tmp_path])] == ["p"]


@pytest.mark.parametrize("field", ["size", "windowMs"])
def test_integers_beyond_64_bits_are_a_problem_of_the_file(field: str) -> None:
    text = pipeline_yaml(
        "big", f"  steps:\n    - name: m\n      batch: {{{field}: 99999999999999999999999}}\n"
    )
    assert f"spec.steps[0].batch.{field}: Input should be less than or equal to" in only_problem(text)
