"""Live pipeline changes in YAML mode: files added, changed and removed while a worker runs and another
pipeline serves steady traffic, which must lose and repeat nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.tensors import request_from_json
from dataflow.testing.kafka import read_all

pytestmark = pytest.mark.integration

STEADY = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: steady}
spec:
  steps:
    - name: add10
  output:
    steps: [add10]
"""

LATE = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: late}
spec:
  steps:
    - name: %s
  output:
    steps: [%s]
"""


def fp32(values: list[float]) -> Any:
    return request_from_json(
        {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [len(values)], "data": values}]}
    )


async def answer(settings: Settings, pipeline: str, timeout: float) -> list[float]:
    result = await client.infer(settings, pipeline, fp32([1, 2]), timeout=timeout)
    data: list[float] = result.to_json()["outputs"][0]["data"]
    return data


async def eventually(settings: Settings, pipeline: str, expected: list[float], within: float) -> float:
    """Seconds until ``pipeline`` answers ``expected``; fails after ``within`` seconds."""
    started = time.monotonic()
    deadline = started + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await answer(settings, pipeline, timeout=max(0.5, min(2.0, deadline - time.monotonic())))
            if last == expected:
                return time.monotonic() - started
        except (client.InferTimeout, client.PipelineNotFound) as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pipeline} did not answer {expected} within {within} s (last: {last})")


async def test_files_added_changed_and_removed_take_effect(
    tmp_path: Path, workers, models, settings: Settings
) -> None:
    folder = tmp_path / "live"
    folder.mkdir()
    (folder / "steady.yaml").write_text(STEADY)
    workers(folder)
    sent = 0
    stop = asyncio.Event()

    async def steady_traffic() -> None:
        nonlocal sent
        while not stop.is_set():
            assert await answer(settings, "steady", timeout=20) == [11, 12]
            sent += 1

    async with models("add10", "mul10", "echo"):
        traffic = asyncio.create_task(steady_traffic())
        await asyncio.sleep(1)
        (folder / "late.yaml").write_text(LATE % ("mul10", "mul10"))  # added: new topics
        added = await eventually(settings, "late", [10, 20], within=5 + 5)
        (folder / "late.yaml").write_text(LATE % ("echo", "echo"))  # changed: a new version
        changed = await eventually(settings, "late", [1, 2], within=5 + 5)
        (folder / "late.yaml").unlink()  # removed
        await asyncio.sleep(2)
        with pytest.raises(client.InferTimeout):
            await answer(settings, "late", timeout=3)
        (folder / "broken.yaml").write_text("apiVersion: nope\n")  # invalid: nothing changes
        await asyncio.sleep(2)
        stop.set()
        await traffic
    assert sent > 5
    print(f"added after {added:.2f} s, changed after {changed:.2f} s, {sent} steady requests")
    outputs = await read_all(settings, settings.namer.pipeline_outputs("steady"), count=sent + 10, timeout=5)
    per_key = Counter(r.key for r in outputs)
    assert len(per_key) == sent  # nothing lost
    assert max(per_key.values()) == 1  # nothing repeated by the rebalances the changes caused
