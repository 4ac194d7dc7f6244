"""Topic names, message keys, partitions and header rules of Seldon Core 2's data plane.

All names are derived here and nowhere else, so that a pipeline's topics are the same whichever
component (compiler, worker, stand-in models, client) asks for them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from dataflow.errors import ConfigError

# Header names, exactly as Seldon's gateways and engine spell them.
PIPELINE_HEADER = "pipeline"
VERSION_HEADER = "x-pipeline-version"
REQUEST_ID_HEADER = "x-request-id"
ERROR_HEADER = "seldon-pipeline-errors"
# MLServer alibi runtimes add these; they must not leak into later steps.
DROPPED_HEADERS = frozenset({"x-seldon-alibi-type", "x-seldon-alibi-method"})

Headers = list[tuple[str, bytes]]

_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True, slots=True)
class TopicNamer:
    """Builds the fully qualified topic names of one Seldon namespace (``<prefix>.<ns>.…``)."""

    prefix: str = "seldon"
    namespace: str = "default"

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(f"topic prefix {self.prefix!r} must match {_PREFIX_RE.pattern}")
        if not self.namespace:
            object.__setattr__(self, "namespace", "default")

    @property
    def base(self) -> str:
        return f"{self.prefix}.{self.namespace}"

    def model_inputs(self, model: str) -> str:
        return f"{self.base}.model.{model}.inputs"

    def model_outputs(self, model: str) -> str:
        return f"{self.base}.model.{model}.outputs"

    def model_topic(self, model: str, io: str) -> str:
        return f"{self.base}.model.{model}.{io}"

    def pipeline_inputs(self, pipeline: str) -> str:
        return f"{self.base}.pipeline.{pipeline}.inputs"

    def pipeline_outputs(self, pipeline: str) -> str:
        return f"{self.base}.pipeline.{pipeline}.outputs"

    def pipeline_topic(self, pipeline: str, io: str) -> str:
        return f"{self.base}.pipeline.{pipeline}.{io}"

    @property
    def errors(self) -> str:
        """The namespace's shared errors topic, where the model gateway writes failures."""
        return f"{self.base}.errors.errors"

    def dead_letter(self) -> str:
        """Where the engine puts records it cannot process, with the reason in headers."""
        return f"{self.base}.dataflow.dead-letter"


class PayloadKind(Enum):
    """What a topic carries, decided purely by its last dot-segment (as the reference does)."""

    REQUEST = "inputs"
    RESPONSE = "outputs"
    OPAQUE = "other"


def payload_kind(topic: str) -> PayloadKind:
    suffix = topic.rsplit(".", 1)[-1]
    if suffix == "inputs":
        return PayloadKind.REQUEST
    if suffix == "outputs":
        return PayloadKind.RESPONSE
    return PayloadKind.OPAQUE


class ChainKind(Enum):
    """How a record is converted on its way from a source topic to a sink topic (spec §2.2)."""

    INPUT_INPUT = "INPUT_INPUT"
    OUTPUT_INPUT = "OUTPUT_INPUT"
    OUTPUT_OUTPUT = "OUTPUT_OUTPUT"
    INPUT_OUTPUT = "INPUT_OUTPUT"
    PASSTHROUGH = "PASSTHROUGH"


_CHAIN_KINDS = {
    (PayloadKind.REQUEST, PayloadKind.REQUEST): ChainKind.INPUT_INPUT,
    (PayloadKind.RESPONSE, PayloadKind.REQUEST): ChainKind.OUTPUT_INPUT,
    (PayloadKind.RESPONSE, PayloadKind.RESPONSE): ChainKind.OUTPUT_OUTPUT,
    (PayloadKind.REQUEST, PayloadKind.RESPONSE): ChainKind.INPUT_OUTPUT,
}


def chain_kind(source_topic: str, sink_topic: str) -> ChainKind:
    pair = (payload_kind(source_topic), payload_kind(sink_topic))
    return _CHAIN_KINDS.get(pair, ChainKind.PASSTHROUGH)


def make_key(partition: int, resource: str, request_id: str | None = None) -> str:
    """A key as the pipeline gateway builds it: ``<partition>.<pipeline>.<request id>``."""
    return f"{partition}.{resource}.{request_id or uuid.uuid4().hex}"


def partition_for_key(key: bytes | str | None, num_partitions: int) -> int:
    """Output partition = the integer before the key's first dot, clamped; 0 when there is none.

    This returns an answer to the partition the waiting gateway consumes, which Kafka's hash
    partitioner would not do.
    """
    if num_partitions <= 1 or not key:
        return 0
    raw = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    head = raw.split(".", 1)[0]
    # Python's int() also takes " 3", "3 " and "1_0"; the reference's integer parse does not.
    digits = head[1:] if head[:1] in ("+", "-") else head
    # beyond a 32-bit int the reference's parse fails too; it also keeps int() off 5000-digit keys
    if not digits.isdecimal() or len(digits) > 10:
        return 0
    value = int(head)
    return min(max(value, 0), num_partitions - 1)


def header_values(headers: Iterable[tuple[str, bytes]] | None, name: str) -> list[bytes]:
    return [v for k, v in headers or () if k == name]


def has_pipeline(headers: Iterable[tuple[str, bytes]] | None, pipeline: str) -> bool:
    """The reference's pipeline filter: some ``pipeline`` header value equals the expected name."""
    wanted = pipeline.encode()
    return any(v == wanted for v in header_values(headers, PIPELINE_HEADER))


def rewrite_headers(
    headers: Sequence[tuple[str, bytes]] | None, pipeline: str, version: int | str
) -> Headers:
    """Headers of an emitted record: all incoming ones except the alibi pair and the old pipeline tags,
    then ``pipeline`` and ``x-pipeline-version`` for the emitting pipeline."""
    out = [
        (k, v)
        for k, v in headers or ()
        if k not in DROPPED_HEADERS and k != PIPELINE_HEADER and k != VERSION_HEADER
    ]
    out.append((PIPELINE_HEADER, pipeline.encode()))
    out.append((VERSION_HEADER, str(version).encode()))
    return out
