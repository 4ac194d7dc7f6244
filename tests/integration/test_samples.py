"""The reference's sample pipelines (rewritten in pipelines/), all in one worker, answering as spec §7.3 says.

One worker runs every pipeline in ``pipelines/`` at once, so this also checks that pipelines sharing
model topics do not see each other's records (the ``pipeline`` header filter).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings, load_settings
from dataflow.tensors import request_from_json
from dataflow.testing.gateway import ModelGateway, running_models
from dataflow.testing.worker import WorkerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODELS = [
    "tfsimple1", "tfsimple2", "tfsimple3", "conditional", "mul10", "add10",
    "join_node", "id1_node", "id2_node", "outlier-error",
]  # fmt: skip
ONE_TO_16 = list(range(1, 17))
EVENS = [2 * i for i in ONE_TO_16]


@pytest.fixture(scope="module")
def sample_env(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("samples")
    return {
        "SELDON_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SELDON_POD_NAMESPACE": f"samples{os.getpid()}",
        "DATAFLOW_DATA_DIR": str(state / "state"),
        # short enough that an outer/any join does not hold the suite up, long enough for slow CI
        "SELDON_KAFKA_JOIN_WINDOW_MILLIS": "20000",
    }


@pytest.fixture(scope="module")
def sample_settings(sample_env: dict[str, str]) -> Iterator[Settings]:
    mp = pytest.MonkeyPatch()
    for k, v in sample_env.items():
        mp.setenv(k, v)
    yield load_settings()
    mp.undo()


@pytest.fixture(scope="module")
def sample_worker(
    sample_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("samples-log") / "worker.log"
    with WorkerProcess([ROOT / "pipelines"], sample_env, log) as proc:
        proc.wait_ready(timeout=120)
        yield proc


@pytest.fixture(scope="module")
async def gateway(sample_settings: Settings, sample_worker: WorkerProcess) -> AsyncIterator[ModelGateway]:
    async with running_models(sample_settings, MODELS, timeout=60) as gw:
        yield gw


def tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def ints(name: str, values: list[int]) -> dict[str, Any]:
    return tensor(name, "INT32", [1, len(values)], values)


def fp32(name: str, values: list[float]) -> dict[str, Any]:
    return tensor(name, "FP32", [len(values)], values)


async def outputs(settings: Settings, pipeline: str, *inputs: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    result = await client.infer(settings, pipeline, request_from_json({"inputs": list(inputs)}), timeout=30)
    return [(o["name"], o["data"]) for o in result.to_json()["outputs"]]


async def test_tfsimple(gateway: ModelGateway, sample_settings: Settings) -> None:
    out = await outputs(sample_settings, "tfsimple", ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16))
    assert out == [("OUTPUT0", EVENS), ("OUTPUT1", [0] * 16)]


async def test_tfsimples(gateway: ModelGateway, sample_settings: Settings) -> None:
    out = await outputs(sample_settings, "tfsimples", ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16))
    assert out == [("OUTPUT0", EVENS), ("OUTPUT1", EVENS)]


async def test_tfsimples_input_joins_a_step_input_with_a_step_output(
    gateway: ModelGateway, sample_settings: Settings
) -> None:
    out = await outputs(
        sample_settings, "tfsimples-input", ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16)
    )
    assert out == [("OUTPUT0", ONE_TO_16), ("OUTPUT1", ONE_TO_16)]
    # BR-04: the joined request mixed typed (the step input) and raw (the model output) tensors;
    # tfsimple2 rejects mixed encodings, so an answer proves it got one uniform encoding


async def test_join(gateway: ModelGateway, sample_settings: Settings) -> None:
    out = await outputs(sample_settings, "join", ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16))
    assert out == [("OUTPUT0", EVENS), ("OUTPUT1", EVENS)]


@pytest.mark.parametrize(("choice", "expected"), [(0, [10, 20, 30, 40]), (1, [11, 12, 13, 14])])
async def test_conditional(
    gateway: ModelGateway, sample_settings: Settings, choice: int, expected: list[int]
) -> None:
    before = dict(gateway.calls)
    out = await outputs(
        sample_settings,
        "tfsimple-conditional",
        tensor("CHOICE", "INT32", [1], [choice]),
        fp32("INPUT0", [1, 2, 3, 4]),
        fp32("INPUT1", [1, 2, 3, 4]),
    )
    assert out == [("OUTPUT", expected)]
    await asyncio.sleep(0.5)
    # BR-17: the branch not taken received no request at all
    taken, skipped = ("mul10", "add10") if choice == 0 else ("add10", "mul10")
    assert gateway.calls[taken] == before.get(taken, 0) + 1
    assert gateway.calls[skipped] == before.get(skipped, 0)


async def test_pipeline_inputs_keeps_both_outputs_named_output(
    gateway: ModelGateway, sample_settings: Settings
) -> None:
    out = await outputs(
        sample_settings, "pipeline-inputs", fp32("INPUT0", [1, 2, 3, 4]), fp32("INPUT1", [1, 2, 3, 4])
    )
    assert out == [("OUTPUT", [10, 20, 30, 40]), ("OUTPUT", [11, 12, 13, 14])]


@pytest.mark.parametrize(("trigger", "expected"), [("ok1", [10, 20, 30, 40]), ("ok3", [11, 12, 13, 14])])
async def test_trigger_joins(
    gateway: ModelGateway, sample_settings: Settings, trigger: str, expected: list[int]
) -> None:
    out = await outputs(sample_settings, "trigger-joins", fp32(trigger, [1]), fp32("INPUT", [1, 2, 3, 4]))
    assert out == [("OUTPUT", expected)]


@pytest.mark.parametrize("pipeline", ["triggers-join-inputs", "triggers-join-internal"])
@pytest.mark.parametrize("triggers", [("TRIGGER1",), ("TRIGGER2",), ("TRIGGER1", "TRIGGER2")])
async def test_triggers_join(
    gateway: ModelGateway, sample_settings: Settings, pipeline: str, triggers: tuple[str, ...]
) -> None:
    inputs = [tensor("INPUT1", "INT64", [1], [1]), tensor("INPUT2", "INT64", [1], [1])]
    inputs += [tensor(t, "BOOL", [1], [True]) for t in triggers]
    assert await outputs(sample_settings, pipeline, *inputs) == [("OUTPUT1", [2])]


async def test_pipeline_to_pipeline(gateway: ModelGateway, sample_settings: Settings) -> None:
    downstream = {
        "tfsimple-extended": [("OUTPUT0", EVENS), ("OUTPUT1", EVENS)],
        "tfsimple-extended2": [("OUTPUT0", EVENS), ("OUTPUT1", EVENS)],
        "tfsimple-extended-step": [("OUTPUT0", EVENS), ("OUTPUT1", EVENS)],
        "tfsimple-combined": [("OUTPUT0", [4 * i for i in ONE_TO_16]), ("OUTPUT1", [0] * 16)],
        "tfsimple-combined-step": [("OUTPUT0", [4 * i for i in ONE_TO_16]), ("OUTPUT1", [0] * 16)],
        "tfsimple-combined-trigger": [("OUTPUT0", [4 * i for i in ONE_TO_16]), ("OUTPUT1", [0] * 16)],
    }
    result = await client.infer(
        sample_settings,
        "tfsimple",
        request_from_json({"inputs": [ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16)]}),
        timeout=40,
        also=list(downstream),
    )
    got = {
        name: [(o["name"], o["data"]) for o in answer.to_json()["outputs"]]
        for name, answer in result.also.items()
    }
    assert got == downstream
    # each downstream answer carries its own pipeline's name, and the original request's key
    assert {name: answer.header("pipeline") for name, answer in result.also.items()} == {
        n: n for n in downstream
    }
    assert {answer.key for answer in result.also.values()} == {result.key}


@pytest.mark.parametrize(("values", "ok"), [([1, 2, 3, 4], True), ([100, 2, 3, 4], False)])
async def test_error_pipeline(
    gateway: ModelGateway, sample_settings: Settings, values: list[float], ok: bool
) -> None:
    if ok:
        assert await outputs(sample_settings, "error", fp32("INPUT", values)) == [("OUTPUT", values)]
        return
    with pytest.raises(client.PipelineError) as info:
        await outputs(sample_settings, "error", fp32("INPUT", values))
    assert str(info.value).startswith("outlier-error : ")
