"""Case BR-24: every worker builds the same plan from the same pipelines, whatever order their files
list steps, triggers, tensorMap entries or pipelines in.

Workers share a consumer group, so a partition's join state, written by one worker, is finished by
another after a rebalance. That state is keyed by the pipeline's uid and numbers its slots in plan
order: both must be order-independent, or a moved partition's joins never complete.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dataflow.config import load_settings
from dataflow.control.yaml_source import router_from_paths
from dataflow.plan import Router

HEADER = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\n"

STATEFUL_STEPS = {
    "add10": "  - name: add10\n    inputs: [stateful.inputs.INPUT]\n",
    "mul10": "  - name: mul10\n    inputs: [stateful.inputs.INPUT]\n",
    "echo": "  - name: echo\n    inputs: [add10.outputs.OUTPUT, mul10.outputs.OUTPUT]\n"
    "    tensorMap: {{{maps}}}\n    triggers: [{triggers}]\n",
}
FANIN_STEPS = {
    "sumdiff-a": "  - name: sumdiff-a\n",
    "sumdiff-b": "  - name: sumdiff-b\n",
    "sumdiff-c": "  - name: sumdiff-c\n    inputs: [sumdiff-a.outputs.OUTPUT0, sumdiff-b.outputs.OUTPUT1]\n"
    "    tensorMap: {{{maps}}}\n",
}


def stateful(order: tuple[str, ...], flip: bool) -> str:
    maps = ["add10.outputs.OUTPUT: X", "mul10.outputs.OUTPUT: Y"]
    triggers = ["stateful.inputs.go", "stateful.inputs.ok"]
    if flip:
        maps.reverse()
        triggers.reverse()
    steps = "".join(STATEFUL_STEPS[name] for name in order)
    steps = steps.format(maps=", ".join(maps), triggers=", ".join(triggers))
    return f"{HEADER}metadata: {{name: stateful}}\nspec:\n  steps:\n{steps}  output:\n    steps: [echo]\n"


def fanin(order: tuple[str, ...], flip: bool) -> str:
    maps = ["sumdiff-a.outputs.OUTPUT0: INPUT0", "sumdiff-b.outputs.OUTPUT1: INPUT1"]
    if flip:
        maps.reverse()
    steps = "".join(FANIN_STEPS[name] for name in order).format(maps=", ".join(maps))
    return f"{HEADER}metadata: {{name: fanin}}\nspec:\n  steps:\n{steps}  output:\n    steps: [sumdiff-c]\n"


def build(folder: Path, stateful_text: str, fanin_text: str, *, one_file: bool) -> Router:
    folder.mkdir()
    if one_file:
        (folder / "all.yaml").write_text(stateful_text + "---\n" + fanin_text)
    else:  # the other pipeline first, by file name
        (folder / "b.yaml").write_text(stateful_text)
        (folder / "a.yaml").write_text(fanin_text)
    return router_from_paths([folder], load_settings())


def layouts() -> list[tuple[tuple[str, ...], tuple[str, ...], bool, bool]]:
    return [
        (s, f, flip, one)
        for s, f in zip(
            itertools.permutations(STATEFUL_STEPS), itertools.permutations(FANIN_STEPS), strict=True
        )
        for flip, one in ((False, True), (True, False))
    ]


@pytest.mark.usefixtures("clean_settings_env")
def test_every_order_of_the_same_pipelines_builds_the_same_plan(tmp_path: Path) -> None:
    reference = build(
        tmp_path / "reference", stateful(tuple(STATEFUL_STEPS), False), fanin(tuple(FANIN_STEPS), False),
        one_file=True,
    )  # fmt: skip
    topics = sorted(reference.source_topics)
    for n, (s_order, f_order, flip, one_file) in enumerate(layouts()):
        other = build(
            tmp_path / f"layout{n}", stateful(s_order, flip), fanin(f_order, flip), one_file=one_file
        )
        assert list(other.pipelines) == list(reference.pipelines), (s_order, f_order, flip)
        for uid, plan in reference.pipelines.items():
            assert other.pipelines[uid].steps == plan.steps, (s_order, f_order, flip)
        for topic in topics:
            assert other.routes(topic) == reference.routes(topic), topic


@pytest.mark.usefixtures("clean_settings_env")
def test_orders_that_mean_something_still_make_another_version(tmp_path: Path) -> None:
    """A step's inputs are merged in their order: swapping them is a different pipeline."""
    text = fanin(tuple(FANIN_STEPS), False)
    swapped = text.replace(
        "[sumdiff-a.outputs.OUTPUT0, sumdiff-b.outputs.OUTPUT1]",
        "[sumdiff-b.outputs.OUTPUT1, sumdiff-a.outputs.OUTPUT0]",
    )
    assert swapped != text
    one = build(tmp_path / "one", stateful(tuple(STATEFUL_STEPS), False), text, one_file=True)
    two = build(tmp_path / "two", stateful(tuple(STATEFUL_STEPS), False), swapped, one_file=True)
    assert set(one.pipelines) != set(two.pipelines)
