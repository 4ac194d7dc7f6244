"""Bad input: bad records go to the dead-letter topic and the worker goes on; bad set-ups exit non-zero."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflow import client
from dataflow.runtime.engine import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from dataflow.tensors import request_from_json
from dataflow.testing.kafka import produce, read_all
from dataflow.topics import ERROR_HEADER, make_key

pytestmark = pytest.mark.integration

CHAIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: echoes}
spec:
  steps:
    - name: echo
  output:
    steps: [echo]
"""

GOOD = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": [1.5, 2.5]}]}


async def test_garbage_record_is_dead_lettered_answered_and_the_worker_goes_on(
    write_pipeline, workers, models, settings
) -> None:
    workers(write_pipeline(CHAIN))
    namer = settings.namer
    key = make_key(0, "echoes").encode()
    async with models("echo"):
        await produce(
            settings,
            namer.pipeline_inputs("echoes"),
            b"\x08\x96\x01garbage",
            key=key,
            headers=[("pipeline", b"echoes")],
        )
        [dead] = await read_all(settings, namer.dead_letter(), count=1)
        assert dead.key == key
        assert dead.value == b"\x08\x96\x01garbage"
        assert dead.header(DLQ_TOPIC) == namer.pipeline_inputs("echoes").encode()
        assert dead.header(DLQ_PARTITION) == b"0"
        assert dead.header(DLQ_OFFSET) == b"0"
        assert b"not a valid ModelInferRequest" in (dead.header(DLQ_REASON) or b"")
        # the caller waiting for that key got an error answer rather than silence
        answers = await read_all(settings, namer.pipeline_outputs("echoes"), count=1)
        assert [a.key for a in answers] == [key]
        assert answers[0].header(ERROR_HEADER) == b"echoes"
        # and the next good request is served
        result = await client.infer(settings, "echoes", request_from_json(GOOD), timeout=20)
        assert result.to_json()["outputs"][0]["data"] == [1.5, 2.5]


async def test_records_of_no_pipeline_are_dead_lettered_and_of_another_pipeline_ignored(
    write_pipeline, workers, models, settings
) -> None:
    workers(write_pipeline(CHAIN))
    namer = settings.namer
    good = request_from_json(GOOD).SerializeToString()
    async with models("echo") as gw:
        await produce(settings, namer.pipeline_inputs("echoes"), good)  # no pipeline header
        await produce(settings, namer.pipeline_inputs("echoes"), good, headers=[("pipeline", b"other")])
        result = await client.infer(settings, "echoes", request_from_json(GOOD), timeout=20)
        assert result.response.outputs[0].name == "X"
        assert gw.calls["echo"] == 1  # only the request that carried `pipeline: echoes`
    [dead] = await read_all(settings, namer.dead_letter(), count=2, timeout=3)
    assert dead.header(DLQ_REASON) == b"record without a pipeline header"
    assert dead.header(DLQ_OFFSET) == b"0"


async def test_bad_records_under_load(write_pipeline, workers, models, settings) -> None:
    """Bad records of every kind amid a steady stream: each is dead-lettered, every good one answered."""
    workers(write_pipeline(CHAIN))
    namer = settings.namer
    topic = namer.pipeline_inputs("echoes")
    good = request_from_json(GOOD).SerializeToString()
    header = [("pipeline", b"echoes")]
    bad: list[tuple[bytes | None, list[tuple[str, bytes]]]] = [
        (b"\xff\xfe garbage", header),  # not a protobuf
        (good[:-5], header),  # truncated
        (None, header),  # tombstone
        (good, []),  # no pipeline header
        (bytes.fromhex("2a05ffffffffff"), header),  # garbage inside a tensor
    ]
    answered = 0
    stop = asyncio.Event()

    async def steady() -> None:
        nonlocal answered
        while not stop.is_set():
            result = await client.infer(settings, "echoes", request_from_json(GOOD), timeout=20)
            assert result.to_json()["outputs"][0]["data"] == [1.5, 2.5]
            answered += 1

    async with models("echo"):
        callers = [asyncio.create_task(steady()) for _ in range(3)]
        for round_ in range(10):
            for kind, (value, headers) in enumerate(bad):
                key = make_key(0, "echoes", f"bad{round_}-{kind}").encode()
                await produce(settings, topic, value, key=key, headers=headers)
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*callers)
    dead = await read_all(settings, namer.dead_letter(), count=len(bad) * 10 + 5, timeout=5)
    print(
        f"\nbad input under load: {len(bad) * 10} bad records, {len(dead)} dead-lettered, {answered} good answered"
    )
    assert len(dead) == len(bad) * 10
    assert answered > 0


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataflow.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_worker_refuses_an_invalid_pipeline_naming_the_file(tmp_path: Path, env) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CHAIN.replace("inputs: [", "inputs: [").replace(
            "- name: echo\n", "- name: echo\n      input: [x]\n", 1
        )
    )
    done = _run(["worker", "--pipelines", str(bad)], env)
    assert done.returncode == 1
    assert f"{bad}:" in done.stderr and "unknown field" in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_exits_non_zero_when_the_broker_is_unreachable(tmp_path: Path, env) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(CHAIN)
    unreachable = {
        **env,
        "SELDON_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATAFLOW_CONNECT_TIMEOUT_SECONDS": "3",
    }
    started = time.monotonic()
    done = _run(["worker", "--pipelines", str(path)], unreachable)
    assert done.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1 within 3 s" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


async def test_worker_stops_cleanly_on_sigterm(write_pipeline, workers) -> None:
    proc = workers(write_pipeline(CHAIN))
    code = await asyncio.to_thread(proc.stop, 30)
    assert code == 0, proc.log_tail()
