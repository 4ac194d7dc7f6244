"""Single-source pipelines end to end: a worker process, stand-in models and the client, on a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.tensors import request_from_json

pytestmark = pytest.mark.integration

ONE_TO_16 = list(range(1, 17))
EVENS = [2 * i for i in ONE_TO_16]


def ints(name: str, values: list[int], shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": "INT32", "shape": shape or [1, len(values)], "data": values}


def floats(name: str, values: list[float]) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": [len(values)], "data": values}


async def ask(
    settings: Settings, pipeline: str, *inputs: dict[str, Any], timeout: float = 20
) -> dict[str, list[Any]]:
    result = await client.infer(
        settings, pipeline, request_from_json({"inputs": list(inputs)}), timeout=timeout
    )
    return {o["name"]: o["data"] for o in result.to_json()["outputs"]}


TFSIMPLE = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: tfsimple}
spec:
  steps:
    - name: tfsimple1
  output:
    steps: [tfsimple1]
"""

TFSIMPLES = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: tfsimples}
spec:
  steps:
    - name: tfsimple1
    - name: tfsimple2
      inputs: [tfsimple1]
      tensorMap:
        tfsimple1.outputs.OUTPUT0: INPUT0
        tfsimple1.outputs.OUTPUT1: INPUT1
  output:
    steps: [tfsimple2]
"""


async def test_tfsimple_single_step(write_pipeline, workers, models, settings) -> None:
    workers(write_pipeline(TFSIMPLE))
    async with models("tfsimple1"):
        out = await ask(settings, "tfsimple", ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16))
    assert out == {"OUTPUT0": EVENS, "OUTPUT1": [0] * 16}


async def test_tfsimples_chain_with_tensor_map(write_pipeline, workers, models, settings) -> None:
    workers(write_pipeline(TFSIMPLES))
    async with models("tfsimple1", "tfsimple2") as gw:
        out = await ask(settings, "tfsimples", ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16))
        # the second model got tfsimple1's outputs under its own input names
        [call] = gw.history["tfsimple2"]
        assert [t.name for t in call.request.inputs] == ["INPUT0", "INPUT1"]
        assert call.request.model_name == ""
    assert out == {"OUTPUT0": EVENS, "OUTPUT1": EVENS}


async def test_three_step_chain_with_renames(write_pipeline, workers, models, settings) -> None:
    # a -> b -> c, each step renaming what the previous one produced; sumdiff is tfsimple's arithmetic.
    workers(
        write_pipeline(
            """
            apiVersion: mlops.seldon.io/v1alpha1
            kind: Pipeline
            metadata: {name: three}
            spec:
              steps:
                - name: sumdiff-a
                  tensorMap:
                    three.inputs.X: INPUT0
                    three.inputs.Y: INPUT1
                - name: sumdiff-b
                  inputs: [sumdiff-a]
                  tensorMap:
                    sumdiff-a.outputs.OUTPUT0: INPUT1
                    sumdiff-a.outputs.OUTPUT1: INPUT0
                - name: sumdiff-c
                  inputs: [sumdiff-b.outputs]
                  tensorMap:
                    sumdiff-b.outputs.OUTPUT0: INPUT0
                    sumdiff-b.outputs.OUTPUT1: INPUT1
              output:
                steps: [sumdiff-c]
                tensorMap:
                  sumdiff-c.outputs.OUTPUT0: SUM
            """
        )
    )
    x = ONE_TO_16
    y = [2] * 16
    async with models("sumdiff-a", "sumdiff-b", "sumdiff-c"):
        out = await ask(settings, "three", ints("X", x), ints("Y", y))
    a0 = [i + j for i, j in zip(x, y, strict=True)]
    a1 = [i - j for i, j in zip(x, y, strict=True)]
    b0 = [p + q for p, q in zip(a1, a0, strict=True)]  # INPUT0 = a.OUTPUT1, INPUT1 = a.OUTPUT0
    b1 = [p - q for p, q in zip(a1, a0, strict=True)]
    assert out == {
        "SUM": [p + q for p, q in zip(b0, b1, strict=True)],
        "OUTPUT1": [p - q for p, q in zip(b0, b1, strict=True)],
    }


CONDITIONAL = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: routed}
spec:
  steps:
    - name: conditional
    - name: mul10
      inputs: [conditional.outputs.OUTPUT0]
      tensorMap:
        conditional.outputs.OUTPUT0: INPUT
  output:
    steps: [mul10]
"""


async def test_step_fires_only_when_its_tensor_exists(write_pipeline, workers, models, settings) -> None:
    workers(write_pipeline(CONDITIONAL))
    choice0 = (ints("CHOICE", [0], [1]), floats("INPUT0", [1, 2, 3, 4]), floats("INPUT1", [5, 6, 7, 8]))
    choice1 = (ints("CHOICE", [1], [1]), floats("INPUT0", [1, 2, 3, 4]), floats("INPUT1", [5, 6, 7, 8]))
    async with models("conditional", "mul10") as gw:
        assert await ask(settings, "routed", *choice0) == {"OUTPUT": [10, 20, 30, 40]}
        with pytest.raises(client.InferTimeout):
            await ask(settings, "routed", *choice1, timeout=4)
        calls = dict(gw.calls)
    # CHOICE=1 made conditional answer OUTPUT1 only, so mul10 was not called a second time
    assert calls == {"conditional": 2, "mul10": 1}


async def test_failing_model_makes_infer_exit_non_zero(
    write_pipeline, workers, models, settings, env
) -> None:
    workers(write_pipeline(TFSIMPLES))
    body = {"inputs": [ints("INPUT0", list(range(20)), [1, 20]), ints("INPUT1", list(range(20)), [1, 20])]}
    cmd = [
        sys.executable,
        "-m",
        "dataflow.cli.main",
        "infer",
        "tfsimples",
        "--timeout",
        "20",
        "--inputs",
        json.dumps(body),
    ]
    async with models("tfsimple1", "tfsimple2"):
        done = await _run(cmd, env)
    assert done.returncode == 2, done.stderr
    assert "tfsimple1 : rpc error: code = InvalidArgument" in done.stderr
    assert done.stdout == ""


async def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(
        subprocess.run,
        cmd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "seldon-samples"


async def test_conformance_reference_requests_through_tfsimples(
    write_pipeline, workers, models, settings
) -> None:
    requests_file = SAMPLES / "batch-inputs" / "tfsimple-input.txt"
    if not requests_file.exists():
        pytest.skip(f"reference samples not found at {requests_file} (they live outside the project)")
    workers(write_pipeline(TFSIMPLES))
    lines = [json.loads(line) for line in requests_file.read_text().splitlines() if line.strip()]
    assert lines, "the reference request file is empty"
    async with models("tfsimple1", "tfsimple2"):
        for body in lines:
            inputs = {t["name"]: t["data"] for t in body["inputs"]}
            a, b = inputs["INPUT0"], inputs["INPUT1"]
            out = await ask(settings, "tfsimples", *body["inputs"])
            # tfsimple1: (a+b, a-b); tfsimple2 on those: (2a, 2b)
            assert out == {"OUTPUT0": [2 * x for x in a], "OUTPUT1": [2 * y for y in b]}


async def test_a_timeout_says_whether_any_worker_runs(write_pipeline, workers, settings) -> None:
    """A request nobody answers names the likely cause: no model served, or no worker at all."""
    worker = workers(write_pipeline(TFSIMPLE))
    inputs = (ints("INPUT0", ONE_TO_16), ints("INPUT1", ONE_TO_16))
    with pytest.raises(client.InferTimeout) as unserved:  # no model gateway runs in this test
        await ask(settings, "tfsimple", *inputs, timeout=3)
    assert f"1 dataflow worker(s) in group {settings.group_id}" in str(unserved.value)
    assert worker.stop(30) == 0
    with pytest.raises(client.InferTimeout) as nobody:
        await ask(settings, "tfsimple", *inputs, timeout=3)
    assert f"no dataflow worker is running in consumer group {settings.group_id}" in str(nobody.value)
