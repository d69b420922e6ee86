"""Open Inference v2 requests whose structure is wrong in a way JSON allows: every one is a 400
that names the field, never a 500 (issue 9, item 3: these answered 500 before)."""

from __future__ import annotations

import numpy as np
import pytest

import modelpack

COLS = [f"f{i}" for i in range(6)]
DATATYPES = (
    "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"
)


def _columns_body() -> dict:
    return {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [0.5]} for c in COLS]}


def _first(body: dict, **fields) -> dict:
    body["inputs"][0].update(fields)
    return body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # `parameters` at the request, input and output level
        (lambda b: b.update(parameters="pd"), "'parameters' must be an object, got a string."),
        (lambda b: b.update(parameters=[1]), "'parameters' must be an object, got a list."),
        (
            lambda b: _first(b, parameters=7),
            "input 'f0': 'parameters' must be an object, got a number.",
        ),
        (
            lambda b: b.update(outputs=[{"name": "predict", "parameters": "x"}]),
            "outputs[0]: 'parameters' must be an object, got a string.",
        ),
        (
            lambda b: b.update(parameters={"binary_data_output": "no"}),
            "'parameters.binary_data_output' must be true or false, got a string.",
        ),
        (
            lambda b: b.update(outputs=[{"name": "predict", "parameters": {"binary_data": 1}}]),
            "outputs[0]: 'parameters.binary_data' must be true or false, got a number.",
        ),
        # `outputs`
        (
            lambda b: b.update(outputs=[{"name": ["predict"]}]),
            "outputs[0]: 'name' must be a string, got a list.",
        ),
        (
            lambda b: b.update(outputs=[{"name": {"a": 1}}]),
            "outputs[0]: 'name' must be a string, got an object.",
        ),
        (lambda b: b.update(outputs=[7]), "outputs[0] must be an object with a 'name'."),
        (
            lambda b: b.update(outputs={"name": "predict"}),
            "'outputs' must be a list of objects with a 'name', got an object.",
        ),
        # `datatype`
        (
            lambda b: _first(b, datatype=["FP64"]),
            f"input 'f0': 'datatype' must be a string, got a list. Use one of {DATATYPES}.",
        ),
        (
            lambda b: _first(b, datatype={"FP64": 1}),
            f"input 'f0': 'datatype' must be a string, got an object. Use one of {DATATYPES}.",
        ),
        (
            lambda b: _first(b, datatype=None),
            f"input 'f0': 'datatype' must be a string, got null. Use one of {DATATYPES}.",
        ),
        # `shape`: a rank numpy cannot hold, or one a column cannot have
        (
            lambda b: _first(b, shape=[1] * 65),
            "input 'f0': 'shape' has 65 dimensions; a column takes shape [N] or [N, 1].",
        ),
        (
            lambda b: _first(b, shape=[1, 1, 1]),
            "input 'f0': 'shape' has 3 dimensions; a column takes shape [N] or [N, 1].",
        ),
        (
            lambda b: _first(b, shape=[1, 1, 1, 1]),
            "input 'f0': 'shape' has 4 dimensions; a column takes shape [N] or [N, 1].",
        ),
    ],
)
def test_malformed_v2_fields_are_400_naming_the_field(serve, column_package, change, message):
    c = serve(column_package, name="churn")
    body = _columns_body()
    change(body)
    r = c.post("/v2/models/churn/infer", json=body)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": message}
    assert c.post("/v2/models/churn/infer", json=_columns_body()).status_code == 200


def test_tensor_ranks_the_signature_forbids_are_400(serve, tensor_package):
    c = serve(tensor_package)
    good = {"name": "input", "shape": [1, 6], "datatype": "FP64", "data": [0.5] * 6}
    for shape, rank in (([1, 6, 1], 3), ([6], 1), ([1] * 64 + [6], 65), ([1] * 100 + [6], 101)):
        r = c.post("/v2/models/rf/infer", json={"inputs": [{**good, "shape": shape}]})
        assert r.status_code == 400, r.text
        assert r.json() == {
            "error": f"input 'input': 'shape' has {rank} dimensions; the model takes 2: [-1, 6]."
        }
    assert c.post("/v2/models/rf/infer", json={"inputs": [good]}).status_code == 200


def test_a_model_without_signature_takes_up_to_64_dimensions(serve, tmp_path):
    def total(data):
        return np.asarray([np.asarray(data).sum()])

    modelpack.save(total, tmp_path / "p", signature=modelpack.Signature())
    c = serve(tmp_path / "p", name="p")
    tensor = {"name": "x", "datatype": "FP64", "data": [2.0]}
    r = c.post("/v2/models/p/infer", json={"inputs": [{**tensor, "shape": [1] * 64}]})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [2.0]
    r = c.post("/v2/models/p/infer", json={"inputs": [{**tensor, "shape": [1] * 65}]})
    assert r.status_code == 400
    assert r.json() == {"error": "input 'x': 'shape' has 65 dimensions; at most 64 are supported."}
