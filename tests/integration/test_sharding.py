"""One pipeline sharded over several workers that were given it in different orders (case BR-24).

Three workers, four partitions; each worker reads its own copy of a join-with-trigger pipeline and a
fan-in join, with the steps and tensor maps listed in another order. They must build one topology
(same uid, same join state keys), share every pipeline's partitions (each pipeline runs on
min(workers, partitions) = 3 of them) and answer every request right.
Run ``pytest -s tests/integration/test_sharding.py`` for the figures docs/reliability.md quotes.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from dataflow.config import Settings
from dataflow.proto.v2_dataplane_pb2 import ModelInferResponse
from dataflow.tensors import request_from_json, response_to_json
from dataflow.testing.gateway import running_models
from dataflow.testing.kafka import Consumed, read_all
from dataflow.testing.worker import WorkerProcess
from dataflow.topics import make_key
from tests.integration.test_scaling import owned, wait_until

pytestmark = pytest.mark.integration

FOUR = {"SELDON_KAFKA_PARTITIONS_DEFAULT": "4"}
PER_PIPELINE = 1000

STATEFUL_STEPS = {
    "add10": "    - name: add10\n      inputs: [stateful.inputs.INPUT]\n",
    "mul10": "    - name: mul10\n      inputs: [stateful.inputs.INPUT]\n",
    "echo": (
        "    - name: echo\n"
        "      inputs: [add10.outputs.OUTPUT, mul10.outputs.OUTPUT]\n"
        "      tensorMap: {{{maps}}}\n"
        "      triggers: [stateful.inputs.go]\n"
    ),
}
STATEFUL_MAPS = ["add10.outputs.OUTPUT: X", "mul10.outputs.OUTPUT: Y"]
FANIN_STEPS = {
    "sumdiff-a": "    - name: sumdiff-a\n",
    "sumdiff-b": "    - name: sumdiff-b\n",
    "sumdiff-c": (
        "    - name: sumdiff-c\n"
        "      inputs: [sumdiff-a.outputs.OUTPUT0, sumdiff-b.outputs.OUTPUT1]\n"
        "      tensorMap: {{{maps}}}\n"
    ),
}
FANIN_MAPS = ["sumdiff-a.outputs.OUTPUT0: INPUT0", "sumdiff-b.outputs.OUTPUT1: INPUT1"]
HEAD = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  steps:\n"
ORDERS = [  # (stateful steps, fanin steps, tensor maps reversed)
    (["add10", "mul10", "echo"], ["sumdiff-a", "sumdiff-b", "sumdiff-c"], False),
    (["echo", "mul10", "add10"], ["sumdiff-c", "sumdiff-b", "sumdiff-a"], True),
    (["mul10", "echo", "add10"], ["sumdiff-b", "sumdiff-c", "sumdiff-a"], False),
]
MODELS = ["add10", "mul10", "echo", "sumdiff-a", "sumdiff-b", "sumdiff-c"]

REQUESTS = {
    "stateful": {
        "inputs": [
            {"name": "INPUT", "datatype": "FP32", "shape": [2], "data": [1, 2]},
            {"name": "go", "datatype": "FP32", "shape": [1], "data": [1]},
        ]
    },
    "fanin": {
        "inputs": [
            {"name": n, "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))}
            for n in ("INPUT0", "INPUT1")
        ]
    },
}
DOUBLED = [2 * v for v in range(1, 17)]
EXPECTED = {"stateful": {"X": [11, 12], "Y": [10, 20]}, "fanin": {"OUTPUT0": DOUBLED, "OUTPUT1": DOUBLED}}


def spec(name: str, steps: dict[str, str], order: list[str], maps: list[str], reverse: bool) -> str:
    listed = ", ".join(reversed(maps) if reverse else maps)
    last = next(s for s in steps if "tensorMap" in steps[s])
    body = "".join(steps[s].format(maps=listed) for s in order)
    return HEAD.format(name=name) + body + f"  output:\n    steps: [{last}]\n"


def write_copies(tmp_path: Path) -> list[Path]:
    folders = []
    for index, (stateful, fanin, reverse) in enumerate(ORDERS):
        folder = tmp_path / f"copy{index}"
        folder.mkdir()
        (folder / "stateful.yaml").write_text(
            spec("stateful", STATEFUL_STEPS, stateful, STATEFUL_MAPS, reverse)
        )
        (folder / "fanin.yaml").write_text(spec("fanin", FANIN_STEPS, fanin, FANIN_MAPS, reverse))
        folders.append(folder)
    return folders


def uids(worker: WorkerProcess) -> dict[str, str]:
    """Pipeline -> uid, as the worker logged them when it loaded them."""
    found = re.findall(r"pipeline (\S+) v\d+ \(uid (\S+)\): loaded", worker.log_tail(400))
    return dict(found)


def emitted(worker: WorkerProcess) -> Counter[str]:
    """Records each pipeline's steps emitted on this worker (from its /metrics)."""
    url = f"http://127.0.0.1:{worker.health_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    counts: Counter[str] = Counter()
    for pipeline, value in re.findall(
        r'^dataflow_step_records_total\{pipeline="([^"]+)".*\} (\S+)$', text, re.M
    ):
        counts[pipeline] += int(float(value))
    return counts


def decoded(value: bytes | None) -> ModelInferResponse:
    response = ModelInferResponse()
    response.ParseFromString(value or b"")
    return response


async def read_answers(settings: Settings, pipeline: str, keys: set[str]) -> list[Consumed]:
    """The outputs topic until every key was answered (duplicates may come on top) or a deadline."""
    topic = settings.namer.pipeline_outputs(pipeline)
    records = await read_all(settings, topic, count=len(keys), timeout=180)
    if {r.key.decode() for r in records if r.key} != keys:  # duplicates took some of the count
        records = await read_all(settings, topic, count=2 * len(keys), timeout=15)
    return records


async def send_all(settings: Settings) -> dict[str, set[str]]:
    """Every request of both pipelines, spread over the four partitions, sent by one producer."""
    namer = settings.namer
    keys: dict[str, set[str]] = {p: set() for p in REQUESTS}
    producer = AIOKafkaProducer(**settings.kafka_kwargs(), linger_ms=5)
    await asyncio.wait_for(producer.start(), 20)
    try:
        sent = []
        for pipeline, body in REQUESTS.items():
            value = request_from_json(body).SerializeToString()
            for i in range(PER_PIPELINE):
                key = make_key(i % 4, pipeline, f"r{i}")
                keys[pipeline].add(key)
                headers = [("pipeline", pipeline.encode()), ("x-request-id", f"r{i}".encode())]
                sent.append(
                    await producer.send(
                        namer.pipeline_inputs(pipeline),
                        value,
                        key=key.encode(),
                        partition=i % 4,
                        headers=headers,
                    )
                )
        await asyncio.wait_for(asyncio.gather(*sent), 60)
    finally:
        await asyncio.wait_for(producer.stop(), 20)
    return keys


async def test_three_workers_with_reordered_specs_share_one_topology(
    tmp_path: Path, workers, settings: Settings
) -> None:
    four = settings.model_copy(update={"partitions": 4})
    crew = [workers(folder, extra_env=FOUR) for folder in write_copies(tmp_path)]
    # one topology: each worker derived the same uid from its differently ordered copy
    assert len({tuple(sorted(uids(w).items())) for w in crew}) == 1, [uids(w) for w in crew]
    assert set(uids(crew[0])) == {"stateful", "fanin"}
    assert await wait_until(lambda: sorted(len(owned(w)) for w in crew) == [1, 1, 2], 60), [
        owned(w) for w in crew
    ]
    async with running_models(four, MODELS, timeout=30):
        started = time.monotonic()
        keys = await send_all(four)
        answers = {p: await read_answers(four, p, keys[p]) for p in REQUESTS}
        took = time.monotonic() - started
    wrong: list[str] = []
    for pipeline, records in answers.items():
        seen = {r.key.decode() for r in records if r.key}
        assert seen == keys[pipeline], f"{pipeline}: {len(keys[pipeline] - seen)} requests unanswered"
        for r in records:
            got = {o["name"]: o["data"] for o in response_to_json(decoded(r.value))["outputs"]}
            if got != EXPECTED[pipeline] or r.header("seldon-pipeline-errors") is not None:
                wrong.append(f"{pipeline} {r.key!r}: {got}")
            if int(r.key.decode().split(".")[0]) != r.partition:  # type: ignore[union-attr]
                wrong.append(f"{pipeline} {r.key!r} answered on partition {r.partition}")
    assert not wrong, wrong[:3]
    # every pipeline runs on every worker: min(3 workers, 4 partitions) replicas each
    counts = [emitted(w) for w in crew]
    assert all(c["stateful"] > 0 and c["fanin"] > 0 for c in counts), counts
    dup = sum(len(records) - PER_PIPELINE for records in answers.values())
    print(
        f"\nBR-24 three workers, reordered specs, 4 partitions: {PER_PIPELINE} requests per pipeline "
        f"(stateful, fanin) answered right in {took:.1f} s, duplicated {dup}, "
        f"partitions per worker {[sorted(owned(w)) for w in crew]}"
    )
