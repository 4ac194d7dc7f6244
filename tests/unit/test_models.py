"""Stand-in models: maths, encodings and error texts, without Kafka.

Integration tests rely on these answers and texts being exact, so each model is pinned here.
"""

from __future__ import annotations

from typing import Any

import pytest

from dataflow.errors import ConfigError
from dataflow.proto.v2_dataplane_pb2 import ModelInferRequest, ModelInferResponse
from dataflow.tensors import encode_raw, request_from_json, tensor_values
from dataflow.testing.models import MODELS, ModelError, UnknownModelError, get_model

ONE_TO_16 = list(range(1, 17))
INVALID = "rpc error: code = InvalidArgument desc = "


def tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def req(*inputs: dict[str, Any], id: str = "req-1", **extra: Any) -> ModelInferRequest:
    if not inputs:  # the JSON reader rightly refuses an empty request; models must cope with one
        return ModelInferRequest(id=id)
    return request_from_json({"id": id, "inputs": list(inputs), **extra})


def raw_req(*inputs: dict[str, Any], id: str = "req-1") -> ModelInferRequest:
    """The same request with every tensor in raw_input_contents, as a joining engine may send it."""
    typed = req(*inputs, id=id)
    out = ModelInferRequest(id=id)
    for i, t in enumerate(typed.inputs):
        out.inputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        out.raw_input_contents.append(encode_raw(t.datatype, tensor_values(typed, i)))
    return out


def outputs(response: ModelInferResponse) -> dict[str, tuple[str, list[int], list[Any]]]:
    """name -> (datatype, shape, values), decoded from typed or raw contents."""
    return {
        t.name: (t.datatype, list(t.shape), tensor_values(response, i))
        for i, t in enumerate(response.outputs)
    }


def simple_pair(a: list[int] | None = None, b: list[int] | None = None) -> ModelInferRequest:
    return req(
        tensor("INPUT0", "INT32", [1, 16], a or ONE_TO_16),
        tensor("INPUT1", "INT32", [1, 16], b or ONE_TO_16),
    )


def run(name: str, request: ModelInferRequest) -> ModelInferResponse:
    return get_model(name)(request)


def error_of(name: str, request: ModelInferRequest) -> str:
    with pytest.raises(ModelError) as info:
        run(name, request)
    return str(info.value)


# --- tfsimple / sumdiff -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tfsimple1", "tfsimple2", "tfsimple3"])
def test_tfsimple_answers_in_raw_like_triton(name: str) -> None:
    response = run(name, simple_pair())
    assert response.model_name == name
    assert response.id == "req-1"
    assert len(response.raw_output_contents) == 2
    assert all(not t.HasField("contents") for t in response.outputs)
    assert outputs(response) == {
        "OUTPUT0": ("INT32", [1, 16], [2 * i for i in ONE_TO_16]),
        "OUTPUT1": ("INT32", [1, 16], [0] * 16),
    }


@pytest.mark.parametrize("name", ["sumdiff", "sumdiff-a", "sumdiff2", "strict"])
def test_sumdiff_family_answers_typed(name: str) -> None:
    response = run(name, simple_pair(b=[1] * 16))
    assert response.model_name == name
    assert not response.raw_output_contents
    assert outputs(response) == {
        "OUTPUT0": ("INT32", [1, 16], [i + 1 for i in ONE_TO_16]),
        "OUTPUT1": ("INT32", [1, 16], [i - 1 for i in ONE_TO_16]),
    }


def test_tfsimple_reads_raw_inputs() -> None:
    request = raw_req(
        tensor("INPUT0", "INT32", [1, 16], ONE_TO_16), tensor("INPUT1", "INT32", [1, 16], [2] * 16)
    )
    assert outputs(run("tfsimple2", request))["OUTPUT1"][2] == [i - 2 for i in ONE_TO_16]


def test_tfsimple_accepts_a_batch_dimension() -> None:
    data = ONE_TO_16 * 2
    request = req(tensor("INPUT0", "INT32", [2, 16], data), tensor("INPUT1", "INT32", [2, 16], data))
    assert outputs(run("tfsimple1", request))["OUTPUT0"][1] == [2, 16]


def test_int32_arithmetic_wraps() -> None:
    big = 2**31 - 1
    response = run("tfsimple1", simple_pair(a=[big] * 16, b=[1] * 16))
    assert outputs(response)["OUTPUT0"][2] == [-(2**31)] * 16


def test_wrong_shape_gives_tritons_text() -> None:
    request = req(
        tensor("INPUT0", "INT32", [1, 20], list(range(20))), tensor("INPUT1", "INT32", [1, 16], ONE_TO_16)
    )
    assert error_of("tfsimple1", request) == (
        f"{INVALID}unexpected shape for input 'INPUT0' for model 'tfsimple1'. Expected [-1,16], got [1,20]"
    )


def test_wrong_datatype_is_named() -> None:
    request = req(
        tensor("INPUT0", "INT64", [1, 16], ONE_TO_16), tensor("INPUT1", "INT32", [1, 16], ONE_TO_16)
    )
    assert error_of("strict", request) == (
        f"{INVALID}inference input 'INPUT0' data-type is 'INT64', but model 'strict' expects 'INT32'"
    )


def test_missing_input_is_named() -> None:
    text = error_of("tfsimple1", req(tensor("INPUT0", "INT32", [1, 16], ONE_TO_16)))
    assert text.startswith(f"{INVALID}expected 2 inputs but got 1 inputs for model 'tfsimple1'")
    assert "missing required input(s) ['INPUT1']" in text


def test_unexpected_input_is_rejected() -> None:
    request = simple_pair()
    request.inputs.add(name="EXTRA", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    assert (
        error_of("tfsimple1", request) == f"{INVALID}unexpected inference input 'EXTRA' for model 'tfsimple1'"
    )


def test_element_count_must_match_shape() -> None:
    request = simple_pair()
    del request.inputs[0].contents.int_contents[15]  # the JSON reader would refuse this; Kafka won't
    assert "unexpected number of elements 15 for input 'INPUT0'" in error_of("tfsimple1", request)


def test_mixed_typed_and_raw_is_rejected() -> None:
    request = raw_req(
        tensor("INPUT0", "INT32", [1, 16], ONE_TO_16), tensor("INPUT1", "INT32", [1, 16], ONE_TO_16)
    )
    request.inputs[1].contents.int_contents.extend(ONE_TO_16)
    assert "contents field must not be specified when using raw_input_contents for 'INPUT1'" in error_of(
        "tfsimple1", request
    )


def test_raw_buffers_must_be_one_per_input() -> None:
    request = raw_req(
        tensor("INPUT0", "INT32", [1, 16], ONE_TO_16), tensor("INPUT1", "INT32", [1, 16], ONE_TO_16)
    )
    del request.raw_input_contents[1]
    assert "expected 2 raw_input_contents (one per input) but got 1" in error_of("tfsimple1", request)


# --- add10 / mul10 -------------------------------------------------------------------------------------


def test_add10_and_mul10() -> None:
    request = req(tensor("INPUT", "FP32", [4], [1, 2, 3, 4]))
    assert outputs(run("add10", request)) == {"OUTPUT": ("FP32", [4], [11, 12, 13, 14])}
    assert outputs(run("mul10", request)) == {"OUTPUT": ("FP32", [4], [10, 20, 30, 40])}


def test_a_lone_input_of_another_name_is_accepted() -> None:
    # add10 -> mul10 without tensorMap hands mul10 a tensor called OUTPUT (cases BR-11, BR-15).
    assert outputs(run("mul10", req(tensor("OUTPUT", "FP32", [4], [11, 12, 13, 14]))))["OUTPUT"][2] == [
        110,
        120,
        130,
        140,
    ]


def test_add10_rejects_extra_inputs_and_other_types() -> None:
    extra = req(tensor("INPUT", "FP32", [1], [1]), tensor("ok1", "FP32", [1], [1]))
    assert error_of("add10", extra) == f"{INVALID}unexpected inference input 'ok1' for model 'add10'"
    ints = req(tensor("INPUT", "INT32", [1], [1]))
    assert "data-type is 'INT32', but model 'mul10' expects 'FP32'" in error_of("mul10", ints)
    assert "missing required input(s) ['INPUT']" in error_of("add10", req())


# --- conditional / route ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["conditional", "route"])
def test_conditional_emits_only_the_chosen_branch(name: str) -> None:
    def request(choice: int) -> ModelInferRequest:
        return req(
            tensor("CHOICE", "INT32", [1], [choice]),
            tensor("INPUT0", "FP32", [4], [1, 2, 3, 4]),
            tensor("INPUT1", "FP32", [4], [5, 6, 7, 8]),
        )

    assert outputs(run(name, request(0))) == {"OUTPUT0": ("FP32", [4], [1, 2, 3, 4])}
    assert outputs(run(name, request(1))) == {"OUTPUT1": ("FP32", [4], [5, 6, 7, 8])}
    assert outputs(run(name, request(7))) == {"OUTPUT1": ("FP32", [4], [5, 6, 7, 8])}


def test_conditional_needs_all_inputs() -> None:
    request = req(tensor("CHOICE", "INT32", [1], [0]), tensor("INPUT0", "FP32", [4], [1, 2, 3, 4]))
    assert "missing required input(s) ['INPUT1']" in error_of("conditional", request)


# --- id nodes, join_node --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["id1_node", "id2_node"])
def test_identity_nodes(name: str) -> None:
    assert outputs(run(name, req(tensor("INPUT1", "BOOL", [1], [True])))) == {
        "OUTPUT1": ("BOOL", [1], [True])
    }


def test_join_node_sums_int64() -> None:
    request = req(tensor("INPUT1", "INT64", [1], [1]), tensor("INPUT2", "INT64", [1], [1]))
    assert outputs(run("join_node", request)) == {"OUTPUT1": ("INT64", [1], [2])}
    wrong = req(tensor("INPUT1", "INT32", [1], [1]), tensor("INPUT2", "INT64", [1], [1]))
    assert "expects 'INT64'" in error_of("join_node", wrong)


# --- echo, slow ----------------------------------------------------------------------------------------


def test_echo_copies_everything_typed() -> None:
    request = request_from_json(
        {
            "id": "e1",
            "parameters": {"content_type": "np"},
            "inputs": [
                {**tensor("X", "FP32", [2], [1.5, 2.5]), "parameters": {"p": "q"}},
                tensor("S", "BYTES", [2], ["a", "b"]),
            ],
        }
    )
    response = run("echo", request)
    assert response.model_name == "echo"
    assert response.id == "e1"
    assert response.parameters["content_type"].string_param == "np"
    assert outputs(response) == {"X": ("FP32", [2], [1.5, 2.5]), "S": ("BYTES", [2], [b"a", b"b"])}
    assert response.outputs[0].parameters["p"].string_param == "q"
    assert not response.raw_output_contents


def test_echo_keeps_raw_contents_raw_and_in_order() -> None:
    request = raw_req(tensor("A", "INT32", [2], [1, 2]), tensor("B", "FP64", [1], [0.5]))
    response = run("echo", request)
    assert list(response.raw_output_contents) == list(request.raw_input_contents)
    assert outputs(response) == {"A": ("INT32", [2], [1, 2]), "B": ("FP64", [1], [0.5])}


def test_slow_is_an_echo_with_a_delay() -> None:
    assert get_model("slow-250").delay_s == pytest.approx(0.25)
    assert get_model("slow").delay_s == pytest.approx(1.0)
    assert get_model("echo").delay_s == 0
    assert outputs(run("slow-250", req(tensor("x", "INT32", [1], [3])))) == {"x": ("INT32", [1], [3])}


# --- outlier-error, check, fail --------------------------------------------------------------------------


def test_outlier_error_passes_small_values() -> None:
    request = req(tensor("INPUT", "FP32", [4], [1, 2, 3, 4]))
    assert outputs(run("outlier-error", request)) == {"OUTPUT": ("FP32", [4], [1, 2, 3, 4])}


def test_outlier_error_fails_at_100() -> None:
    text = error_of("outlier-error", req(tensor("INPUT", "FP32", [4], [100, 2, 3, 4])))
    assert text == (
        f"{INVALID}outlier detected by model 'outlier-error': input 'INPUT' has 100 at index 0, "
        "values must be < 100"
    )


def test_check_emits_only_when_all_values_are_equal() -> None:
    equal = raw_req(tensor("INPUT", "INT32", [1, 16], [2] * 16))  # tfsimple1 OUTPUT0 of all-ones
    assert outputs(run("check", equal)) == {"OUTPUT": ("INT32", [1, 16], [2] * 16)}
    increasing = req(tensor("INPUT", "INT32", [1, 16], [2 * i for i in ONE_TO_16]))
    response = run("check", increasing)
    assert response.model_name == "check"
    assert len(response.outputs) == 0


def test_fail_always_fails() -> None:
    assert error_of("fail", req(id="abc")) == (
        "rpc error: code = Internal desc = model 'fail' always fails (request id 'abc')"
    )


# --- cases §0.1 extras ---------------------------------------------------------------------------------


def test_counter_continues_below_ten_then_stops() -> None:
    assert outputs(run("counter", req(tensor("x", "INT32", [1], [0])))) == {
        "x": ("INT32", [1], [1]),
        "continue": ("BYTES", [0], []),
    }
    assert outputs(run("counter", req(tensor("x", "INT32", [1], [9])))) == {
        "x": ("INT32", [1], [10]),
        "stop": ("BYTES", [0], []),
    }
    assert set(outputs(run("counter-nostop", req(tensor("x", "INT32", [1], [50]))))) == {"x", "continue"}


def test_strout_returns_a_string_tensor() -> None:
    response = run("strout", req(tensor("text", "BYTES", [1], ["hello"])))
    assert outputs(response) == {"embedding": ("BYTES", [1], [b"[[0.1, 0.2]]"])}
    assert response.outputs[0].parameters["content_type"].string_param == "str"


def test_twoenc_answers_raw() -> None:
    response = run("twoenc", req(tensor("user_id", "BYTES", [1], ["42"])))
    assert len(response.raw_output_contents) == 2
    assert outputs(response) == {"score": ("FP32", [1], [0.5]), "titles": ("BYTES", [2], [b"A", b"B"])}


def test_strict_bytes_accepts_uniform_encodings_only() -> None:
    inputs = (tensor("user_id", "BYTES", [1], ["42"]), tensor("item_title", "BYTES", [2], ["A", "B"]))
    ok = {"ok": ("BOOL", [1], [True])}
    assert outputs(run("strict-bytes", req(*inputs))) == ok
    assert outputs(run("strict-bytes", raw_req(*inputs))) == ok
    mixed = raw_req(*inputs)
    mixed.inputs[0].contents.bytes_contents.append(b"42")
    assert "contents field must not be specified" in error_of("strict-bytes", mixed)
    misaligned = raw_req(*inputs)
    misaligned.raw_input_contents[0] = misaligned.raw_input_contents[0] + misaligned.raw_input_contents[1]
    assert "unexpected number of elements 3 for input 'user_id'" in error_of("strict-bytes", misaligned)


@pytest.mark.parametrize(
    ("name", "count"), [("big", 250_000), ("big-1000", 125), ("big-2k", 250), ("big-1m", 125_000)]
)
def test_big_emits_n_bytes_of_fp64(name: str, count: int) -> None:
    response = run(name, req(tensor("INPUT", "FP32", [1], [1])))
    assert response.model_name == name
    datatype, shape, values = outputs(response)["OUTPUT"]
    assert (datatype, shape) == ("FP64", [count])
    assert values[:3] == [0.0, 1.0, 2.0]
    assert len(values) == count


# --- registry -----------------------------------------------------------------------------------------

GOOD_REQUESTS: dict[str, ModelInferRequest] = {
    "tfsimple1": simple_pair(),
    "tfsimple2": simple_pair(),
    "tfsimple3": simple_pair(),
    "sumdiff": simple_pair(),
    "strict": simple_pair(),
    "add10": req(tensor("INPUT", "FP32", [4], [1, 2, 3, 4])),
    "mul10": req(tensor("INPUT", "FP32", [4], [1, 2, 3, 4])),
    "conditional": req(
        tensor("CHOICE", "INT32", [1], [0]),
        tensor("INPUT0", "FP32", [1], [1]),
        tensor("INPUT1", "FP32", [1], [2]),
    ),
    "route": req(
        tensor("CHOICE", "INT32", [1], [1]),
        tensor("INPUT0", "FP32", [1], [1]),
        tensor("INPUT1", "FP32", [1], [2]),
    ),
    "id1_node": req(tensor("INPUT1", "INT64", [1], [1])),
    "id2_node": req(tensor("INPUT1", "INT64", [1], [1])),
    "join_node": req(tensor("INPUT1", "INT64", [1], [1]), tensor("INPUT2", "INT64", [1], [1])),
    "echo": req(tensor("anything", "FP32", [1], [1])),
    "slow": req(tensor("anything", "FP32", [1], [1])),
    "outlier-error": req(tensor("INPUT", "FP32", [4], [1, 2, 3, 4])),
    "check": req(tensor("INPUT", "INT32", [2], [1, 1])),
    "counter": req(tensor("x", "INT32", [1], [0])),
    "counter-nostop": req(tensor("x", "INT32", [1], [0])),
    "strout": req(tensor("text", "BYTES", [1], ["hi"])),
    "twoenc": req(tensor("user_id", "BYTES", [1], ["42"])),
    "strict-bytes": req(
        tensor("user_id", "BYTES", [1], ["42"]), tensor("item_title", "BYTES", [2], ["A", "B"])
    ),
    "big": req(),
}


def test_every_registered_model_has_a_good_request_here() -> None:
    assert set(MODELS) - {"fail"} == set(GOOD_REQUESTS)


@pytest.mark.parametrize("name", sorted(GOOD_REQUESTS))
def test_every_registered_model_answers_with_its_name_and_the_request_id(name: str) -> None:
    response = MODELS[name](GOOD_REQUESTS[name])
    assert response.model_name == name
    assert response.id == "req-1"
    assert len(response.outputs) >= 1
    for i in range(len(response.outputs)):
        tensor_values(response, i)  # every output decodes, typed or raw
    assert ModelInferResponse.FromString(response.SerializeToString()) == response


def test_alias_serves_a_kind_under_another_name() -> None:
    loop = get_model("loop=echo")
    assert loop.name == "loop"
    assert loop(req(tensor("x", "INT32", [1], [1]))).model_name == "loop"
    assert get_model("payload=big-16")(req()).model_name == "payload"
    assert "model 'gate'" in error_of("gate=fail", req())


def test_unknown_and_invalid_names() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        get_model("nope")
    with pytest.raises(UnknownModelError, match="not a valid topic segment"):
        get_model("bad/name=echo")
    assert issubclass(UnknownModelError, ConfigError)
