"""Cases from public bug reports against the reference engine (see the project's issue notes):
mixed encodings in a join (BR-04), model errors reaching the caller (BR-08), headers (BR-19)."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import client
from dataflow.config import Settings
from dataflow.tensors import request_from_json
from dataflow.testing.kafka import read_all

pytestmark = pytest.mark.integration


def body(*inputs: dict[str, Any]) -> Any:
    return request_from_json({"inputs": list(inputs)})


def ints(name: str, values: list[int], datatype: str = "INT32") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [1, len(values)], "data": values}


MIXED = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: mixed-enc}
spec:
  steps:
    - name: twoenc
    - name: strict-bytes
      inputs: [twoenc.inputs.user_id, twoenc.outputs.titles]
      tensorMap: {twoenc.outputs.titles: item_title}
  output:
    steps: [strict-bytes]
"""


async def test_join_of_typed_and_raw_tensors_is_uniformly_encoded(
    write_pipeline, workers, models, settings: Settings
) -> None:
    """BR-04: typed user_id (the step's input) joined with raw titles (its output) reaches a strict model
    as one encoding, one raw buffer per input in input order."""
    workers(write_pipeline(MIXED))
    async with models("twoenc", "strict-bytes") as gw:
        result = await client.infer(
            settings,
            "mixed-enc",
            body({"name": "user_id", "datatype": "BYTES", "shape": [1], "data": ["42"]}),
            timeout=30,
        )
        [call] = gw.history["strict-bytes"]
    assert [(o["name"], o["data"]) for o in result.to_json()["outputs"]] == [("ok", [True])]
    request = call.request
    assert [t.name for t in request.inputs] == ["user_id", "item_title"]
    assert len(request.raw_input_contents) == 2
    assert not any(t.HasField("contents") for t in request.inputs)


STRICT_CHAIN = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: strict-chain}
spec:
  steps:
    - name: strict
    - name: sumdiff
      inputs: [strict]
      tensorMap:
        strict.outputs.OUTPUT0: INPUT0
        strict.outputs.OUTPUT1: INPUT1
  output:
    steps: [sumdiff]
"""


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ((ints("INPUT0", list(range(16)), "INT64"), ints("INPUT1", list(range(16)))), "INT64"),
        ((ints("INPUT0", list(range(15))), ints("INPUT1", list(range(16)))), "[1,15]"),
    ],
)
async def test_model_error_reaches_the_caller_with_step_and_text(
    write_pipeline, workers, models, settings: Settings, inputs: tuple[dict[str, Any], ...], needle: str
) -> None:
    """BR-08: the caller gets the failing step's name and the model's own message, promptly."""
    workers(write_pipeline(STRICT_CHAIN))
    async with models("strict", "sumdiff"):
        with pytest.raises(client.PipelineError) as info:
            await client.infer(settings, "strict-chain", body(*inputs), timeout=20)
        ok = await client.infer(
            settings,
            "strict-chain",
            body(ints("INPUT0", list(range(1, 17))), ints("INPUT1", list(range(1, 17)))),
            timeout=20,
        )
    message = str(info.value)
    assert message.startswith("strict : ") and needle in message.replace(" ", ""), message
    evens = [2 * i for i in range(1, 17)]
    assert [(o["name"], o["data"]) for o in ok.to_json()["outputs"]] == [
        ("OUTPUT0", evens),
        ("OUTPUT1", evens),
    ]


ABC = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: abc}
spec:
  steps:
    - name: add10
    - name: mul10
      inputs: [add10]
    - name: echo
      inputs: [mul10]
  output:
    steps: [echo]
"""


async def test_headers_are_kept_and_pipeline_tags_replaced(
    write_pipeline, workers, models, settings: Settings
) -> None:
    """BR-19: the request id stays the key's and the header's on every topic; `pipeline` and
    `x-pipeline-version` are replaced, never duplicated; stale values from upstream do not survive."""
    workers(write_pipeline(ABC))
    request = body({"name": "INPUT", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]})
    async with models("add10", "mul10", "echo"):
        result = await client.infer(
            settings, "abc", request, timeout=20,
            headers=[("x-request-id", "req-abc"), ("x-pipeline-version", "99"), ("x-seldon-alibi-type", "explainer")],
        )  # fmt: skip
    assert [(o["name"], o["data"]) for o in result.to_json()["outputs"]] == [("OUTPUT", [110, 120, 130, 140])]
    namer = settings.namer
    for topic in (
        namer.model_inputs("add10"),
        namer.model_inputs("mul10"),
        namer.model_inputs("echo"),
        namer.pipeline_outputs("abc"),
    ):
        [record] = await read_all(settings, topic, count=1, timeout=5)
        assert record.key == result.key.encode()
        names = [k for k, _ in record.headers]
        assert [v for k, v in record.headers if k == "x-request-id"] == [b"req-abc"], topic
        assert [v for k, v in record.headers if k == "pipeline"] == [b"abc"], topic
        assert [v for k, v in record.headers if k == "x-pipeline-version"] == [b"1"], topic
        assert "x-seldon-alibi-type" not in names, topic
