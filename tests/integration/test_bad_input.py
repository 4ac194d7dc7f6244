"""Bad input: bad records go to the dead-letter topic and the worker goes on; bad set-ups exit non-zero."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from dataflow import client
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest
from dataflow.runtime.engine import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from dataflow.tensors import request_from_json
from dataflow.testing.gateway import running_models
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


LOADED = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: echoes}
spec:
  steps:
    - name: echo
  output:
    steps: [echo]
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: picky}
spec:
  steps:
    - name: echo
      inputs: [picky.inputs.X]
  output:
    steps: [echo]
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: doubled}
spec:
  steps:
    - name: echo
    - name: mirror
  output:
    steps: [echo, mirror]
"""
LIMIT = 3_000_000  # SELDON_KAFKA_MAX_MESSAGE_SIZE_BYTES of this test


def floats(count: int) -> ModelInferRequest:
    """A request with one FP32 tensor of ``count`` values (4 bytes each on the wire)."""
    request = ModelInferRequest()
    tensor = request.inputs.add(name="X", datatype="FP32", shape=[count])
    tensor.contents.fp32_contents.extend(float(i % 1000) for i in range(count))
    return request


def mismatched() -> bytes:
    """FP32 declared, INT32 values given: a model server would refuse it."""
    request = ModelInferRequest()
    tensor = request.inputs.add(name="X", datatype="FP32", shape=[2])
    tensor.contents.int_contents.extend([1, 2])
    return request.SerializeToString()


async def test_bad_records_under_load(write_pipeline, workers, settings) -> None:
    """Bad records of every kind amid a steady stream: each is dead-lettered, callers whose request
    cannot be served get an error answer, and every good request is answered, near-limit ones too."""
    workers(write_pipeline(LOADED), extra_env={"SELDON_KAFKA_MAX_MESSAGE_SIZE_BYTES": str(LIMIT)})
    settings = settings.model_copy(update={"max_message_size": LIMIT})
    namer = settings.namer
    topic = namer.pipeline_inputs("echoes")
    good = request_from_json(GOOD).SerializeToString()
    header = [("pipeline", b"echoes")]
    produced: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = [
        ("garbage", b"\xff\xfe garbage", header),  # not a protobuf
        ("truncated", good[:-5], header),
        ("tombstone", None, header),
        ("no pipeline header", good, []),
        ("garbage inside a tensor", bytes.fromhex("2a05ffffffffff"), header),
        ("datatype does not match the data", mismatched(), header),
    ]
    rounds = 10
    answered = 0
    near_limit_answered = 0
    refused: list[str] = []
    stop = asyncio.Event()

    async def steady() -> None:
        nonlocal answered
        while not stop.is_set():
            result = await client.infer(settings, "echoes", request_from_json(GOOD), timeout=30)
            assert result.to_json()["outputs"][0]["data"] == [1.5, 2.5]
            answered += 1

    async def near_limit() -> None:
        """2.9 MB requests (limit 3 MB) come back intact."""
        nonlocal near_limit_answered
        request = floats(725_000)
        for _ in range(3):
            result = await client.infer(settings, "echoes", request, timeout=60)
            assert (
                result.response.outputs[0].contents.fp32_contents == request.inputs[0].contents.fp32_contents
            )
            near_limit_answered += 1

    async def must_fail(pipeline: str, request: ModelInferRequest) -> None:
        with pytest.raises(client.PipelineError) as info:
            await client.infer(settings, pipeline, request, timeout=60)
        refused.append(info.value.text)

    unknown_tensor = request_from_json(
        {"inputs": [{"name": "Z", "datatype": "FP32", "shape": [1], "data": [1]}]}
    )
    async with running_models(settings, ["echo", "mirror=echo"]):
        callers = [asyncio.create_task(steady()) for _ in range(3)]
        big = asyncio.create_task(near_limit())
        for round_ in range(rounds):
            for kind, (_, value, headers) in enumerate(produced):
                key = make_key(0, "echoes", f"bad{round_}-{kind}").encode()
                await produce(settings, topic, value, key=key, headers=headers)
            # a tensor no step of `picky` reads; a join answer of 3.2 MB, over the limit
            await must_fail("picky", unknown_tensor)
            if round_ % 2 == 0:
                await must_fail("doubled", floats(400_000))
        await big
        await asyncio.sleep(2)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*callers), timeout=60)
    sent_bad = len(produced) * rounds + rounds + (rounds + 1) // 2
    dead = await read_all(settings, namer.dead_letter(), count=sent_bad + 5, timeout=5)
    reasons = Counter((d.header(DLQ_REASON) or b"").decode().split(":")[0] for d in dead)
    print(
        f"\nbad input under load: {sent_bad} bad records of {len(produced) + 2} kinds, {len(dead)} "
        f"dead-lettered, {len(refused)} callers answered with an error, {answered} good answered, "
        f"{near_limit_answered} near-limit (2.9 MB of 3 MB) answered; reasons {dict(reasons)}"
    )
    assert len(dead) == sent_bad, reasons
    assert all(d.header(DLQ_TOPIC) and d.header(DLQ_OFFSET) for d in dead)
    assert sum("takes any tensor" in text for text in refused) == rounds
    assert sum("MessageSizeTooLarge" in text for text in refused) == (rounds + 1) // 2, refused
    assert answered > 0
    assert near_limit_answered == 3


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
        "DATAFLOW_STARTUP_WAIT_SECONDS": "3",
    }
    started = time.monotonic()
    done = _run(["worker", "--pipelines", str(path)], unreachable)
    assert done.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in done.stderr
    assert "gave up after 3 s (DATAFLOW_STARTUP_WAIT_SECONDS)" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


async def test_worker_stops_cleanly_on_sigterm(write_pipeline, workers) -> None:
    proc = workers(write_pipeline(CHAIN))
    code = await asyncio.to_thread(proc.stop, 30)
    assert code == 0, proc.log_tail()


def test_a_port_that_never_answers_is_given_up_on_in_time(tmp_path: Path, env) -> None:
    """A port that takes connections but is no Kafka: the last attempt ends by the limit, and the
    line says the port gave no answer (not a bare TimeoutError)."""
    path = tmp_path / "ok.yaml"
    path.write_text(CHAIN)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nothing ever answers them
        port = silent.getsockname()[1]
        done = _run(
            ["worker", "--pipelines", str(path)],
            {
                **env,
                "SELDON_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                "DATAFLOW_STARTUP_WAIT_SECONDS": "4",
            },
        )
    assert done.returncode == 1, done.stderr
    said = re.search(rf"cannot reach Kafka at 127.0.0.1:{port}: no answer within ([0-9.]+) s", done.stderr)
    assert said, done.stderr
    # the attempt was cut to what was left of the 4 s wait (an attempt is 5 s otherwise)
    assert float(said.group(1)) <= 4, said.group(0)
    assert "gave up after 4 s" in done.stderr


def test_sigterm_while_waiting_for_kafka_stops_cleanly(tmp_path: Path, env) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(CHAIN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataflow.cli.main", "worker", "--pipelines", str(path)],
        env={**os.environ, **env, "SELDON_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until it is waiting
            if "not ready, retrying in" in line:
                break
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, rest
    assert "stopped by a signal while waiting for Kafka (cannot reach Kafka at 127.0.0.1:1" in rest
    assert "Traceback" not in rest
