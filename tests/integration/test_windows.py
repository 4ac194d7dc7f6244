"""Join windows on the real broker: inner pairs outside the window, outer joins on idle partitions
(BR-01, BR-02), and joins over topics with different partition counts (BR-03)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.tensors import request_from_json
from dataflow.testing.kafka import create_topic, read_all
from dataflow.topics import make_key

pytestmark = pytest.mark.integration


def fp32(name: str, values: list[float]) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": [len(values)], "data": values}


async def answer(
    settings: Settings, pipeline: str, *inputs: dict[str, Any], timeout: float = 20
) -> list[tuple[str, list[Any]]]:
    result = await client.infer(
        settings, pipeline, request_from_json({"inputs": list(inputs)}), timeout=timeout
    )
    return sorted((o["name"], o["data"]) for o in result.to_json()["outputs"])


GATED_OUTER = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: gated-outer}
spec:
  steps:
    - name: mul10
      inputs: [gated-outer.inputs.INPUT]
      triggers: [gated-outer.inputs.gate_a]
    - name: add10
      inputs: [gated-outer.inputs.INPUT]
      triggers: [gated-outer.inputs.gate_b]
  output:
    steps: [mul10, add10]
    stepsJoin: %s
    joinWindowMs: 1000
"""


async def test_outer_join_emits_the_lone_side_on_an_idle_pipeline(
    write_pipeline, workers, models, settings
) -> None:
    """BR-01: with one gate the single output comes back about joinWindowMs later, with no other traffic."""
    workers(write_pipeline(GATED_OUTER % "outer"))
    data = fp32("INPUT", [1, 2, 3, 4])
    async with models("mul10", "add10"):
        both = await answer(settings, "gated-outer", data, fp32("gate_a", [1]), fp32("gate_b", [1]))
        assert both == [("OUTPUT", [10, 20, 30, 40]), ("OUTPUT", [11, 12, 13, 14])]
        started = time.monotonic()
        # the deadline is the promise: window (1 s) + 1 s, plus slack for a loaded CI machine
        only_a = await answer(settings, "gated-outer", data, fp32("gate_a", [1]), timeout=1 + 1 + 3)
        waited = time.monotonic() - started
        assert only_a == [("OUTPUT", [10, 20, 30, 40])]
        assert waited >= 0.9  # it did wait for the window, not emit the lone side at once
        only_b = await answer(settings, "gated-outer", data, fp32("gate_b", [1]), timeout=5)
        assert only_b == [("OUTPUT", [11, 12, 13, 14])]
        # no gate: no step runs, so no answer (the caller's timeout is the explicit error)
        with pytest.raises(client.InferTimeout):
            await answer(settings, "gated-outer", data, timeout=3)


async def test_any_output_join_answers_with_the_first_branch(
    write_pipeline, workers, models, settings
) -> None:
    """BR-01 case 5: `any` returns the one available output at once."""
    workers(write_pipeline(GATED_OUTER % "any"))
    async with models("mul10", "add10"):
        out = await answer(
            settings, "gated-outer", fp32("INPUT", [1, 2, 3, 4]), fp32("gate_a", [1]), timeout=5
        )
    assert out == [("OUTPUT", [10, 20, 30, 40])]


WINDOW_CHECK = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: window-check}
spec:
  steps:
    - name: add10
      inputs: [window-check.inputs.A]
      tensorMap: {window-check.inputs.A: INPUT}
    - name: mul10
      inputs: [window-check.inputs.B]
      tensorMap: {window-check.inputs.B: INPUT}
    - name: echo
      inputs: [add10.outputs.OUTPUT, mul10.outputs.OUTPUT]
      tensorMap:
        add10.outputs.OUTPUT: X
        mul10.outputs.OUTPUT: Y
      inputsJoinType: outer
      joinWindowMs: 500
  output:
    steps: [echo]
"""


async def test_step_join_window_is_honoured(write_pipeline, workers, models, settings) -> None:
    """BR-02: both sides join at once; one side alone comes out after ~500 ms, not the 60 s default."""
    workers(write_pipeline(WINDOW_CHECK))
    async with models("add10", "mul10", "echo") as gw:
        assert await answer(settings, "window-check", fp32("A", [1]), fp32("B", [2])) == [
            ("X", [11]),
            ("Y", [20]),
        ]
        mul10_calls = gw.calls["mul10"]
        assert await answer(settings, "window-check", fp32("A", [1]), timeout=0.5 + 1 + 3) == [("X", [11])]
        assert gw.calls["mul10"] == mul10_calls  # its projected request would have been empty


JOIN_ONLY = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: pair}
spec:
  steps:
    - name: left
    - name: right
    - name: both
      inputs: [left, right]
      joinWindowMs: 2000
"""


async def _send_output(settings: Settings, model: str, key: bytes, ts_ms: int, value: float) -> None:
    from dataflow.testing.kafka import produce

    response = ModelInferResponse(model_name=model, id="r")
    tensor = response.outputs.add(name=f"{model}-out", datatype="FP32", shape=[1])
    tensor.contents.fp32_contents.append(value)
    await produce(
        settings,
        settings.namer.model_outputs(model),
        response.SerializeToString(),
        key=key,
        headers=[("pipeline", b"pair")],
        timestamp_ms=ts_ms,
    )


async def test_inner_join_pairs_only_records_within_the_window(write_pipeline, workers, settings) -> None:
    """Record timestamps decide: 1.5 s apart joins (window 2 s), 5 s apart does not."""
    workers(write_pipeline(JOIN_ONLY))
    now = int(time.time() * 1000)
    near, far = make_key(0, "pair", "near").encode(), make_key(0, "pair", "far").encode()
    await _send_output(settings, "left", near, now, 1.0)
    await _send_output(settings, "right", near, now + 1500, 2.0)
    await _send_output(settings, "left", far, now, 3.0)
    await _send_output(settings, "right", far, now + 5000, 4.0)
    joined = await read_all(settings, settings.namer.model_inputs("both"), count=2, timeout=6)
    assert [r.key for r in joined] == [near]
    request = ModelInferRequest.FromString(joined[0].value or b"")
    assert [(t.name, list(t.contents.fp32_contents)) for t in request.inputs] == [
        ("left-out", [1.0]),
        ("right-out", [2.0]),
    ]


FANIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: fanin}
spec:
  steps:
    - name: sumdiff-a
    - name: sumdiff-b
    - name: sumdiff-c
      inputs: [sumdiff-a.outputs.OUTPUT0, sumdiff-b.outputs.OUTPUT1]
      tensorMap:
        sumdiff-a.outputs.OUTPUT0: INPUT0
        sumdiff-b.outputs.OUTPUT1: INPUT1
  output:
    steps: [sumdiff-c]
"""


async def test_join_over_topics_with_different_partition_counts_is_refused(
    write_pipeline, workers, settings
) -> None:
    """BR-03: the worker refuses to run rather than report ready and stall."""
    await create_topic(settings, settings.namer.model_outputs("sumdiff-a"), 1)
    proc = workers(write_pipeline(FANIN), extra_env={"SELDON_KAFKA_PARTITIONS_DEFAULT": "4"}, ready=False)
    code = await asyncio.to_thread(proc.proc.wait, 60)  # type: ignore[union-attr]
    log = proc.log_tail(200)
    assert code == 1, log
    assert "sumdiff-c" in log and f"{settings.namer.model_outputs('sumdiff-a')} has 1" in log
