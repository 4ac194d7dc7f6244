"""Unit tests of the pure tensor layer (spec §2.2 to §2.7, §4.6): no broker, milliseconds each."""

from __future__ import annotations

import base64
import math
import subprocess
import sys
from typing import Any

import pytest

from dataflow.errors import CodecError
from dataflow.proto.v2_dataplane_pb2 import (
    InferParameter,
    ModelInferRequest,
    ModelInferResponse,
)
from dataflow.tensors import (
    DATATYPES,
    batch_merge,
    batch_size,
    convert,
    decode_raw,
    encode_raw,
    merge_requests,
    merge_responses,
    request_from_json,
    response_to_json,
    set_contents,
    tensor_values,
    to_raw,
)
from dataflow.topics import ChainKind

SRC = "seldon.default.model.m.outputs"

# The spec's pipeline-inputs example (§7.3): gRPC raw contents of OUTPUT [10,20,30,40] and [11..14].
RAW_10_40 = base64.b64decode("AAAgQQAAoEEAAPBBAAAgQg==")
RAW_11_14 = base64.b64decode("AAAwQQAAQEEAAFBBAABgQQ==")


# ---------------------------------------------------------------------------------------------- helpers


def _fill(tensor: Any, name: str, datatype: str, shape: list[int], values: list[Any] | None) -> None:
    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(shape)
    if values is not None:
        set_contents(tensor, datatype, values)


def make_request(*tensors: tuple[str, str, list[int], list[Any] | None], **fields: Any) -> ModelInferRequest:
    request = ModelInferRequest(**fields)
    for name, datatype, shape, values in tensors:
        _fill(request.inputs.add(), name, datatype, shape, values)
    return request


def make_response(
    *tensors: tuple[str, str, list[int], list[Any] | None], **fields: Any
) -> ModelInferResponse:
    response = ModelInferResponse(**fields)
    for name, datatype, shape, values in tensors:
        _fill(response.outputs.add(), name, datatype, shape, values)
    return response


def tensors_of(message: ModelInferRequest | ModelInferResponse) -> Any:
    return message.inputs if isinstance(message, ModelInferRequest) else message.outputs


def raw_of(message: ModelInferRequest | ModelInferResponse) -> list[bytes]:
    if isinstance(message, ModelInferRequest):
        return list(message.raw_input_contents)
    return list(message.raw_output_contents)


def all_values(message: ModelInferRequest | ModelInferResponse) -> dict[str, list[Any]]:
    return {t.name: tensor_values(message, i) for i, t in enumerate(tensors_of(message))}


def param(**kw: Any) -> InferParameter:
    return InferParameter(**kw)


# ----------------------------------------------------------------------------------- convert (§2.3)

KINDS = [
    (ChainKind.INPUT_INPUT, ModelInferRequest, ModelInferRequest),
    (ChainKind.OUTPUT_INPUT, ModelInferResponse, ModelInferRequest),
    (ChainKind.OUTPUT_OUTPUT, ModelInferResponse, ModelInferResponse),
    (ChainKind.INPUT_OUTPUT, ModelInferRequest, ModelInferResponse),
]


def _source(cls: type, raw: bool = False) -> ModelInferRequest | ModelInferResponse:
    tensors: list[tuple[str, str, list[int], list[Any] | None]] = [
        ("a", "INT32", [1, 2], [1, 2]),
        ("b", "FP32", [1], [0.5]),
    ]
    msg = (make_request if cls is ModelInferRequest else make_response)(
        *tensors, id="req-1", model_name="m", model_version="7"
    )
    msg.parameters["content_type"].string_param = "np"
    tensors_of(msg)[0].parameters["tp"].int64_param = 3
    if isinstance(msg, ModelInferRequest):
        msg.outputs.add(name="a")  # requested outputs must not survive a conversion
    return msg


@pytest.mark.parametrize(("kind", "source_cls", "target_cls"), KINDS, ids=lambda v: getattr(v, "name", ""))
def test_convert_each_chain_kind_builds_target_kind_and_blanks_model_fields(
    kind: ChainKind, source_cls: type, target_cls: type
) -> None:
    source = _source(source_cls)
    out = convert(source, kind, source_topic=SRC, desired=None, renames={})
    assert type(out) is target_cls
    assert out is not None
    assert out.id == "req-1"
    assert out.model_name == "" and out.model_version == ""
    if isinstance(out, ModelInferRequest):
        assert len(out.outputs) == 0
    assert out.parameters["content_type"].string_param == "np"
    tensors = tensors_of(out)
    assert [(t.name, t.datatype, list(t.shape)) for t in tensors] == [
        ("a", "INT32", [1, 2]),
        ("b", "FP32", [1]),
    ]
    assert tensors[0].parameters["tp"].int64_param == 3
    assert all_values(out) == {"a": [1, 2], "b": [0.5]}
    assert raw_of(out) == []
    # the source is untouched
    assert source.model_name == "m" and len(tensors_of(source)) == 2


@pytest.mark.parametrize(("kind", "source_cls", "target_cls"), KINDS, ids=lambda v: getattr(v, "name", ""))
def test_convert_rejects_the_wrong_source_message_type(
    kind: ChainKind, source_cls: type, target_cls: type
) -> None:
    wrong = ModelInferResponse if source_cls is ModelInferRequest else ModelInferRequest
    with pytest.raises(CodecError, match=kind.name):
        convert(_source(wrong), kind, source_topic=SRC, desired=None, renames={})


def test_convert_refuses_passthrough() -> None:
    with pytest.raises(CodecError, match="PASSTHROUGH"):
        convert(_source(ModelInferRequest), ChainKind.PASSTHROUGH, source_topic=SRC, desired=None, renames={})


@pytest.mark.parametrize(
    ("desired", "expected"),
    [
        (None, ["a", "b", "c"]),
        (frozenset(), ["a", "b", "c"]),
        (frozenset({"b"}), ["b"]),
        (frozenset({"c", "a"}), ["a", "c"]),  # original order, not the set's
        (frozenset({"c", "zzz"}), ["c"]),
    ],
)
def test_convert_selects_the_desired_tensors(desired: frozenset[str] | None, expected: list[str]) -> None:
    source = make_response(("a", "INT32", [1], [1]), ("b", "INT32", [1], [2]), ("c", "INT32", [1], [3]))
    out = convert(source, ChainKind.OUTPUT_OUTPUT, source_topic=SRC, desired=desired, renames={})
    assert isinstance(out, ModelInferResponse)
    assert [t.name for t in tensors_of(out)] == expected
    assert [tensor_values(out, i)[0] for i in range(len(expected))] == [
        ord(n) - ord("a") + 1 for n in expected
    ]


def test_convert_renames_only_by_fully_qualified_source_key() -> None:
    source = make_response(("OUTPUT0", "INT32", [1], [1]), ("OUTPUT1", "INT32", [1], [2]))
    renames = {
        f"{SRC}.OUTPUT0": "INPUT0",  # applies
        "seldon.default.model.other.outputs.OUTPUT1": "WRONG",  # another topic: must not apply
        "OUTPUT1": "ALSO_WRONG",  # bare tensor name: must not apply
    }
    out = convert(source, ChainKind.OUTPUT_INPUT, source_topic=SRC, desired=None, renames=renames)
    assert isinstance(out, ModelInferRequest)
    assert [t.name for t in out.inputs] == ["INPUT0", "OUTPUT1"]


def test_convert_selection_uses_original_names_before_rename() -> None:
    source = make_response(("OUTPUT0", "INT32", [1], [1]), ("OUTPUT1", "INT32", [1], [2]))
    out = convert(
        source,
        ChainKind.OUTPUT_INPUT,
        source_topic=SRC,
        desired=frozenset({"OUTPUT1"}),
        renames={f"{SRC}.OUTPUT1": "INPUT"},
    )
    assert isinstance(out, ModelInferRequest)
    assert [t.name for t in out.inputs] == ["INPUT"]
    assert tensor_values(out, 0) == [2]


def test_convert_all_raw_keeps_raw_entries_in_order() -> None:
    source = make_response(("a", "FP32", [4], None), ("b", "FP32", [4], None))
    source.raw_output_contents.extend([RAW_10_40, RAW_11_14])
    out = convert(source, ChainKind.OUTPUT_INPUT, source_topic=SRC, desired=None, renames={})
    assert isinstance(out, ModelInferRequest)
    assert list(out.raw_input_contents) == [RAW_10_40, RAW_11_14]
    assert all_values(out) == {"a": [10, 20, 30, 40], "b": [11, 12, 13, 14]}


def test_convert_skipping_raw_tensors_keeps_remaining_pairs_aligned() -> None:
    source = make_response(("a", "FP32", [4], None), ("b", "INT32", [2], None), ("c", "FP32", [4], None))
    source.raw_output_contents.extend([RAW_10_40, encode_raw("INT32", [5, 6]), RAW_11_14])
    out = convert(
        source, ChainKind.OUTPUT_OUTPUT, source_topic=SRC, desired=frozenset({"a", "c"}), renames={}
    )
    assert isinstance(out, ModelInferResponse)
    assert list(out.raw_output_contents) == [RAW_10_40, RAW_11_14]
    assert all_values(out) == {"a": [10, 20, 30, 40], "c": [11, 12, 13, 14]}


def test_convert_mixed_typed_and_raw_follows_the_reference() -> None:
    # rawCount (1) < tensor count (3): every tensor loses its typed contents, and tensors past the raw
    # list end up with no data at all (spec §2.3, kept for wire compatibility).
    source = make_response(("a", "FP32", [4], None), ("b", "INT32", [2], [5, 6]), ("c", "INT32", [1], [7]))
    source.raw_output_contents.append(RAW_10_40)
    out = convert(source, ChainKind.OUTPUT_INPUT, source_topic=SRC, desired=None, renames={})
    assert isinstance(out, ModelInferRequest)
    assert list(out.raw_input_contents) == [RAW_10_40]
    assert not any(t.HasField("contents") for t in out.inputs)
    assert all_values(out) == {"a": [10, 20, 30, 40], "b": [], "c": []}


def test_convert_drops_message_when_no_tensor_remains() -> None:
    source = make_response(("OUTPUT1", "FP32", [4], [1, 2, 3, 4]))
    assert (
        convert(source, ChainKind.OUTPUT_INPUT, source_topic=SRC, desired=frozenset({"OUTPUT0"}), renames={})
        is None
    )
    empty = ModelInferResponse(id="x")
    assert convert(empty, ChainKind.OUTPUT_INPUT, source_topic=SRC, desired=None, renames={}) is None


# ------------------------------------------------------------------------------ raw encoding (§2.5)

ROUND_TRIP: dict[str, list[Any]] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 1, 255],
    "UINT16": [0, 65535],
    "UINT32": [0, 2**32 - 1],
    "UINT64": [0, 2**64 - 1],
    "INT8": [-128, 0, 127],
    "INT16": [-32768, 32767],
    "INT32": [-(2**31), 2**31 - 1],
    "INT64": [-(2**63), 2**63 - 1],
    "FP16": [0.5, -2.0, 65504.0],
    "FP32": [1.5, -0.25, 2.0**100],  # exactly representable in float32
    "FP64": [0.1, -1e300],
    "BYTES": [b"", b"ab", "héllo".encode(), bytes(range(256))],
}
WIDTH = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2}
WIDTH |= {"UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}


def test_round_trip_table_covers_every_datatype() -> None:
    assert set(ROUND_TRIP) == set(DATATYPES) == set(WIDTH) | {"BYTES"}
    assert len(DATATYPES) == 13


@pytest.mark.parametrize("datatype", sorted(ROUND_TRIP))
def test_encode_decode_round_trip(datatype: str) -> None:
    values = ROUND_TRIP[datatype]
    data = encode_raw(datatype, values)
    assert decode_raw(datatype, data) == values
    if datatype == "BYTES":
        assert len(data) == sum(4 + len(v) for v in values)
    else:
        assert len(data) == WIDTH[datatype] * len(values)


@pytest.mark.parametrize("datatype", sorted(ROUND_TRIP))
def test_typed_contents_to_raw_and_back(datatype: str) -> None:
    values = ROUND_TRIP[datatype]
    typed = make_request(("t", datatype, [len(values)], values))
    raw = to_raw(typed)
    assert not raw.inputs[0].HasField("contents")
    assert len(raw.raw_input_contents) == 1
    assert tensor_values(raw, 0) == tensor_values(typed, 0) == values


@pytest.mark.parametrize(
    ("datatype", "values", "hex_bytes"),
    [
        ("INT32", [1, 2], "0100000002000000"),
        ("INT16", [-2, 258], "feff0201"),
        ("UINT64", [1], "0100000000000000"),
        ("BOOL", [True, False], "0100"),
        ("FP32", [1.0], "0000803f"),
        ("FP16", [1.0, -2.0], "003c00c0"),  # real half floats, not the reference's 4-byte FP32
        ("FP64", [1.0], "000000000000f03f"),
        ("BYTES", ["ab", b"c"], "0200000061620100000063"),
    ],
)
def test_exact_little_endian_bytes(datatype: str, values: list[Any], hex_bytes: str) -> None:
    assert encode_raw(datatype, values).hex() == hex_bytes
    assert decode_raw(datatype, bytes.fromhex(hex_bytes)) == [
        v.encode() if isinstance(v, str) else v for v in values
    ]


def test_spec_base64_example_decodes_to_fp32_values() -> None:
    assert decode_raw("FP32", RAW_10_40) == [10.0, 20.0, 30.0, 40.0]
    assert encode_raw("FP32", [11, 12, 13, 14]) == RAW_11_14


def test_float_overflow_saturates_to_infinity() -> None:
    assert decode_raw("FP16", encode_raw("FP16", [1e6, -1e6, 1.0])) == [math.inf, -math.inf, 1.0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode_raw("FOO", [1]), "unknown datatype 'FOO'"),
        (lambda: decode_raw("FP42", b""), "unknown datatype 'FP42'"),
        (lambda: decode_raw("FP32", b"\x00" * 7), "raw length 7 is not a multiple of 4"),
        (lambda: decode_raw("BYTES", b"\x05\x00\x00\x00ab"), "overruns"),
        (lambda: decode_raw("BYTES", b"\x01\x00"), "truncated length prefix"),
        (lambda: encode_raw("INT8", [1, 300]), "300"),
        (lambda: encode_raw("BYTES", [1]), "neither bytes nor str"),
    ],
)
def test_codec_errors(call: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        call()


# --------------------------------------------------------------------- typed contents, tensor_values


@pytest.mark.parametrize(
    ("datatype", "field"),
    [(dt, codec.field) for dt, codec in sorted(DATATYPES.items())],
)
def test_set_contents_uses_the_datatype_field(datatype: str, field: str) -> None:
    request = make_request(("t", datatype, [1], ROUND_TRIP[datatype][:1]))
    contents = request.inputs[0].contents
    assert [f.name for f, _ in contents.ListFields()] == [field]


def test_set_contents_fp16_goes_to_fp32_contents_and_replaces_old_values() -> None:
    tensor = ModelInferRequest().inputs.add()
    set_contents(tensor, "FP16", [1.0, 2.0])
    set_contents(tensor, "FP16", [0.5])
    assert list(tensor.contents.fp32_contents) == [0.5]


def test_set_contents_rejects_out_of_range_and_wrong_types() -> None:
    tensor = ModelInferRequest().inputs.add()
    with pytest.raises(CodecError, match="UINT8: value 256 out of range"):
        set_contents(tensor, "UINT8", [1, 256])
    with pytest.raises(CodecError, match="INT32"):
        set_contents(tensor, "INT32", [1.5])
    with pytest.raises(CodecError, match="unknown datatype 'int'"):
        set_contents(tensor, "int", [1])


def test_tensor_values_raw_length_misfit_names_tensor_and_datatype() -> None:
    response = make_response(("OUT", "INT64", [1], None))
    response.raw_output_contents.append(b"\x00" * 5)
    with pytest.raises(CodecError, match=r"tensor 'OUT' \(INT64\)"):
        tensor_values(response, 0)


def test_tensor_values_errors_on_bad_index_and_unknown_datatype() -> None:
    response = make_response(("OUT", "INT64", [1], [1]))
    with pytest.raises(CodecError, match="index 1 out of range"):
        tensor_values(response, 1)
    response.outputs[0].datatype = "COMPLEX"
    with pytest.raises(CodecError, match="tensor 'OUT': unknown datatype 'COMPLEX'"):
        tensor_values(response, 0)


# ------------------------------------------------------------------------------- join merge (§2.6)


def test_merge_typed_requests_concatenates_left_then_right() -> None:
    left = make_request(("a", "INT32", [1], [1]), id="L")
    left.parameters["who"].string_param = "left"
    right = make_request(("b", "FP32", [1], [2.0]), id="R")
    right.parameters["who"].string_param = "right"
    right.parameters["extra"].bool_param = True
    merged = merge_requests(left, right)
    assert merged.id == "L"
    assert dict(merged.parameters) == {"who": param(string_param="left")}
    assert all_values(merged) == {"a": [1], "b": [2.0]}
    assert list(merged.raw_input_contents) == []


def test_merge_keeps_duplicate_tensor_names() -> None:
    left = make_response(("OUTPUT", "FP32", [4], [10, 20, 30, 40]), id="x")
    right = make_response(("OUTPUT", "FP32", [4], [11, 12, 13, 14]), id="y")
    merged = merge_responses(left, right)
    assert [t.name for t in merged.outputs] == ["OUTPUT", "OUTPUT"]
    assert [tensor_values(merged, i) for i in range(2)] == [[10, 20, 30, 40], [11, 12, 13, 14]]


@pytest.mark.parametrize("raw_side", ["left", "right"])
def test_merge_upgrades_the_typed_side_to_raw(raw_side: str) -> None:
    raw = make_response(("OUTPUT", "FP32", [4], None), id=raw_side)
    raw.raw_output_contents.append(RAW_10_40)
    typed = make_response(("titles", "BYTES", [2], [b"A", b"B"]), ("n", "INT32", [1], [7]), id="typed")
    left, right = (raw, typed) if raw_side == "left" else (typed, raw)
    merged = merge_responses(left, right)
    assert merged.id == left.id
    assert len(merged.raw_output_contents) == len(merged.outputs) == 3
    assert not any(t.HasField("contents") for t in merged.outputs)
    expected = {"OUTPUT": [10, 20, 30, 40], "titles": [b"A", b"B"], "n": [7]}
    assert all_values(merged) == expected
    names = [t.name for t in merged.outputs]
    assert names == (["OUTPUT", "titles", "n"] if raw_side == "left" else ["titles", "n", "OUTPUT"])
    # arguments untouched
    assert list(typed.outputs[0].contents.bytes_contents) == [b"A", b"B"]
    assert len(raw.outputs) == 1 and len(raw.raw_output_contents) == 1


def test_merge_requests_raw_upgrade_exact_bytes() -> None:
    left = make_request(("user_id", "BYTES", [1], ["42"]))
    right = make_request(("item_title", "BYTES", [2], None))
    right.raw_input_contents.append(encode_raw("BYTES", [b"A", b"B"]))
    merged = merge_requests(left, right)
    assert list(merged.raw_input_contents) == [
        bytes.fromhex("02000000") + b"42",
        bytes.fromhex("01000000") + b"A" + bytes.fromhex("01000000") + b"B",
    ]


# ------------------------------------------------------------------------------ to_raw


def test_to_raw_returns_a_raw_copy() -> None:
    typed = make_request(("a", "INT32", [2], [1, 2]), ("b", "FP32", [1], [1.0]), id="k")
    raw = to_raw(typed)
    assert raw.id == "k"
    assert list(raw.raw_input_contents) == [bytes.fromhex("0100000002000000"), bytes.fromhex("0000803f")]
    assert not any(t.HasField("contents") for t in raw.inputs)
    assert list(typed.inputs[0].contents.int_contents) == [1, 2]  # original untouched
    assert len(typed.raw_input_contents) == 0


def test_to_raw_repairs_trailing_typed_tensors_of_a_mixed_message() -> None:
    mixed = make_response(("a", "FP32", [4], None), ("b", "INT32", [1], [9]))
    mixed.raw_output_contents.append(RAW_10_40)
    raw = to_raw(mixed)
    assert list(raw.raw_output_contents) == [RAW_10_40, encode_raw("INT32", [9])]
    assert all_values(raw) == {"a": [10, 20, 30, 40], "b": [9]}


# ---------------------------------------------------------------------------- batch merge (§4.6)


def _fp32_request(request_id: str, values: list[float], raw: bool = False) -> ModelInferRequest:
    request = make_request(
        ("INPUT", "FP32", [1, len(values)], None if raw else values),
        id=request_id,
        model_name=f"m-{request_id}",
        model_version=request_id,
    )
    request.parameters["from"].string_param = request_id
    if raw:
        request.raw_input_contents.append(encode_raw("FP32", values))
    return request


def test_batch_merge_standard_tensors() -> None:
    batch = [_fp32_request(str(i), [float(4 * i + j) for j in range(4)]) for i in range(3)]
    merged = batch_merge(batch)
    assert merged.id == "2" and merged.model_name == "m-2" and merged.model_version == "2"
    assert dict(merged.parameters) == {"from": param(string_param="2")}
    assert [(t.name, t.datatype, list(t.shape)) for t in merged.inputs] == [("INPUT", "FP32", [3, 4])]
    assert tensor_values(merged, 0) == [float(v) for v in range(12)]
    assert list(merged.raw_input_contents) == []
    assert batch_size(merged) == 3


@pytest.mark.parametrize(
    "raw_flags", [(True, False, False), (False, True, False), (False, False, True), (True, True, False)]
)
def test_batch_merge_mixed_raw_and_typed_is_raw(raw_flags: tuple[bool, bool, bool]) -> None:
    batch = [_fp32_request(str(i), [float(i), float(i) + 0.5], raw=flag) for i, flag in enumerate(raw_flags)]
    merged = batch_merge(batch)
    assert merged.id == "2"
    assert list(merged.inputs[0].shape) == [3, 2]
    assert not merged.inputs[0].HasField("contents")
    assert list(merged.raw_input_contents) == [encode_raw("FP32", [0, 0.5, 1, 1.5, 2, 2.5])]


def test_batch_merge_groups_by_name_in_first_seen_order_and_merges_parameters() -> None:
    first = make_request(("a", "INT32", [1, 2], [1, 2]), ("b", "BYTES", [1], ["x"]))
    first.inputs[0].parameters["p"].string_param = "first"
    first.inputs[0].parameters["q"].int64_param = 1
    second = make_request(("b", "BYTES", [2], ["y", "z"]), ("a", "INT32", [2, 2], [3, 4, 5, 6]))
    second.inputs[1].parameters["p"].string_param = "second"
    merged = batch_merge([first, second])
    assert [(t.name, list(t.shape)) for t in merged.inputs] == [("a", [3, 2]), ("b", [3])]
    assert all_values(merged) == {"a": [1, 2, 3, 4, 5, 6], "b": [b"x", b"y", b"z"]}
    assert dict(merged.inputs[0].parameters) == {"p": param(string_param="second"), "q": param(int64_param=1)}


def test_batch_merge_of_requests_without_contents_keeps_layout() -> None:
    merged = batch_merge([make_request(("a", "FP32", [1, 4], None)) for _ in range(2)])
    assert [(t.name, t.datatype, list(t.shape)) for t in merged.inputs] == [("a", "FP32", [2, 4])]
    assert tensor_values(merged, 0) == []


def test_batch_merge_raw_bytes_tensors_concatenate() -> None:
    typed = make_request(("s", "BYTES", [1], ["ab"]))
    raw = make_request(("s", "BYTES", [2], None))
    raw.raw_input_contents.append(encode_raw("BYTES", ["c", "de"]))
    merged = batch_merge([typed, raw])
    assert list(merged.inputs[0].shape) == [3]
    assert tensor_values(merged, 0) == [b"ab", b"c", b"de"]


def test_batch_merge_rejects_mismatches_and_empty_batches() -> None:
    with pytest.raises(CodecError, match="at least one"):
        batch_merge([])
    with pytest.raises(CodecError, match="datatype INT32 differs from FP32"):
        batch_merge([make_request(("a", "FP32", [1], [1.0])), make_request(("a", "INT32", [1], [1]))])
    with pytest.raises(CodecError, match="does not batch"):
        batch_merge([make_request(("a", "FP32", [1, 2], None)), make_request(("a", "FP32", [1, 3], None))])


def test_batch_size() -> None:
    assert batch_size(ModelInferRequest()) == 0
    assert batch_size(make_request(("s", "FP32", [], [1.0]))) == 0
    assert batch_size(make_request(("a", "FP32", [5, 2], None), ("b", "FP32", [7], None))) == 5


# ------------------------------------------------------------------------------------ V2 JSON


def test_request_from_json_full() -> None:
    body = {
        "id": "r1",
        "parameters": {"flag": True, "n": 3, "s": "x"},
        "inputs": [
            {"name": "I", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4.0]]},
            {
                "name": "S",
                "datatype": "BYTES",
                "shape": [1],
                "data": ["héllo"],
                "parameters": {"content_type": "str"},
            },
            {"name": "B", "datatype": "BOOL", "shape": [2], "data": [True, False]},
            {"name": "H", "datatype": "FP16", "shape": [1], "data": [1]},
        ],
        "outputs": [{"name": "O", "parameters": {"binary_data": False}}],
    }
    request = request_from_json(body)
    assert request.id == "r1"
    assert dict(request.parameters) == {
        "flag": param(bool_param=True),
        "n": param(int64_param=3),
        "s": param(string_param="x"),
    }
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("I", "INT32", [2, 2]),
        ("S", "BYTES", [1]),
        ("B", "BOOL", [2]),
        ("H", "FP16", [1]),
    ]
    assert all_values(request) == {"I": [1, 2, 3, 4], "S": ["héllo".encode()], "B": [True, False], "H": [1.0]}
    assert request.inputs[1].parameters["content_type"].string_param == "str"
    assert [(o.name, o.parameters["binary_data"].bool_param) for o in request.outputs] == [("O", False)]
    assert len(request.raw_input_contents) == 0


def _body(**tensor: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "I", "datatype": "INT32", "shape": [2], "data": [1, 2]}
    for key, value in tensor.items():
        if value is ...:
            del base[key]
        else:
            base[key] = value
    return {"inputs": [{"name": "ok", "datatype": "FP32", "shape": [1], "data": [1.0]}, base]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, r"^inputs: missing$"),
        (
            {"input": [], "id": "r1"},
            r"^inputs: missing \(the body has 'input'; a V2 request lists its tensors under \"inputs\"\)$",
        ),
        ({"inputs": {}}, r"^inputs: must be a list$"),
        ({"inputs": []}, r"^inputs: must hold at least one tensor$"),
        ({"inputs": ["x"]}, r"^inputs\[0\]: must be an object$"),
        (_body(name=...), r"^inputs\[1\]\.name: missing"),
        (_body(datatype=...), r"^inputs\[1\]\.datatype: missing"),
        (_body(datatype="FOO"), r"^inputs\[1\]\.datatype: unknown datatype 'FOO'$"),
        (_body(shape=...), r"^inputs\[1\]\.shape: missing$"),
        (_body(shape=2), r"^inputs\[1\]\.shape: must be a list"),
        (_body(shape=[2, -1]), r"^inputs\[1\]\.shape\[1\]: -1 is negative$"),
        (_body(shape=[True]), r"^inputs\[1\]\.shape\[0\]: True is not an integer$"),
        (_body(data=...), r"^inputs\[1\]\.data: missing$"),
        (_body(data=5), r"^inputs\[1\]\.data: must be a list"),
        (_body(shape=[2, 2]), r"^inputs\[1\]\.data: 2 elements but shape \[2, 2\] needs 4$"),
        (_body(data=[1, "abc"]), r"^inputs\[1\]\.data\[1\]: 'abc' is not a valid INT32 value$"),
        (_body(data=[1, 2.5]), r"^inputs\[1\]\.data\[1\]: 2\.5 is not a valid INT32 value$"),
        (_body(data=[True, 1]), r"^inputs\[1\]\.data\[0\]: True is not a valid INT32 value$"),
        (
            _body(datatype="INT8", data=[1, 128]),
            r"^inputs\[1\]\.data\[1\]: 128 out of range for INT8 \[-128, 127\]$",
        ),
        (
            _body(datatype="UINT8", data=[-1, 1]),
            r"^inputs\[1\]\.data\[0\]: -1 out of range for UINT8 \[0, 255\]$",
        ),
        (_body(datatype="UINT64", data=[1, 2**64]), r"^inputs\[1\]\.data\[1\]: \d+ out of range for UINT64"),
        (_body(datatype="BOOL", data=[1, True]), r"^inputs\[1\]\.data\[0\]: 1 is not a valid BOOL value"),
        (_body(datatype="FP32", data=[1.0, "2"]), r"^inputs\[1\]\.data\[1\]: '2' is not a valid FP32 value$"),
        (_body(datatype="BYTES", data=["a", 3]), r"^inputs\[1\]\.data\[1\]: 3 is not a valid BYTES value"),
        (_body(parameters={"x": 1.5}), r"^inputs\[1\]\.parameters\.x: 1\.5 is not a boolean"),
        ({**_body(), "parameters": {"y": None}}, r"^parameters\.y: None is not a boolean"),
        ({**_body(), "parameters": [1]}, r"^parameters: must be an object$"),
        ({**_body(), "id": 7}, r"^id: must be a string"),
        ({**_body(), "outputs": [{}]}, r"^outputs\[0\]\.name: missing"),
    ],
)
def test_request_from_json_rejects_bad_input_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        request_from_json(body)


def test_response_to_json_decodes_raw_contents() -> None:
    response = make_response(
        ("OUTPUT", "FP32", [4], None), ("OUTPUT", "FP32", [4], None), model_name="p", id="r"
    )
    response.raw_output_contents.extend([RAW_10_40, RAW_11_14])
    assert response_to_json(response) == {
        "model_name": "p",
        "id": "r",
        "outputs": [
            {"name": "OUTPUT", "datatype": "FP32", "shape": [4], "data": [10.0, 20.0, 30.0, 40.0]},
            {"name": "OUTPUT", "datatype": "FP32", "shape": [4], "data": [11.0, 12.0, 13.0, 14.0]},
        ],
    }


def test_response_to_json_typed_bytes_and_parameters() -> None:
    response = make_response(
        ("embedding", "BYTES", [2], [b"[[0.1, 0.2]]", b"\xff\xfe"]),
        ("ok", "BOOL", [1], [True]),
        model_name="m",
        model_version="3",
        id="r",
    )
    response.parameters["n"].int64_param = 2
    response.outputs[0].parameters["content_type"].string_param = "str"
    body = response_to_json(response)
    assert body["model_version"] == "3"
    assert body["parameters"] == {"n": 2}
    first, second = body["outputs"]
    assert first["data"] == ["[[0.1, 0.2]]", base64.b64encode(b"\xff\xfe").decode()]
    assert first["parameters"] == {"content_type": "str"}
    assert second == {"name": "ok", "datatype": "BOOL", "shape": [1], "data": [True]}


def test_response_to_json_partial_raw_gives_empty_data_past_the_raw_list() -> None:
    response = make_response(("a", "FP32", [4], None), ("b", "INT32", [1], [5]), id="r")
    response.raw_output_contents.append(RAW_10_40)
    outputs = response_to_json(response)["outputs"]
    assert [o["data"] for o in outputs] == [[10.0, 20.0, 30.0, 40.0], []]


def test_json_round_trip_through_a_pipeline_hop() -> None:
    request = request_from_json(
        {"id": "q", "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
    )
    response = convert(
        request,
        ChainKind.INPUT_OUTPUT,
        source_topic="seldon.default.pipeline.p.inputs",
        desired=None,
        renames={},
    )
    assert isinstance(response, ModelInferResponse)
    body = response_to_json(response)
    assert body == {
        "model_name": "",
        "id": "q",
        "outputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1.0, 2.0, 3.0, 4.0]}],
    }


# --------------------------------------------------------------------------------------- purity


def test_module_imports_neither_faust_nor_aiokafka() -> None:
    code = (
        "import sys, dataflow.tensors; "
        "print(sorted(m for m in ('faust', 'aiokafka', 'mode') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
