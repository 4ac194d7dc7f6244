"""``make bench``: how fast one worker's engine routes records, without Kafka in the way.

Each case feeds records through :class:`~dataflow.runtime.engine.Engine` with a producer that only
counts, so the figures are the engine's own cost per record (the ceiling a worker's CPU sets), not the
broker's. ``docs/performance.md`` quotes the last run. ``--seconds`` bounds each case; a short run
(``--seconds 0.2``) is the smoke test the unit suite runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dataflow.compile import compile_pipeline
from dataflow.metrics import Metrics
from dataflow.plan import Router, plan_pipeline
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.runtime.engine import Engine, Record
from dataflow.spec.load import load_text
from dataflow.topics import TopicNamer, make_key

NAMER = TopicNamer("seldon", "bench")

CHAIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: chain}
spec:
  steps:
    - name: m1
    - name: m2
      inputs: [m1]
  output:
    steps: [m2]
"""
RENAME = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: chain}
spec:
  steps:
    - name: m1
    - name: m2
      inputs: [m1.outputs.OUTPUT0]
      tensorMap: {m1.outputs.OUTPUT0: INPUT}
  output:
    steps: [m2]
"""
JOIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: chain}
spec:
  steps:
    - name: m1
    - name: m2
  output:
    steps: [m1, m2]
"""


@dataclass
class Case:
    name: str
    pipeline: str
    topic: Callable[[], str]
    value: bytes
    records_per_message: int = 1  # records a join needs before it emits


@dataclass
class Result:
    name: str
    records: int
    seconds: float
    bytes_in: int
    emitted: int  # records the engine produced: a case that emits nothing measured nothing

    @property
    def per_second(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.bytes_in / self.seconds / 1e6


def _response(values: int, *, raw: bool) -> bytes:
    msg = ModelInferResponse(model_name="m1", model_version="1", id="r")
    tensor = msg.outputs.add(name="OUTPUT0", datatype="FP32", shape=[1, values])
    data = [float(i) for i in range(values)]
    if raw:
        import struct

        msg.raw_output_contents.append(struct.pack(f"<{values}f", *data))
    else:
        tensor.contents.fp32_contents.extend(data)
    return msg.SerializeToString()


def _request(values: int) -> bytes:
    msg = ModelInferRequest(id="r")
    msg.inputs.add(name="INPUT", datatype="FP32", shape=[1, values]).contents.fp32_contents.extend(
        float(i) for i in range(values)
    )
    return msg.SerializeToString()


CASES = [
    Case("pipeline request -> first model, bytes forwarded (16 floats)", CHAIN,
         lambda: NAMER.pipeline_inputs("chain"), _request(16)),
    Case("model answer -> next model, bytes forwarded (16 floats)", CHAIN,
         lambda: NAMER.model_outputs("m1"), _response(16, raw=False)),
    Case("model answer -> next model, bytes forwarded (1 MB raw)", CHAIN,
         lambda: NAMER.model_outputs("m1"), _response(250_000, raw=True)),
    Case("model answer -> next model, renamed: parsed and rebuilt (16 floats)", RENAME,
         lambda: NAMER.model_outputs("m1"), _response(16, raw=False)),
    Case("two model answers joined at the output (16 floats each)", JOIN,
         lambda: NAMER.model_outputs("m1"), _response(16, raw=False), records_per_message=2),
]  # fmt: skip


class _Counting:
    """A producer that accepts every record at once."""

    def __init__(self) -> None:
        self.records = 0
        self._done: asyncio.Future[None] | None = None

    async def send(self, topic: str, key: Any, value: Any, partition: int, ts: Any, headers: Any) -> Any:
        self.records += 1
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            self._done.set_result(None)
        return self._done


def _engine(pipeline: str) -> tuple[Engine, _Counting]:
    plans = [
        plan_pipeline(compile_pipeline(lp.pipeline, NAMER, version=1), 60_000)
        for lp in load_text(pipeline, "bench.yaml")
    ]
    sink = _Counting()
    return Engine(Router.build(plans), sink.send, NAMER, Metrics(), default_partitions=4), sink


async def run_case(case: Case, seconds: float) -> Result:
    engine, sink = _engine(case.pipeline)
    headers = [("pipeline", b"chain"), ("x-request-id", b"r")]
    topics = [case.topic()]
    if case.records_per_message == 2:
        topics.append(NAMER.model_outputs("m2"))
    offset = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(200):
            key = make_key(0, "chain", f"r{offset}").encode()
            for topic in topics:
                await engine.process(Record(topic, 0, offset, key, case.value, headers, time.time()))
            offset += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    records = offset * len(topics)
    return Result(case.name, records, elapsed, records * len(case.value), sink.records)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main_async(seconds: float) -> list[Result]:
    results = []
    for case in CASES:
        gc.collect()
        results.append(await run_case(case, seconds))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataflow.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case (default 3)")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args.seconds))
    print(f"{'case':<70} {'records/s':>10} {'MB/s':>8}")
    for r in results:
        print(f"{r.name:<70} {r.per_second:>10,.0f} {r.mb_per_second:>8,.1f}")
    print(f"peak RSS {_rss_mb():.0f} MB (python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
