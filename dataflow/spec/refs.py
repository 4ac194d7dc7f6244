"""Tensor and topic references of a Pipeline (``tfsimple1.outputs.OUTPUT0``, ``other.step.s.outputs``).

Parsing lives here, once, so validation and compilation agree on what a reference means (spec §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

IO_NAMES = ("inputs", "outputs")


class RefError(ValueError):
    """A reference that does not follow the grammar; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference.

    ``owner`` is a step (model) name when ``is_pipeline`` is false, else a pipeline name. ``source_pipeline``
    is the pipeline whose ``pipeline`` header the records carry (the upstream one for external inputs).
    """

    owner: str
    io: str
    tensor: str | None
    is_pipeline: bool
    source_pipeline: str


def _io_and_tensor(parts: list[str], text: str) -> tuple[str, str | None]:
    io = parts[0]
    if io not in IO_NAMES:
        raise RefError(f"{text!r}: expected 'inputs' or 'outputs' after {text.split('.')[0]!r}, got {io!r}")
    tensor = ".".join(parts[1:]) or None
    if len(parts) > 1 and not all(parts[1:]):
        raise RefError(f"{text!r}: empty tensor name")
    return io, tensor


def _check_segments(text: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise RefError("empty reference")
    parts = text.split(".")
    if any(not p for p in parts):
        raise RefError(f"{text!r}: empty segment")
    return parts


def parse_step_ref(text: str, pipeline: str) -> Ref:
    """A step input, trigger or output reference inside pipeline ``pipeline``.

    ``<step>`` means ``<step>.outputs``; ``<pipeline>`` means ``<pipeline>.inputs``; otherwise
    ``<step|pipeline>.(inputs|outputs)[.<tensor>]``.
    """
    parts = _check_segments(text)
    owner = parts[0]
    is_pipeline = owner == pipeline
    if len(parts) > 3:
        # the scheduler accepts 1 to 3 segments only (spec §3.2); a 4th would silently join the tensor name
        raise RefError(f"{text!r}: at most 3 segments (<step|pipeline>.<inputs|outputs>.<tensor>)")
    if len(parts) == 1:
        io, tensor = ("inputs" if is_pipeline else "outputs"), None
    else:
        io, tensor = _io_and_tensor(parts[1:], text)
    return Ref(owner=owner, io=io, tensor=tensor, is_pipeline=is_pipeline, source_pipeline=pipeline)


def parse_external_ref(text: str) -> Ref:
    """An ``input.externalInputs`` / ``externalTriggers`` reference to another pipeline.

    ``<Q>`` means ``<Q>.outputs``; ``<Q>.(inputs|outputs)[.<tensor>]`` is Q's pipeline topic;
    ``<Q>.step.<s>[.(inputs|outputs)[.<tensor>]]`` is the model topic of step ``s`` as run by Q.
    """
    parts = _check_segments(text)
    upstream = parts[0]
    if len(parts) == 1:
        return Ref(upstream, "outputs", None, True, upstream)
    if parts[1] == "step":
        if len(parts) < 3:
            raise RefError(f"{text!r}: 'step' must be followed by a step name")
        if len(parts) > 5:
            raise RefError(f"{text!r}: at most 5 segments (<pipeline>.step.<step>.<inputs|outputs>.<tensor>)")
        step = parts[2]
        if len(parts) == 3:
            return Ref(step, "outputs", None, False, upstream)
        io, tensor = _io_and_tensor(parts[3:], text)
        return Ref(step, io, tensor, False, upstream)
    if len(parts) > 3:
        raise RefError(f"{text!r}: at most 3 segments (<pipeline>.<inputs|outputs>.<tensor>)")
    io, tensor = _io_and_tensor(parts[1:], text)
    return Ref(upstream, io, tensor, True, upstream)
