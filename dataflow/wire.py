"""Bytes-level conversions for records that need no tensor work (the hot path's fast lane).

A step that forwards every tensor unrenamed only has to blank ``model_name``/``model_version``
(and requested ``outputs``) and, between requests and responses, renumber the raw-contents field.
All top-level fields of ``ModelInferRequest`` / ``ModelInferResponse`` are length-delimited, so one
scan over the top level does it without decoding any tensor. Field numbers: spec §2.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataflow.errors import CodecError
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
    """Top-level fields of a serialized request/response; raises CodecError on anything malformed."""
    limit = _REQUEST_MAX_FIELD if request else _RESPONSE_MAX_FIELD
    kind = "ModelInferRequest" if request else "ModelInferResponse"
    fields: list[Field] = []
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
            _check_tensor(data, pos, pos + length, kind)
        fields.append(Field(number, start, pos, pos + length))
        pos += length
    return fields


# tensor fields: 1 name, 2 datatype, 3 shape (packed, or one varint each), 4 parameters, 5 contents
_TENSOR_WIRE = {1: (_LEN,), 2: (_LEN,), 3: (0, _LEN), 4: (_LEN,), 5: (_LEN,)}


def _check_tensor(data: bytes, pos: int, end: int, kind: str) -> None:
    """Walk one tensor's fields (not its contents): bytes forwarded unparsed must still be a tensor,
    or a record of garbage would pass the fast path and reach a model or a caller."""
    start = pos
    try:
        while pos < end:
            tag, pos = _varint(data, pos)
            number, wire_type = tag >> 3, tag & 7
            if wire_type not in _TENSOR_WIRE.get(number, ()):
                raise CodecError(f"unexpected tensor field {number} (wire type {wire_type})")
            length, pos = _varint(data, pos)
            if wire_type == _LEN:
                pos += length
            if pos > end:
                raise CodecError("tensor field runs past the tensor")
    except CodecError as exc:
        raise CodecError(f"not a valid {kind}: tensor at byte {start}: {exc}") from None


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
