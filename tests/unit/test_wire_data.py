"""The byte-level data check: a tensor's values must be what its datatype and shape promise.

Records whose data does not fit are refused before they reach a model (the engine dead-letters them
and answers the caller), without decoding any value on the hot path.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from dataflow.errors import CodecError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.tensors import DATATYPES, request_from_json, to_raw
from dataflow.wire import scan

SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 1, 255],
    "UINT16": [0, 1, 65535],
    "UINT32": [0, 1, 2**32 - 1],
    "UINT64": [0, 1, 2**64 - 1],
    "INT8": [-128, 0, 127],
    "INT16": [-(2**15), 0, 2**15 - 1],
    "INT32": [-(2**31), -1, 2**31 - 1],
    "INT64": [-(2**63), -1, 2**63 - 1],
    "FP16": [0.5, -1.0, 2.0],
    "FP32": [0.5, -1.0, 1e30],
    "FP64": [0.5, -1.0, 1e300],
    "BYTES": ["a", "", "ccc"],
}


def request(datatype: str, values: list[Any], shape: list[int] | None = None) -> ModelInferRequest:
    body = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape or [len(values)], "data": values}]}
    return request_from_json(body)


def refused(message: ModelInferRequest | ModelInferResponse) -> str:
    with pytest.raises(CodecError) as info:
        scan(message.SerializeToString(), request=isinstance(message, ModelInferRequest))
    return str(info.value)


def test_every_datatype_is_covered() -> None:
    assert set(SAMPLES) == set(DATATYPES)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_well_formed_tensors_pass_typed_and_raw(datatype: str) -> None:
    message = request(datatype, SAMPLES[datatype], shape=[1, 3])
    scan(message.SerializeToString(), request=True)
    scan(to_raw(message).SerializeToString(), request=True)


@pytest.mark.parametrize("datatype", sorted(set(SAMPLES) - {"FP16"}))
def test_typed_values_fewer_than_the_shape_holds(datatype: str) -> None:
    message = request(datatype, SAMPLES[datatype])
    message.inputs[0].shape[:] = [4]
    text = refused(message)
    assert "tensor 'x'" in text
    assert "shape [4] holds 4 element(s)" in text
    assert "has 3" in text


def test_values_in_another_datatypes_field() -> None:
    message = request("FP32", [1.0, 2.0])
    message.inputs[0].datatype = "INT32"
    assert "datatype INT32 but values in fp32_contents (expected int_contents)" in refused(message)


def test_unknown_datatype() -> None:
    message = request("FP32", [1.0])
    message.inputs[0].datatype = "FLOAT"
    assert "unknown datatype 'FLOAT'" in refused(message)


def test_negative_dimension() -> None:
    message = request("FP32", [1.0])
    message.inputs[0].shape[:] = [-1, 1]
    assert "negative dimension in shape [-1, 1]" in refused(message)


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "BOOL", "FP16"])
def test_raw_size_that_does_not_match_the_shape(datatype: str) -> None:
    message = to_raw(request(datatype, SAMPLES[datatype]))
    message.raw_input_contents[0] = message.raw_input_contents[0][:-1]
    width = DATATYPES[datatype].width
    assert f"needs {3 * width} raw bytes, got {3 * width - 1}" in refused(message)


def test_raw_bytes_elements_are_counted_and_framed() -> None:
    message = to_raw(request("BYTES", ["a", "bb"]))
    message.inputs[0].shape[:] = [3]
    assert "holds 3 element(s) but raw BYTES has 2" in refused(message)
    message.inputs[0].shape[:] = [2]
    message.raw_input_contents[0] = struct.pack("<I", 9) + b"a"
    assert "runs past the raw entry" in refused(message)
    message.raw_input_contents[0] = b"\x01\x00"
    assert "truncated length prefix" in refused(message)


def test_responses_are_checked_too() -> None:
    response = ModelInferResponse()
    tensor = response.outputs.add(name="y", datatype="INT32", shape=[2])
    tensor.contents.int_contents.extend([1, 2, 3])
    assert "shape [2] holds 2 element(s) but int_contents has 3" in refused(response)
    response.outputs[0].shape[:] = [3]
    scan(response.SerializeToString(), request=False)


def test_unpacked_values_are_counted_like_packed_ones() -> None:
    # tensor: name "x", datatype "INT32", shape [3], contents with three unpacked int_contents (field 2)
    contents = b"\x10\x01\x10\x02\x10\x03"
    tensor = b"\x0a\x01x" + b"\x12\x05INT32" + b"\x1a\x01\x03" + b"\x2a" + bytes([len(contents)]) + contents
    data = b"\x2a" + bytes([len(tensor)]) + tensor
    assert ModelInferRequest.FromString(data).inputs[0].contents.int_contents == [1, 2, 3]
    scan(data, request=True)
    # the same with unpacked fp32 (field 6, fixed 32-bit)
    contents = b"".join(b"\x35" + struct.pack("<f", v) for v in (1.0, 2.0, 3.0))
    tensor = b"\x0a\x01x" + b"\x12\x04FP32" + b"\x1a\x01\x03" + b"\x2a" + bytes([len(contents)]) + contents
    data = b"\x2a" + bytes([len(tensor)]) + tensor
    assert list(ModelInferRequest.FromString(data).inputs[0].contents.fp32_contents) == [1.0, 2.0, 3.0]
    scan(data, request=True)


def test_a_tensor_without_data_is_forwarded() -> None:
    """A tensor past the end of a short raw list carries no data (a reference quirk kept on the wire)."""
    message = ModelInferRequest()
    message.inputs.add(name="x", datatype="FP32", shape=[4])
    scan(message.SerializeToString(), request=True)


def test_large_varints_count_once() -> None:
    message = request("INT64", [-1] * 1000 + [2**62] * 1000)
    scan(message.SerializeToString(), request=True)
    message.inputs[0].shape[:] = [1999]
    assert "holds 1999 element(s) but int64_contents has 2000" in refused(message)


@pytest.mark.parametrize(
    ("tail", "head"),
    [
        (b"\x22\x03\xff\xff\xff", b""),  # parameters (field 4) holding garbage
        (b"", b"\x1a\x02\xff\xfe"),  # an id that is not UTF-8
    ],
)
def test_small_top_level_fields_must_decode(tail: bytes, head: bytes) -> None:
    good = request("FP32", [1.0, 2.0]).SerializeToString()
    ModelInferRequest.FromString(good)
    with pytest.raises(CodecError, match="not a valid ModelInferRequest: top-level fields do not decode"):
        scan(head + good + tail, request=True)


def test_tensor_name_must_be_utf8_and_its_parameters_must_decode() -> None:
    message = request("FP32", [1.0])
    message.inputs[0].name = "x"
    data = message.SerializeToString().replace(b"\x0a\x01x", b"\x0a\x01\xff", 1)
    with pytest.raises(CodecError, match="tensor name is not UTF-8"):
        scan(data, request=True)
    message.inputs[0].parameters["p"].string_param = "v"
    scan(message.SerializeToString(), request=True)
