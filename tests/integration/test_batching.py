"""Batching (spec §4.6, case S-01): batches by size and by window, each caller gets its own rows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.tensors import request_from_json

pytestmark = pytest.mark.integration


def rows(*values: list[float]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "INPUT",
                "datatype": "FP32",
                "shape": [len(values), len(values[0])],
                "data": list(values),
            }
        ]
    }


async def ask(settings: Settings, pipeline: str, body: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
    result = await client.infer(settings, pipeline, request_from_json(body), timeout=timeout)
    return {o["name"]: (o["shape"], o["data"]) for o in result.to_json()["outputs"]}


BATCH_TWO = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: batch-two}
spec:
  steps:
    - name: echo
      batch:
        size: 2
  output:
    steps: [echo]
"""


async def test_two_requests_make_one_batch_and_each_gets_its_rows(
    write_pipeline, workers, models, settings
) -> None:
    workers(write_pipeline(BATCH_TWO))
    async with models("echo") as gw:
        first = asyncio.create_task(ask(settings, "batch-two", rows([1, 2, 3, 4])))
        await asyncio.sleep(1)  # r1 waits in the batch; nothing reached the model yet
        assert gw.calls["echo"] == 0
        second = await ask(settings, "batch-two", rows([5, 6, 7, 8]))
        assert await first == {"INPUT": ([1, 4], [1, 2, 3, 4])}
        assert second == {"INPUT": ([1, 4], [5, 6, 7, 8])}
        [call] = gw.history["echo"]
        # the model saw one request of two rows, in arrival order
        assert list(call.request.inputs[0].shape) == [2, 4]
        # a request that is already a batch of two goes straight through
        assert await ask(settings, "batch-two", rows([1, 1, 1, 1], [2, 2, 2, 2])) == {
            "INPUT": ([2, 4], [1, 1, 1, 1, 2, 2, 2, 2])
        }


async def test_window_flushes_a_partial_batch(write_pipeline, workers, models, settings) -> None:
    workers(
        write_pipeline(
            """
            apiVersion: mlops.seldon.io/v1alpha1
            kind: Pipeline
            metadata: {name: batch-window}
            spec:
              steps:
                - name: echo
                  batch: {size: 10, windowMs: 500}
              output:
                steps: [echo]
            """
        )
    )
    async with models("echo") as gw:
        # one request, far from the size: the window sends it on its own (the reference waits for ever)
        assert await ask(settings, "batch-window", rows([1, 2, 3, 4]), timeout=0.5 + 1 + 5) == {
            "INPUT": ([1, 4], [1, 2, 3, 4])
        }
        assert gw.calls["echo"] == 1


async def test_two_batched_steps_in_one_pipeline(write_pipeline, workers, models, settings) -> None:
    workers(
        write_pipeline(
            """
            apiVersion: mlops.seldon.io/v1alpha1
            kind: Pipeline
            metadata: {name: batched-chain}
            spec:
              steps:
                - name: add10
                  batch: {size: 3, windowMs: 3000}
                - name: mul10
                  inputs: [add10]
                  tensorMap: {add10.outputs.OUTPUT: INPUT}
                  batch: {size: 3, windowMs: 3000}
              output:
                steps: [mul10]
            """
        )
    )
    async with models("add10", "mul10") as gw:
        answers = await asyncio.gather(
            *(ask(settings, "batched-chain", rows([float(i)] * 4)) for i in range(3))
        )
        assert [a["OUTPUT"] for a in answers] == [([1, 4], [(i + 10) * 10.0] * 4) for i in range(3)]
        assert gw.calls["add10"] == 1 and gw.calls["mul10"] == 1


async def test_an_answer_that_is_not_row_wise_goes_whole_to_each_caller(
    write_pipeline, workers, models, settings
) -> None:
    workers(
        write_pipeline(
            """
            apiVersion: mlops.seldon.io/v1alpha1
            kind: Pipeline
            metadata: {name: batch-whole}
            spec:
              steps:
                - name: strout
                  batch: {size: 2}
              output:
                steps: [strout]
            """
        )
    )
    text = lambda s: {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [s]}]}  # noqa: E731
    async with models("strout"):
        a, b = await asyncio.gather(
            ask(settings, "batch-whole", text("a")), ask(settings, "batch-whole", text("b"))
        )
    assert a == b == {"embedding": ([1], ["[[0.1, 0.2]]"])}
