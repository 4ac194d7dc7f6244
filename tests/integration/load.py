"""A steady request stream over two pipelines, for the scaling and broker-trouble tests.

A chain (add10 -> mul10) and a join (add10 and mirror in parallel, joined at the output). Callers send
back to back and record what came back; ``report`` prints the figures docs/reliability.md quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dataflow import client
from dataflow.config import Settings
from dataflow.errors import DataflowError
from dataflow.tensors import request_from_json
from dataflow.testing.kafka import read_all

PIPELINES = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: roll-test}
spec:
  steps:
    - name: add10
    - name: mul10
      inputs: [add10]
  output:
    steps: [mul10]
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: fork-test}
spec:
  steps:
    - name: add10
    - name: mirror
  output:
    steps: [add10, mirror]
"""
MODELS = ["add10", "mul10", "mirror=echo"]
REQUEST = {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
EXPECTED = {
    "roll-test": [[110, 120, 130, 140]],
    "fork-test": [[11, 12, 13, 14], [1, 2, 3, 4]],
}


@dataclass
class Load:
    """Requests sent back to back by a few callers per pipeline; what came back, and when."""

    settings: Settings
    sent: int = 0
    answers: list[tuple[float, int]] = field(default_factory=list)  # (time answered, partition)
    failures: list[str] = field(default_factory=list)
    lost: list[tuple[str, str]] = field(default_factory=list)  # (pipeline, key)
    unsent: list[str] = field(default_factory=list)  # requests the caller was told it could not send
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def caller(self, pipeline: str) -> None:
        request = request_from_json(REQUEST)
        while not self.stop.is_set():
            self.sent += 1
            try:
                result = await client.infer(self.settings, pipeline, request, timeout=45)
                assert [o["data"] for o in result.to_json()["outputs"]] == EXPECTED[pipeline]
                self.answers.append((time.monotonic(), result.partition))
            except (client.InferTimeout, AssertionError, client.PipelineError) as exc:
                self.failures.append(f"{pipeline}: {exc}")
                if isinstance(exc, client.InferTimeout):
                    self.lost.append((pipeline, exc.key))
            except DataflowError as exc:  # the caller could not reach Kafka: told, not lost
                self.sent -= 1
                self.unsent.append(str(exc))
                await asyncio.sleep(0.5)

    @contextlib.asynccontextmanager
    async def running(self, per_pipeline: int = 2) -> AsyncIterator[None]:
        """Callers run inside the block; on leaving it (also on a failure) they finish their last
        request, or are cancelled after a deadline."""
        tasks = [asyncio.create_task(self.caller(p)) for p in EXPECTED for _ in range(per_pipeline)]
        try:
            yield
        finally:
            self.stop.set()
            done, pending = await asyncio.wait(tasks, timeout=60)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()

    def first_answers_after(self, moment: float) -> dict[int, float]:
        """For each partition, seconds from ``moment`` to its first answer after it."""
        firsts: dict[int, float] = {}
        for at, partition in self.answers:
            if at > moment and partition not in firsts:
                firsts[partition] = at - moment
        return firsts

    async def report(self, title: str, extra: str = "") -> int:
        dup = await duplicates(self.settings, len(self.answers))
        await where_lost(self.settings, self.lost)
        print(
            f"\n{title}: sent {self.sent}, answered {len(self.answers)}, lost {len(self.failures)}, "
            f"duplicated {dup}{extra}"
        )
        assert not self.failures, self.failures[:3]
        assert len(self.answers) == self.sent
        return dup


async def duplicates(settings: Settings, answered: int) -> int:
    """Answers beyond the first per request key, on both pipelines' output topics."""
    total = 0
    for pipeline in EXPECTED:
        records = await read_all(
            settings, settings.namer.pipeline_outputs(pipeline), count=answered * 3, timeout=5
        )
        total += sum(n - 1 for n in Counter(r.key for r in records).values())
    return total


async def where_lost(settings: Settings, lost: list[tuple[str, str]]) -> None:
    """For a request that got no answer: print each hop's topic and partition/offset holding its key."""
    namer = settings.namer
    for pipeline, key in lost:
        hops = [
            namer.pipeline_inputs(pipeline),
            *(namer.model_inputs(m) for m in ("add10", "mul10", "mirror")),
            *(namer.model_outputs(m) for m in ("add10", "mul10", "mirror")),
            namer.pipeline_outputs(pipeline),
            namer.dead_letter(),
        ]
        for topic in hops:
            found = [
                (r.partition, r.offset)
                for r in await read_all(settings, topic, count=10**6, timeout=3)
                if r.key == key.encode()
            ]
            print(f"lost {pipeline} {key}: {topic} {found}")
