"""Pure tensor conversions between V2 messages (spec §2.2 to §2.7, §4.6). No Kafka, no Faust: testable in ms.

Everything here works on the protobuf messages of ``dataflow.proto.v2_dataplane_pb2`` and builds each
result once, field by field, in C-level protobuf calls where it can: these functions sit on the hot path
of every record the engine forwards.

Raw contents (``raw_input_contents`` / ``raw_output_contents``) are read as the reference reads them:
one entry per tensor, in tensor order (spec §2.3, §10). Typed contents live in the field the datatype
selects (:data:`DATATYPES`).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dataflow.errors import CodecError
from dataflow.proto.v2_dataplane_pb2 import (
    InferParameter,
    ModelInferRequest,
    ModelInferResponse,
)
from dataflow.topics import ChainKind

Message = ModelInferRequest | ModelInferResponse
Tensor = ModelInferRequest.InferInputTensor | ModelInferResponse.InferOutputTensor
_M = TypeVar("_M", ModelInferRequest, ModelInferResponse)

__all__ = [
    "DATATYPES",
    "Message",
    "Tensor",
    "batch_merge",
    "batch_size",
    "convert",
    "decode_raw",
    "encode_raw",
    "merge_requests",
    "merge_responses",
    "request_from_json",
    "response_to_json",
    "set_contents",
    "tensor_values",
    "to_raw",
]


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one V2 datatype is stored: typed-contents field, raw struct code and width, value kind."""

    field: str  # attribute of InferTensorContents
    code: str  # struct format character ("" for BYTES, which is length-prefixed)
    width: int  # bytes per element in raw form (0 for BYTES)
    kind: str  # "bool" | "int" | "float" | "bytes": what JSON values are accepted
    low: int = 0  # inclusive integer range, for kind == "int"
    high: int = 0


def _signed(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _unsigned(bits: int) -> tuple[int, int]:
    return 0, (1 << bits) - 1


DATATYPES: Mapping[str, _Codec] = {
    "BOOL": _Codec("bool_contents", "?", 1, "bool"),
    "UINT8": _Codec("uint_contents", "B", 1, "int", *_unsigned(8)),
    "UINT16": _Codec("uint_contents", "H", 2, "int", *_unsigned(16)),
    "UINT32": _Codec("uint_contents", "I", 4, "int", *_unsigned(32)),
    "UINT64": _Codec("uint64_contents", "Q", 8, "int", *_unsigned(64)),
    "INT8": _Codec("int_contents", "b", 1, "int", *_signed(8)),
    "INT16": _Codec("int_contents", "h", 2, "int", *_signed(16)),
    "INT32": _Codec("int_contents", "i", 4, "int", *_signed(32)),
    "INT64": _Codec("int64_contents", "q", 8, "int", *_signed(64)),
    # FP16 has no typed field of its own in V2: its values travel in fp32_contents (§2.5). Its raw form
    # is a real 2-byte IEEE half (struct "e"), as Triton and the V2 protocol define it; the reference
    # writes 4-byte floats there (a known gap, §10), which no model server reads correctly.
    "FP16": _Codec("fp32_contents", "e", 2, "float"),
    "FP32": _Codec("fp32_contents", "f", 4, "float"),
    "FP64": _Codec("fp64_contents", "d", 8, "float"),
    "BYTES": _Codec("bytes_contents", "", 0, "bytes"),
}
"""The thirteen V2 datatypes and how each is stored (spec §2.5 table)."""

_LENGTH = struct.Struct("<I")  # BYTES element prefix: 4-byte little-endian length
_INT64_MIN, _INT64_MAX = _signed(64)


def _codec(datatype: str, where: str = "") -> _Codec:
    codec = DATATYPES.get(datatype)
    if codec is None:
        prefix = f"{where}: " if where else ""
        raise CodecError(f"{prefix}unknown datatype {datatype!r}")
    return codec


def _is_request(message: Message) -> bool:
    if isinstance(message, ModelInferRequest):
        return True
    if isinstance(message, ModelInferResponse):
        return False
    raise CodecError(f"expected a ModelInferRequest or ModelInferResponse, got {type(message).__name__}")


def _parts(message: Message) -> tuple[Any, Any]:
    """(tensors, raw contents) of a request or response, as live repeated fields."""
    if isinstance(message, ModelInferRequest):
        return message.inputs, message.raw_input_contents
    if isinstance(message, ModelInferResponse):
        return message.outputs, message.raw_output_contents
    raise CodecError(f"expected a ModelInferRequest or ModelInferResponse, got {type(message).__name__}")


# --------------------------------------------------------------------------------------------------
# Raw encoding (§2.5)


def encode_raw(datatype: str, values: Sequence[Any]) -> bytes:
    """Spec §2.5 little-endian raw encoding of flat values. Raises CodecError on unknown datatype.

    FP16 is encoded as real 2-byte IEEE half floats (struct ``e``), which is what Triton and the V2
    protocol expect; the reference engine writes 4-byte FP32 there instead (§2.5 "known gap"). Floats
    too large for FP16/FP32 become ±inf, as an IEEE cast would. BYTES elements (``bytes`` or ``str``,
    the latter as UTF-8) are each written as a 4-byte little-endian length followed by the bytes.
    """
    codec = _codec(datatype)
    if codec.kind == "bytes":
        return _encode_bytes(values)
    count = len(values)
    try:
        return struct.pack(f"<{count}{codec.code}", *values)
    except OverflowError:
        if codec.kind != "float":
            raise CodecError(f"{datatype}: value out of range") from None
        # Only reachable for FP16/FP32 values beyond the format's range: saturate to ±inf.
        return struct.pack(f"<{count}{codec.code}", *(_saturate(v, codec.code) for v in values))
    except struct.error as exc:
        bad = _first_bad(codec, values)
        raise CodecError(f"{datatype}: cannot encode {bad!r} ({exc})") from None


def _saturate(value: float, code: str) -> float:
    try:
        struct.pack(f"<{code}", value)
    except OverflowError:
        return math.copysign(math.inf, value)
    return value


def _first_bad(codec: _Codec, values: Sequence[Any]) -> Any:
    for value in values:
        try:
            struct.pack(f"<{codec.code}", value)
        except (struct.error, OverflowError):
            return value
    return None


def _encode_bytes(values: Sequence[Any]) -> bytes:
    parts: list[bytes] = []
    pack = _LENGTH.pack
    for value in values:
        if isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, bytes | bytearray | memoryview):
            raise CodecError(f"BYTES: element {value!r} is neither bytes nor str")
        parts.append(pack(len(value)))
        parts.append(bytes(value))
    return b"".join(parts)


def decode_raw(datatype: str, data: bytes) -> list[Any]:
    """Inverse of encode_raw. Raises CodecError on unknown datatype or a length that does not fit.

    FP16 reads 2-byte IEEE halves (see :func:`encode_raw`); BYTES elements come back as ``bytes``.
    """
    codec = _codec(datatype)
    if codec.kind == "bytes":
        return _decode_bytes(data)
    size = len(data)
    if size % codec.width:
        raise CodecError(
            f"{datatype}: raw length {size} is not a multiple of {codec.width} bytes per element"
        )
    return list(struct.unpack(f"<{size // codec.width}{codec.code}", data))


def _decode_bytes(data: bytes) -> list[Any]:
    out: list[Any] = []
    view = memoryview(data)
    offset, end = 0, len(data)
    unpack = _LENGTH.unpack_from
    while offset < end:
        if end - offset < 4:
            raise CodecError(f"BYTES: truncated length prefix at byte {offset} of {end}")
        (length,) = unpack(view, offset)
        offset += 4
        if offset + length > end:
            raise CodecError(
                f"BYTES: element of {length} bytes at byte {offset} overruns the {end}-byte buffer"
            )
        out.append(bytes(view[offset : offset + length]))
        offset += length
    return out


# --------------------------------------------------------------------------------------------------
# Typed contents


def set_contents(tensor: Tensor, datatype: str, values: Sequence[Any]) -> None:
    """Write flat values into the typed-contents field that `datatype` uses (§2.5 table).

    Replaces whatever that field held. BYTES accepts ``bytes`` or ``str`` (stored as UTF-8). Values the
    field cannot hold (wrong type, out of the datatype's range) raise CodecError.
    """
    codec = _codec(datatype)
    if codec.kind == "bytes":
        values = [v.encode() if isinstance(v, str) else v for v in values]
    elif codec.kind == "int" and codec.width < 4 and values:
        # 8- and 16-bit types share 32-bit fields, which would accept out-of-range values silently.
        try:
            low, high = min(values), max(values)
        except TypeError as exc:
            raise CodecError(f"{datatype}: {exc}") from None
        if low < codec.low or high > codec.high:
            bad = low if low < codec.low else high
            raise CodecError(f"{datatype}: value {bad!r} out of range [{codec.low}, {codec.high}]")
    field = getattr(tensor.contents, codec.field)
    del field[:]
    try:
        field.extend(values)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{datatype}: {exc}") from None


def tensor_values(message: Message, index: int) -> list[Any]:
    """Decoded element values (flat, row-major) of tensor `index`, from typed contents or from the
    positionally aligned raw entry. BYTES elements come back as `bytes`. Raises CodecError.

    As in the reference, a message with any raw contents is read from raw only: a tensor at an index
    beyond the raw list has no data and yields ``[]``.
    """
    tensors, raw = _parts(message)
    if not 0 <= index < len(tensors):
        raise CodecError(f"tensor index {index} out of range: the message has {len(tensors)} tensors")
    tensor = tensors[index]
    codec = _codec(tensor.datatype, f"tensor {tensor.name!r}")
    if not raw:
        return list(getattr(tensor.contents, codec.field))
    if index >= len(raw):
        return []
    try:
        return decode_raw(tensor.datatype, raw[index])
    except CodecError as exc:
        raise CodecError(f"tensor {tensor.name!r} ({tensor.datatype}): {exc}") from None


def _typed_raw(tensor: Tensor) -> bytes:
    """The §2.5 raw form of a tensor's typed contents."""
    codec = _codec(tensor.datatype, f"tensor {tensor.name!r}")
    try:
        return encode_raw(tensor.datatype, getattr(tensor.contents, codec.field))
    except CodecError as exc:
        raise CodecError(f"tensor {tensor.name!r}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Chain conversion (§2.3)

_SOURCE_IS_REQUEST = {
    ChainKind.INPUT_INPUT: True,
    ChainKind.INPUT_OUTPUT: True,
    ChainKind.OUTPUT_INPUT: False,
    ChainKind.OUTPUT_OUTPUT: False,
}
_TARGET_IS_REQUEST = {
    ChainKind.INPUT_INPUT: True,
    ChainKind.OUTPUT_INPUT: True,
    ChainKind.INPUT_OUTPUT: False,
    ChainKind.OUTPUT_OUTPUT: False,
}


def convert(
    message: Message,
    kind: ChainKind,
    *,
    source_topic: str,
    desired: frozenset[str] | None,
    renames: Mapping[str, str],
) -> Message | None:
    """Spec §2.3 for the four typed chain kinds: select (desired None/empty = all), rename by
    renames["<source_topic>.<name>"], copy id + parameters (not model_name/version/outputs), typed
    contents only when the source has no raw contents, raw entries by index; None if no tensor is left.
    `message` must be a request for INPUT_* kinds and a response for OUTPUT_* kinds.

    Reference quirk kept on purpose (wire compatibility): a source that mixes typed and raw tensors
    (0 < raw count < tensor count) loses all typed contents, and tensors past the raw list carry no data.
    """
    source_is_request = _SOURCE_IS_REQUEST.get(kind)
    if source_is_request is None:
        raise CodecError(f"{kind.name} records are opaque and cannot be converted")
    if _is_request(message) != source_is_request:
        expected = "ModelInferRequest" if source_is_request else "ModelInferResponse"
        raise CodecError(f"{kind.name} needs a {expected}, got {type(message).__name__}")
    tensors, raw = _parts(message)
    raw_count = len(raw)

    target: Message
    out_tensors: Any
    if _TARGET_IS_REQUEST[kind]:
        target = ModelInferRequest(id=message.id)
        out_tensors, out_raw = target.inputs, target.raw_input_contents
    else:
        target = ModelInferResponse(id=message.id)
        out_tensors, out_raw = target.outputs, target.raw_output_contents

    for i, tensor in enumerate(tensors):
        name = tensor.name
        if desired and name not in desired:
            continue
        if renames:
            name = renames.get(f"{source_topic}.{name}", name)
        new = out_tensors.add(name=name, datatype=tensor.datatype, shape=tensor.shape)
        if tensor.parameters:
            new.parameters.MergeFrom(tensor.parameters)
        if raw_count == 0:
            if tensor.HasField("contents"):
                new.contents.CopyFrom(tensor.contents)
        elif i < raw_count:
            out_raw.append(raw[i])

    if not out_tensors:
        return None  # "no tensors we want": how conditional routing stops a branch (§2.3 step 3)
    if message.parameters:
        target.parameters.MergeFrom(message.parameters)
    return target


# --------------------------------------------------------------------------------------------------
# Raw normalisation, join merge (§2.6) and batch merge (§4.6)


def _make_raw(tensors: Any, raw: Any, first: int, source_raw_count: int) -> None:
    """Give tensors[first:] one raw entry each, in place: a tensor whose source already had a raw
    entry keeps it (it is there already), the others get their typed contents encoded; all lose their
    typed contents. `raw` must then hold exactly one entry per tensor."""
    for position in range(first, len(tensors)):
        tensor = tensors[position]
        if position - first >= source_raw_count:
            raw.append(_typed_raw(tensor))
        tensor.ClearField("contents")


def to_raw(message: _M) -> _M:
    """A copy of `message` with every tensor's data in the raw list (one entry per tensor, in order)
    and no typed contents, encoded per §2.5 (see :func:`encode_raw` for FP16).

    Tensors that already have their positional raw entry keep it; those past the end of the raw list
    get their typed contents encoded, which repairs a mixed typed/raw message whose typed tensors come
    last. The argument is not modified.
    """
    result = type(message)()
    result.CopyFrom(message)
    tensors, raw = _parts(result)
    raw_count = len(raw)
    if raw_count > len(tensors):
        raise CodecError(f"{raw_count} raw entries for {len(tensors)} tensors: cannot align them")
    _make_raw(tensors, raw, 0, raw_count)
    return result


def _merge(left: _M, right: _M, result: _M) -> _M:
    left_tensors, left_raw = _parts(left)
    right_tensors, right_raw = _parts(right)
    out_tensors, out_raw = _parts(result)
    result.id = left.id
    if left.parameters:
        result.parameters.MergeFrom(left.parameters)
    out_tensors.extend(left_tensors)
    if not left_raw and not right_raw:
        out_tensors.extend(right_tensors)
        return result
    # At least one side is raw: the result must be uniformly raw, one entry per tensor, or the raw
    # entries of the right side would no longer line up with its tensors (spec §2.6, case BR-04).
    if len(left_raw) > len(left_tensors) or len(right_raw) > len(right_tensors):
        raise CodecError("a join side has more raw entries than tensors: cannot align them")
    out_raw.extend(left_raw)
    _make_raw(out_tensors, out_raw, 0, len(left_raw))
    first_right = len(out_tensors)
    out_tensors.extend(right_tensors)
    out_raw.extend(right_raw)
    _make_raw(out_tensors, out_raw, first_right, len(right_raw))
    return result


def merge_requests(left: ModelInferRequest, right: ModelInferRequest) -> ModelInferRequest:
    """Spec §2.6 join of two requests: `id` and message parameters from `left`, tensors of `left` then
    `right` (duplicate names kept). If any side is raw, the result is all raw (typed side encoded per
    §2.5, contents cleared). Neither argument is modified. (Null sides are the caller's business: the
    reference then forwards the other side unchanged.)"""
    return _merge(left, right, ModelInferRequest())


def merge_responses(left: ModelInferResponse, right: ModelInferResponse) -> ModelInferResponse:
    """Spec §2.6 join of two responses; same rules as :func:`merge_requests`."""
    return _merge(left, right, ModelInferResponse())


def batch_size(request: ModelInferRequest) -> int:
    """Spec §4.6 batch size: the first dimension of the first input (0 if there is none)."""
    if not request.inputs:
        return 0
    shape = request.inputs[0].shape
    return int(shape[0]) if shape else 0


def batch_merge(requests: Sequence[ModelInferRequest]) -> ModelInferRequest:
    """Spec §4.6 merge of a batch, oldest first: `id`, `model_name`, `model_version` and message
    parameters from the last request; tensors grouped by name in first-seen order with shape[0]
    summed (other dims and datatype from the first), tensor parameters merged (later wins) and
    contents concatenated. If any request is raw, every tensor's data goes to one raw entry
    (concatenated bytes, typed contents encoded per §2.5).

    A request that repeats a tensor name (possible after a join) has its n-th occurrence batched with
    the n-th occurrence of the others, where the reference would fold both into one tensor. Tensors
    whose datatype or trailing dimensions disagree with the first raise CodecError rather than
    producing a tensor that no model can read.
    """
    if not requests:
        raise CodecError("batch_merge needs at least one request")
    last = requests[-1]
    result = ModelInferRequest(id=last.id, model_name=last.model_name, model_version=last.model_version)
    if last.parameters:
        result.parameters.MergeFrom(last.parameters)
    any_raw = any(r.raw_input_contents for r in requests)

    # (name, occurrence within its request) -> [(request, tensor index), ...] in first-seen order
    groups: dict[tuple[str, int], list[tuple[ModelInferRequest, int]]] = {}
    for request in requests:
        seen: dict[str, int] = {}
        for index, tensor in enumerate(request.inputs):
            occurrence = seen.get(tensor.name, 0)
            seen[tensor.name] = occurrence + 1
            groups.setdefault((tensor.name, occurrence), []).append((request, index))

    for (name, _), members in groups.items():
        first = members[0][0].inputs[members[0][1]]
        if not first.shape:
            raise CodecError(f"batch tensor {name!r} has no dimensions to batch along")
        trailing = list(first.shape[1:])
        rows = 0
        new = result.inputs.add(name=name, datatype=first.datatype)
        parts: list[bytes] = []
        for request, index in members:
            tensor = request.inputs[index]
            if tensor.datatype != first.datatype:
                raise CodecError(
                    f"batch tensor {name!r}: datatype {tensor.datatype} differs from {first.datatype}"
                )
            if not tensor.shape or list(tensor.shape[1:]) != trailing:
                raise CodecError(
                    f"batch tensor {name!r}: shape {list(tensor.shape)} does not batch with"
                    f" {list(first.shape)}"
                )
            rows += tensor.shape[0]
            if tensor.parameters:
                new.parameters.MergeFrom(tensor.parameters)
            if not any_raw:
                new.contents.MergeFrom(tensor.contents)
            else:
                # Positional raw entry if the request has one, else its typed contents encoded (as
                # in to_raw, so a typed request and a mixed one's trailing typed tensors both fit).
                raw = request.raw_input_contents
                parts.append(raw[index] if index < len(raw) else _typed_raw(tensor))
        new.shape.extend([rows, *trailing])
        if any_raw:
            result.raw_input_contents.append(b"".join(parts))
    return result


# --------------------------------------------------------------------------------------------------
# V2 JSON (REST) bodies


REQUEST_FIELDS = frozenset({"id", "parameters", "inputs", "outputs"})  # a V2 inference request's fields


def request_from_json(body: Mapping[str, Any]) -> ModelInferRequest:
    """V2 JSON request {"id"?, "parameters"?, "inputs":[{"name","datatype","shape","data","parameters"?}]}
    to a request with typed contents (nested `data` lists are flattened). Raises CodecError naming the
    field (e.g. "inputs[1].datatype: unknown datatype 'FOO'") on bad input.

    Also accepts the V2 "outputs" list of requested outputs ({"name", "parameters"?}). Element values
    are checked against the datatype: BOOL takes JSON booleans only; integer types take integers (or
    floats without a fraction) within range, never booleans; float types take numbers; BYTES takes
    strings (stored as UTF-8) or bytes.
    """
    if not isinstance(body, Mapping):
        raise CodecError(f"request body must be a JSON object, got {type(body).__name__}")
    request = ModelInferRequest()
    request_id = body.get("id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise CodecError(f"id: must be a string, got {type(request_id).__name__}")
        request.id = request_id
    _params_from_json(request.parameters, body.get("parameters"), "parameters")

    inputs = body.get("inputs")
    if inputs is None:
        others = sorted(str(k) for k in body if k not in REQUEST_FIELDS)
        found = (
            f' (the body has {", ".join(map(repr, others))}; a V2 request lists its tensors under "inputs")'
        )
        raise CodecError("inputs: missing" + (found if others else ""))
    if not isinstance(inputs, list):
        raise CodecError("inputs: must be a list")
    if not inputs:
        raise CodecError("inputs: must hold at least one tensor")
    for position, item in enumerate(inputs):
        _input_from_json(request.inputs.add(), item, f"inputs[{position}]")

    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise CodecError("outputs: must be a list")
        for position, item in enumerate(outputs):
            where = f"outputs[{position}]"
            if not isinstance(item, Mapping):
                raise CodecError(f"{where}: must be an object")
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise CodecError(f"{where}.name: missing or not a non-empty string")
            requested = request.outputs.add(name=name)
            _params_from_json(requested.parameters, item.get("parameters"), f"{where}.parameters")
    return request


def _input_from_json(tensor: Any, item: Any, where: str) -> None:
    if not isinstance(item, Mapping):
        raise CodecError(f"{where}: must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise CodecError(f"{where}.name: missing or not a non-empty string")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise CodecError(f"{where}.datatype: missing or not a string")
    codec = _codec(datatype, f"{where}.datatype")
    shape = item.get("shape")
    if shape is None:
        raise CodecError(f"{where}.shape: missing")
    if not isinstance(shape, list):
        raise CodecError(f"{where}.shape: must be a list of integers, got {type(shape).__name__}")
    for axis, dim in enumerate(shape):
        if type(dim) is not int:
            raise CodecError(f"{where}.shape[{axis}]: {dim!r} is not an integer")
        if dim < 0:
            raise CodecError(f"{where}.shape[{axis}]: {dim} is negative")
    if "data" not in item:
        raise CodecError(f"{where}.data: missing")
    data = item["data"]
    if not isinstance(data, list):
        raise CodecError(f"{where}.data: must be a list, got {type(data).__name__}")
    flat = _flatten(data)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise CodecError(f"{where}.data: {len(flat)} elements but shape {shape} needs {expected}")
    values = _check_values(codec, datatype, flat, f"{where}.data")

    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(shape)
    _params_from_json(tensor.parameters, item.get("parameters"), f"{where}.parameters")
    getattr(tensor.contents, codec.field).extend(values)


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _check_values(codec: _Codec, datatype: str, values: list[Any], where: str) -> list[Any]:
    """Values ready for the typed field, or CodecError naming the first bad element."""
    kind = codec.kind
    if kind == "int":
        if all(type(v) is int for v in values):
            if values and (min(values) < codec.low or max(values) > codec.high):
                for i, v in enumerate(values):
                    if not codec.low <= v <= codec.high:
                        raise CodecError(
                            f"{where}[{i}]: {v} out of range for {datatype} [{codec.low}, {codec.high}]"
                        )
            return values
        out: list[Any] = []
        for i, v in enumerate(values):
            if type(v) is float and v.is_integer():
                v = int(v)
            if type(v) is not int:
                raise CodecError(f"{where}[{i}]: {v!r} is not a valid {datatype} value")
            if not codec.low <= v <= codec.high:
                raise CodecError(f"{where}[{i}]: {v} out of range for {datatype} [{codec.low}, {codec.high}]")
            out.append(v)
        return out
    if kind == "float":
        for i, v in enumerate(values):
            if type(v) is not float and type(v) is not int:
                raise CodecError(f"{where}[{i}]: {v!r} is not a valid {datatype} value")
        return values
    if kind == "bool":
        for i, v in enumerate(values):
            if type(v) is not bool:
                raise CodecError(f"{where}[{i}]: {v!r} is not a valid BOOL value (true/false)")
        return values
    out = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            out.append(v.encode())
        elif isinstance(v, bytes):
            out.append(v)
        else:
            raise CodecError(f"{where}[{i}]: {v!r} is not a valid BYTES value (string expected)")
    return out


def _params_from_json(target: Any, params: Any, where: str) -> None:
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise CodecError(f"{where}: must be an object")
    for key, value in params.items():
        # bool first: in Python it is also an int
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise CodecError(f"{where}.{key}: {value} does not fit in int64")
            target[key].int64_param = value
        elif isinstance(value, str):
            target[key].string_param = value
        else:
            raise CodecError(f"{where}.{key}: {value!r} is not a boolean, integer or string parameter value")


def _param_to_json(param: InferParameter) -> Any:
    choice = param.WhichOneof("parameter_choice")
    return None if choice is None else getattr(param, choice)


def _params_to_json(params: Any) -> dict[str, Any]:
    return {key: _param_to_json(value) for key, value in params.items()}


def _bytes_to_json(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")


def response_to_json(response: ModelInferResponse) -> dict[str, Any]:
    """V2 JSON response {"model_name","model_version"?,"id","parameters"?,"outputs":[{"name","datatype",
    "shape","data","parameters"?}]} with `data` decoded from typed or raw contents (BYTES as str when
    valid UTF-8).

    A BYTES element that is not valid UTF-8 is emitted base64-encoded (JSON has no bytes). Outputs
    past the end of a non-empty raw list have no data and get ``"data": []`` (§2.3).
    """
    body: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        body["model_version"] = response.model_version
    body["id"] = response.id
    if response.parameters:
        body["parameters"] = _params_to_json(response.parameters)
    outputs: list[dict[str, Any]] = []
    for index, tensor in enumerate(response.outputs):
        data = tensor_values(response, index)
        if tensor.datatype == "BYTES":
            data = [_bytes_to_json(v) for v in data]
        out: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
            "data": data,
        }
        if tensor.parameters:
            out["parameters"] = _params_to_json(tensor.parameters)
        outputs.append(out)
    body["outputs"] = outputs
    return body
