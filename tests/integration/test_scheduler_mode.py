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
from dataflow.testing.kafka import create_topic, read_all
from dataflow.testing.scheduler import FakeScheduler, new_uid
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


def scheduled(scheduler: FakeScheduler, replica: str, unsubscribe_after: float = 30) -> dict[str, str]:
    return {
        "SELDON_UPSTREAM_HOST": "127.0.0.1",
        "SELDON_UPSTREAM_PORT": str(scheduler.port),
        "SELDON_DATAFLOW_REPLICA_ID": replica,
        "DATAFLOW_UNSUBSCRIBE_AFTER_SECONDS": str(unsubscribe_after),
    }


async def test_create_answer_delete(scheduler: FakeScheduler, workers, models, settings: Settings) -> None:
    worker = workers(extra_env=scheduled(scheduler, "replica-a", unsubscribe_after=1))
    await scheduler.wait_for_subscriber("replica-a", timeout=30)
    sent = await scheduler.create(TFSIMPLE)
    # the deadline is the promise: a success reply within 5 s
    reply = await scheduler.wait_for_reply("sched-simple", Operation.CREATE, uid=sent.uid, timeout=5)
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

    # and its topics are no longer consumed: only the namespace's errors topic is left
    def assigned() -> str:
        return str(worker.probe("/ready")[1]["checks"]["service"]["details"]["assigned_partitions"])  # type: ignore[index]

    deadline = time.monotonic() + 10
    while assigned() != "2" and time.monotonic() < deadline:  # errors topic and join-state changelog
        await asyncio.sleep(0.2)
    assert metric(worker, "dataflow_subscribed_topics") == 1
    assert assigned() == "2"
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
    steps: [sumdiff-c]%s
"""

EVENS = [2 * i for i in ONES]


async def test_a_new_version_takes_over_without_failures(
    scheduler: FakeScheduler, workers, models, settings: Settings
) -> None:
    """BR-12: v2 runs beside v1 until ready, v1 is then deleted, and v2 keeps answering."""
    workers(extra_env=scheduled(scheduler, "replica-e"))
    await scheduler.wait_for_subscriber("replica-e", timeout=30)
    v1 = await scheduler.create(FANIN % "")
    assert (await scheduler.wait_for_reply("fanin", Operation.CREATE, uid=v1.uid, timeout=10)).success
    failures: list[BaseException] = []
    answered = 0
    stop = asyncio.Event()

    async def traffic() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                result = await client.infer(settings, "fanin", body(), timeout=10)
                outs = {o["name"]: o["data"] for o in result.to_json()["outputs"]}
                assert outs == {"OUTPUT0": EVENS, "OUTPUT1": EVENS}
                answered += 1
            except (client.InferTimeout, AssertionError) as exc:
                failures.append(exc)
            await asyncio.sleep(0.05)

    async with models("sumdiff-a", "sumdiff-b", "sumdiff-c"):
        task = asyncio.create_task(traffic())
        await asyncio.sleep(1.5)
        v2 = await scheduler.create(FANIN % "\n    stepsJoin: outer")
        assert v2.version == 2 and v2.uid != v1.uid
        assert (await scheduler.wait_for_reply("fanin", Operation.CREATE, uid=v2.uid, timeout=10)).success
        # the fake, as Seldon's scheduler, deletes v1 once v2 is ready
        gone = await scheduler.wait_for_reply("fanin", Operation.DELETE, uid=v1.uid, timeout=10)
        assert gone.success
        before = answered
        await asyncio.sleep(3)  # v2 alone now
        stop.set()
        await task
    assert not failures, failures[:3]
    assert answered > before > 0


STATEFUL = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: stateful}
spec:
  steps:
    - name: add10
      inputs: [stateful.inputs.INPUT]
    - name: mul10
      inputs: [stateful.inputs.INPUT]
    - name: echo
      inputs: [add10.outputs.OUTPUT, mul10.outputs.OUTPUT]
      tensorMap: {add10.outputs.OUTPUT: X, mul10.outputs.OUTPUT: Y}
      triggers: [stateful.inputs.go]
  output:
    steps: [echo]
"""


async def test_create_is_idempotent_and_failures_keep_their_cause(
    scheduler: FakeScheduler, workers, models, settings: Settings
) -> None:
    """BR-14: a repeated create is acknowledged without a restart; a failing create reports its real
    cause, every time, and leaves the control stream and other pipelines alone."""
    workers(extra_env=scheduled(scheduler, "replica-f"))
    await scheduler.wait_for_subscriber("replica-f", timeout=30)
    sent = await scheduler.create(STATEFUL)
    assert (await scheduler.wait_for_reply("stateful", Operation.CREATE, uid=sent.uid, timeout=10)).success
    request = request_from_json(
        {
            "inputs": [
                {"name": "INPUT", "datatype": "FP32", "shape": [2], "data": [1, 2]},
                {"name": "go", "datatype": "FP32", "shape": [1], "data": [1]},
            ]
        }
    )
    async with models("add10", "mul10", "echo"):

        async def ask_stateful() -> dict[str, list[float]]:
            result = await client.infer(settings, "stateful", request, timeout=20)
            return {o["name"]: o["data"] for o in result.to_json()["outputs"]}

        assert await ask_stateful() == {"X": [11, 12], "Y": [10, 20]}
        resent = pb.PipelineUpdateMessage()
        resent.CopyFrom(sent)
        resent.timestamp = sent.timestamp + 100
        await scheduler.send_raw(resent)
        again = await scheduler.wait_for_reply(
            "stateful", Operation.CREATE, uid=sent.uid, timestamp=resent.timestamp, timeout=5
        )
        assert again.success and again.reason == chainer.READY
        assert await ask_stateful() == {"X": [11, 12], "Y": [10, 20]}
        # a broken create: a step without sources
        broken = pb.PipelineUpdateMessage(
            op=pb.PipelineUpdateMessage.Create, pipeline="broken", version=1, uid="u-broken"
        )
        broken.updates.add().sink.topicName = settings.namer.model_inputs("add10")
        reasons = []
        for stamp in (1, 2):
            broken.timestamp = stamp
            await scheduler.send_raw(broken)
            reply = await scheduler.wait_for_reply("broken", Operation.CREATE, timestamp=stamp, timeout=5)
            assert not reply.success
            reasons.append(reply.reason)
        assert reasons == [chainer.NOT_ALL_STEPS, chainer.NOT_ALL_STEPS]
        assert await ask_stateful() == {"X": [11, 12], "Y": [10, 20]}
    assert scheduler.subscribers == ["replica-f"]


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

CHURN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: churn-%d}
spec:
  steps:
    - name: mul10
    - name: echo
      inputs: [mul10, churn-%d.inputs]
      tensorMap: {mul10.outputs.OUTPUT: M}
  output:
    steps: [echo]
"""


def metric(worker: Any, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{worker.health_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"metric {name} not found")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_fifty_creates_and_deletes_beside_steady_traffic(
    scheduler: FakeScheduler, workers, models, settings: Settings
) -> None:
    """Pipelines come and go while another serves traffic: nothing lost or repeated on the steady
    pipeline, and nothing left behind (tasks, state, memory)."""
    worker = workers(extra_env=scheduled(scheduler, "replica-g"))
    await scheduler.wait_for_subscriber("replica-g", timeout=30)
    steady = await scheduler.create(STEADY)
    assert (await scheduler.wait_for_reply("steady", Operation.CREATE, uid=steady.uid, timeout=10)).success
    latencies: list[float] = []
    phase: dict[str, list[float]] = {"new topics": [], "known topics": []}
    current = phase["new topics"]
    stop = asyncio.Event()
    request = request_from_json(
        {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
    )

    async def traffic() -> None:
        nonlocal current
        while not stop.is_set():
            try:
                result = await client.infer(settings, "steady", request, timeout=20)
            except client.InferTimeout as exc:
                key = exc.key.encode()
                for topic in (
                    settings.namer.pipeline_inputs("steady"),
                    settings.namer.model_inputs("add10"),
                    settings.namer.model_outputs("add10"),
                    settings.namer.pipeline_outputs("steady"),
                ):
                    found = [
                        r.offset
                        for r in await read_all(settings, topic, count=100000, timeout=3)
                        if r.key == key
                    ]
                    print("LOST", topic, found)
                raise
            assert result.to_json()["outputs"][0]["data"] == [11, 12]
            latencies.append(result.elapsed_s)
            current.append(result.elapsed_s)

    async def cycle(i: int) -> None:
        created = await scheduler.create(CHURN % (i % 5, i % 5))
        reply = await scheduler.wait_for_reply(
            created.pipeline, Operation.CREATE, uid=created.uid, timeout=30
        )
        assert reply.success, reply.reason
        deleted = await scheduler.delete(created.pipeline)
        reply = await scheduler.wait_for_reply(
            created.pipeline, Operation.DELETE, uid=deleted.uid, timeout=30
        )
        assert reply.success, reply.reason

    async with models("add10"):
        task = asyncio.create_task(traffic())
        for i in range(5):  # warm up: each name's topics join the subscription once
            await cycle(i)
        await asyncio.sleep(1)
        assert worker.proc is not None
        rss_before, tasks_before = rss_kib(worker.proc.pid), metric(worker, "dataflow_asyncio_tasks")
        current = phase["known topics"]
        for i in range(5, 55):
            await cycle(i)
        await asyncio.sleep(1.5)
        rss_after, tasks_after = rss_kib(worker.proc.pid), metric(worker, "dataflow_asyncio_tasks")
        stop.set()
        await task
    assert metric(worker, "dataflow_state_entries") == 0
    assert metric(worker, "dataflow_pipelines") == 1
    # the gauge is a sample and Kafka clients keep a few short-lived tasks; a leak of one task per
    # pipeline would add 50
    assert tasks_after <= tasks_before + 10, (tasks_before, tasks_after)
    assert rss_after < rss_before * 1.10, (rss_before, rss_after)
    outputs = await read_all(
        settings, settings.namer.pipeline_outputs("steady"), count=len(latencies) + 10, timeout=5
    )
    assert len({r.key for r in outputs}) == len(outputs) == len(latencies)  # none lost, none repeated
    for name, values in phase.items():
        values.sort()
        p99 = values[max(0, int(len(values) * 0.99) - 1)]
        print(
            f"\nsteady pipeline while pipelines with {name} come and go: {len(values)} requests, "
            f"p50 {values[len(values) // 2] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms"
        )
    print(f"worker RSS {rss_before} -> {rss_after} KiB over 50 create/delete cycles")


async def test_a_recreated_pipeline_does_not_answer_requests_from_before(
    scheduler: FakeScheduler, workers, models, settings: Settings
) -> None:
    """BR-13: a request sent while the pipeline did not exist is not answered when it comes back."""
    from dataflow.testing.kafka import produce
    from dataflow.topics import make_key

    workers(extra_env=scheduled(scheduler, "replica-h", unsubscribe_after=1))
    await scheduler.wait_for_subscriber("replica-h", timeout=30)
    first = await scheduler.create(TFSIMPLE)
    assert (
        await scheduler.wait_for_reply("sched-simple", Operation.CREATE, uid=first.uid, timeout=10)
    ).success
    async with models("tfsimple1"):
        assert await ask(settings, "sched-simple") == [2 * i for i in ONES]
        removed = await scheduler.delete("sched-simple")
        await scheduler.wait_for_reply("sched-simple", Operation.DELETE, uid=removed.uid, timeout=10)
        await asyncio.sleep(3)  # its topics leave the subscription (after 1 s here)
        stale = make_key(0, "sched-simple", "stale").encode()
        await produce(settings, settings.namer.pipeline_inputs("sched-simple"), body().SerializeToString(),
                      key=stale, headers=[("pipeline", b"sched-simple")])  # fmt: skip
        again = await scheduler.create(TFSIMPLE)
        assert again.version == 1 and again.uid != first.uid
        assert (
            await scheduler.wait_for_reply("sched-simple", Operation.CREATE, uid=again.uid, timeout=10)
        ).success
        assert await ask(settings, "sched-simple") == [2 * i for i in ONES]
        await asyncio.sleep(1)
    answers = await read_all(settings, settings.namer.pipeline_outputs("sched-simple"), count=10, timeout=3)
    assert stale not in {r.key for r in answers}
    assert len(answers) == 2


async def test_fifty_pipelines_created_at_once_load_together(
    scheduler: FakeScheduler, workers, models, settings: Settings
) -> None:
    """BR-24: Creates arriving together are applied together (their topics created in one go, one
    subscription change), not one rebalance after another; each is answered, and all serve."""
    worker = workers(extra_env=scheduled(scheduler, "replica-many"))
    await scheduler.wait_for_subscriber("replica-many", timeout=30)
    generation = int(worker.probe("/ready")[1]["checks"]["service"]["details"]["generation"])  # type: ignore[index]
    names = [f"many{i:02d}" for i in range(50)]
    # one more, among them, that cannot run: its join reads a topic of another partition count
    await create_topic(settings, settings.namer.model_outputs("sumdiff-a"), 2)
    started = time.monotonic()
    sent = [await scheduler.create(TFSIMPLE.replace("sched-simple", name)) for name in names[:25]]
    faulty = await scheduler.create(FANIN % "")
    # and one whose topic name Kafka refuses
    invalid = pb.PipelineUpdateMessage()
    invalid.CopyFrom(sent[-1])
    invalid.uid, invalid.pipeline = new_uid(), "bad-topic"
    invalid.updates[0].sources[0].topicName = "bad topic name!"
    await scheduler.send_raw(invalid)
    sent += [await scheduler.create(TFSIMPLE.replace("sched-simple", name)) for name in names[25:]]
    replies = await asyncio.gather(
        *(scheduler.wait_for_reply(m.pipeline, Operation.CREATE, uid=m.uid, timeout=120) for m in sent)
    )
    loaded_s = time.monotonic() - started
    assert all(r.success and r.reason == chainer.READY for r in replies), [r.reason for r in replies]
    # the faulty one fails alone, with its own reason
    refused = await scheduler.wait_for_reply("fanin", Operation.CREATE, uid=faulty.uid, timeout=30)
    assert not refused.success and settings.namer.model_outputs("sumdiff-a") in refused.reason, refused.reason
    bad_name = await scheduler.wait_for_reply("bad-topic", Operation.CREATE, uid=invalid.uid, timeout=30)
    assert not bad_name.success and "bad topic name!" in bad_name.reason, bad_name.reason
    await worker.wait_ready_async(timeout=30)
    rebalances = int(worker.probe("/ready")[1]["checks"]["service"]["details"]["generation"]) - generation  # type: ignore[index]
    async with models("tfsimple1"):
        answers = await asyncio.gather(*(ask(settings, name, timeout=30) for name in names[::10]))
    print(f"\n50 pipelines created at once: all ready after {loaded_s:.1f} s, {rebalances} rebalance(s)")
    assert all(a == [2 * i for i in ONES] for a in answers)
    # serially this is one rebalance per pipeline; together, a few at most
    assert rebalances <= 5, rebalances


async def test_file_changes_keep_the_schedulers_pipelines(
    scheduler: FakeScheduler, write_pipeline, workers, models, settings: Settings
) -> None:
    """A worker given both a folder and a scheduler: files added and removed replace only the
    pipelines files gave, never the ones the scheduler created."""
    folder = write_pipeline(TFSIMPLE.replace("sched-simple", "file-one"), "one.yaml")
    workers(folder, extra_env=scheduled(scheduler, "replica-mixed"))
    await scheduler.wait_for_subscriber("replica-mixed", timeout=30)
    sent = await scheduler.create(TFSIMPLE)
    assert (
        await scheduler.wait_for_reply("sched-simple", Operation.CREATE, uid=sent.uid, timeout=10)
    ).success
    evens = [2 * i for i in ONES]
    async with models("tfsimple1"):
        assert await ask(settings, "sched-simple") == evens
        write_pipeline(TFSIMPLE.replace("sched-simple", "file-two"), "two.yaml")
        deadline = time.monotonic() + 30
        while True:  # the folder is looked at every second; the new pipeline's topics come first
            try:
                assert await ask(settings, "file-two", timeout=3) == evens
                break
            except (client.InferTimeout, client.PipelineNotFound):
                assert time.monotonic() < deadline, "file-two never answered"
        (folder / "one.yaml").unlink()
        await asyncio.sleep(3)
        with pytest.raises(client.InferTimeout):
            await ask(settings, "file-one", timeout=3)
        assert await ask(settings, "sched-simple") == evens
        assert await ask(settings, "file-two") == evens
