"""Batch state and the split of a batched answer (spec §4.6, case S-01): pure, no engine."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import batching
from dataflow.batching import BatchState, Member
from dataflow.errors import CodecError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.tensors import decode_raw, encode_raw, tensor_values


def response(*tensors: tuple[str, str, list[int], list[Any]], raw: bool = False) -> ModelInferResponse:
    """A model answer; each tensor is (name, datatype, shape, flat values)."""
    msg = ModelInferResponse(model_name="echo", model_version="7", id="batch-id")
    msg.parameters["content_type"].string_param = "np"
    for name, datatype, shape, values in tensors:
        t = msg.outputs.add(name=name, datatype=datatype, shape=shape)
        t.parameters["unit"].string_param = f"u-{name}"
        if raw:
            msg.raw_output_contents.append(encode_raw(datatype, values))
        elif datatype == "FP32":
            t.contents.fp32_contents.extend(values)
        elif datatype == "INT64":
            t.contents.int64_contents.extend(values)
        elif datatype == "BYTES":
            t.contents.bytes_contents.extend(values)
        else:  # pragma: no cover - helper misuse
            raise AssertionError(datatype)
    return msg


def request(rows: list[list[float]], *, rid: str = "r", raw: bool = False) -> ModelInferRequest:
    msg = ModelInferRequest(id=rid)
    msg.parameters["who"].string_param = rid
    flat = [v for row in rows for v in row]
    t = msg.inputs.add(name="INPUT", datatype="FP32", shape=[len(rows), len(rows[0]) if rows else 4])
    if raw:
        msg.raw_input_contents.append(encode_raw("FP32", flat))
    else:
        t.contents.fp32_contents.extend(flat)
    return msg


def member(req: ModelInferRequest, key: bytes | None = b"0.p.r", ts: int = 5) -> Member:
    return Member(key, [("x-request-id", b"r")], ts, batching.rows_of(req), req.SerializeToString())


MIXED = (
    ("F", "FP32", [3, 2], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    ("I", "INT64", [3], [10, -20, 2**40]),
    ("B", "BYTES", [3, 1], [b"a", b"\x00\xff", b""]),
)


# ---------------------------------------------------------------------- split_response
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_split_is_row_wise_per_member_for_each_datatype(raw: bool) -> None:
    parts = batching.split_response(response(*MIXED, raw=raw), [1, 2])
    assert parts is not None and len(parts) == 2
    first, second = parts
    assert [list(t.shape) for t in first.outputs] == [[1, 2], [1], [1, 1]]
    assert [list(t.shape) for t in second.outputs] == [[2, 2], [2], [2, 1]]
    assert [t.name for t in first.outputs] == ["F", "I", "B"]
    assert [t.datatype for t in second.outputs] == ["FP32", "INT64", "BYTES"]
    assert [tensor_values(first, i) for i in range(3)] == [[1.0, 2.0], [10], [b"a"]]
    assert [tensor_values(second, i) for i in range(3)] == [
        [3.0, 4.0, 5.0, 6.0],
        [-20, 2**40],
        [b"\x00\xff", b""],
    ]


def test_split_keeps_raw_as_raw_and_typed_as_typed() -> None:
    [raw_part, _] = batching.split_response(response(*MIXED, raw=True), [1, 2]) or []
    assert len(raw_part.raw_output_contents) == 3
    assert all(not t.HasField("contents") for t in raw_part.outputs)
    assert decode_raw("INT64", raw_part.raw_output_contents[1]) == [10]
    [typed_part, _] = batching.split_response(response(*MIXED), [1, 2]) or []
    assert list(typed_part.raw_output_contents) == []
    assert list(typed_part.outputs[0].contents.fp32_contents) == [1.0, 2.0]
    assert list(typed_part.outputs[1].contents.int64_contents) == [10]
    assert list(typed_part.outputs[2].contents.bytes_contents) == [b"a"]


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_split_multi_dimensional_tensor_by_first_dimension(raw: bool) -> None:
    values = [float(v) for v in range(12)]
    parts = batching.split_response(response(("T", "FP32", [3, 2, 2], values), raw=raw), [1, 2])
    assert parts is not None
    assert [list(p.outputs[0].shape) for p in parts] == [[1, 2, 2], [2, 2, 2]]
    assert tensor_values(parts[0], 0) == values[:4]
    assert tensor_values(parts[1], 0) == values[4:]


def test_split_of_a_single_member_is_the_whole_answer() -> None:
    whole = response(("T", "INT64", [2, 2], [1, 2, 3, 4]))
    [part] = batching.split_response(whole, [2]) or []
    assert list(part.outputs[0].shape) == [2, 2]
    assert tensor_values(part, 0) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "tensors",
    [
        # one tensor row-wise, the other not
        (("F", "FP32", [3, 1], [1.0, 2.0, 3.0]), ("S", "INT64", [1], [9])),
        # first dimension larger than the batch
        (("F", "FP32", [4], [1.0, 2.0, 3.0, 4.0]),),
        # a scalar (no dimensions at all)
        (("S", "INT64", [], [9]),),
        # nothing at all
        (),
    ],
    ids=["one-tensor-differs", "too-many-rows", "scalar", "no-outputs"],
)
def test_split_of_an_answer_that_is_not_row_wise_is_none(tensors: tuple[Any, ...]) -> None:
    assert batching.split_response(response(*tensors), [1, 2]) is None


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_split_element_count_mismatch_raises_codec_error(raw: bool) -> None:
    # shape [3, 2] needs 6 elements; 5 are there
    bad = response(("F", "FP32", [3, 2], [1.0, 2.0, 3.0, 4.0, 5.0]), raw=raw)
    with pytest.raises(CodecError, match="'F' has 5 elements"):
        batching.split_response(bad, [1, 2])


def test_split_carries_message_and_tensor_parameters_and_identity() -> None:
    parts = batching.split_response(response(*MIXED), [2, 1])
    assert parts is not None
    for part in parts:
        assert part.model_name == "echo" and part.model_version == "7" and part.id == "batch-id"
        assert part.parameters["content_type"].string_param == "np"
        assert [t.parameters["unit"].string_param for t in part.outputs] == ["u-F", "u-I", "u-B"]


def test_split_does_not_modify_the_answer() -> None:
    whole = response(*MIXED, raw=True)
    before = whole.SerializeToString()
    batching.split_response(whole, [1, 2])
    assert whole.SerializeToString() == before


# ---------------------------------------------------------------------- add / merged / is_full
def test_add_starts_a_state_then_appends_in_arrival_order() -> None:
    r1, r2 = request([[1, 2, 3, 4]], rid="r1"), request([[5, 6, 7, 8]], rid="r2")
    state = batching.add(None, member(r1, b"k1"), partition=3, now_ms=1000)
    assert (state.partition, state.first_seen_ms) == (3, 1000)
    again = batching.add(state, member(r2, b"k2"), partition=3, now_ms=2000)
    assert again is state
    assert state.first_seen_ms == 1000  # the window runs from the first request
    assert [m.key for m in state.members] == [b"k1", b"k2"]
    merged = batching.merged(state)
    assert list(merged.inputs[0].shape) == [2, 4]
    assert list(merged.inputs[0].contents.fp32_contents) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert merged.id == "r2" and merged.parameters["who"].string_param == "r2"


def test_merged_with_a_raw_member_is_raw() -> None:
    state = batching.add(None, member(request([[1, 2, 3, 4]])), 0, 0)
    batching.add(state, member(request([[5, 6, 7, 8]], raw=True)), 0, 0)
    merged = batching.merged(state)
    assert decode_raw("FP32", merged.raw_input_contents[0]) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_merged_rejects_requests_that_do_not_batch() -> None:
    state = batching.add(None, member(request([[1, 2, 3, 4]])), 0, 0)
    batching.add(state, member(request([[1, 2, 3]])), 0, 0)
    with pytest.raises(CodecError):
        batching.merged(state)


def test_size_counts_first_dimension_rows_not_messages() -> None:
    two_rows = request([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert batching.rows_of(two_rows) == 2
    state = batching.add(None, member(two_rows), 0, 0)
    assert batching.is_full(batching.merged(state), 2)  # one message, already full
    assert not batching.is_full(batching.merged(state), 3)


def test_is_full_needs_the_threshold_and_a_size() -> None:
    one = request([[1, 2, 3, 4]])
    state = batching.add(None, member(one), 0, 0)
    assert not batching.is_full(batching.merged(state), 2)
    batching.add(state, member(one), 0, 0)
    assert batching.is_full(batching.merged(state), 2)
    assert batching.is_full(batching.merged(state), 1)  # over the threshold is full too
    assert not batching.is_full(batching.merged(state), None)  # windowMs-only batch
    assert not batching.is_full(batching.merged(state), 0)


def test_rows_of_a_request_without_inputs_is_zero() -> None:
    assert batching.rows_of(ModelInferRequest()) == 0


# ---------------------------------------------------------------------- serialization
def test_dumps_loads_round_trip_with_none_key_and_binary_headers() -> None:
    payload = request([[1, 2, 3, 4]]).SerializeToString()
    state = BatchState(
        7,
        1_700_000_000_123,
        [
            Member(None, [("bin", b"\x00\xff\xfe"), ("x-request-id", b"r1"), ("bin", b"")], 11, 1, payload),
            Member(b"\x01.p.\xffk", [], 12, 3),
        ],
    )
    back = batching.loads(batching.dumps(state))
    assert back == state
    assert back.members[0].key is None
    assert back.members[0].headers[0] == ("bin", b"\x00\xff\xfe")
    assert back.members[1].payload == b""


def test_loads_of_an_empty_state() -> None:
    assert batching.loads(batching.dumps(BatchState(0, 0))) == BatchState(0, 0, [])
