"""Unit tests of topic names, keys, partitions and header rules (spec §1, §2.2)."""

from __future__ import annotations

import pytest

from dataflow.errors import ConfigError
from dataflow.topics import (
    DROPPED_HEADERS,
    ERROR_HEADER,
    PIPELINE_HEADER,
    REQUEST_ID_HEADER,
    VERSION_HEADER,
    ChainKind,
    PayloadKind,
    TopicNamer,
    chain_kind,
    has_pipeline,
    header_values,
    make_key,
    partition_for_key,
    payload_kind,
    rewrite_headers,
)

# ------------------------------------------------------------------------------------------- names


def test_header_names_are_seldons() -> None:
    assert PIPELINE_HEADER == "pipeline"
    assert VERSION_HEADER == "x-pipeline-version"
    assert REQUEST_ID_HEADER == "x-request-id"
    assert ERROR_HEADER == "seldon-pipeline-errors"
    assert {"x-seldon-alibi-type", "x-seldon-alibi-method"} == DROPPED_HEADERS


def test_topic_namer_names_of_spec_table() -> None:
    namer = TopicNamer(prefix="seldon", namespace="seldon-mesh")
    assert namer.base == "seldon.seldon-mesh"
    assert namer.model_inputs("tfsimple1") == "seldon.seldon-mesh.model.tfsimple1.inputs"
    assert namer.model_outputs("tfsimple1") == "seldon.seldon-mesh.model.tfsimple1.outputs"
    assert namer.pipeline_inputs("tfsimples") == "seldon.seldon-mesh.pipeline.tfsimples.inputs"
    assert namer.pipeline_outputs("tfsimples") == "seldon.seldon-mesh.pipeline.tfsimples.outputs"
    assert namer.errors == "seldon.seldon-mesh.errors.errors"
    assert namer.model_topic("m", "inputs") == namer.model_inputs("m")
    assert namer.model_topic("m", "outputs") == namer.model_outputs("m")
    assert namer.pipeline_topic("p", "inputs") == namer.pipeline_inputs("p")
    assert namer.pipeline_topic("p", "outputs") == namer.pipeline_outputs("p")
    assert namer.dead_letter() == "seldon.seldon-mesh.dataflow.dead-letter"


def test_topic_namer_defaults() -> None:
    assert TopicNamer().base == "seldon.default"
    assert TopicNamer(namespace="").base == "seldon.default"
    assert TopicNamer(prefix="x", namespace="").errors == "x.default.errors.errors"


@pytest.mark.parametrize("prefix", ["seldon", "my_prefix-1", "a.b", "seldon."])
def test_topic_prefix_accepted(prefix: str) -> None:
    namer = TopicNamer(prefix=prefix, namespace="ns")
    assert namer.model_inputs("m") == f"{prefix}.ns.model.m.inputs"


def test_prefix_ending_in_a_dot_yields_two_dots() -> None:
    assert TopicNamer(prefix="seldon.", namespace="ns").errors == "seldon..ns.errors.errors"


@pytest.mark.parametrize("prefix", ["", "has space", "a/b", "a:b", "ünï", "tab\t"])
def test_topic_prefix_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="topic prefix"):
        TopicNamer(prefix=prefix)


def test_topic_namer_is_frozen() -> None:
    namer = TopicNamer()
    with pytest.raises(AttributeError):
        namer.prefix = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------------------ payload kinds


@pytest.mark.parametrize(
    ("topic", "kind"),
    [
        ("seldon.ns.model.m.inputs", PayloadKind.REQUEST),
        ("seldon.ns.pipeline.p.inputs", PayloadKind.REQUEST),
        ("seldon.ns.model.m.outputs", PayloadKind.RESPONSE),
        ("seldon.ns.pipeline.p.outputs", PayloadKind.RESPONSE),
        ("seldon.ns.errors.errors", PayloadKind.OPAQUE),
        ("seldon.ns.dataflow.dead-letter", PayloadKind.OPAQUE),
        ("inputs", PayloadKind.REQUEST),
        ("seldon.ns.model.inputs.other", PayloadKind.OPAQUE),  # only the last segment counts
        ("seldon.ns.model.m.Inputs", PayloadKind.OPAQUE),
    ],
)
def test_payload_kind_from_last_segment(topic: str, kind: PayloadKind) -> None:
    assert payload_kind(topic) is kind


@pytest.mark.parametrize(
    ("source", "sink", "kind"),
    [
        ("x.model.a.inputs", "x.model.b.inputs", ChainKind.INPUT_INPUT),
        ("x.model.a.outputs", "x.model.b.inputs", ChainKind.OUTPUT_INPUT),
        ("x.model.a.outputs", "x.pipeline.p.outputs", ChainKind.OUTPUT_OUTPUT),
        ("x.model.a.inputs", "x.pipeline.p.outputs", ChainKind.INPUT_OUTPUT),
        ("x.pipeline.p.inputs", "x.model.a.inputs", ChainKind.INPUT_INPUT),
        ("x.pipeline.q.outputs", "x.pipeline.p.inputs", ChainKind.OUTPUT_INPUT),
        ("x.errors.errors", "x.pipeline.p.outputs", ChainKind.PASSTHROUGH),
        ("x.errors.errors", "x.model.a.inputs", ChainKind.PASSTHROUGH),
        ("x.model.a.outputs", "x.errors.errors", ChainKind.PASSTHROUGH),
        ("x.errors.errors", "x.errors.errors", ChainKind.PASSTHROUGH),
    ],
)
def test_chain_kind_table(source: str, sink: str, kind: ChainKind) -> None:
    assert chain_kind(source, sink) is kind


# ------------------------------------------------------------------------------- keys and partitions


def test_make_key_is_the_gateways_composite_key() -> None:
    assert make_key(3, "tfsimples", "abc") == "3.tfsimples.abc"
    generated = make_key(0, "p")
    head, resource, request_id = generated.split(".")
    assert (head, resource) == ("0", "p")
    assert len(request_id) == 32
    assert make_key(0, "p") != generated


@pytest.mark.parametrize(
    ("key", "partitions", "expected"),
    [
        ("3.p.id", 4, 3),
        ("0.p.id", 4, 0),
        ("3.p.id", 8, 3),
        ("9.p.id", 4, 3),  # clamped to the last partition
        ("-1.p.id", 4, 0),  # clamped to the first
        ("+2.p.id", 4, 2),
        ("007.p.id", 16, 7),
        ("2", 4, 2),  # no dot: the whole key is the prefix
        ("2.", 4, 2),
        ("abc.p.id", 4, 0),  # not an integer
        ("request-id", 4, 0),
        ("1.5.p", 4, 1),  # only the part before the first dot counts
        (".p.id", 4, 0),
        ("", 4, 0),
        ("0x2.p", 4, 0),
        ("1_0.p", 16, 0),  # Python's int() reads this as 10; it is not an integer key prefix
        (" 3.p", 4, 0),
        ("3 .p", 4, 0),
        ("+.p", 4, 0),
        ("2.p.id", 1, 0),  # one partition: always 0
        ("2.p.id", 0, 0),
    ],
)
def test_partition_for_key(key: str, partitions: int, expected: int) -> None:
    assert partition_for_key(key, partitions) == expected


@pytest.mark.parametrize(
    ("key", "expected"), [(b"3.p.id", 3), (b"\xff\xfe.p", 0), (b"", 0), (None, 0), ("3.p.id", 3)]
)
def test_partition_for_key_bytes_str_none(key: bytes | str | None, expected: int) -> None:
    assert partition_for_key(key, 8) == expected


def test_partition_for_key_round_trips_make_key() -> None:
    for partition in range(6):
        assert partition_for_key(make_key(partition, "p").encode(), 6) == partition


# ------------------------------------------------------------------------------------------ headers


def test_has_pipeline() -> None:
    headers = [("x-request-id", b"r"), (PIPELINE_HEADER, b"other"), (PIPELINE_HEADER, b"p")]
    assert has_pipeline(headers, "p")
    assert has_pipeline(headers, "other")
    assert not has_pipeline(headers, "q")
    assert not has_pipeline([("x-request-id", b"p")], "p")  # another header with the value
    assert not has_pipeline([(PIPELINE_HEADER, b"p2")], "p")  # exact match, not prefix
    assert not has_pipeline([(PIPELINE_HEADER, b"")], "p")
    assert not has_pipeline([("Pipeline", b"p")], "p")  # header names are case-sensitive in Kafka
    assert not has_pipeline([], "p")
    assert not has_pipeline(None, "p")


def test_has_pipeline_non_ascii_name() -> None:
    assert has_pipeline([(PIPELINE_HEADER, "pïpe".encode())], "pïpe")


def test_header_values() -> None:
    headers = [("a", b"1"), ("b", b"2"), ("a", b"3")]
    assert header_values(headers, "a") == [b"1", b"3"]
    assert header_values(headers, "c") == []
    assert header_values(None, "a") == []


def test_rewrite_headers() -> None:
    incoming = [
        ("x-request-id", b"req-1"),
        (PIPELINE_HEADER, b"upstream"),
        ("x-seldon-alibi-type", b"explanation"),
        ("traceparent", b"00-abc-def-01"),
        (VERSION_HEADER, b"7"),
        ("x-custom", b"one"),
        (PIPELINE_HEADER, b"p"),
        ("x-seldon-alibi-method", b"anchors"),
        ("x-custom", b"two"),
        (ERROR_HEADER, b"model-x"),
    ]
    assert rewrite_headers(incoming, "p", 3) == [
        ("x-request-id", b"req-1"),
        ("traceparent", b"00-abc-def-01"),
        ("x-custom", b"one"),
        ("x-custom", b"two"),
        (ERROR_HEADER, b"model-x"),
        (PIPELINE_HEADER, b"p"),
        (VERSION_HEADER, b"3"),
    ]


def test_rewrite_headers_does_not_modify_its_argument() -> None:
    incoming = [(PIPELINE_HEADER, b"old"), ("x-a", b"1")]
    before = list(incoming)
    out = rewrite_headers(incoming, "p", "12")
    assert incoming == before
    assert out == [("x-a", b"1"), (PIPELINE_HEADER, b"p"), (VERSION_HEADER, b"12")]


@pytest.mark.parametrize("headers", [None, []])
def test_rewrite_headers_of_nothing(headers: list[tuple[str, bytes]] | None) -> None:
    assert rewrite_headers(headers, "p", 1) == [(PIPELINE_HEADER, b"p"), (VERSION_HEADER, b"1")]


def test_rewritten_headers_pass_the_next_filter() -> None:
    out = rewrite_headers([(PIPELINE_HEADER, b"q")], "p", 1)
    assert has_pipeline(out, "p")
    assert not has_pipeline(out, "q")
