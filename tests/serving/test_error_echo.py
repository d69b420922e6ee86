"""Error messages quote the client's values, never the whole of them: each quoted value is cut
to a few dozen characters, and a whole message to 1,000 (issue 9, item 3: bodies of 60-100 KB
came back)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import modelpack

COLS = [f"f{i}" for i in range(6)]
BIG = "x" * 100_000
CUT = "'" + "x" * 36 + "..."  # repr(BIG) cut to 40 characters


def _row(**values):
    return {"dataframe_split": {"columns": COLS, "data": [[values.get(c, 1.0) for c in COLS]]}}


def _v2(**first):
    inputs = [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]} for c in COLS]
    inputs[0].update(first)
    return {"inputs": inputs}


CASES = [
    ("json", _row(f0=BIG), f"Column 'f0': expected double, got string at row 0 ({CUT})."),
    (
        "json",
        {"inputs": {BIG: [1.0], **{c: [1.0] for c in COLS[1:]}}},
        "Missing required column 'f0'. Expected columns: f0 (double), f1 (double), f2 (double), "
        f"f3 (double), f4 (double), f5 (double); got: {'x' * 37}..., f1, f2, f3, f4, f5.",
    ),
    (
        "json",
        {BIG: 1},
        "The body must have exactly one of the keys dataframe_split, dataframe_records, "
        f"instances, inputs (and optionally 'params'); found: {CUT}.",
    ),
    (
        "json",
        {"inputs": {c: [1.0] for c in COLS}, "params": {BIG: 1}},
        f"Unknown param {CUT}. This model accepts no params.",
    ),
    ("csv", ",".join(COLS) + "\n" + BIG + ",1,1,1,1,1\n", None),
    (
        "v2",
        _v2(name=BIG),
        f"input {CUT}: the model has no such input. Inputs: f0, f1, f2, f3, f4, f5.",
    ),
    (
        "v2",
        _v2(datatype=BIG),
        f"input 'f0': unknown datatype {CUT}. Use one of BOOL, UINT8, UINT16, UINT32, UINT64, "
        "INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES.",
    ),
    ("v2", {**_v2(), "outputs": [{"name": BIG}]}, f"Unknown output {CUT}. Outputs: predict."),
    (
        "v2",
        _v2(shape=[-1] * 20_000),
        "input 'f0': 'shape' must be a list of sizes >= 0, got "
        "[-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, ....",
    ),
    ("v2", _v2(data=[BIG]), "input 'f0': the data are not all FP64 values."),
]


@pytest.mark.parametrize(("kind", "body", "message"), CASES)
def test_echoed_values_are_cut(serve, column_package, kind, body, message):
    c = serve(column_package, name="churn")
    if kind == "json":
        r = c.post("/invocations", json=body)
    elif kind == "csv":
        r = c.post("/invocations", content=body, headers={"content-type": "text/csv"})
    else:
        r = c.post("/v2/models/churn/infer", json=body)
    assert r.status_code == 400, r.text[:300]
    text = r.json()["error" if kind == "v2" else "message"]
    if message is not None:
        assert text == message
    assert len(r.content) < 1_200 and "x" * 100 not in r.text


def test_a_csv_value_is_cut(serve, column_package):
    c = serve(column_package)
    r = c.post(
        "/invocations",
        content=",".join(COLS) + "\n1,1,1,1,1," + BIG + "\n",
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 400
    assert r.json()["message"] == f"Column 'f5': expected a number, got {CUT} at row 0."


def test_headers_and_paths_are_cut(serve, column_package):
    c = serve(column_package, name="churn")
    ctype = "text/" + "y" * 5_000
    r = c.post("/invocations", content=b"{}", headers={"content-type": ctype})
    assert r.status_code == 415
    assert r.json()["message"] == (
        f"Unsupported content type {repr(ctype)[:37]}.... Send application/json or text/csv."
    )
    r = c.get("/v2/models/" + "z" * 5_000)
    assert r.status_code == 404
    assert r.json() == {"error": f"Unknown model '{'z' * 36}...; this server serves 'churn'."}
    r = c.get("/v2/models/churn/versions/" + "9" * 5_000)
    assert r.status_code == 404 and len(r.text) < 300
    r = c.get("/" + "q" * 5_000)
    assert r.status_code == 404
    assert r.json()["message"] == f"No route '/{'q' * 35}...."


def test_many_long_names_are_cut_each_and_as_a_whole(serve, column_package, tensor_package):
    c = serve(column_package)
    names = {f"{i:04d}" + "n" * 2_000: [1.0] for i in range(500)}
    r = c.post("/invocations", json={"inputs": names})
    assert r.status_code == 400
    message = r.json()["message"]
    assert len(message) <= 1_000 and "n" * 100 not in message
    assert message.startswith("Missing required columns 'f0', 'f1'")
    t = serve(tensor_package)
    r = t.post(
        "/invocations", json={"inputs": {"a" * 5_000: [[1.0] * 6], "b" * 5_000: [[1.0] * 6]}}
    )
    assert r.status_code == 400
    assert r.json()["message"] == (
        f"The model takes one tensor; got a mapping with keys '{'a' * 36}..., '{'b' * 36}...."
    )


def test_a_bad_datetime_is_cut(serve, tmp_path):
    def count(df):
        return np.zeros(len(df))

    example = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    modelpack.save(count, tmp_path / "p", input_example=example)
    c = serve(tmp_path / "p")
    r = c.post("/invocations", json={"dataframe_records": [{"when": "2024-" + BIG}]})
    assert r.status_code == 400
    message = r.json()["message"]
    assert message.startswith("Column 'when': expected datetime (ISO-8601 text or datetime values)")
    assert len(message) < 200 and "x" * 100 not in message


def test_classify_cuts_any_message_to_1000_characters():
    from modelpack.errors import SchemaError
    from modelpack.serving.errors import classify, mlflow_body, v2_body

    status, code, message = classify(SchemaError("y" * 5_000))
    assert (status, code) == (400, "BAD_REQUEST")
    assert message == "y" * 997 + "..."
    assert mlflow_body(SchemaError("y" * 5_000))[1]["message"] == message
    assert v2_body(SchemaError("y" * 5_000))[1]["error"] == message
