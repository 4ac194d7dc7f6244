"""Scheduler mode: the worker takes pipelines from a (fake) Seldon scheduler over the Chainer gRPC
service and answers it as the reference engine does (spec §3)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.control import chainer
from dataflow.proto import chainer_pb2 as pb
from dataflow.tensors import request_from_json
from dataflow.testing.scheduler import FakeScheduler
from dataflow.updates import Operation

pytestmark = pytest.mark.integration

TFSIMPLE = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: sched-simple}
spec:
  steps:
    - name: tfsimple1
  output:
    steps: [tfsimple1]
"""

ONES = list(range(1, 17))


def body() -> Any:
    return request_from_json(
        {
            "inputs": [
                {"name": n, "datatype": "INT32", "shape": [1, 16], "data": ONES} for n in ("INPUT0", "INPUT1")
            ]
        }
    )


async def ask(settings: Settings, pipeline: str, timeout: float = 20) -> list[int]:
    result = await client.infer(settings, pipeline, body(), timeout=timeout)
    data: list[int] = result.to_json()["outputs"][0]["data"]
    return data


@pytest.fixture
async def scheduler(settings: Settings):
    async with FakeScheduler(settings.namer) as fake:
        yield fake


def scheduled(scheduler: FakeScheduler, replica: str) -> dict[str, str]:
    return {
        "SELDON_UPSTREAM_HOST": "127.0.0.1",
        "SELDON_UPSTREAM_PORT": str(scheduler.port),
        "SELDON_DATAFLOW_REPLICA_ID": replica,
    }


async def test_create_answer_delete(scheduler: FakeScheduler, workers, models, settings: Settings) -> None:
    worker = workers(extra_env=scheduled(scheduler, "replica-a"))
    await scheduler.wait_for_subscriber("replica-a", timeout=30)
    started = time.monotonic()
    sent = await scheduler.create(TFSIMPLE)
    reply = await scheduler.wait_for_reply("sched-simple", Operation.CREATE, uid=sent.uid, timeout=5)
    assert time.monotonic() - started < 5
    assert reply.success and reply.reason == chainer.READY
    # the reply echoes what the scheduler uses to match it: op, pipeline, version, uid, timestamp, stream
    echo = reply.update
    assert (echo.op, echo.pipeline, echo.version, echo.uid, echo.timestamp, echo.stream) == (
        pb.PipelineUpdateMessage.Create, "sched-simple", 1, sent.uid, sent.timestamp, "replica-a"
    )  # fmt: skip
    async with models("tfsimple1"):
        assert await ask(settings, "sched-simple") == [2 * i for i in ONES]
        # a second Create of the running uid is a no-op success (rebalances and reconnects send them)
        await scheduler.send_raw(sent)
        again = await scheduler.wait_for_reply(
            "sched-simple", Operation.CREATE, uid=sent.uid, timestamp=sent.timestamp, timeout=5
        )
        assert again.success and again.reason == chainer.READY
        removed = await scheduler.delete("sched-simple")
        gone = await scheduler.wait_for_reply("sched-simple", Operation.DELETE, uid=removed.uid, timeout=5)
        assert gone.success and gone.reason == chainer.REMOVED
        with pytest.raises(client.InferTimeout):
            await ask(settings, "sched-simple", timeout=3)
    assert worker.probe("/startup")[0] == 200


async def test_delete_of_an_unknown_uid_is_answered(
    scheduler: FakeScheduler, workers, settings: Settings
) -> None:
    """BR-23: the reference stays silent and the pipeline hangs in Terminating."""
    workers(extra_env=scheduled(scheduler, "replica-b"))
    await scheduler.wait_for_subscriber("replica-b", timeout=30)
    message = pb.PipelineUpdateMessage(
        op=pb.PipelineUpdateMessage.Delete, pipeline="ghost", version=3, uid="nosuchuid", timestamp=7
    )
    await scheduler.send_raw(message)
    reply = await scheduler.wait_for_reply("ghost", Operation.DELETE, uid="nosuchuid", timeout=5)
    assert reply.success and reply.reason == chainer.REMOVED and reply.update.timestamp == 7


async def test_topic_creation_failure_is_reported(
    scheduler: FakeScheduler, workers, settings: Settings
) -> None:
    workers(extra_env=scheduled(scheduler, "replica-c"))
    await scheduler.wait_for_subscriber("replica-c", timeout=30)
    bad = pb.PipelineUpdateMessage(
        op=pb.PipelineUpdateMessage.Create, pipeline="badtopic", version=1, uid="u-bad", timestamp=1,
        pipelineOutputTopic=settings.namer.pipeline_outputs("badtopic"), pipelineErrorTopic=settings.namer.errors,
    )  # fmt: skip
    step = bad.updates.add()
    step.sources.add(pipelineName="badtopic", topicName=settings.namer.pipeline_inputs("badtopic"))
    step.sink.pipelineName = "badtopic"
    step.sink.topicName = "not a valid/topic name"
    await scheduler.send_raw(bad)
    reply = await scheduler.wait_for_reply("badtopic", Operation.CREATE, uid="u-bad", timeout=10)
    assert not reply.success
    assert reply.reason.startswith("kafka streams topic creation error Exception: "), reply.reason


async def test_scheduler_restart_keeps_pipelines_serving(workers, models, settings: Settings) -> None:
    fake = FakeScheduler(settings.namer)
    await fake.start()
    port = fake.port
    workers(extra_env=scheduled(fake, "replica-d"))
    await fake.wait_for_subscriber("replica-d", timeout=30)
    sent = await fake.create(TFSIMPLE)
    await fake.wait_for_reply("sched-simple", Operation.CREATE, uid=sent.uid, timeout=5)
    async with models("tfsimple1"):
        stop = asyncio.Event()
        answered = 0

        async def traffic() -> None:
            nonlocal answered
            while not stop.is_set():
                assert await ask(settings, "sched-simple") == [2 * i for i in ONES]
                answered += 1

        task = asyncio.create_task(traffic())
        await asyncio.sleep(1)
        await fake.stop()  # the scheduler goes away; no pipeline is torn down
        await asyncio.sleep(2)
        during = answered
        restarted = FakeScheduler(settings.namer, port=port)
        await restarted.start()
        try:
            await restarted.wait_for_subscriber("replica-d", timeout=15)  # resubscribed with backoff
            await asyncio.sleep(1)
        finally:
            stop.set()
            await task
            await restarted.stop()
    assert during > 0 and answered > during
