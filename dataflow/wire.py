"""Bytes-level conversions for records that need no tensor work (the hot path's fast lane).

A step that forwards every tensor unrenamed only has to blank ``model_name``/``model_version``
(and requested ``outputs``) and, between requests and responses, renumber the raw-contents field.
All top-level fields of ``ModelInferRequest`` / ``ModelInferResponse`` are length-delimited, so one
scan over the top level does it without decoding any tensor. Field numbers: spec §2.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from dataflow.errors import CodecError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.topics import ChainKind

_LEN = 2  # wire type of length-delimited fields
# request: 1 model_name, 2 model_version, 3 id, 4 parameters, 5 inputs, 6 outputs, 7 raw_input_contents
# response: 1 model_name, 2 model_version, 3 id, 4 parameters, 5 outputs, 6 raw_output_contents
_REQUEST_MAX_FIELD = 7
_RESPONSE_MAX_FIELD = 6
_TENSORS = 5


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise CodecError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CodecError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    start: int  # first byte of the tag
    body: int  # first byte of the payload
    end: int  # one past the payload


def scan(data: bytes, *, request: bool) -> list[Field]:
    """Top-level fields of a serialized request/response; raises CodecError on anything malformed,
    including a tensor whose data does not fit its datatype and shape (see :func:`_check_data`)."""
    limit = _REQUEST_MAX_FIELD if request else _RESPONSE_MAX_FIELD
    kind = "ModelInferRequest" if request else "ModelInferResponse"
    raw_field = 7 if request else 6
    fields: list[Field] = []
    tensors: list[_Tensor] = []
    raw: list[tuple[int, int]] = []
    pos = 0
    end = len(data)
    while pos < end:
        start = pos
        try:
            tag, pos = _varint(data, pos)
            number, wire_type = tag >> 3, tag & 7
            if wire_type != _LEN or not 1 <= number <= limit:
                raise CodecError(f"unexpected field {number} (wire type {wire_type}) at byte {start}")
            length, pos = _varint(data, pos)
        except CodecError as exc:
            raise CodecError(f"not a valid {kind}: {exc}") from None
        if pos + length > end:
            raise CodecError(
                f"not a valid {kind}: field {number} at byte {start} runs past the end ({end} bytes)"
            )
        if number == _TENSORS:
            tensors.append(_check_tensor(data, pos, pos + length, kind))
        elif number == raw_field:
            raw.append((pos, pos + length))
        fields.append(Field(number, start, pos, pos + length))
        pos += length
    _check_data(data, tensors, raw, kind)
    # The small top-level fields (model name, version, id, parameters, requested outputs) are
    # forwarded unparsed too: parse just them, so bad UTF-8 or garbage parameters cannot pass.
    small = b"".join(data[f.start : f.end] for f in fields if f.number not in (_TENSORS, raw_field))
    if small:
        try:
            _parse_small(ModelInferRequest if request else ModelInferResponse, small, "top-level fields")
        except CodecError as exc:
            raise CodecError(f"not a valid {kind}: {exc}") from None
    return fields


def _text(data: bytes, start: int, end: int, what: str) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError(f"tensor {what} is not UTF-8") from None


def _parse_small(cls: Any, data: bytes, what: str) -> None:
    try:
        cls.FromString(data)
    except DecodeError as exc:
        raise CodecError(f"{what} do not decode: {exc}") from None


# tensor fields: 1 name, 2 datatype, 3 shape (packed, or one varint each), 4 parameters, 5 contents
_TENSOR_WIRE = {1: (_LEN,), 2: (_LEN,), 3: (0, _LEN), 4: (_LEN,), 5: (_LEN,)}

# datatype -> (InferTensorContents field number holding its typed values, bytes per raw element;
# 0 = BYTES, length-prefixed). FP16 values travel in fp32_contents (6), two bytes each in raw form.
_DATATYPES: dict[str, tuple[int, int]] = {
    "BOOL": (1, 1),
    "UINT8": (4, 1),
    "UINT16": (4, 2),
    "UINT32": (4, 4),
    "UINT64": (5, 8),
    "INT8": (2, 1),
    "INT16": (2, 2),
    "INT32": (2, 4),
    "INT64": (3, 8),
    "FP16": (6, 2),
    "FP32": (6, 4),
    "FP64": (7, 8),
    "BYTES": (8, 0),
}
# InferTensorContents: 1 bool, 2 int, 3 int64, 4 uint, 5 uint64, 6 fp32, 7 fp64, 8 bytes
_CONTENTS_NAMES = {
    1: "bool_contents",
    2: "int_contents",
    3: "int64_contents",
    4: "uint_contents",
    5: "uint64_contents",
    6: "fp32_contents",
    7: "fp64_contents",
    8: "bytes_contents",
}
_FIXED_WIDTH = {6: 4, 7: 8}  # packed fp32 / fp64: elements are fixed-size
_VARINT_END = bytes(range(0x80))  # a packed varint element ends at its only byte below 0x80
_MAX_ELEMENTS = 1 << 62
_TENSOR_PARAMETERS = ModelInferRequest.InferInputTensor  # same parameters field in outputs


@dataclass(slots=True)
class _Tensor:
    """What the data check needs of one tensor, read without decoding its values."""

    start: int
    name: str = ""
    datatype: str = ""
    dims: list[int] | None = None
    values: dict[int, int] | None = None  # contents field number -> element count


def _check_tensor(data: bytes, pos: int, end: int, kind: str) -> _Tensor:
    """Walk one tensor's fields: bytes forwarded unparsed must still be a tensor, or a record of garbage
    would pass the fast path and reach a model or a caller. Values are counted, not decoded."""
    tensor = _Tensor(pos)
    dims: list[int] = []
    try:
        while pos < end:
            field_start = pos
            tag, pos = _varint(data, pos)
            number, wire_type = tag >> 3, tag & 7
            if wire_type not in _TENSOR_WIRE.get(number, ()):
                raise CodecError(f"unexpected tensor field {number} (wire type {wire_type})")
            if wire_type != _LEN:  # one shape dimension
                dim, pos = _varint(data, pos)
                dims.append(_signed64(dim))
                continue
            length, pos = _varint(data, pos)
            body, pos = pos, pos + length
            if pos > end:
                raise CodecError("tensor field runs past the tensor")
            if number == 1:
                tensor.name = _text(data, body, pos, "name")
            elif number == 2:
                tensor.datatype = _text(data, body, pos, "datatype")
            elif number == 4:
                _parse_small(_TENSOR_PARAMETERS, data[field_start:pos], "tensor parameters")
            elif number == 3:
                while body < pos:
                    dim, body = _varint(data, body)
                    dims.append(_signed64(dim))
                if body != pos:
                    raise CodecError("shape runs past its field")
            elif number == 5:
                tensor.values = _count_contents(data, body, pos)
    except CodecError as exc:
        raise CodecError(f"not a valid {kind}: tensor at byte {tensor.start}: {exc}") from None
    tensor.dims = dims
    return tensor


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _count_contents(data: bytes, pos: int, end: int) -> dict[int, int]:
    """Element count per InferTensorContents field (packed or not), without decoding the values."""
    counts: dict[int, int] = {}
    while pos < end:
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if not 1 <= number <= 8:
            raise CodecError(f"unexpected contents field {number} (wire type {wire_type})")
        if wire_type == _LEN:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise CodecError("contents field runs past the tensor")
            if number == 8:
                n = 1  # bytes_contents: one element per field
            elif number in _FIXED_WIDTH:
                width = _FIXED_WIDTH[number]
                if length % width:
                    raise CodecError(
                        f"{_CONTENTS_NAMES[number]} is {length} bytes, not a multiple of {width}"
                    )
                n = length // width
            else:  # packed varints
                chunk = data[pos : pos + length]
                n = len(chunk) - len(chunk.translate(None, _VARINT_END))  # bytes below 0x80 end one
                if length and data[pos + length - 1] & 0x80:
                    raise CodecError(f"{_CONTENTS_NAMES[number]} ends inside a value")
            pos += length
        elif wire_type == 0 and number not in _FIXED_WIDTH and number != 8:
            _, pos = _varint(data, pos)
            n = 1
        elif (wire_type, number) in ((5, 6), (1, 7)):  # one unpacked fp32 / fp64
            pos += 4 if wire_type == 5 else 8
            n = 1
        else:
            raise CodecError(f"unexpected contents field {number} (wire type {wire_type})")
        if pos > end:
            raise CodecError("contents field runs past the tensor")
        counts[number] = counts.get(number, 0) + n
    return counts


def _check_data(data: bytes, tensors: list[_Tensor], raw: list[tuple[int, int]], kind: str) -> None:
    """Each tensor's data must be what its datatype and shape promise, as a model server checks it.

    A known datatype; no negative dimension; typed values only in the datatype's own contents field
    and exactly as many as the shape holds; a raw entry of exactly shape x element-size bytes (BYTES:
    length-prefixed elements, as many as the shape holds). A tensor with no data at all is left alone
    (the reference forwards such tensors, e.g. past the end of a short raw list).
    """
    for index, tensor in enumerate(tensors):
        label = f"not a valid {kind}: tensor {tensor.name!r}"
        spec = _DATATYPES.get(tensor.datatype)
        if spec is None:
            raise CodecError(f"{label}: unknown datatype {tensor.datatype!r}")
        field, width = spec
        dims = tensor.dims or []
        if any(d < 0 for d in dims):
            raise CodecError(f"{label}: negative dimension in shape {dims}")
        elements = 1
        for d in dims:
            elements = min(elements * d, _MAX_ELEMENTS)
        if index < len(raw):
            body, end = raw[index]
            _check_raw(data, body, end, tensor, width, elements, label)
            continue
        for number, count in (tensor.values or {}).items():
            if number != field:
                raise CodecError(
                    f"{label}: datatype {tensor.datatype} but values in {_CONTENTS_NAMES[number]}"
                    f" (expected {_CONTENTS_NAMES[field]})"
                )
            if count != elements:
                raise CodecError(
                    f"{label}: shape {dims} holds {elements} element(s) but {_CONTENTS_NAMES[number]}"
                    f" has {count}"
                )


def _check_raw(
    data: bytes, pos: int, end: int, tensor: _Tensor, width: int, elements: int, label: str
) -> None:
    size = end - pos
    dims = tensor.dims or []
    if width:
        if size != elements * width:
            raise CodecError(
                f"{label}: shape {dims} of {tensor.datatype} needs {elements * width} raw bytes, got {size}"
            )
        return
    count = 0
    while pos < end:
        if pos + 4 > end:
            raise CodecError(f"{label}: raw BYTES element {count} has a truncated length prefix")
        length = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4 + length
        count += 1
        if pos > end:
            raise CodecError(f"{label}: raw BYTES element {count - 1} runs past the raw entry")
    if count != elements:
        raise CodecError(f"{label}: shape {dims} holds {elements} element(s) but raw BYTES has {count}")


def counts(fields: list[Field], *, request: bool) -> tuple[int, int]:
    """(tensor count, raw entry count)."""
    raw_field = 7 if request else 6
    tensors = sum(1 for f in fields if f.number == _TENSORS)
    raw = sum(1 for f in fields if f.number == raw_field)
    return tensors, raw


def fast_convert(data: bytes, kind: ChainKind) -> bytes | None:
    """Convert without decoding tensors; None when the message has no tensors (it is then dropped).

    Raises CodecError when ``data`` is not the message its topic promises. Callers must only use this
    when raw contents are absent or one per tensor (see :func:`fast_path_applies`).
    """
    request = kind in (ChainKind.INPUT_INPUT, ChainKind.INPUT_OUTPUT)
    fields = scan(data, request=request)
    return rebuild(data, fields, kind)


def fast_path_applies(fields: list[Field], *, request: bool) -> bool:
    """Raw contents absent, or aligned one per tensor: the byte-level result equals the full one."""
    tensors, raw = counts(fields, request=request)
    return raw == 0 or raw == tensors


def rebuild(data: bytes, fields: list[Field], kind: ChainKind) -> bytes | None:
    drop = {1, 2}
    renumber: dict[int, int] = {}
    if kind is ChainKind.INPUT_INPUT:
        drop.add(6)
    elif kind is ChainKind.INPUT_OUTPUT:
        drop.add(6)
        renumber[7] = 6
    elif kind is ChainKind.OUTPUT_INPUT:
        renumber[6] = 7
    elif kind is not ChainKind.OUTPUT_OUTPUT:
        raise CodecError(f"no byte-level conversion for {kind.value}")
    if not any(f.number == _TENSORS for f in fields):
        return None
    if not renumber and not any(f.number in drop for f in fields):
        return data
    out = bytearray()
    view = memoryview(data)
    for f in fields:
        if f.number in drop:
            continue
        new = renumber.get(f.number)
        if new is None:
            out += view[f.start : f.end]
        else:
            out += _encode_varint((new << 3) | _LEN)
            out += _encode_varint(f.end - f.body)
            out += view[f.body : f.end]
    return bytes(out)
