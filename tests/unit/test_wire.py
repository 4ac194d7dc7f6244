"""Unit tests of the bytes-level fast path: it must give exactly what the full conversion gives
(``dataflow.tensors.convert`` with no selection and no renames, spec §2.3), and refuse malformed bytes."""

from __future__ import annotations

import struct

import pytest

from dataflow.errors import CodecError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.tensors import convert
from dataflow.topics import ChainKind
from dataflow.wire import counts, fast_convert, fast_path_applies, rebuild, scan

TYPED_KINDS = [ChainKind.INPUT_INPUT, ChainKind.INPUT_OUTPUT, ChainKind.OUTPUT_INPUT, ChainKind.OUTPUT_OUTPUT]
SOURCE_IS_REQUEST = {
    ChainKind.INPUT_INPUT: True,
    ChainKind.INPUT_OUTPUT: True,
    ChainKind.OUTPUT_INPUT: False,
    ChainKind.OUTPUT_OUTPUT: False,
}
TARGET: dict[ChainKind, type[ModelInferRequest] | type[ModelInferResponse]] = {
    ChainKind.INPUT_INPUT: ModelInferRequest,
    ChainKind.INPUT_OUTPUT: ModelInferResponse,
    ChainKind.OUTPUT_INPUT: ModelInferRequest,
    ChainKind.OUTPUT_OUTPUT: ModelInferResponse,
}
TOPIC = {True: "seldon.ns.model.m.inputs", False: "seldon.ns.model.m.outputs"}


def make_message(
    request: bool,
    *,
    raw: bool,
    tensors: int = 2,
    header: bool = True,
    requested_outputs: bool = True,
) -> ModelInferRequest | ModelInferResponse:
    """A request or response with every top-level field the fast path has to get right."""
    message: ModelInferRequest | ModelInferResponse = ModelInferRequest() if request else ModelInferResponse()
    if header:
        message.model_name = "tfsimple1"
        message.model_version = "3"
        message.id = "req-1"
        message.parameters["content_type"].string_param = "np"
        message.parameters["batch"].int64_param = 4
    out = message.inputs if isinstance(message, ModelInferRequest) else message.outputs
    raw_list = (
        message.raw_input_contents if isinstance(message, ModelInferRequest) else message.raw_output_contents
    )
    for i in range(tensors):
        tensor = out.add(name=f"T{i}", datatype="INT32", shape=[1, 4])
        tensor.parameters["tensor_param"].bool_param = True
        values = [i * 10 + k for k in range(4)]
        if raw:
            raw_list.append(struct.pack("<4i", *values))
        else:
            tensor.contents.int_contents.extend(values)
    if isinstance(message, ModelInferRequest) and requested_outputs:
        message.outputs.add(name="OUTPUT0").parameters["binary_data"].bool_param = True
    return message


def full(message: ModelInferRequest | ModelInferResponse, kind: ChainKind) -> bytes | None:
    result = convert(message, kind, source_topic=TOPIC[SOURCE_IS_REQUEST[kind]], desired=None, renames={})
    return None if result is None else result.SerializeToString(deterministic=True)


def parsed(data: bytes, kind: ChainKind) -> ModelInferRequest | ModelInferResponse:
    target: ModelInferRequest | ModelInferResponse = TARGET[kind]()
    target.ParseFromString(data)
    return target


def canonical(data: bytes, kind: ChainKind) -> bytes:
    return parsed(data, kind).SerializeToString(deterministic=True)


# ----------------------------------------------------------------------------- equals the full path


@pytest.mark.parametrize("kind", TYPED_KINDS, ids=lambda k: k.value)
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("header", [True, False], ids=["with-header-fields", "bare"])
def test_fast_path_equals_full_conversion(kind: ChainKind, raw: bool, header: bool) -> None:
    message = make_message(SOURCE_IS_REQUEST[kind], raw=raw, header=header)
    data = message.SerializeToString()
    fields = scan(data, request=SOURCE_IS_REQUEST[kind])
    assert fast_path_applies(fields, request=SOURCE_IS_REQUEST[kind])

    fast = fast_convert(data, kind)
    expected = full(message, kind)
    assert fast is not None and expected is not None
    assert canonical(fast, kind) == expected
    assert rebuild(data, fields, kind) == fast

    result = parsed(fast, kind)
    assert result.model_name == "" and result.model_version == ""
    assert result.id == message.id
    if isinstance(result, ModelInferRequest):
        assert len(result.outputs) == 0  # requested outputs are not copied
        assert len(result.inputs) == 2
        assert len(result.raw_input_contents) == (2 if raw else 0)
    else:
        assert len(result.outputs) == 2
        assert len(result.raw_output_contents) == (2 if raw else 0)


@pytest.mark.parametrize("kind", TYPED_KINDS, ids=lambda k: k.value)
def test_fast_path_with_one_tensor_and_non_canonical_field_order(kind: ChainKind) -> None:
    # fields may arrive in any order on the wire (e.g. written by another protobuf library)
    message = make_message(SOURCE_IS_REQUEST[kind], raw=True, tensors=1)
    data = message.SerializeToString()
    fields = scan(data, request=SOURCE_IS_REQUEST[kind])
    reordered = b"".join(data[f.start : f.end] for f in reversed(fields))
    fast = fast_convert(reordered, kind)
    assert fast is not None
    assert canonical(fast, kind) == full(message, kind)


def test_output_output_without_header_fields_is_unchanged() -> None:
    data = make_message(False, raw=True, header=False).SerializeToString()
    assert fast_convert(data, ChainKind.OUTPUT_OUTPUT) == data


def test_input_input_drops_model_name_version_and_requested_outputs_only() -> None:
    message = make_message(True, raw=False)
    assert isinstance(message, ModelInferRequest)
    fast = fast_convert(message.SerializeToString(), ChainKind.INPUT_INPUT)
    assert fast is not None
    expected = ModelInferRequest()
    expected.CopyFrom(message)
    expected.ClearField("model_name")
    expected.ClearField("model_version")
    expected.ClearField("outputs")
    assert parsed(fast, ChainKind.INPUT_INPUT) == expected


@pytest.mark.parametrize("kind", [ChainKind.INPUT_OUTPUT, ChainKind.OUTPUT_INPUT], ids=lambda k: k.value)
def test_raw_contents_change_field_between_request_and_response(kind: ChainKind) -> None:
    message = make_message(SOURCE_IS_REQUEST[kind], raw=True)
    source_raw = list(
        message.raw_input_contents if isinstance(message, ModelInferRequest) else message.raw_output_contents
    )
    fast = fast_convert(message.SerializeToString(), kind)
    assert fast is not None
    result = parsed(fast, kind)
    target_raw = (
        result.raw_input_contents if isinstance(result, ModelInferRequest) else result.raw_output_contents
    )
    assert list(target_raw) == source_raw


# ------------------------------------------------------------------------------------- no tensors


@pytest.mark.parametrize("kind", TYPED_KINDS, ids=lambda k: k.value)
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_no_tensors_gives_none(kind: ChainKind, raw: bool) -> None:
    message = make_message(SOURCE_IS_REQUEST[kind], raw=False, tensors=0)
    if raw:  # raw entries without tensors: still nothing to forward
        if isinstance(message, ModelInferRequest):
            message.raw_input_contents.append(b"\x00\x00\x00\x00")
        else:
            message.raw_output_contents.append(b"\x00\x00\x00\x00")
    data = message.SerializeToString()
    assert fast_convert(data, kind) is None
    assert full(message, kind) is None


@pytest.mark.parametrize("kind", TYPED_KINDS, ids=lambda k: k.value)
def test_empty_bytes_are_an_empty_message(kind: ChainKind) -> None:
    assert fast_convert(b"", kind) is None


# ----------------------------------------------------------------------------------- applicability


def test_counts_and_applicability() -> None:
    message = make_message(True, raw=True, tensors=3)
    fields = scan(message.SerializeToString(), request=True)
    assert counts(fields, request=True) == (3, 3)
    assert fast_path_applies(fields, request=True)

    typed = scan(make_message(False, raw=False, tensors=2).SerializeToString(), request=False)
    assert counts(typed, request=False) == (2, 0)
    assert fast_path_applies(typed, request=False)

    # mixed typed/raw (fewer raw entries than tensors): the full conversion drops typed contents, so
    # the byte-level copy would not be equal and must not be used
    mixed = make_message(True, raw=True, tensors=2)
    assert isinstance(mixed, ModelInferRequest)
    mixed.inputs.add(name="T2", datatype="INT32", shape=[1]).contents.int_contents.append(7)
    mixed_fields = scan(mixed.SerializeToString(), request=True)
    assert counts(mixed_fields, request=True) == (3, 2)
    assert not fast_path_applies(mixed_fields, request=True)


def test_scan_reports_field_positions() -> None:
    message = ModelInferResponse(id="ab")
    message.outputs.add(name="x", datatype="BOOL")
    data = message.SerializeToString()
    fields = scan(data, request=False)
    assert [(f.number, f.start, f.body, f.end) for f in fields] == [(3, 0, 2, 4), (5, 4, 6, len(data))]


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff",
        b"hello world, this is not protobuf",
        b"\x00",  # field number 0
        b"\x08\x01",  # field 1 as a varint
        b"\x1d\x00\x00\x00\x00",  # field 3 as fixed32
        b"\x19" + b"\x00" * 8,  # field 3 as fixed64
        b"\x2b",  # field 5 start-group
        b"\x2a",  # tag without length
        b"\x2a\x80",  # truncated length varint
        b"\x2a" + b"\xff" * 10 + b"\x01",  # length varint too long
        b"\x2a\x05abc",  # length past the end
        b"\x42\x00",  # field 8: beyond the last field of both messages
    ],
)
@pytest.mark.parametrize("kind", TYPED_KINDS, ids=lambda k: k.value)
def test_garbage_is_a_codec_error(data: bytes, kind: ChainKind) -> None:
    with pytest.raises(CodecError, match="not a valid ModelInfer"):
        fast_convert(data, kind)


def test_request_only_field_is_refused_on_an_outputs_topic() -> None:
    request = make_message(True, raw=True)  # field 7 (raw_input_contents) does not exist in a response
    with pytest.raises(CodecError, match="ModelInferResponse"):
        fast_convert(request.SerializeToString(), ChainKind.OUTPUT_OUTPUT)


def test_error_message_names_field_and_offset() -> None:
    data = ModelInferRequest(id="x").SerializeToString() + b"\x08\x01"
    with pytest.raises(CodecError) as info:
        fast_convert(data, ChainKind.INPUT_INPUT)
    assert "field 1 (wire type 0) at byte 3" in str(info.value)


@pytest.mark.parametrize("kind", TYPED_KINDS, ids=lambda k: k.value)
def test_truncated_messages(kind: ChainKind) -> None:
    request = SOURCE_IS_REQUEST[kind]
    data = make_message(request, raw=True).SerializeToString()
    boundaries = {f.end for f in scan(data, request=request)}
    cuts = [n for n in range(1, len(data)) if n not in boundaries]
    assert len(cuts) > 50
    for n in cuts:
        with pytest.raises(CodecError):
            fast_convert(data[:n], kind)
    # cut exactly between two fields, the prefix is a valid (shorter) message: same as the full path
    for n in sorted(boundaries):
        prefix_message = (ModelInferRequest if request else ModelInferResponse)()
        prefix_message.ParseFromString(data[:n])
        fast = fast_convert(data[:n], kind)
        expected = full(prefix_message, kind)
        assert (fast is None and expected is None) or (fast is not None and canonical(fast, kind) == expected)


def test_opaque_kind_has_no_byte_level_conversion() -> None:
    data = make_message(False, raw=False).SerializeToString()
    with pytest.raises(CodecError, match="PASSTHROUGH"):
        fast_convert(data, ChainKind.PASSTHROUGH)
