"""Stand-in models: tiny, deterministic, pure functions ``ModelInferRequest -> ModelInferResponse``.

They replace the Triton and MLServer models of Seldon's sample pipelines (spec §7.2) and of the bug-report
cases (cases §0.1), so engine tests need only a Kafka broker. What matters for the engine is reproduced
on purpose:

* the maths, so answers can be checked exactly (``tfsimple1`` on 1..16 and 1..16 gives 2,4,…,32 and zeros);
* the encodings: ``tfsimple*`` and ``twoenc`` answer in ``raw_output_contents`` as Triton does, so the
  engine's raw handling is exercised; the others answer with typed ``contents``; inputs may arrive typed
  or raw;
* Triton's strictness and error texts (``rpc error: code = InvalidArgument desc = unexpected shape …``),
  because those texts travel through the errors topic to the caller and tests compare them;
* conditional emission (``conditional``/``route``/``check`` leave tensors out), which is how pipelines
  route.

A failing model raises :class:`ModelError`; its message is exactly what the model gateway writes to the
errors topic. Parametrised and aliased names are resolved by :func:`get_model` (``sumdiff-a``,
``big-2000000``, ``slow-250``, ``loop=echo``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dataflow.errors import CodecError, ConfigError, DataflowError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.tensors import encode_raw, set_contents, tensor_values

__all__ = ["MODELS", "Model", "ModelError", "UnknownModelError", "get_model", "model_names"]


class ModelError(DataflowError):
    """A model refused or failed a request; ``str(exc)`` is the error text the gateway publishes."""


class UnknownModelError(ConfigError):
    """A model name that no stand-in answers to."""


InferFn = Callable[[str, ModelInferRequest], ModelInferResponse]


@dataclass(frozen=True, slots=True)
class Model:
    """A named stand-in. Calling it runs ``fn(name, request)``: the name is passed in so that one
    function can serve several names (``tfsimple1``…``3``, ``sumdiff-*``, aliases) and still stamp the
    right ``model_name`` and error texts. ``delay_s`` is applied by the gateway, not here, so the
    function stays pure and fast in unit tests."""

    name: str
    fn: InferFn
    summary: str
    delay_s: float = 0.0

    def __call__(self, request: ModelInferRequest) -> ModelInferResponse:
        return self.fn(self.name, request)


# ---------------------------------------------------------------------------------------------------------
# Reading inputs the way Triton validates them
# ---------------------------------------------------------------------------------------------------------

_INT32_MIN, _INT32_SPAN = -(2**31), 2**32
_INT64_MIN, _INT64_SPAN = -(2**63), 2**64


def _invalid(desc: str) -> ModelError:
    # The model gateway reports gRPC failures as Go formats a status error; tests match on this prefix.
    return ModelError(f"rpc error: code = InvalidArgument desc = {desc}")


def _dims(shape: Sequence[int]) -> str:
    """Triton prints shapes without spaces: ``[1,20]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def _wrap32(value: int) -> int:
    """INT32 arithmetic wraps around, as it does on the GPU, instead of failing the raw encoder."""
    return (value - _INT32_MIN) % _INT32_SPAN + _INT32_MIN


def _wrap64(value: int) -> int:
    return (value - _INT64_MIN) % _INT64_SPAN + _INT64_MIN


@dataclass(frozen=True, slots=True)
class _Input:
    """One input tensor of a request, decoded on demand so that name/type/shape errors come first."""

    model: str
    request: ModelInferRequest
    index: int

    @property
    def tensor(self) -> ModelInferRequest.InferInputTensor:
        return self.request.inputs[self.index]

    @property
    def name(self) -> str:
        return self.tensor.name

    @property
    def datatype(self) -> str:
        return self.tensor.datatype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def values(self) -> list[Any]:
        """Flat element values from typed or raw contents; their count must match the shape."""
        try:
            values = tensor_values(self.request, self.index)
        except CodecError as exc:
            raise _invalid(f"input '{self.name}' for model '{self.model}': {exc}") from None
        expected = math.prod(self.shape)
        if len(values) != expected:
            raise _invalid(
                f"unexpected number of elements {len(values)} for input '{self.name}' for model "
                f"'{self.model}', shape {_dims(self.shape)} needs {expected}"
            )
        return values

    def check_datatype(self, expected: str) -> None:
        if self.datatype != expected:
            raise _invalid(
                f"inference input '{self.name}' data-type is '{self.datatype}', but model "
                f"'{self.model}' expects '{expected}'"
            )


def _inputs(model: str, request: ModelInferRequest) -> list[_Input]:
    """The request's inputs after Triton's layout checks on raw contents.

    Triton refuses a request that mixes typed ``contents`` with ``raw_input_contents``, or whose raw
    buffers are not one per input; a joining engine that gets encodings wrong (case BR-04) must fail
    here exactly as it would in production, instead of being decoded by luck.
    """
    raw_count = len(request.raw_input_contents)
    if raw_count:
        for tensor in request.inputs:
            if tensor.contents.ByteSize():
                raise _invalid(
                    f"contents field must not be specified when using raw_input_contents for "
                    f"'{tensor.name}' for model '{model}'"
                )
        if raw_count != len(request.inputs):
            raise _invalid(
                f"expected {len(request.inputs)} raw_input_contents (one per input) but got {raw_count} "
                f"for model '{model}'"
            )
    return [_Input(model, request, i) for i in range(len(request.inputs))]


def _missing(model: str, inputs: Sequence[_Input], required: Sequence[str]) -> ModelError:
    got = [i.name for i in inputs]
    missing = [name for name in required if name not in got]
    return _invalid(
        f"expected {len(required)} inputs but got {len(got)} inputs for model '{model}'. Got input(s) "
        f"{got}, but missing required input(s) {missing}. Please provide all required input(s)."
    )


def _require(model: str, inputs: Sequence[_Input], required: Sequence[str]) -> dict[str, _Input]:
    """Exactly the named inputs, each once - Triton rejects unknown and duplicate inputs, and a stand-in
    that accepted them would hide an engine that forgot to select tensors."""
    seen: dict[str, _Input] = {}
    for inp in inputs:
        if inp.name not in required:
            raise _invalid(f"unexpected inference input '{inp.name}' for model '{model}'")
        if inp.name in seen:
            raise _invalid(f"input '{inp.name}' specified multiple times for model '{model}'")
        seen[inp.name] = inp
    if len(seen) != len(required):
        raise _missing(model, inputs, required)
    return seen


def _single(model: str, inputs: Sequence[_Input], name: str) -> _Input:
    """The input called ``name``, or the only input whatever its name.

    Accepting a lone input of another name lets chains without a tensorMap work (``add10 → mul10``
    feeds ``OUTPUT`` to mul10 in cases BR-11/BR-15); anything besides it is still rejected.
    """
    if len(inputs) == 1:
        return inputs[0]
    if any(i.name == name for i in inputs):
        return _require(model, inputs, (name,))[name]
    raise _missing(model, inputs, (name,))


# ---------------------------------------------------------------------------------------------------------
# Building responses
# ---------------------------------------------------------------------------------------------------------


def _response(model: str, request: ModelInferRequest) -> ModelInferResponse:
    return ModelInferResponse(model_name=model, id=request.id)


def _add_typed(
    response: ModelInferResponse,
    name: str,
    datatype: str,
    shape: Sequence[int],
    values: Sequence[Any],
) -> ModelInferResponse.InferOutputTensor:
    out = response.outputs.add(name=name, datatype=datatype, shape=list(shape))
    set_contents(out, datatype, values)
    return out


def _add_raw(
    response: ModelInferResponse,
    name: str,
    datatype: str,
    shape: Sequence[int],
    values: Sequence[Any],
) -> ModelInferResponse.InferOutputTensor:
    """A raw output, as Triton answers over gRPC. Callers must make every output of a response raw:
    raw entries are matched to outputs by position."""
    out = response.outputs.add(name=name, datatype=datatype, shape=list(shape))
    response.raw_output_contents.append(encode_raw(datatype, values))
    return out


# ---------------------------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------------------------


def _sumdiff(model: str, request: ModelInferRequest, *, raw: bool) -> ModelInferResponse:
    """Triton's ``simple``: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, INT32 ``[-1,16]``.

    The batch dimension is free (Triton's ``max_batch_size`` cap of 8 is not reproduced) so that batched
    requests (spec §4.6) can be served; both inputs must have the same shape.
    """
    named = _require(model, _inputs(model, request), ("INPUT0", "INPUT1"))
    a, b = named["INPUT0"], named["INPUT1"]
    for inp in (a, b):
        inp.check_datatype("INT32")
        if len(inp.shape) != 2 or inp.shape[1] != 16 or inp.shape[0] < 1:
            raise _invalid(
                f"unexpected shape for input '{inp.name}' for model '{model}'. "
                f"Expected [-1,16], got {_dims(inp.shape)}"
            )
    if a.shape != b.shape:
        raise _invalid(f"input 'INPUT1' batch size does not match other inputs for '{model}'")
    left, right = a.values(), b.values()
    add = _add_raw if raw else _add_typed
    response = _response(model, request)
    add(response, "OUTPUT0", "INT32", a.shape, [_wrap32(x + y) for x, y in zip(left, right, strict=True)])
    add(response, "OUTPUT1", "INT32", a.shape, [_wrap32(x - y) for x, y in zip(left, right, strict=True)])
    return response


def tfsimple(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """``tfsimple1``/``2``/``3``: Triton's ``simple`` answering in ``raw_output_contents``."""
    return _sumdiff(model, request, raw=True)


def sumdiff(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """``sumdiff*`` and ``strict``: same maths and checks as ``tfsimple``, typed outputs."""
    return _sumdiff(model, request, raw=False)


def _fp32_map(model: str, request: ModelInferRequest, op: Callable[[float], float]) -> ModelInferResponse:
    inp = _single(model, _inputs(model, request), "INPUT")
    inp.check_datatype("FP32")
    response = _response(model, request)
    _add_typed(response, "OUTPUT", "FP32", inp.shape, [op(v) for v in inp.values()])
    return response


def add10(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """INPUT FP32 [n] -> OUTPUT = INPUT + 10."""
    return _fp32_map(model, request, lambda v: v + 10.0)


def mul10(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """INPUT FP32 [n] -> OUTPUT = INPUT * 10."""
    return _fp32_map(model, request, lambda v: v * 10.0)


def conditional(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """CHOICE INT32, INPUT0, INPUT1 FP32: CHOICE[0] == 0 gives only OUTPUT0 = INPUT0, else only
    OUTPUT1 = INPUT1. The missing tensor is what makes the engine skip a branch (spec §2.3 step 3)."""
    named = _require(model, _inputs(model, request), ("CHOICE", "INPUT0", "INPUT1"))
    choice = named["CHOICE"]
    choice.check_datatype("INT32")
    choice_values = choice.values()
    if not choice_values:
        raise _invalid(f"input 'CHOICE' for model '{model}' has no elements")
    for name in ("INPUT0", "INPUT1"):
        named[name].check_datatype("FP32")
    source, target = ("INPUT0", "OUTPUT0") if choice_values[0] == 0 else ("INPUT1", "OUTPUT1")
    chosen = named[source]
    response = _response(model, request)
    _add_typed(response, target, "FP32", chosen.shape, chosen.values())
    return response


def identity_node(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """``id1_node``/``id2_node``: INPUT1 -> OUTPUT1 unchanged (any datatype and shape)."""
    inp = _require(model, _inputs(model, request), ("INPUT1",))["INPUT1"]
    response = _response(model, request)
    _add_typed(response, "OUTPUT1", inp.datatype, inp.shape, inp.values())
    return response


def join_node(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """INPUT1, INPUT2 INT64 -> OUTPUT1 = INPUT1 + INPUT2 (element-wise, shape of INPUT1)."""
    named = _require(model, _inputs(model, request), ("INPUT1", "INPUT2"))
    a, b = named["INPUT1"], named["INPUT2"]
    a.check_datatype("INT64")
    b.check_datatype("INT64")
    left, right = a.values(), b.values()
    if len(left) != len(right):
        raise _invalid(
            f"inputs 'INPUT1' {_dims(a.shape)} and 'INPUT2' {_dims(b.shape)} of model '{model}' "
            "have different element counts"
        )
    response = _response(model, request)
    _add_typed(
        response, "OUTPUT1", "INT64", a.shape, [_wrap64(x + y) for x, y in zip(left, right, strict=True)]
    )
    return response


def echo(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """Every input becomes an output with the same name, datatype, shape, parameters and contents.

    The copy is verbatim - typed contents stay typed, raw buffers stay raw and in order, message
    parameters are kept - so a test sees exactly what the engine delivered to the model.
    """
    response = _response(model, request)
    for key, value in request.parameters.items():
        response.parameters[key].CopyFrom(value)
    for tensor in request.inputs:
        out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        for key, value in tensor.parameters.items():
            out.parameters[key].CopyFrom(value)
        if tensor.HasField("contents"):
            out.contents.CopyFrom(tensor.contents)
    response.raw_output_contents.extend(request.raw_input_contents)
    return response


OUTLIER_LIMIT = 100.0  # spec §7.2: [1,2,3,4] passes and [100,2,3,4] fails; the exact rule is ours.


def outlier_error(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """INPUT FP32: fails when any value is >= 100, otherwise OUTPUT = INPUT."""
    inp = _single(model, _inputs(model, request), "INPUT")
    inp.check_datatype("FP32")
    values = inp.values()
    for index, value in enumerate(values):
        if value >= OUTLIER_LIMIT:
            raise _invalid(
                f"outlier detected by model '{model}': input '{inp.name}' has {value:g} at index {index}, "
                f"values must be < {OUTLIER_LIMIT:g}"
            )
    response = _response(model, request)
    _add_typed(response, "OUTPUT", "FP32", inp.shape, values)
    return response


def check(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """INPUT INT32: OUTPUT = INPUT only when INPUT is non-empty and all its values are equal; otherwise
    a response without outputs.

    The sample ``joincheck`` triggers ``tfsimple3`` on ``check.outputs.OUTPUT`` and its smoke test sends
    all-ones vs 1..16: tfsimple1 turns all-ones into sixteen 2s (the trigger fires, the pipeline answers)
    and 1..16 into 2,4,…,32 (no OUTPUT, so nothing downstream runs and the caller times out).
    """
    inp = _single(model, _inputs(model, request), "INPUT")
    inp.check_datatype("INT32")
    values = inp.values()
    response = _response(model, request)
    if values and all(v == values[0] for v in values):
        _add_typed(response, "OUTPUT", "INT32", inp.shape, values)
    return response


def fail(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """Always fails, for error-path tests."""
    raise ModelError(
        f"rpc error: code = Internal desc = model '{model}' always fails (request id '{request.id}')"
    )


COUNTER_LIMIT = 10  # cases §0.1: `continue` while the new x < 10, then `stop`.


def _counter(model: str, request: ModelInferRequest, *, stops: bool) -> ModelInferResponse:
    inp = _single(model, _inputs(model, request), "x")
    if not inp.datatype.startswith(("INT", "UINT")):
        raise _invalid(f"input '{inp.name}' of model '{model}' must be an integer tensor, got {inp.datatype}")
    values = [v + 1 for v in inp.values()]
    if not values:
        raise _invalid(f"input '{inp.name}' for model '{model}' has no elements")
    response = _response(model, request)
    _add_typed(response, "x", inp.datatype, inp.shape, values)
    signal = "stop" if stops and values[0] >= COUNTER_LIMIT else "continue"
    _add_typed(response, signal, "BYTES", [0], [])
    return response


def counter(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """x -> x + 1, plus an empty BYTES tensor ``continue`` while the new x < 10, else ``stop``."""
    return _counter(model, request, stops=True)


def counter_nostop(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """x -> x + 1 and always ``continue``: a runaway loop for the revisit guard."""
    return _counter(model, request, stops=False)


STROUT_TEXT = b"[[0.1, 0.2]]"


def strout(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """text BYTES -> embedding BYTES [1] = ``[[0.1, 0.2]]`` with tensor parameter ``content_type: str``."""
    inp = _single(model, _inputs(model, request), "text")
    inp.check_datatype("BYTES")
    inp.values()
    response = _response(model, request)
    out = _add_typed(response, "embedding", "BYTES", [1], [STROUT_TEXT])
    out.parameters["content_type"].string_param = "str"
    return response


TWOENC_SCORE = 0.5
TWOENC_TITLES = (b"A", b"B")


def twoenc(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """user_id BYTES [1] -> score FP32 [1] = 0.5 and titles BYTES [2] = "A", "B", both raw."""
    inp = _require(model, _inputs(model, request), ("user_id",))["user_id"]
    inp.check_datatype("BYTES")
    inp.values()
    response = _response(model, request)
    _add_raw(response, "score", "FP32", [1], [TWOENC_SCORE])
    _add_raw(response, "titles", "BYTES", [len(TWOENC_TITLES)], list(TWOENC_TITLES))
    return response


def strict_bytes(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """user_id BYTES [1], item_title BYTES [2] -> ok BOOL [1] = true; mixed or misaligned encodings fail
    (the layout checks of every stand-in, see ``_inputs``), as do other shapes."""
    named = _require(model, _inputs(model, request), ("user_id", "item_title"))
    for name, dims in (("user_id", (1,)), ("item_title", (2,))):
        inp = named[name]
        inp.check_datatype("BYTES")
        if inp.shape != dims:
            raise _invalid(
                f"unexpected shape for input '{name}' for model '{model}'. "
                f"Expected {_dims(dims)}, got {_dims(inp.shape)}"
            )
        inp.values()
    response = _response(model, request)
    _add_typed(response, "ok", "BOOL", [1], [True])
    return response


BIG_DEFAULT_BYTES = 2_000_000  # case BR-06: "configured to emit ~2 MB"


def big(model: str, request: ModelInferRequest) -> ModelInferResponse:
    """Ignores its inputs; OUTPUT FP64 [N/8] of N payload bytes, N from the name (``big-25000000``).

    Values are 0, 1, 2, … so a test can check the payload came back byte for byte.
    """
    match = _BIG_RE.fullmatch(model)
    size = _parse_size(match.group(1)) if match and match.group(1) else BIG_DEFAULT_BYTES
    count = max(1, size // 8)
    response = _response(model, request)
    _add_typed(response, "OUTPUT", "FP64", [count], [float(i) for i in range(count)])
    return response


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------

SLOW_DEFAULT_S = 1.0
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")  # model names become topic names
_BIG_RE = re.compile(r"big(?:-(\d+[kKmM]?))?")
_SLOW_RE = re.compile(r"slow(?:-(\d+))?")


def _parse_size(text: str) -> int:
    """``2000000``, ``2000k`` or ``2m`` bytes (decimal multiples)."""
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    digits = text[:-1] if factor != 1 else text
    return int(digits) * factor


def _registry() -> dict[str, Model]:
    entries: list[tuple[str, InferFn, str]] = [
        ("tfsimple1", tfsimple, "INPUT0, INPUT1 INT32 [-1,16] -> OUTPUT0 = a+b, OUTPUT1 = a-b (raw)"),
        ("tfsimple2", tfsimple, "same as tfsimple1"),
        ("tfsimple3", tfsimple, "same as tfsimple1"),
        ("sumdiff", sumdiff, "tfsimple maths with typed outputs; also any sumdiff* name"),
        ("strict", sumdiff, "sumdiff with Triton's dtype/shape validation (all sumdiff models have it)"),
        ("add10", add10, "INPUT FP32 [n] -> OUTPUT = INPUT + 10"),
        ("mul10", mul10, "INPUT FP32 [n] -> OUTPUT = INPUT * 10"),
        ("conditional", conditional, "CHOICE==0 -> only OUTPUT0 = INPUT0, else only OUTPUT1 = INPUT1"),
        ("route", conditional, "same as conditional"),
        ("id1_node", identity_node, "INPUT1 -> OUTPUT1"),
        ("id2_node", identity_node, "INPUT1 -> OUTPUT1"),
        ("join_node", join_node, "INPUT1, INPUT2 INT64 -> OUTPUT1 = sum"),
        ("echo", echo, "outputs = inputs (names, dtypes, shapes, parameters, typed or raw contents)"),
        ("outlier-error", outlier_error, "INPUT FP32 -> OUTPUT = INPUT; error when a value >= 100"),
        ("check", check, "INPUT INT32 -> OUTPUT = INPUT only when all values are equal"),
        ("fail", fail, "always errors"),
        ("counter", counter, "x -> x+1 plus empty BYTES `continue` (x < 10) or `stop`"),
        ("counter-nostop", counter_nostop, "x -> x+1 plus `continue`, forever"),
        ("strout", strout, 'text BYTES -> embedding BYTES "[[0.1, 0.2]]", content_type str'),
        ("twoenc", twoenc, "user_id BYTES -> score FP32, titles BYTES [2] (raw)"),
        ("strict-bytes", strict_bytes, "user_id BYTES [1], item_title BYTES [2] -> ok BOOL; strict layout"),
        ("big", big, "OUTPUT FP64 of 2 MB; big-N gives N bytes (k/m suffixes)"),
    ]
    models = {name: Model(name, fn, summary) for name, fn, summary in entries}
    models["slow"] = Model("slow", echo, "echo after 1 s; slow-MS waits MS milliseconds", SLOW_DEFAULT_S)
    return models


MODELS: dict[str, Model] = _registry()
"""Stand-ins by name. :func:`get_model` also resolves parametrised and aliased names."""


def model_names() -> list[str]:
    """Names accepted by :func:`get_model` besides the parametrised patterns, sorted."""
    return sorted(MODELS)


def get_model(name: str) -> Model:
    """The stand-in for ``name``.

    Besides the names in :data:`MODELS` this accepts ``sumdiff<anything>`` (e.g. ``sumdiff-a``),
    ``big-<bytes>[k|m]``, ``slow-<ms>``, and ``ALIAS=KIND`` to serve model KIND under the name ALIAS
    (``loop=echo``: a pipeline step ``loop`` that behaves like ``echo``). The returned model's ``name``
    is the served name, which is what ends up in topics, ``model_name`` and error texts.
    """
    served, _, kind = name.partition("=")
    kind = kind or served
    if not _NAME_RE.match(served):
        raise UnknownModelError(f"model name {served!r} is not a valid topic segment ([A-Za-z0-9._-]+)")
    base = _resolve_kind(kind)
    if base is None:
        raise UnknownModelError(
            f"unknown model {kind!r}; known: {', '.join(model_names())}, sumdiff*, big-N, slow-MS, ALIAS=KIND"
        )
    if base.fn is big:
        # big reads its size from the name, so bind the kind (big-N) and keep the served name for output.
        size_name = kind

        def _big(model: str, request: ModelInferRequest) -> ModelInferResponse:
            response = big(size_name, request)
            response.model_name = model
            return response

        return Model(served, _big, base.summary, base.delay_s)
    return Model(served, base.fn, base.summary, base.delay_s)


def _resolve_kind(kind: str) -> Model | None:
    if kind in MODELS:
        return MODELS[kind]
    if kind.startswith("sumdiff"):
        return MODELS["sumdiff"]
    if _BIG_RE.fullmatch(kind):
        return MODELS["big"]
    slow = _SLOW_RE.fullmatch(kind)
    if slow and slow.group(1):
        return Model(kind, echo, MODELS["slow"].summary, int(slow.group(1)) / 1000.0)
    return None
