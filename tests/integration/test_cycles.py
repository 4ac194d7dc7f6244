"""Cyclic pipelines: a loop that stops by itself, concurrent loops that stay apart, and a runaway
loop ended by maxStepRevisits (spec §4.7, case BR-16)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.tensors import request_from_json
from dataflow.testing.kafka import read_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOOP_MODELS = ("identity-loop=echo", "identity-output=echo")


def x(value: int) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [value]}]}


async def count(settings: Settings, start: int) -> dict[str, Any]:
    result = await client.infer(settings, "counter-pipeline", request_from_json(x(start)), timeout=40)
    return {o["name"]: o["data"] for o in result.to_json()["outputs"]}


async def test_counter_loop_stops_at_ten(workers, models, settings: Settings) -> None:
    workers(ROOT / "pipelines" / "counter-pipeline.yaml")
    async with models("counter", *LOOP_MODELS) as gw:
        assert await count(settings, 0) == {"x": [10], "stop": []}
        assert gw.calls["counter"] == 10
        # concurrent loops keep to their own request: each answers from its own start
        answers = await asyncio.gather(*(count(settings, s) for s in (0, 3, 9, 10, 15)))
    assert [a["x"] for a in answers] == [[10], [10], [10], [11], [16]]
    # the output topic holds exactly one answer per request
    outputs = await read_all(
        settings, settings.namer.pipeline_outputs("counter-pipeline"), count=7, timeout=3
    )
    assert len(outputs) == 6 and len({r.key for r in outputs}) == 6


RUNAWAY = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: runaway}
spec:
  allowCycles: true
  maxStepRevisits: 3
  steps:
    - name: counter-nostop
      inputsJoinType: any
      inputs: [runaway.inputs, loop.outputs]
    - name: loop
      inputs: [counter-nostop.outputs.x]
      triggers: [counter-nostop.outputs.continue]
      joinWindowMs: 1
    - name: done
      inputs: [counter-nostop.outputs.x]
      triggers: [counter-nostop.outputs.stop]
      joinWindowMs: 1
  output:
    steps: [done]
"""


async def test_runaway_loop_ends_with_an_error(write_pipeline, workers, models, settings: Settings) -> None:
    workers(write_pipeline(RUNAWAY))
    async with models("counter-nostop", "loop=echo", "done=echo") as gw:
        with pytest.raises(client.PipelineError) as info:
            await client.infer(settings, "runaway", request_from_json(x(0)), timeout=20)
        await asyncio.sleep(1)
        calls = gw.calls["counter-nostop"]
    assert "Max step revisits (3) exceeded" in str(info.value)
    assert str(info.value).startswith("runaway : ERROR:")
    assert calls == 4  # entered maxStepRevisits + 1 times, then stopped
    errors = await read_all(settings, settings.namer.errors, count=2, timeout=3)
    assert [r.header("seldon-pipeline-errors") for r in errors] == [b"runaway"]
