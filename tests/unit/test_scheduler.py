"""Unit tests of the fake scheduler, through a real gRPC client on 127.0.0.1 (no Kafka).

What the engine relies on (spec §3.1-3.3): Create contents as the scheduler compiles them, uid/version/
timestamp rules, Creates re-sent on subscription, old versions deleted once the new one is ready, and
``cleanTopicsOnDelete`` carried as one step update.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from dataflow.cli.scheduler import _reply_line, scheduler
from dataflow.compile import compile_pipeline
from dataflow.control.chainer import READY, from_message, reply
from dataflow.errors import SpecError
from dataflow.proto import chainer_pb2 as pb
from dataflow.proto import chainer_pb2_grpc as pb_grpc
from dataflow.spec import Pipeline, load_text
from dataflow.testing.scheduler import FakeScheduler, new_uid
from dataflow.topics import TopicNamer
from dataflow.updates import Operation, PipelineTopic

ROOT = Path(__file__).resolve().parents[2]
NAMER = TopicNamer(prefix="seldon", namespace="fake-ns")
TIMEOUT = 5.0


def pipeline_yaml(name: str, body: str) -> str:
    head = f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n"
    return head + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


TFSIMPLES = pipeline_yaml(
    "tfsimples",
    """
    steps:
      - name: tfsimple1
      - name: tfsimple2
        inputs:
        - tfsimple1
        tensorMap:
          tfsimple1.outputs.OUTPUT0: INPUT0
          tfsimple1.outputs.OUTPUT1: INPUT1
    output:
      steps:
      - tfsimple2
    """,
)

# input step, triggers, join types, window, batch: every field of a step update
RICH = pipeline_yaml(
    "rich",
    """
    input:
      externalInputs:
      - tfsimples.outputs
      tensorMap:
        tfsimples.outputs.OUTPUT0: INPUT0
    steps:
      - name: a
        batch:
          size: 4
      - name: b
        inputs:
        - a.outputs.OUTPUT0
        triggers:
        - rich.inputs.flag
        joinWindowMs: 500
        inputsJoinType: any
      - name: c
        inputs: [a, b]
        inputsJoinType: outer
    output:
      steps: [c]
      stepsJoin: any
      joinWindowMs: 700
    """,
)


def one(text: str) -> Pipeline:
    [loaded] = load_text(text, "test.yaml")
    return loaded.pipeline


@pytest.fixture
async def fake() -> AsyncIterator[FakeScheduler]:
    async with FakeScheduler(NAMER) as server:
        yield server


@pytest.fixture
async def stub(fake: FakeScheduler) -> AsyncIterator[pb_grpc.ChainerStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fake.port}") as channel:
        yield pb_grpc.ChainerStub(channel)  # type: ignore[no-untyped-call]


class Replica:
    """One engine replica's subscription. A background reader queues what arrives, because timing
    out a grpc.aio ``read()`` cancels the whole call."""

    def __init__(self, stub: pb_grpc.ChainerStub, name: str) -> None:
        self.stub = stub
        self.name = name
        self.call = stub.SubscribePipelineUpdates(pb.PipelineSubscriptionRequest(name=name))
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while (message := await self.call.read()) is not grpc.aio.EOF:
                self.inbox.put_nowait(message)
            self.inbox.put_nowait(grpc.aio.EOF)
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            self.inbox.put_nowait(exc)

    async def next(self) -> pb.PipelineUpdateMessage:
        message = await asyncio.wait_for(self.inbox.get(), TIMEOUT)
        assert isinstance(message, pb.PipelineUpdateMessage), message
        return message

    async def ended(self) -> None:
        assert await asyncio.wait_for(self.inbox.get(), TIMEOUT) is grpc.aio.EOF

    async def nothing_more(self, wait: float = 0.2) -> None:
        await asyncio.sleep(wait)
        assert self.inbox.empty(), self.inbox.get_nowait()

    async def answer(
        self, message: pb.PipelineUpdateMessage, success: bool = True, reason: str = READY
    ) -> None:
        await self.stub.PipelineUpdateEvent(
            reply(from_message(message), self.name, success, reason), timeout=TIMEOUT
        )


async def subscribe(fake: FakeScheduler, stub: pb_grpc.ChainerStub, name: str) -> Replica:
    replica = Replica(stub, name)
    await fake.wait_for_subscriber(name, timeout=TIMEOUT)
    return replica


def test_uids_look_like_xids() -> None:
    uids = {new_uid() for _ in range(1000)}
    assert len(uids) == 1000
    assert all(re.fullmatch(r"[0-9a-v]{20}", u) for u in uids)


async def test_create_sends_the_compiled_pipeline(fake: FakeScheduler, stub: pb_grpc.ChainerStub) -> None:
    r1 = await subscribe(fake, stub, "r1")
    assert fake.subscribers == ["r1"]
    for text in (TFSIMPLES, RICH):
        sent = await fake.create(text)
        got = await r1.next()
        assert got == sent
        assert got.op == pb.PipelineUpdateMessage.Create
        assert got.version == 1
        assert re.fullmatch(r"[0-9a-v]{20}", got.uid)
        assert got.timestamp == 1
        expected = compile_pipeline(one(text), NAMER, version=1, uid=got.uid, timestamp=got.timestamp)
        assert from_message(got) == expected
    assert got.pipelineOutputTopic == "seldon.fake-ns.pipeline.rich.outputs"
    assert got.pipelineErrorTopic == NAMER.errors


async def test_a_pipeline_object_is_accepted_and_bad_yaml_raises(fake: FakeScheduler) -> None:
    sent = await fake.create(one(TFSIMPLES))
    assert sent.pipeline == "tfsimples"
    with pytest.raises(SpecError):
        await fake.create(pipeline_yaml("bad", "steps: []"))
    with pytest.raises(SpecError):
        await fake.create("kind: [")
    with pytest.raises(LookupError):
        await fake.delete("never-created")


async def test_a_new_subscriber_gets_creates_for_existing_pipelines(
    fake: FakeScheduler, stub: pb_grpc.ChainerStub
) -> None:
    before = await fake.create(TFSIMPLES)  # nobody connected: kept for later subscribers
    r1 = await subscribe(fake, stub, "r1")
    first = await r1.next()
    assert (first.uid, first.version, first.op) == (before.uid, 1, pb.PipelineUpdateMessage.Create)
    assert first.timestamp > before.timestamp
    assert from_message(first).updates == from_message(before).updates

    r2 = await subscribe(fake, stub, "r2")
    again = await r2.next()
    assert again.uid == before.uid
    assert again.timestamp > first.timestamp
    await r1.nothing_more()  # the existing replica is not sent the re-create

    # deleted pipelines are not re-sent
    await fake.delete("tfsimples")
    assert (await r1.next()).op == pb.PipelineUpdateMessage.Delete
    r3 = await subscribe(fake, stub, "r3")
    await r3.nothing_more()
    assert sorted(fake.subscribers) == ["r1", "r2", "r3"]


async def test_replies_are_recorded_and_matched(fake: FakeScheduler, stub: pb_grpc.ChainerStub) -> None:
    seen: list[pb.PipelineUpdateStatusMessage] = []
    fake.on_reply = seen.append
    r1 = await subscribe(fake, stub, "r1")
    msg = await fake.create(TFSIMPLES)
    waiter = asyncio.create_task(fake.wait_for_reply("tfsimples", Operation.CREATE, uid=msg.uid))
    await asyncio.sleep(0)
    await r1.answer(await r1.next(), success=False, reason="kafka streams topic creation error Exception: x")
    got = await waiter
    assert not got.success
    assert got.update.stream == "r1"
    assert got.update.timestamp == msg.timestamp
    assert got.update.version == 1
    assert fake.replies == [got] == seen
    assert _reply_line(got) == (
        'reply: Create tfsimples v1 success=False "kafka streams topic creation error Exception: x" from r1'
    )

    # filters: the recorded reply matches by uid and timestamp, not by another op, uid or timestamp
    assert await fake.wait_for_reply("tfsimples", pb.PipelineUpdateMessage.Create, timestamp=msg.timestamp)
    with pytest.raises(TimeoutError, match="no Create reply"):
        await fake.wait_for_reply("tfsimples", Operation.CREATE, uid="other", timeout=0.1)
    with pytest.raises(TimeoutError, match="no Create reply"):
        await fake.wait_for_reply("tfsimples", Operation.CREATE, timestamp=msg.timestamp + 1, timeout=0.1)
    with pytest.raises(TimeoutError):
        await fake.wait_for_reply("tfsimples", Operation.DELETE, timeout=0.1)


async def test_a_new_version_replaces_the_old_once_ready(
    fake: FakeScheduler, stub: pb_grpc.ChainerStub
) -> None:
    r1 = await subscribe(fake, stub, "r1")
    v1 = await fake.create(TFSIMPLES)
    await r1.answer(await r1.next())
    await fake.wait_for_reply("tfsimples", Operation.CREATE, uid=v1.uid)

    changed = TFSIMPLES.replace("    steps:\n    - tfsimple2", "    steps:\n    - tfsimple1")
    assert changed != TFSIMPLES
    v2 = await fake.create(changed)
    assert (v2.version, v2.timestamp) == (2, v1.timestamp + 1)
    assert v2.uid != v1.uid
    got = await r1.next()
    assert got == v2
    await r1.nothing_more()  # v1 keeps running until v2 is ready

    await r1.answer(got, success=False, reason="failed")
    await r1.nothing_more()  # a failed v2 leaves v1 alone

    await r1.answer(got)
    delete = await r1.next()
    assert delete.op == pb.PipelineUpdateMessage.Delete
    assert (delete.pipeline, delete.version, delete.uid) == ("tfsimples", 1, v1.uid)
    assert delete.timestamp == v2.timestamp + 1
    assert not delete.updates  # topics kept: v2 uses them
    await r1.answer(got)  # a second replica's ready does not delete again
    await r1.nothing_more()

    # only v2 is re-sent to a reconnecting replica
    r2 = await subscribe(fake, stub, "r2")
    assert (await r2.next()).uid == v2.uid
    await r2.nothing_more()

    # a deleted pipeline starts again at version 1 with a new uid
    assert (await fake.delete("tfsimples")).uid == v2.uid
    again = await fake.create(TFSIMPLES)
    assert again.version == 1
    assert again.uid not in (v1.uid, v2.uid)


async def test_delete_of_a_pipeline_mid_switch_deletes_every_version(
    fake: FakeScheduler, stub: pb_grpc.ChainerStub
) -> None:
    r1 = await subscribe(fake, stub, "r1")
    v1 = await fake.create(TFSIMPLES)
    v2 = await fake.create(TFSIMPLES)
    assert [(await r1.next()).uid for _ in range(2)] == [v1.uid, v2.uid]
    returned = await fake.delete("tfsimples", clean_topics=True)
    first, second = await r1.next(), await r1.next()
    assert (first.uid, first.version, list(first.updates)) == (v1.uid, 1, [])
    assert second == returned
    assert (second.uid, second.version) == (v2.uid, 2)


async def test_delete_with_clean_topics_names_the_pipeline_topics(
    fake: FakeScheduler, stub: pb_grpc.ChainerStub
) -> None:
    r1 = await subscribe(fake, stub, "r1")
    created = await fake.create(TFSIMPLES)
    await r1.next()
    sent = await fake.delete("tfsimples", clean_topics=True)
    got = await r1.next()
    assert got == sent
    assert got.op == pb.PipelineUpdateMessage.Delete
    assert (got.pipeline, got.version, got.uid) == ("tfsimples", 1, created.uid)
    assert got.timestamp == created.timestamp + 1
    assert not got.pipelineOutputTopic and not got.pipelineErrorTopic
    p = "tfsimples"
    [step] = from_message(got).updates
    assert (step.sources, step.sink, step.triggers) == (
        (PipelineTopic(p, NAMER.pipeline_inputs(p)),),
        PipelineTopic(p, NAMER.pipeline_outputs(p)),
        (),
    )
    await r1.answer(got, reason="pipeline removed")
    assert (await fake.wait_for_reply(p, Operation.DELETE, uid=created.uid)).success


async def test_timestamps_count_per_pipeline_name(fake: FakeScheduler, stub: pb_grpc.ChainerStub) -> None:
    r1 = await subscribe(fake, stub, "r1")
    a1 = await fake.create(TFSIMPLES)
    b1 = await fake.create(RICH)
    a2 = await fake.create(TFSIMPLES)
    b_del = await fake.delete("rich")
    a_del = await fake.delete("tfsimples")
    b_again = await fake.create(RICH)  # the clock survives a delete, so it never goes back
    assert [m.timestamp for m in (a1, a2, a_del)] == [1, 2, 4]  # a's Delete of v1 was ts 3
    assert [m.timestamp for m in (b1, b_del, b_again)] == [1, 2, 3]
    got = [await r1.next() for _ in range(7)]
    assert [(m.pipeline, m.timestamp) for m in got] == [
        ("tfsimples", 1),
        ("rich", 1),
        ("tfsimples", 2),
        ("rich", 2),
        ("tfsimples", 3),
        ("tfsimples", 4),
        ("rich", 3),
    ]


async def test_send_raw_and_stream_lifecycle(fake: FakeScheduler, stub: pb_grpc.ChainerStub) -> None:
    r1 = await subscribe(fake, stub, "r1")
    odd = pb.PipelineUpdateMessage(
        op=pb.PipelineUpdateMessage.Delete, pipeline="ghost", uid="nope", version=7
    )
    await fake.send_raw(odd)
    assert await r1.next() == odd

    # the same replica name subscribing again replaces (ends) the old stream
    r1b = await subscribe(fake, stub, "r1")
    await r1.ended()
    assert fake.subscribers == ["r1"]

    r1b.call.cancel()
    async with asyncio.timeout(TIMEOUT):
        while fake.subscribers:
            await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError, match="no subscription from 'r1'"):
        await fake.wait_for_subscriber("r1", timeout=0.1)


async def test_stop_ends_streams_and_sends_nothing_after(
    stub: pb_grpc.ChainerStub, fake: FakeScheduler
) -> None:
    r1 = await subscribe(fake, stub, "r1")
    await asyncio.wait_for(fake.stop(grace=1.0), TIMEOUT)
    await r1.ended()
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.PipelineUpdateEvent(pb.PipelineUpdateStatusMessage(), timeout=1.0)


async def test_a_busy_port_is_an_error(fake: FakeScheduler) -> None:
    with pytest.raises(OSError, match="cannot listen"):
        await FakeScheduler(NAMER, port=fake.port).start()


def test_cli_rejects_invalid_pipelines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(pipeline_yaml("bad", "steps: []"))
    result = CliRunner().invoke(scheduler, ["--pipelines", str(bad), "--port", "0"])
    assert result.exit_code == 1
    assert "bad.yaml" in result.output


async def test_cli_serves_creates_and_prints_replies(tmp_path: Path) -> None:
    (tmp_path / "tfsimples.yaml").write_text(TFSIMPLES)
    code = "import sys; from dataflow.cli.scheduler import scheduler; scheduler(sys.argv[1:])"
    args = ["--host", "127.0.0.1", "--port", "0", "--pipelines", str(tmp_path)]
    env = {**os.environ, "SELDON_POD_NAMESPACE": "fake-ns", "DATAFLOW_TOPIC_PREFIX": "seldon"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.fullmatch(
            r"scheduler listening on 127\.0\.0\.1:(\d+) \(topics seldon\.fake-ns\.\*\)\n", line
        )
        assert match, line
        async with grpc.aio.insecure_channel(f"127.0.0.1:{match[1]}") as channel:
            replica = Replica(pb_grpc.ChainerStub(channel), "r1")  # type: ignore[no-untyped-call]
            create = await replica.next()
            assert (create.pipeline, create.version) == ("tfsimples", 1)
            await replica.answer(create)
            line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
            assert line == f'reply: Create tfsimples v1 success=True "{READY}" from r1\n'
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
