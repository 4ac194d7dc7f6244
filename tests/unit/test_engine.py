"""The routing engine without Kafka: records in, recorded sends out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dataflow.compile import compile_pipeline
from dataflow.metrics import Metrics
from dataflow.plan import Router, plan_pipeline
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.runtime.engine import DLQ_OFFSET, DLQ_REASON, DLQ_TOPIC, Engine, Record
from dataflow.spec import load_text
from dataflow.tensors import encode_raw
from dataflow.topics import ERROR_HEADER, TopicNamer

NAMER = TopicNamer("seldon", "ns")

CHAIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: chain}
spec:
  steps:
    - name: m1
    - name: m2
      inputs: [m1]
      tensorMap:
        m1.outputs.OUTPUT0: INPUT0
    - name: only0
      inputs: [m1.outputs.OUTPUT0]
  output:
    steps: [m2]
"""


class Sent:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        timestamp: float | None,
        headers: list[tuple[str, bytes]],
    ) -> asyncio.Future[None]:
        self.records.append(
            {
                "topic": topic,
                "key": key,
                "value": value,
                "partition": partition,
                "ts": timestamp,
                "headers": headers,
            }
        )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def to(self, topic: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["topic"] == topic]


def make_engine(
    yaml_text: str = CHAIN, partitions: int = 4, skip_replays: bool = False
) -> tuple[Engine, Sent]:
    plans = [
        plan_pipeline(compile_pipeline(lp.pipeline, NAMER, version=3), 60_000)
        for lp in load_text(yaml_text, "t.yaml")
    ]
    sent = Sent()
    engine = Engine(
        Router.build(plans),
        sent.send,
        NAMER,
        Metrics(),
        default_partitions=partitions,
        skip_replays=skip_replays,
    )
    return engine, sent


def response(*names: str, raw: bool = False, model: str = "m1") -> bytes:
    msg = ModelInferResponse(model_name=model, model_version="1", id="req-1")
    for i, name in enumerate(names):
        t = msg.outputs.add(name=name, datatype="INT32", shape=[1, 2])
        if raw:
            msg.raw_output_contents.append(encode_raw("INT32", [i, i + 1]))
        else:
            t.contents.int_contents.extend([i, i + 1])
    return msg.SerializeToString()


def record(
    topic: str, value: bytes | None, *, pipeline: str = "chain", key: bytes = b"2.chain.abc"
) -> Record:
    headers = [
        ("pipeline", pipeline.encode()),
        ("x-request-id", b"abc"),
        ("x-seldon-alibi-type", b"explainer"),
        ("x-pipeline-version", b"1"),
    ]
    return Record(topic, 2, 41, key, value, headers, 1700000000.5)


async def test_request_goes_to_first_model_with_headers_rewritten_and_partition_from_key() -> None:
    engine, sent = make_engine()
    req = ModelInferRequest(model_name="chain", id="r")
    req.inputs.add(name="INPUT0", datatype="INT32", shape=[1], contents={"int_contents": [7]})
    await engine.process(record(NAMER.pipeline_inputs("chain"), req.SerializeToString()))
    [out] = sent.to(NAMER.model_inputs("m1"))
    assert out["partition"] == 2
    assert out["key"] == b"2.chain.abc"
    assert out["ts"] == 1700000000.5
    names = [k for k, _ in out["headers"]]
    assert "x-seldon-alibi-type" not in names
    assert ("x-request-id", b"abc") in out["headers"]
    assert [v for k, v in out["headers"] if k == "pipeline"] == [b"chain"]
    assert [v for k, v in out["headers"] if k == "x-pipeline-version"] == [b"3"]
    forwarded = ModelInferRequest.FromString(out["value"])
    assert forwarded.model_name == "" and forwarded.id == "r"
    assert forwarded.inputs[0].contents.int_contents == [7]


async def test_partition_is_clamped_to_sink_partition_count() -> None:
    engine, sent = make_engine(partitions=2)
    await engine.process(record(NAMER.model_outputs("m1"), response("OUTPUT0"), key=b"9.chain.x"))
    assert {r["partition"] for r in sent.records} == {1}


async def test_records_of_other_pipelines_are_ignored() -> None:
    engine, sent = make_engine()
    await engine.process(record(NAMER.model_outputs("m1"), response("OUTPUT0"), pipeline="other"))
    assert sent.records == []


async def test_rename_and_tensor_selection_routes() -> None:
    engine, sent = make_engine()
    await engine.process(record(NAMER.model_outputs("m1"), response("OUTPUT0", "OUTPUT1", raw=True)))
    [to_m2] = sent.to(NAMER.model_inputs("m2"))
    m2 = ModelInferRequest.FromString(to_m2["value"])
    assert [t.name for t in m2.inputs] == ["INPUT0", "OUTPUT1"]
    assert list(m2.raw_input_contents) == [encode_raw("INT32", [0, 1]), encode_raw("INT32", [1, 2])]
    [to_only0] = sent.to(NAMER.model_inputs("only0"))
    only0 = ModelInferRequest.FromString(to_only0["value"])
    assert [t.name for t in only0.inputs] == ["OUTPUT0"]
    assert list(only0.raw_input_contents) == [encode_raw("INT32", [0, 1])]


async def test_step_without_wanted_tensor_does_not_fire() -> None:
    engine, sent = make_engine()
    await engine.process(record(NAMER.model_outputs("m1"), response("OUTPUT1")))
    assert sent.to(NAMER.model_inputs("only0")) == []
    assert len(sent.to(NAMER.model_inputs("m2"))) == 1


async def test_error_record_passes_through_to_pipeline_outputs() -> None:
    engine, sent = make_engine()
    await engine.process(record(NAMER.errors, b"m1 : it broke"))
    [out] = sent.to(NAMER.pipeline_outputs("chain"))
    assert out["value"] == b"m1 : it broke"


DOWNSTREAM = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: downstream}
spec:
  input:
    externalInputs: [chain.outputs]
  steps:
    - name: d1
    - name: d2
      inputs: [downstream.inputs.OUTPUT0]
  output:
    steps: [d1]
"""


async def test_an_upstream_pipelines_error_answer_is_passed_on_not_dead_lettered() -> None:
    """A pipeline reading another's outputs gets that pipeline's error answer when a request failed
    there: it answers with the same error, once, and dead-letters nothing."""
    engine, sent = make_engine(DOWNSTREAM)
    failed = record(NAMER.pipeline_outputs("chain"), b"rpc error: shape mismatch")
    failed.headers.append((ERROR_HEADER, b"m1"))
    await engine.process(failed)
    assert sent.to(NAMER.dead_letter()) == []
    assert sent.to(NAMER.pipeline_inputs("downstream")) == []
    [answer] = sent.to(NAMER.pipeline_outputs("downstream"))
    assert answer["value"] == b"rpc error: shape mismatch"
    assert answer["key"] == b"2.chain.abc" and answer["partition"] == 2
    assert [v for k, v in answer["headers"] if k == ERROR_HEADER] == [b"m1"]
    assert [v for k, v in answer["headers"] if k == "pipeline"] == [b"downstream"]


@pytest.mark.parametrize("value", [b"\xff\x00garbage", response("OUTPUT0")[:-3]])
async def test_undecodable_record_is_dead_lettered_and_answered_with_an_error(value: bytes) -> None:
    engine, sent = make_engine()
    await engine.process(record(NAMER.model_outputs("m1"), value))
    [dead] = sent.to(NAMER.dead_letter())
    headers = dict(dead["headers"])
    assert dead["value"] == value
    assert headers[DLQ_TOPIC] == NAMER.model_outputs("m1").encode()
    assert headers[DLQ_OFFSET] == b"41"
    assert b"ModelInferResponse" in headers[DLQ_REASON]
    [answer] = sent.to(NAMER.pipeline_outputs("chain"))
    assert dict(answer["headers"])[ERROR_HEADER] == b"chain"
    assert answer["partition"] == 2
    assert b"offset 41" in answer["value"]
    assert sent.to(NAMER.model_inputs("m2")) == []


async def test_a_rebalance_replay_of_a_processed_record_is_skipped() -> None:
    """After a rebalance Faust seeks back to the committed offset; what this worker already did is
    not done again, while later offsets and other partitions still are."""
    engine, sent = make_engine(skip_replays=True)
    topic = NAMER.model_outputs("m1")
    first = record(topic, response("OUTPUT0"))
    await engine.process(first)
    done = len(sent.records)
    await engine.process(first)  # the replay
    assert len(sent.records) == done
    assert engine.metrics.replays_skipped._value.get() == 1
    await engine.process(
        Record(topic, first.partition, first.offset + 1, first.key, first.value, first.headers, 1.0)
    )
    await engine.process(
        Record(topic, first.partition + 1, first.offset, first.key, first.value, first.headers, 1.0)
    )
    assert len(sent.records) == 3 * done


async def test_replays_of_a_partition_that_came_back_move_it_on_without_a_gap() -> None:
    """A partition that moved away and came back resumes at its committed offset, and the records
    this worker did before arrive again: skipped, they still count as done, so the next new record
    is not mistaken for one after passed-over offsets (which would read them all back, again and
    again)."""
    engine, sent = make_engine(skip_replays=True)
    topic = NAMER.model_outputs("m1")
    first = record(topic, response("OUTPUT0"))
    tp = (topic, first.partition)

    def at(offset: int) -> Record:
        return Record(topic, first.partition, offset, first.key, first.value, first.headers, 1.0)

    for offset in range(first.offset, first.offset + 3):
        await engine.process(at(offset))
    done = len(sent.records)
    engine.keep_only([])  # moved away
    engine.expect(tp, first.offset)  # came back: resumes at the committed offset
    for offset in range(first.offset, first.offset + 3):
        assert engine.missing(at(offset)) is None
        await engine.process(at(offset))  # replays: skipped
    assert len(sent.records) == done
    assert engine.next_expected(tp) == first.offset + 3
    assert engine.missing(at(first.offset + 3)) is None


async def test_revoked_partitions_hand_over_the_offset_after_the_last_one_done() -> None:
    """On revoke the worker commits what it finished, so the next owner starts right after it; a
    partition handed over once is not committed again until new records are done on it."""
    engine, _ = make_engine(skip_replays=True)
    topic = NAMER.model_outputs("m1")
    first = record(topic, response("OUTPUT0"))
    for offset in (first.offset, first.offset + 1):
        await engine.process(
            Record(topic, first.partition, offset, first.key, first.value, first.headers, 1.0)
        )
    other = (topic, first.partition + 1)
    assert engine.take_done([(topic, first.partition), other]) == {(topic, first.partition): first.offset + 2}
    assert engine.take_done([(topic, first.partition)]) == {}
    await engine.process(first)  # a replay is skipped, and is no progress to commit
    assert engine.take_done([(topic, first.partition)]) == {}


async def test_an_offset_gap_is_reported_until_the_missing_records_are_done() -> None:
    """Offsets of our topics have no holes: a record past the next expected offset means records
    were passed over, and they must be processed before it."""
    engine, sent = make_engine(skip_replays=True)
    topic = NAMER.model_outputs("m1")
    tp = (topic, 2)

    def at(offset: int) -> Record:
        base = record(topic, response("OUTPUT0"))
        return Record(topic, 2, offset, base.key, base.value, base.headers, 1.0)

    assert not engine.knows(tp)
    assert engine.missing(at(7)) is None  # nothing known yet: no gap can be seen
    engine.expect(tp, 5)  # the committed offset
    assert engine.missing(at(5)) is None
    assert engine.missing(at(7)) == (5, 7)
    for offset in (5, 6, 7):
        await engine.process(at(offset))
    assert engine.missing(at(8)) is None
    assert engine.missing(at(3)) is None  # a replay is not a gap
    engine.expect(tp, 2)  # an older committed offset does not move a known position back
    assert engine.missing(at(10)) == (8, 10)
    assert len(sent.to(NAMER.model_inputs("m2"))) == 3
    engine.keep_only([])
    assert not engine.knows(tp) and engine.missing(at(10)) is None


async def test_records_skipped_as_older_than_their_pipeline_still_count_as_done() -> None:
    engine, _ = make_engine(skip_replays=True)
    topic = NAMER.pipeline_inputs("chain")
    engine.start_offsets[(topic, 2)] = 4
    engine.expect((topic, 2), 0)
    base = record(topic, b"")
    for offset in range(4):
        await engine.process(Record(topic, 2, offset, base.key, base.value, base.headers, 1.0))
    assert engine.missing(Record(topic, 2, 4, base.key, base.value, base.headers, 1.0)) is None


async def test_an_unexpected_failure_dead_letters_the_record_and_answers_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever goes wrong inside the engine, the record is kept, its caller told, the partition goes on."""
    engine, sent = make_engine(skip_replays=True)

    def broken(*args: Any) -> None:
        raise TypeError("a bytes-like object is required, not 'NoneType'")

    monkeypatch.setattr(engine, "_convert", broken)
    first = record(NAMER.model_outputs("m1"), response("OUTPUT0"))
    await engine.process(first)
    [dead] = sent.to(NAMER.dead_letter())
    assert b"could not process the record: TypeError" in dict(dead["headers"])[DLQ_REASON]
    [answer] = sent.to(NAMER.pipeline_outputs("chain"))
    assert ERROR_HEADER in dict(answer["headers"])
    assert engine.missing(Record(first.topic, 2, 42, first.key, first.value, first.headers, 1.0)) is None
    labels = [
        s.labels["reason"]
        for m in engine.metrics.registry.collect()
        for s in m.samples
        if "reason" in s.labels
    ]
    assert "could not process the record" in labels


async def test_an_empty_pipeline_header_counts_as_none() -> None:
    engine, sent = make_engine()
    good = record(NAMER.pipeline_inputs("chain"), ModelInferRequest(id="r").SerializeToString())
    await engine.process(Record(good.topic, 2, 41, good.key, good.value, [("pipeline", b"")], 1.0))
    [dead] = sent.to(NAMER.dead_letter())
    assert dict(dead["headers"])[DLQ_REASON] == b"record without a pipeline header"


async def test_a_request_no_step_takes_is_answered_with_an_error() -> None:
    """A request without any tensor a step reads would never be answered: its caller hears so now."""
    engine, sent = make_engine()
    empty = ModelInferRequest(id="r").SerializeToString()
    await engine.process(record(NAMER.pipeline_inputs("chain"), empty))
    [answer] = sent.to(NAMER.pipeline_outputs("chain"))
    assert dict(answer["headers"])[ERROR_HEADER] == b"chain"
    assert b"no step of pipeline chain takes any tensor" in answer["value"]
    assert sent.to(NAMER.model_inputs("m1")) == []


async def test_garbage_inside_a_tensor_does_not_pass_the_fast_path() -> None:
    """The output step forwards bytes unparsed; a record whose tensor is garbage is still rejected."""
    engine, sent = make_engine()
    await engine.process(record(NAMER.model_outputs("m2"), bytes.fromhex("2a05ffffffffff")))
    assert len(sent.to(NAMER.dead_letter())) == 1
    [answer] = sent.to(NAMER.pipeline_outputs("chain"))
    assert ERROR_HEADER in dict(answer["headers"])


async def test_data_that_does_not_fit_its_datatype_is_dead_lettered_on_every_path() -> None:
    """A request whose FP32 tensor holds INT32 values is refused before any model sees it, whether the
    step would forward it as bytes (the first step) or convert it."""
    for yaml_text, topic in ((CHAIN, NAMER.pipeline_inputs("chain")), (CHAIN, NAMER.model_outputs("m1"))):
        engine, sent = make_engine(yaml_text)
        if topic.endswith("inputs"):
            message: Any = ModelInferRequest(id="r")
            tensor = message.inputs.add(name="INPUT0", datatype="FP32", shape=[2])
        else:
            message = ModelInferResponse(id="r")
            tensor = message.outputs.add(name="OUTPUT0", datatype="FP32", shape=[2])
        tensor.contents.int_contents.extend([1, 2])
        await engine.process(record(topic, message.SerializeToString()))
        [dead] = sent.to(NAMER.dead_letter())
        assert b"datatype FP32 but values in int_contents" in dict(dead["headers"])[DLQ_REASON]
        [answer] = sent.to(NAMER.pipeline_outputs("chain"))
        assert ERROR_HEADER in dict(answer["headers"])
        assert sent.to(NAMER.model_inputs("m1")) == [] and sent.to(NAMER.model_inputs("m2")) == []


async def test_a_record_the_producer_refuses_at_once_is_answered_with_an_error() -> None:
    """aiokafka raises some refusals (a record over the size limit) inside send(): case BR-07."""
    engine, sent = make_engine()
    original = sent.send

    async def refusing(topic: str, *args: Any) -> Any:
        if topic == NAMER.pipeline_outputs("chain") and not any(k == ERROR_HEADER for k, _ in args[-1]):
            raise RuntimeError("MessageSizeTooLargeError: the message is 3000246 bytes")
        return await original(topic, *args)

    engine._send = refusing
    await engine.process(record(NAMER.model_outputs("m2"), response("OUTPUT0")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    [answer] = sent.to(NAMER.pipeline_outputs("chain"))
    assert dict(answer["headers"])[ERROR_HEADER] == b"chain"
    assert b"MessageSizeTooLargeError" in answer["value"]
    assert engine.metrics.produce_errors.labels("chain", "(output)")._value.get() == 1
