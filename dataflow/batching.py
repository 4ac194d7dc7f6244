"""Batching of a step's requests, and splitting the model's batched answer back (spec §4.6, case S-01).

Pure: the runtime keeps :class:`BatchState` in the state table and does the I/O.

Rules, and where we differ from the reference:

* Requests of one partition accumulate in arrival order; the batch size is the first dimension of
  the first input of the merged request (as the reference counts it). When it reaches ``size`` the
  merged request is sent under the key and headers of the request that completed it.
* ``windowMs`` flushes a partial batch once its first request has waited that long (the reference
  ignores ``windowMs`` and waits forever).
* No caller is left hanging: the batch carries a ``dataflow-batch`` header naming its members. When
  the model's answer comes back, it is split before any step reads it: if every output tensor's first
  dimension equals the batch's, each request gets its own rows under its own key and headers;
  otherwise each request gets the whole answer. A model error on a batch is an error for each member.
  (The reference only ever answers the request that completed the batch.)
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from dataflow import tensors
from dataflow.errors import CodecError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse

BATCH_HEADER = "dataflow-batch"


@dataclass(slots=True)
class Member:
    """One request in a batch: where its answer must go."""

    key: bytes | None
    headers: list[tuple[str, bytes]]
    ts_ms: int
    rows: int
    payload: bytes = b""  # the converted request, kept only while the batch is open
    request_id: str = ""  # the request's own `id`, given back with its answer


@dataclass(slots=True)
class BatchState:
    partition: int
    first_seen_ms: int
    members: list[Member] = field(default_factory=list)


def rows_of(request: ModelInferRequest) -> int:
    return tensors.batch_size(request)


def add(state: BatchState | None, member: Member, partition: int, now_ms: int) -> BatchState:
    st = state or BatchState(partition, now_ms)
    st.members.append(member)
    return st


def merged(state: BatchState) -> ModelInferRequest:
    return tensors.batch_merge([ModelInferRequest.FromString(m.payload) for m in state.members])


def is_full(request: ModelInferRequest, size: int | None) -> bool:
    return size is not None and size > 0 and tensors.batch_size(request) >= size


def split_response(response: ModelInferResponse, rows: Sequence[int]) -> list[ModelInferResponse] | None:
    """Each member's rows of a row-wise answer, or None when the answer is not row-wise.

    Row-wise means every output tensor's first dimension equals the batch's total rows. Raw
    contents are sliced as raw, typed contents as typed.
    """
    parts: list[ModelInferResponse] | None = _split(response, rows)
    return parts


def split_request(request: ModelInferRequest, rows: Sequence[int]) -> list[ModelInferRequest] | None:
    """Each member's rows of a batched request (for a step that reads the batched model's inputs)."""
    parts: list[ModelInferRequest] | None = _split(request, rows)
    return parts


def _split(message: Any, rows: Sequence[int]) -> Any:
    is_request = isinstance(message, ModelInferRequest)
    listed = message.inputs if is_request else message.outputs
    total = sum(rows)
    if not listed or any(not t.shape or t.shape[0] != total for t in listed):
        return None
    raw = message.raw_input_contents if is_request else message.raw_output_contents
    kind = type(message)
    out = [
        kind(model_name=message.model_name, model_version=message.model_version, id=message.id) for _ in rows
    ]
    for part in out:
        part.parameters.MergeFrom(message.parameters)
    for index, tensor in enumerate(listed):
        per_row = math.prod(tensor.shape[1:])
        values = tensors.tensor_values(message, index)
        if len(values) != total * per_row:
            raise CodecError(
                f"tensor {tensor.name!r} has {len(values)} elements, shape {list(tensor.shape)} needs "
                f"{total * per_row}"
            )
        start = 0
        for part, count in zip(out, rows, strict=True):
            chunk = values[start * per_row : (start + count) * per_row]
            start += count
            target = part.inputs if is_request else part.outputs
            new = target.add(name=tensor.name, datatype=tensor.datatype, shape=[count, *tensor.shape[1:]])
            new.parameters.MergeFrom(tensor.parameters)
            if index < len(raw):
                (part.raw_input_contents if is_request else part.raw_output_contents).append(
                    tensors.encode_raw(tensor.datatype, chunk)
                )
            else:
                tensors.set_contents(new, tensor.datatype, chunk)
    return out


# ---------------------------------------------------------------------- serialization
def _enc_member(m: Member) -> list[Any]:
    return [
        base64.b64encode(m.key).decode() if m.key is not None else None,
        [[k, base64.b64encode(v).decode()] for k, v in m.headers],
        m.ts_ms,
        m.rows,
        base64.b64encode(m.payload).decode(),
        m.request_id,
    ]


def _dec_member(item: list[Any]) -> Member:
    key, headers, ts, rows, payload, *rest = item
    return Member(
        base64.b64decode(key) if key is not None else None,
        [(str(k), base64.b64decode(v)) for k, v in headers],
        int(ts),
        int(rows),
        base64.b64decode(payload),
        str(rest[0]) if rest else "",
    )


def dumps(state: BatchState) -> bytes:
    return orjson.dumps(
        {"p": state.partition, "t": state.first_seen_ms, "m": [_enc_member(m) for m in state.members]}
    )


def loads(blob: bytes) -> BatchState:
    raw = orjson.loads(blob)
    return BatchState(int(raw["p"]), int(raw["t"]), [_dec_member(m) for m in raw["m"]])
