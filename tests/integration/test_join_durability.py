"""Join state survives a crash, and joins work with one worker or two on two partitions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.proto.v2_dataplane_pb2 import ModelInferResponse
from dataflow.runtime.state import TABLE_NAME
from dataflow.tensors import request_from_json, tensor_values
from dataflow.testing.gateway import running_models
from dataflow.testing.kafka import produce, read_all
from dataflow.topics import make_key

pytestmark = pytest.mark.integration

TWO_BRANCHES = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: branches}
spec:
  steps:
    - name: add10
    - name: mirror
  output:
    steps: [add10, mirror]
"""


def request(value: float) -> bytes:
    body = {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [1], "data": [value]}]}
    return request_from_json(body).SerializeToString()


async def test_half_complete_joins_survive_kill_9(write_pipeline, workers, settings: Settings) -> None:
    """200 requests whose fast branch answered; the worker is killed; a new one completes every join."""
    folder = write_pipeline(TWO_BRANCHES)
    first = workers(folder)
    namer = settings.namer
    keys = [make_key(0, "branches", f"r{i}") for i in range(200)]
    async with running_models(settings, ["add10"], group_id=f"{settings.group_id}-fast"):
        for i, key in enumerate(keys):
            await produce(
                settings,
                namer.pipeline_inputs("branches"),
                request(float(i)),
                key=key.encode(),
                headers=[("pipeline", b"branches")],
            )
        # every fast answer is in the join state once its changelog holds 200 records
        changelog = f"{settings.group_id}-{TABLE_NAME}-changelog"
        stored = await read_all(settings, changelog, count=200, timeout=60)
        assert len({r.key for r in stored}) == 200
    first.kill()  # kill -9: no shutdown, no final commit

    second = workers(folder)
    assert second.probe("/ready")[0] == 200
    # the slow branch answers only now, long after the crash
    async with running_models(settings, ["mirror=echo"], group_id=f"{settings.group_id}-slow"):
        answers = await read_all(settings, namer.pipeline_outputs("branches"), count=200, timeout=90)
    by_key: dict[bytes, list[ModelInferResponse]] = {}
    for record in answers:
        by_key.setdefault(record.key or b"", []).append(ModelInferResponse.FromString(record.value or b""))
    assert sorted(by_key) == sorted(k.encode() for k in keys)
    for i, key in enumerate(keys):
        response = by_key[key.encode()][0]
        assert [t.name for t in response.outputs] == ["OUTPUT", "INPUT"]
        assert tensor_values(response, 0) == [i + 10.0]
        assert tensor_values(response, 1) == [float(i)]


JOIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: join2}
spec:
  steps:
    - name: tfsimple1
    - name: tfsimple2
    - name: tfsimple3
      inputs: [tfsimple1.outputs.OUTPUT0, tfsimple2.outputs.OUTPUT1]
      tensorMap:
        tfsimple1.outputs.OUTPUT0: INPUT0
        tfsimple2.outputs.OUTPUT1: INPUT1
  output:
    steps: [tfsimple3]
"""


def ints(name: str, values: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": "INT32", "shape": [1, len(values)], "data": values}


@pytest.mark.parametrize("worker_count", [1, 2])
async def test_join_on_two_partitions(write_pipeline, workers, settings: Settings, worker_count: int) -> None:
    folder = write_pipeline(JOIN)
    procs = [workers(folder, extra_env={"SELDON_KAFKA_PARTITIONS_DEFAULT": "2"}) for _ in range(worker_count)]
    two = settings.model_copy(update={"partitions": 2})
    for proc in procs:  # readiness after the last join: every worker has its share of the partitions
        proc.wait_ready(timeout=60)
    async with running_models(two, ["tfsimple1", "tfsimple2", "tfsimple3"]):

        async def one(i: int) -> tuple[int, list[Any], int]:
            a = [i + j for j in range(16)]
            b = [j for j in range(16)]
            result = await client.infer(
                two,
                "join2",
                request_from_json({"inputs": [ints("INPUT0", a), ints("INPUT1", b)]}),
                timeout=40,
            )
            outs = {o["name"]: o["data"] for o in result.to_json()["outputs"]}
            return i, [outs["OUTPUT0"], outs["OUTPUT1"]], result.partition

        results = await asyncio.gather(*(one(i) for i in range(30)))
    partitions = set()
    for i, outs, partition in results:
        a = [i + j for j in range(16)]
        b = list(range(16))
        # tfsimple3 gets INPUT0 = a+b (tfsimple1 OUTPUT0) and INPUT1 = a-b (tfsimple2 OUTPUT1)
        s, d = [x + y for x, y in zip(a, b, strict=True)], [x - y for x, y in zip(a, b, strict=True)]
        assert outs == [
            [x + y for x, y in zip(s, d, strict=True)],
            [x - y for x, y in zip(s, d, strict=True)],
        ]
        partitions.add(partition)
    assert partitions == {0, 1}
    if worker_count == 2:
        owned = [
            int(p.probe("/ready")[1]["checks"]["service"]["details"]["assigned_partitions"]) for p in procs
        ]  # type: ignore[index]
        assert all(n > 0 for n in owned), owned  # both workers took a share
