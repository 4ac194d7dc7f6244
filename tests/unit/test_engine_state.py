"""Stateful engine behaviour without Kafka: batching, join expiry and loop counters on a fake clock.

Pipelines come from inline YAML through the compiler and planner, records are fed with
``engine.process``, sends are recorded, state lives in a :class:`MemoryStore` and time in
:class:`Clock`; the model gateway is played by the tests (answer = same key, request headers copied).
"""

from __future__ import annotations

from typing import Any

import pytest

from dataflow.batching import BATCH_HEADER
from dataflow.compile import compile_pipeline
from dataflow.metrics import Metrics
from dataflow.plan import Router, plan_pipeline
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.runtime.engine import BATCH_MEMBERS_TTL_MS, VISITS, Engine, MemoryStore, Record
from dataflow.spec import load_text
from dataflow.tensors import decode_raw, encode_raw, tensor_values
from dataflow.topics import ERROR_HEADER, TopicNamer
from tests.unit.test_engine import Sent as BaseSent

NAMER = TopicNamer("seldon", "ns")
T0 = 1_700_000_000.0  # seconds


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms / 1000


class Sent(BaseSent):
    """The shared recording sender, plus clear() for tests that look at one phase."""

    def clear(self) -> None:
        self.records.clear()


def plans(yaml_text: str) -> list[Any]:
    return [
        plan_pipeline(compile_pipeline(lp.pipeline, NAMER, version=3), 60_000)
        for lp in load_text(yaml_text, "t.yaml")
    ]


def make_engine(
    yaml_text: str, store: MemoryStore | None = None, clock: Clock | None = None, partitions: int = 4
) -> tuple[Engine, Sent, MemoryStore, Clock]:
    store = store if store is not None else MemoryStore()
    clock = clock or Clock()
    sent = Sent()
    engine = Engine(
        Router.build(plans(yaml_text)),
        sent.send,
        NAMER,
        Metrics(),
        default_partitions=partitions,
        store=store,
        clock=clock,
        # these tests hand-feed records whose offsets repeat; replay skipping has its own tests
        skip_replays=False,
    )
    return engine, sent, store, clock


def header(rec: dict[str, Any] | Record, name: str) -> list[bytes]:
    headers = rec.headers if isinstance(rec, Record) else rec["headers"]
    return [v for k, v in headers if k == name]


def key_of(rid: str, pipeline: str, partition: int = 1) -> bytes:
    return f"{partition}.{pipeline}.{rid}".encode()


def gateway_request(pipeline: str, rid: str, rows: list[list[float]], partition: int = 1) -> Record:
    """A request as the pipeline gateway writes it to the pipeline's inputs topic."""
    msg = ModelInferRequest(model_name=pipeline, id=rid)
    msg.parameters["who"].string_param = rid
    t = msg.inputs.add(name="INPUT", datatype="FP32", shape=[len(rows), len(rows[0])])
    t.contents.fp32_contents.extend(v for row in rows for v in row)
    headers = [("pipeline", pipeline.encode()), ("x-request-id", rid.encode())]
    return Record(
        NAMER.pipeline_inputs(pipeline),
        partition,
        10,
        key_of(rid, pipeline, partition),
        msg.SerializeToString(),
        headers,
        T0,
    )


def model_answer(to_model: dict[str, Any], model: str, value: bytes) -> Record:
    """What the model gateway writes for a request it consumed: same key, its headers copied."""
    return Record(
        NAMER.model_outputs(model),
        to_model["partition"],
        20,
        to_model["key"],
        value,
        list(to_model["headers"]),
        T0,
    )


def model_error(to_model: dict[str, Any], model: str, text: bytes) -> Record:
    """A model failure as the model gateway reports it on the shared errors topic."""
    headers = [*to_model["headers"], (ERROR_HEADER, model.encode())]
    return Record(NAMER.errors, to_model["partition"], 21, to_model["key"], text, headers, T0)


def echo_of(to_model: dict[str, Any]) -> bytes:
    """An echo model: its request's inputs come back as outputs with the same shape and contents."""
    req = ModelInferRequest.FromString(to_model["value"])
    resp = ModelInferResponse(model_name="echo", id=req.id)
    for t in req.inputs:
        out = resp.outputs.add(name="OUTPUT", datatype=t.datatype, shape=list(t.shape))
        out.contents.CopyFrom(t.contents)
    resp.raw_output_contents.extend(req.raw_input_contents)
    return resp.SerializeToString()


# ====================================================================== batching (spec §4.6, S-01)
BATCH = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: batch-two}
spec:
  steps:
    - name: echo
      batch: {size: 2}
  output:
    steps: [echo]
"""
BP = "batch-two"
R1 = [[1.0, 2.0, 3.0, 4.0]]
R2 = [[5.0, 6.0, 7.0, 8.0]]


async def batch_of_two(yaml_text: str = BATCH, pipeline: str = BP) -> tuple[Engine, Sent, dict[str, Any]]:
    engine, sent, _, _ = make_engine(yaml_text)
    await engine.process(gateway_request(pipeline, "r1", R1))
    await engine.process(gateway_request(pipeline, "r2", R2))
    [to_model] = sent.to(NAMER.model_inputs("echo"))
    sent.clear()
    return engine, sent, to_model


async def test_nothing_is_sent_after_the_first_request_alone() -> None:
    engine, sent, store, _ = make_engine(BATCH)
    await engine.process(gateway_request(BP, "r1", R1))
    assert sent.records == []
    assert len(store.data) == 1  # the open batch


async def test_two_requests_become_one_model_request_under_the_second_key() -> None:
    engine, sent, store, _ = make_engine(BATCH)
    await engine.process(gateway_request(BP, "r1", R1))
    await engine.process(gateway_request(BP, "r2", R2))
    [to_model] = sent.records
    assert to_model["topic"] == NAMER.model_inputs("echo")
    assert to_model["key"] == key_of("r2", BP)
    assert to_model["partition"] == 1
    assert header(to_model, "x-request-id") == [b"r2"]
    assert header(to_model, "pipeline") == [BP.encode()]
    [batch_ref] = header(to_model, BATCH_HEADER)
    assert batch_ref
    merged = ModelInferRequest.FromString(to_model["value"])
    assert list(merged.inputs[0].shape) == [2, 4]
    assert list(merged.inputs[0].contents.fp32_contents) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert merged.id == "r2" and merged.parameters["who"].string_param == "r2"
    # the open batch is gone; only the member list kept for the answer remains
    assert [k for k in store.data if b"#batch" in k] == []
    assert len(store.data) == 1


async def test_a_request_of_batch_size_rows_passes_straight_through() -> None:
    engine, sent, _, _ = make_engine(BATCH)
    await engine.process(gateway_request(BP, "r1", R1 + R2))
    [to_model] = sent.to(NAMER.model_inputs("echo"))
    assert to_model["key"] == key_of("r1", BP)
    assert list(ModelInferRequest.FromString(to_model["value"]).inputs[0].shape) == [2, 4]


async def test_a_row_wise_answer_is_split_back_to_each_request() -> None:
    engine, sent, to_model = await batch_of_two()
    await engine.process(model_answer(to_model, "echo", echo_of(to_model)))
    outs = sent.to(NAMER.pipeline_outputs(BP))
    assert [o["key"] for o in outs] == [key_of("r1", BP), key_of("r2", BP)]
    assert len(sent.records) == 2
    for out, rid, rows in zip(outs, ["r1", "r2"], [R1, R2], strict=True):
        assert header(out, "x-request-id") == [rid.encode()]
        assert header(out, BATCH_HEADER) == []
        assert header(out, "pipeline") == [BP.encode()]
        assert header(out, "x-pipeline-version") == [b"3"]
        assert out["partition"] == 1
        resp = ModelInferResponse.FromString(out["value"])
        assert list(resp.outputs[0].shape) == [1, 4]
        assert tensor_values(resp, 0) == rows[0]


async def test_each_split_answer_carries_its_own_request_id() -> None:
    engine, sent, to_model = await batch_of_two()
    await engine.process(model_answer(to_model, "echo", echo_of(to_model)))
    ids = [ModelInferResponse.FromString(o["value"]).id for o in sent.to(NAMER.pipeline_outputs(BP))]
    assert ids == ["r1", "r2"]


async def test_a_split_answer_does_not_carry_another_members_headers() -> None:
    engine, sent, _, _ = make_engine(BATCH)
    await engine.process(gateway_request(BP, "r1", R1))
    r2 = gateway_request(BP, "r2", R2)
    await engine.process(Record(r2.topic, 1, 11, r2.key, r2.value, [*r2.headers, ("x-tenant", b"bob")], T0))
    [to_model] = sent.records
    sent.clear()
    answer = model_answer(to_model, "echo", echo_of(to_model))
    # a header the model server added to its answer belongs to every member
    answer = Record(answer.topic, 1, 20, answer.key, answer.value, [*answer.headers, ("x-server", b"s1")], T0)
    await engine.process(answer)
    first, second = sent.to(NAMER.pipeline_outputs(BP))
    assert header(second, "x-tenant") == [b"bob"]
    assert header(first, "x-server") == header(second, "x-server") == [b"s1"]
    assert header(first, "x-tenant") == []


async def test_an_answer_that_is_not_row_wise_goes_whole_to_each_request() -> None:
    engine, sent, to_model = await batch_of_two()
    summary = ModelInferResponse(model_name="echo", id="r2")
    summary.outputs.add(name="MEAN", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(
        [3, 4, 5, 6]
    )
    await engine.process(model_answer(to_model, "echo", summary.SerializeToString()))
    outs = sent.to(NAMER.pipeline_outputs(BP))
    assert [o["key"] for o in outs] == [key_of("r1", BP), key_of("r2", BP)]
    for out, rid in zip(outs, ["r1", "r2"], strict=True):
        assert header(out, "x-request-id") == [rid.encode()]
        assert header(out, BATCH_HEADER) == []
        resp = ModelInferResponse.FromString(out["value"])
        assert list(resp.outputs[0].shape) == [1, 4]
        assert tensor_values(resp, 0) == [3, 4, 5, 6]


async def test_a_model_error_on_a_batch_is_an_error_for_each_member() -> None:
    engine, sent, to_model = await batch_of_two()
    text = b"rpc error: code = InvalidArgument desc = bad shape"
    await engine.process(model_error(to_model, "echo", text))
    outs = sent.to(NAMER.pipeline_outputs(BP))
    assert [o["key"] for o in outs] == [key_of("r1", BP), key_of("r2", BP)]
    assert len(sent.records) == 2
    for out, rid in zip(outs, ["r1", "r2"], strict=True):
        assert out["value"] == text
        assert header(out, ERROR_HEADER) == [b"echo"]
        assert header(out, "x-request-id") == [rid.encode()]
        assert header(out, BATCH_HEADER) == []


async def test_an_answer_for_an_unknown_batch_passes_on_whole() -> None:
    engine, sent, to_model = await batch_of_two()
    stray = dict(to_model)
    stray["headers"] = [(k, v) for k, v in to_model["headers"] if k != BATCH_HEADER]
    stray["headers"].append((BATCH_HEADER, b"no-such-uid|no-such-batch"))
    await engine.process(model_answer(stray, "echo", echo_of(to_model)))
    [out] = sent.to(NAMER.pipeline_outputs(BP))
    assert out["key"] == key_of("r2", BP)
    assert list(ModelInferResponse.FromString(out["value"]).outputs[0].shape) == [2, 4]
    assert len(sent.records) == 1


async def test_a_replayed_batch_answer_is_split_again() -> None:
    """At-least-once: the member list outlives the first answer, so a redelivery still reaches each caller."""
    engine, sent, to_model = await batch_of_two()
    answer = model_answer(to_model, "echo", echo_of(to_model))
    await engine.process(answer)
    await engine.process(answer)
    outs = sent.to(NAMER.pipeline_outputs(BP))
    assert [o["key"] for o in outs] == [key_of("r1", BP), key_of("r2", BP)] * 2


async def test_a_raw_batch_is_answered_raw_and_split_raw() -> None:
    engine, sent, _, _ = make_engine(BATCH)
    for rid, rows in (("r1", R1), ("r2", R2)):
        rec = gateway_request(BP, rid, rows)
        raw = ModelInferRequest.FromString(rec.value or b"")
        raw.raw_input_contents.append(encode_raw("FP32", list(raw.inputs[0].contents.fp32_contents)))
        raw.inputs[0].ClearField("contents")
        await engine.process(Record(rec.topic, 1, 10, rec.key, raw.SerializeToString(), rec.headers, T0))
    [to_model] = sent.records
    merged = ModelInferRequest.FromString(to_model["value"])
    assert decode_raw("FP32", merged.raw_input_contents[0]) == [1, 2, 3, 4, 5, 6, 7, 8]
    sent.clear()
    await engine.process(model_answer(to_model, "echo", echo_of(to_model)))
    outs = sent.to(NAMER.pipeline_outputs(BP))
    assert [o["key"] for o in outs] == [key_of("r1", BP), key_of("r2", BP)]
    for out, rows in zip(outs, [R1, R2], strict=True):
        resp = ModelInferResponse.FromString(out["value"])
        assert list(resp.outputs[0].shape) == [1, 4]
        assert decode_raw("FP32", resp.raw_output_contents[0]) == rows[0]


async def test_the_member_list_expires_and_a_late_answer_then_passes_whole() -> None:
    engine, sent, to_model = await batch_of_two()
    clock = engine.clock
    assert isinstance(clock, Clock)
    clock.advance(BATCH_MEMBERS_TTL_MS - 1)
    assert await engine.sweep() == 0
    clock.advance(2)
    assert await engine.sweep() == 1
    assert engine.store.all_keys() == []
    await engine.process(model_answer(to_model, "echo", echo_of(to_model)))
    [out] = sent.to(NAMER.pipeline_outputs(BP))
    assert out["key"] == key_of("r2", BP)


AUDITED = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: batch-two}
spec:
  steps:
    - name: echo
      batch: {size: 2}
    - name: audit
      inputs: [echo.inputs]
  output:
    steps: [echo]
"""


async def test_a_batched_request_read_by_another_step_is_split_by_rows() -> None:
    engine, sent, to_model = await batch_of_two(AUDITED)
    # the engine also consumes the batched request, since step `audit` reads echo's inputs topic
    echoed = Record(
        to_model["topic"],
        to_model["partition"],
        3,
        to_model["key"],
        to_model["value"],
        to_model["headers"],
        T0,
    )
    await engine.process(echoed)
    audits = sent.to(NAMER.model_inputs("audit"))
    assert [a["key"] for a in audits] == [key_of("r1", BP), key_of("r2", BP)]
    for audit, rows in zip(audits, [R1, R2], strict=True):
        req = ModelInferRequest.FromString(audit["value"])
        assert list(req.inputs[0].shape) == [1, 4]
        assert list(req.inputs[0].contents.fp32_contents) == rows[0]


WINDOW = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: batch-window}
spec:
  steps:
    - name: echo
      batch: {size: 3, windowMs: 100}
  output:
    steps: [echo]
"""
WP = "batch-window"


async def test_window_flushes_a_partial_batch_only_after_the_window() -> None:
    engine, sent, store, clock = make_engine(WINDOW)
    await engine.process(gateway_request(WP, "r1", R1))
    clock.advance(50)
    await engine.process(gateway_request(WP, "r2", R2))
    clock.advance(49)  # 99 ms after the first request
    assert await engine.sweep() == 0
    assert sent.records == []
    clock.advance(2)  # 101 ms
    assert await engine.sweep() == 1
    [to_model] = sent.records
    assert to_model["topic"] == NAMER.model_inputs("echo")
    assert to_model["key"] == key_of("r2", WP)
    assert header(to_model, BATCH_HEADER)
    merged = ModelInferRequest.FromString(to_model["value"])
    assert list(merged.inputs[0].shape) == [2, 4]
    assert list(merged.inputs[0].contents.fp32_contents) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [k for k in store.data if b"#batch" in k] == []
    # the flushed batch is split back as any other
    sent.clear()
    await engine.process(model_answer(to_model, "echo", echo_of(to_model)))
    outs = sent.to(NAMER.pipeline_outputs(WP))
    assert [o["key"] for o in outs] == [key_of("r1", WP), key_of("r2", WP)]
    # and a later sweep has nothing more to send
    clock.advance(1000)
    sent.clear()
    await engine.sweep()
    assert sent.records == []


async def test_window_of_a_batch_filled_by_size_does_not_fire_again() -> None:
    engine, sent, _, clock = make_engine(WINDOW)
    for rid in ("r1", "r2", "r3"):
        await engine.process(gateway_request(WP, rid, R1))
    assert len(sent.records) == 1
    clock.advance(200)
    assert await engine.sweep() == 0
    assert len(sent.records) == 1


async def test_window_survives_a_restart_through_rebuild_index() -> None:
    engine, sent, store, clock = make_engine(WINDOW)
    await engine.process(gateway_request(WP, "r1", R1))
    restarted, sent2, _, _ = make_engine(WINDOW, store=store, clock=clock)
    assert restarted.rebuild_index() == 1
    clock.advance(101)
    assert await restarted.sweep() == 1
    [to_model] = sent2.records
    assert to_model["key"] == key_of("r1", WP)
    assert sent.records == []


TWO_BATCHED = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: two-batched}
spec:
  steps:
    - name: echo
      batch: {size: 2}
    - name: wide
      batch: {size: 3}
  output:
    steps: [echo, wide]
    stepsJoin: any
"""
TP = "two-batched"


async def test_two_batched_steps_keep_separate_batches() -> None:
    engine, sent, _, _ = make_engine(TWO_BATCHED)
    await engine.process(gateway_request(TP, "r1", R1))
    await engine.process(gateway_request(TP, "r2", R2))
    [to_echo] = sent.to(NAMER.model_inputs("echo"))
    assert sent.to(NAMER.model_inputs("wide")) == []
    assert list(ModelInferRequest.FromString(to_echo["value"]).inputs[0].shape) == [2, 4]
    await engine.process(gateway_request(TP, "r3", [[9.0, 9.0, 9.0, 9.0]]))
    [to_wide] = sent.to(NAMER.model_inputs("wide"))
    assert len(sent.to(NAMER.model_inputs("echo"))) == 1  # r3 waits in echo's next batch
    wide = ModelInferRequest.FromString(to_wide["value"])
    assert list(wide.inputs[0].shape) == [3, 4]
    assert list(wide.inputs[0].contents.fp32_contents) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9]
    assert to_wide["key"] == key_of("r3", TP)
    assert header(to_wide, BATCH_HEADER) != header(to_echo, BATCH_HEADER)
    # each answer is split by its own member list
    sent.clear()
    await engine.process(model_answer(to_wide, "wide", echo_of(to_wide)))
    assert [o["key"] for o in sent.to(NAMER.pipeline_outputs(TP))] == [
        key_of(r, TP) for r in ("r1", "r2", "r3")
    ]
    sent.clear()
    await engine.process(model_answer(to_echo, "echo", echo_of(to_echo)))
    assert [o["key"] for o in sent.to(NAMER.pipeline_outputs(TP))] == [key_of(r, TP) for r in ("r1", "r2")]


async def test_batches_are_per_partition() -> None:
    engine, sent, _, _ = make_engine(BATCH)
    await engine.process(gateway_request(BP, "r1", R1, partition=1))
    await engine.process(gateway_request(BP, "r2", R2, partition=2))
    assert sent.records == []
    await engine.process(gateway_request(BP, "r3", R2, partition=2))
    [to_model] = sent.records
    assert to_model["key"] == key_of("r3", BP, 2)
    assert to_model["partition"] == 2


async def test_a_request_that_does_not_batch_is_rejected_and_the_batch_kept() -> None:
    engine, sent, _, _ = make_engine(BATCH)
    await engine.process(gateway_request(BP, "r1", R1))
    await engine.process(gateway_request(BP, "odd", [[1.0, 2.0, 3.0]]))
    [answer] = sent.to(NAMER.pipeline_outputs(BP))
    assert answer["key"] == key_of("odd", BP)
    assert header(answer, ERROR_HEADER) == [BP.encode()]
    assert sent.to(NAMER.model_inputs("echo")) == []
    await engine.process(gateway_request(BP, "r2", R2))
    [to_model] = sent.to(NAMER.model_inputs("echo"))
    assert list(ModelInferRequest.FromString(to_model["value"]).inputs[0].shape) == [2, 4]


# ====================================================================== joins through the engine
JOIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: join}
spec:
  steps:
    - name: a
    - name: b
    - name: c
      inputs: [a, b]
      inputsJoinType: outer
      joinWindowMs: 500
  output:
    steps: [c]
"""
JP = "join"


def answer_of(model: str, rid: str, partition: int = 1, value: int = 1) -> Record:
    resp = ModelInferResponse(model_name=model, id=rid)
    resp.outputs.add(name=f"OUT_{model}", datatype="INT64", shape=[1]).contents.int64_contents.append(value)
    headers = [("pipeline", JP.encode()), ("x-request-id", rid.encode()), ("x-pipeline-version", b"3")]
    return Record(
        NAMER.model_outputs(model),
        partition,
        30,
        key_of(rid, JP, partition),
        resp.SerializeToString(),
        headers,
        T0,
    )


async def test_outer_join_emits_a_lone_side_only_after_the_window() -> None:
    engine, sent, store, clock = make_engine(JOIN)
    await engine.process(answer_of("a", "r1"))
    assert sent.records == []
    clock.advance(499)
    assert await engine.sweep() == 0
    assert sent.records == []
    clock.advance(2)
    assert await engine.sweep() == 1
    [out] = sent.records
    assert out["topic"] == NAMER.model_inputs("c")
    assert out["key"] == key_of("r1", JP)
    assert out["partition"] == 1
    assert header(out, "x-request-id") == [b"r1"]
    assert header(out, "pipeline") == [JP.encode()]
    assert out["ts"] == T0  # the record's own timestamp, not the sweep's
    req = ModelInferRequest.FromString(out["value"])
    assert [t.name for t in req.inputs] == ["OUT_a"]
    assert store.data == {}


async def test_outer_join_of_both_sides_is_immediate_and_leaves_no_state() -> None:
    engine, sent, store, clock = make_engine(JOIN)
    await engine.process(answer_of("a", "r1"))
    await engine.process(answer_of("b", "r1"))
    [out] = sent.records
    assert [t.name for t in ModelInferRequest.FromString(out["value"]).inputs] == ["OUT_a", "OUT_b"]
    assert store.data == {}
    clock.advance(1000)
    assert await engine.sweep() == 0
    assert len(sent.records) == 1


async def test_rebuild_index_after_a_router_swap_rearms_deadlines() -> None:
    engine, sent, store, clock = make_engine(JOIN)
    await engine.process(answer_of("a", "r1"))
    # restart: same store, a freshly built router, the in-memory deadline index rebuilt
    engine.router = Router.build(plans(JOIN))
    assert engine.rebuild_index() == 1
    assert len(store.data) == 1
    clock.advance(501)
    assert await engine.sweep() == 1
    assert store.data == {}
    [out] = sent.records
    assert out["key"] == key_of("r1", JP)
    assert header(out, "x-request-id") == [b"r1"]


async def test_a_new_engine_on_the_same_store_emits_after_rebuild_index() -> None:
    engine, _, store, clock = make_engine(JOIN)
    await engine.process(answer_of("a", "r1"))
    restarted, sent, _, _ = make_engine(JOIN, store=store, clock=clock)
    clock.advance(501)
    assert await restarted.sweep() == 0  # nothing armed before the index is rebuilt
    assert restarted.rebuild_index() == 1
    assert await restarted.sweep() == 1
    [out] = sent.records
    assert out["key"] == key_of("r1", JP)


async def test_rebuild_index_drops_state_of_a_pipeline_that_is_gone() -> None:
    engine, sent, store, _ = make_engine(JOIN)
    await engine.process(answer_of("a", "r1"))
    engine.router = Router.build([])
    assert engine.rebuild_index() == 1
    await engine.sweep()
    assert store.data == {}
    assert sent.records == []


async def test_sweep_leaves_states_of_partitions_it_does_not_own() -> None:
    engine, sent, store, clock = make_engine(JOIN)
    await engine.process(answer_of("a", "mine", partition=1))
    await engine.process(answer_of("a", "theirs", partition=2))
    clock.advance(501)
    assert await engine.sweep(lambda p: p == 1) == 1
    assert [o["key"] for o in sent.records] == [key_of("mine", JP, 1)]
    [left] = list(store.data)
    assert left.endswith(key_of("theirs", JP, 2))
    # when the partition comes back, the rebuilt index picks it up
    assert engine.rebuild_index(lambda p: p == 2) == 1
    assert await engine.sweep(lambda p: p == 2) == 1
    assert [o["key"] for o in sent.records] == [key_of("mine", JP, 1), key_of("theirs", JP, 2)]
    assert store.data == {}


async def test_rebuild_index_skips_partitions_it_does_not_own() -> None:
    engine, sent, _, clock = make_engine(JOIN)
    await engine.process(answer_of("a", "theirs", partition=2))
    assert engine.rebuild_index(lambda p: p == 1) == 0
    clock.advance(501)
    assert await engine.sweep(lambda p: p == 1) == 0
    assert sent.records == []


# ====================================================================== cycles (spec §4.7, BR-16)
LOOP = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: loop}
spec:
  allowCycles: true
  maxStepRevisits: 1
  steps:
    - name: counter
      inputsJoinType: any
      inputs: [loop.inputs, counter.outputs.x]
    - name: done
      inputs: [counter.outputs.stop]
  output:
    steps: [done]
"""
LP = "loop"
LKEY = key_of("r1", LP)


def loop_request() -> Record:
    msg = ModelInferRequest(id="r1")
    msg.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(0)
    headers = [("pipeline", LP.encode()), ("x-request-id", b"r1")]
    return Record(NAMER.pipeline_inputs(LP), 1, 1, LKEY, msg.SerializeToString(), headers, T0)


def loop_answer(model: str, tensor: str, offset: int) -> Record:
    resp = ModelInferResponse(model_name=model, id="r1")
    resp.outputs.add(name=tensor, datatype="INT32", shape=[1]).contents.int_contents.append(offset)
    headers = [("pipeline", LP.encode()), ("x-request-id", b"r1"), ("x-pipeline-version", b"3")]
    return Record(NAMER.model_outputs(model), 1, offset, LKEY, resp.SerializeToString(), headers, T0)


def visit_keys(store: MemoryStore) -> list[bytes]:
    return [k for k in store.data if VISITS.encode() in k]


async def test_loop_stops_with_an_error_after_max_step_revisits() -> None:
    engine, sent, store, _ = make_engine(LOOP)
    await engine.process(loop_request())  # visit 1 of counter's inputs
    await engine.process(loop_answer("counter", "x", 2))  # visit 2: the one revisit allowed
    assert len(sent.to(NAMER.model_inputs("counter"))) == 2
    assert sent.to(NAMER.errors) == []
    await engine.process(loop_answer("counter", "x", 3))  # visit 3: over the limit
    assert len(sent.to(NAMER.model_inputs("counter"))) == 2
    [error] = sent.to(NAMER.errors)
    assert error["key"] == LKEY
    assert error["partition"] == 1
    assert header(error, ERROR_HEADER) == [LP.encode()]
    assert header(error, "x-request-id") == [b"r1"]
    text = error["value"].decode()
    assert text.startswith(f"ERROR: Max step revisits (1) exceeded for request {LKEY.decode()}")
    assert NAMER.model_inputs("counter") in text
    assert visit_keys(store) == []  # the error ends the request's loop
    # the error travels errors -> error step -> pipeline outputs, where the gateway answers with it
    sent.clear()
    await engine.process(
        Record(NAMER.errors, 1, 5, error["key"], error["value"], error["headers"], error["ts"])
    )
    [reply] = sent.to(NAMER.pipeline_outputs(LP))
    assert reply["key"] == LKEY
    assert header(reply, ERROR_HEADER) == [LP.encode()]
    assert reply["value"] == error["value"]
    assert sent.to(NAMER.errors) == []


async def test_reaching_the_output_deletes_the_loop_counters() -> None:
    engine, sent, store, _ = make_engine(LOOP)
    await engine.process(loop_request())
    await engine.process(loop_answer("counter", "x", 2))
    await engine.process(loop_answer("counter", "stop", 3))  # counter -> done
    assert len(sent.to(NAMER.model_inputs("done"))) == 1
    assert len(visit_keys(store)) == 1
    await engine.process(loop_answer("done", "stop", 4))  # done -> pipeline outputs
    [out] = sent.to(NAMER.pipeline_outputs(LP))
    assert out["key"] == LKEY
    assert visit_keys(store) == []
    assert store.data == {}
    # a new request under the same key starts counting from zero again
    await engine.process(loop_request())
    await engine.process(loop_answer("counter", "x", 5))
    assert sent.to(NAMER.errors) == []


async def test_loop_counters_are_per_request_key() -> None:
    engine, sent, _, _ = make_engine(LOOP)
    await engine.process(loop_request())
    await engine.process(loop_answer("counter", "x", 2))
    other = loop_request()
    other = Record(other.topic, 1, 2, key_of("r2", LP), other.value, other.headers, other.timestamp)
    await engine.process(other)
    assert sent.to(NAMER.errors) == []
    assert len(sent.to(NAMER.model_inputs("counter"))) == 3


async def test_abandoned_loop_counters_expire() -> None:
    engine, _, store, clock = make_engine(LOOP)
    await engine.process(loop_request())
    assert len(visit_keys(store)) == 1
    clock.advance(60_000)
    await engine.sweep()
    assert len(visit_keys(store)) == 1
    clock.advance(10 * 60 * 1000)
    await engine.sweep()
    assert visit_keys(store) == []


async def test_without_allow_cycles_no_counters_are_kept() -> None:
    engine, sent, store, _ = make_engine(BATCH.replace("size: 2", "size: 1"))
    await engine.process(gateway_request(BP, "r1", R1))
    assert len(sent.records) == 1
    assert visit_keys(store) == []


COUNT_TO_TEN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: count-to-ten}
spec:
  allowCycles: true
  maxStepRevisits: MAX
  steps:
  - name: counter
    inputsJoinType: any
    inputs: [count-to-ten.inputs, loop.outputs]
  - name: loop
    inputs: [counter.outputs.x]
    triggers: [counter.outputs.continue]
    joinWindowMs: 1
  - name: done
    inputs: [counter.outputs.x]
    triggers: [counter.outputs.stop]
    joinWindowMs: 1
  output:
    steps: [done]
"""
CP = "count-to-ten"


def counter_model(req: ModelInferRequest, *, stops: bool) -> ModelInferResponse:
    """x -> x + 1, with a `continue` flag below 10 (always, if it never stops), else `stop`."""
    x = next(t for t in req.inputs if t.name == "x").contents.int_contents[0] + 1
    resp = ModelInferResponse(model_name="counter", id=req.id)
    resp.outputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(x)
    flag = "stop" if stops and x >= 10 else "continue"
    resp.outputs.add(name=flag, datatype="BOOL", shape=[1]).contents.bool_contents.append(True)
    return resp


async def run_count_to_ten(
    max_revisits: int, start: int, *, stops: bool = True
) -> tuple[dict[str, int], list[dict[str, Any]], MemoryStore]:
    """Play the model gateway (and Kafka) around the engine until nothing is left to deliver."""
    engine, sent, store, clock = make_engine(COUNT_TO_TEN.replace("MAX", str(max_revisits)))
    msg = ModelInferRequest(id="r1")
    msg.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(start)
    key = key_of("r1", CP)
    queue = [
        Record(NAMER.pipeline_inputs(CP), 1, 0, key, msg.SerializeToString(), [("pipeline", CP.encode())], T0)
    ]
    calls: dict[str, int] = {}
    outputs: list[dict[str, Any]] = []
    offset = 0
    while queue and offset < 500:
        record = queue.pop(0)
        first_new = len(sent.records)
        await engine.process(record)
        for out in sent.records[first_new:]:
            offset += 1
            topic = out["topic"]
            if topic == NAMER.pipeline_outputs(CP):
                outputs.append(out)
                continue
            if topic == NAMER.errors:
                queue.append(Record(topic, 1, offset, out["key"], out["value"], out["headers"], T0))
                continue
            model = topic.split(".")[-2]
            calls[model] = calls.get(model, 0) + 1
            req = ModelInferRequest.FromString(out["value"])
            resp = counter_model(req, stops=stops) if model == "counter" else _echo_response(req)
            value = resp.SerializeToString()
            queue.append(Record(NAMER.model_outputs(model), 1, offset, out["key"], value, out["headers"], T0))
        clock.advance(5)
        await engine.sweep()
    return calls, outputs, store


def _echo_response(req: ModelInferRequest) -> ModelInferResponse:
    resp = ModelInferResponse(id=req.id)
    for t in req.inputs:
        resp.outputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape)).contents.CopyFrom(t.contents)
    return resp


@pytest.mark.parametrize(("start", "answer", "counter_calls"), [(0, 10, 10), (15, 16, 1)])
async def test_count_to_ten_loops_until_stop_and_leaves_no_state(
    start: int, answer: int, counter_calls: int
) -> None:
    calls, outputs, store = await run_count_to_ten(20, start)
    [out] = outputs
    assert header(out, ERROR_HEADER) == []
    resp = ModelInferResponse.FromString(out["value"])
    assert list(resp.outputs[0].contents.int_contents) == [answer]
    assert calls.get("counter") == counter_calls
    assert calls.get("loop", 0) == counter_calls - 1
    assert calls.get("done") == 1
    assert store.data == {}


async def test_count_to_ten_without_stop_ends_in_one_error_reply() -> None:
    calls, outputs, store = await run_count_to_ten(3, 0, stops=False)
    assert calls["counter"] == 4  # maxStepRevisits + 1 entries
    [reply] = outputs
    assert header(reply, ERROR_HEADER) == [CP.encode()]
    assert reply["value"].startswith(b"ERROR: Max step revisits (3) exceeded for request 1.count-to-ten.r1")
    assert store.data == {}
