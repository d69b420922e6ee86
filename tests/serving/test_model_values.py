"""Values a model cannot take (NaN, infinities, numbers beyond the dtype it computes in), in
JSON, CSV and binary v2 tensors: a 400 naming the column, never "the model failed" (issue 9,
item 3). What is refused depends on the signature's type and on the model:

- double columns hold NaN (a missing value) and infinities; the model says whether it takes
  them: sklearn forests compute in float32, so 1e300 or inf is a client error for them, while
  HistGradientBoosting takes NaN, inf and 1e300;
- float columns and float32 tensors refuse finite numbers beyond float32 (they would become
  inf); integer columns refuse NaN, infinities and fractions;
- JSON has no NaN or Infinity (orjson refuses them, and numbers beyond a double): null is the
  missing value.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pandas as pd
import pytest

import modelpack
from modelpack.errors import SchemaError

# sklearn casting 1e300 to float32 warns before it refuses the value; the warning is sklearn's.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

COLS = [f"f{i}" for i in range(6)]
F32 = "-3.4028235e+38..3.4028235e+38"


def _split(value: str) -> str:
    """A dataframe_split body whose f0 is ``value`` written as is (so NaN can be a token)."""
    columns = json.dumps(COLS)
    return f'{{"dataframe_split": {{"columns": {columns}, "data": [[{value}, 1, 1, 1, 1, 1]]}}}}'


def _csv(value: str) -> str:
    return ",".join(COLS) + "\n" + value + ",1,1,1,1,1\n"


def _binary_v2(value: float, datatype: str = "FP64") -> tuple[bytes, dict[str, str]]:
    dtype = "<f8" if datatype == "FP64" else "<f4"
    inputs = [
        {"name": "f0", "shape": [1], "datatype": datatype, "parameters": {"binary_data_size": 0}}
    ] + [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]} for c in COLS[1:]]
    raw = np.array([value], dtype=dtype).tobytes()
    inputs[0]["parameters"]["binary_data_size"] = len(raw)
    head = orjson.dumps({"inputs": inputs})
    return head + raw, {"inference-header-content-length": str(len(head))}


def _post(c, kind: str, value):
    if kind == "json":
        return c.post(
            "/invocations", content=_split(value), headers={"content-type": "application/json"}
        )
    if kind == "csv":
        return c.post("/invocations", content=_csv(value), headers={"content-type": "text/csv"})
    if kind == "v2":
        data = [{"name": c_, "shape": [1], "datatype": "FP64", "data": [1.0]} for c_ in COLS]
        data[0]["data"] = [value]
        return c.post("/v2/models/churn/infer", json={"inputs": data})
    body, headers = _binary_v2(value)
    return c.post("/v2/models/churn/infer", content=body, headers=headers)


def _message(r) -> str:
    body = r.json()
    return body["error"] if "error" in body else body["message"]


NOT_JSON = "NaN and Infinity are not JSON: send null for a missing value"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (
            "NaN",
            f"unexpected character, expected a JSON value: line 1 column 81 (char 80). {NOT_JSON}.",
        ),
        (
            "Infinity",
            f"unexpected character, expected a JSON value: line 1 column 81 (char 80). {NOT_JSON}.",
        ),
        (
            "-Infinity",
            f"no digit after sign: line 1 column 82 (char 81). {NOT_JSON}.",
        ),
        ("1e400", "number is infinity when parsed as double: line 1 column 81 (char 80)."),
    ],
)
def test_json_has_no_nan_or_infinity(serve, column_package, token, message):
    c = serve(column_package)
    r = _post(c, "json", token)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error_code": "BAD_REQUEST",
        "message": f"The body is not valid JSON: {message}",
    }
    assert _post(c, "json", "null").status_code == 200  # null is the missing value


FOREST = "RandomForestClassifier"
TOO_BIG = (
    f"Column 'f0': expected a number within float32's range ({F32}), got {{v}} at row 0; "
    f"{FOREST} computes in float32."
)
INFINITE = (
    f"Column 'f0': expected a finite number, got {{v}} at row 0; {FOREST} does not take infinities."
)


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("json", "1e300", TOO_BIG.format(v="1e+300")),
        ("json", "-3.5e38", TOO_BIG.format(v="-3.5e+38")),
        ("csv", "1e300", TOO_BIG.format(v="1e+300")),
        ("csv", "inf", INFINITE.format(v="inf")),
        ("csv", "-Infinity", INFINITE.format(v="-inf")),
        ("csv", "1e400", INFINITE.format(v="inf")),  # a double cannot hold it: inf
        ("v2", 1e300, TOO_BIG.format(v="1e+300")),
        ("binary", 1e300, TOO_BIG.format(v="1e+300")),
        ("binary", float("inf"), INFINITE.format(v="inf")),
        ("binary", float("-inf"), INFINITE.format(v="-inf")),
    ],
)
def test_values_a_float32_forest_cannot_take_are_400_naming_the_column(
    serve, column_package, kind, value, message
):
    c = serve(column_package, name="churn")
    r = _post(c, kind, value)
    assert r.status_code == 400, r.text
    assert _message(r) == message
    assert "failed" not in r.text
    assert _post(c, kind, 1.0 if kind in ("v2", "binary") else "1").status_code == 200


@pytest.mark.parametrize(
    ("kind", "value"),
    [("json", "null"), ("csv", "nan"), ("csv", ""), ("binary", float("nan")), ("json", "3.4e38")],
)
def test_a_forest_takes_missing_values_and_the_float32_range(serve, column_package, kind, value):
    # sklearn >= 1.4 forests route NaN (missing) down the branch training sent them.
    r = _post(serve(column_package, name="churn"), kind, value)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def hgb_package(tmp_path_factory, frame, xy):
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(frame, xy[1])
    path = tmp_path_factory.mktemp("hgb") / "churn"
    modelpack.save(model, path, input_example=frame.head(3))
    return path


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("json", "null"),
        ("json", "1e300"),
        ("csv", "nan"),
        ("csv", "inf"),
        ("csv", "-inf"),
        ("binary", float("nan")),
        ("binary", float("inf")),
    ],
)
def test_hist_gradient_boosting_takes_nan_inf_and_any_double(serve, hgb_package, kind, value):
    r = _post(serve(hgb_package, name="churn"), kind, value)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def linear_package(tmp_path_factory, frame, xy):
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("linear") / "churn"
    modelpack.save(LogisticRegression().fit(frame, xy[1]), path, input_example=frame.head(3))
    return path


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (
            "csv",
            "nan",
            "Column 'f0': expected a number, got a missing value (NaN) at row 0; "
            "LogisticRegression does not take missing values.",
        ),
        (
            "json",
            "null",
            "Column 'f0': expected a number, got a missing value (NaN) at row 0; "
            "LogisticRegression does not take missing values.",
        ),
        (
            "binary",
            float("inf"),
            "Column 'f0': expected a finite number, got inf at row 0; "
            "LogisticRegression does not take infinities.",
        ),
    ],
)
def test_a_model_without_missing_value_support_refuses_nan_by_column(
    serve, linear_package, kind, value, message
):
    r = _post(serve(linear_package, name="churn"), kind, value)
    assert r.status_code == 400, r.text
    assert _message(r) == message


def test_the_same_rules_hold_in_process(column_package, linear_package):
    frame = pd.DataFrame({c: [1.0, 1.0] for c in COLS})
    frame.loc[1, "f3"] = 1e300
    with pytest.raises(SchemaError, match=r"Column 'f3': expected a number within float32's "):
        modelpack.load(column_package).predict(frame)
    frame.loc[1, "f3"] = np.nan
    with pytest.raises(SchemaError, match=r"Column 'f3': .* missing value \(NaN\) at row 1;"):
        modelpack.load(linear_package).predict(frame)


# ---------------------------------------------------------------------------- by signature type


@pytest.fixture(scope="module")
def typed_package(tmp_path_factory):
    """A model with a float (float32) column and a long column, answering x + n."""

    def add(df):
        return df["x"].to_numpy(dtype=np.float64) + df["n"].to_numpy(dtype=np.float64)

    example = pd.DataFrame(
        {"x": np.array([1.5, 2.5], dtype=np.float32), "n": np.array([1, 2], dtype=np.int64)}
    )
    path = tmp_path_factory.mktemp("typed") / "typed"
    modelpack.save(add, path, input_example=example)
    assert [c.type for c in modelpack.load(path).signature.inputs.columns] == ["float", "long"]
    return path


def _typed(c, x: str, n: str, kind: str = "csv"):
    if kind == "csv":
        return c.post(
            "/invocations", content=f"x,n\n{x},{n}\n", headers={"content-type": "text/csv"}
        )
    body = f'{{"dataframe_split": {{"columns": ["x", "n"], "data": [[{x}, {n}]]}}}}'
    return c.post("/invocations", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("x", "n", "kind", "message"),
    [
        (
            "1e300",
            "1",
            "json",
            f"Column 'x': expected float, got 1e+300 at row 0, outside the range {F32}.",
        ),
        (
            "-1e39",
            "1",
            "csv",
            f"Column 'x': expected float, got -1e+39 at row 0, outside the range {F32}.",
        ),
        (
            "1",
            "inf",
            "csv",
            "Column 'n': expected long, got inf at row 0, outside the range "
            "-9223372036854775808..9223372036854775807.",
        ),
        (
            "1",
            "nan",
            "csv",
            "Column 'n': expected long, got a missing value (NaN) at row 0. Integer "
            "types cannot hold missing values: fill them, or declare the field as double.",
        ),
        (
            "1",
            "1e300",
            "json",
            "Column 'n': expected long, got 1e+300 at row 0, outside the range "
            "-9223372036854775808..9223372036854775807.",
        ),
        (
            "1",
            "1.5",
            "json",
            "Column 'n': expected long, got double with fractional values (row 0: 1.5).",
        ),
    ],
)
def test_each_signature_type_refuses_what_it_cannot_hold(serve, typed_package, x, n, kind, message):
    r = _typed(serve(typed_package), x, n, kind)
    assert r.status_code == 400, r.text
    assert r.json() == {"error_code": "BAD_REQUEST", "message": message}


@pytest.mark.parametrize(
    ("x", "expected"), [("inf", None), ("nan", None), ("3.4e38", 3.4e38), ("-inf", None)]
)
def test_a_float_column_holds_nan_and_infinities(serve, typed_package, x, expected):
    r = _typed(serve(typed_package), x, "1")
    assert r.status_code == 200, r.text
    (value,) = r.json()["predictions"]
    assert value == expected or (
        expected is not None and value == pytest.approx(expected, rel=1e-6)
    )


@pytest.fixture(scope="module")
def float32_tensor_package(tmp_path_factory, xy):
    from sklearn.ensemble import RandomForestClassifier

    X = xy[0].astype(np.float32)
    model = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(X, xy[1])
    path = tmp_path_factory.mktemp("f32") / "rf32"
    modelpack.save(model, path, input_example=X[:3])
    return path


def test_a_float32_tensor_refuses_numbers_beyond_float32(serve, float32_tensor_package):
    c = serve(float32_tensor_package)
    r = c.post("/invocations", json={"inputs": [[1.0] * 6, [1.0] * 5 + [1e300]]})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (
        f"Input tensor: expected float32, got 1e+300 at row 1, outside the range {F32}."
    )
    row = {"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [1.0] * 5 + [1e300]}
    r = c.post("/v2/models/rf32/infer", json={"inputs": [row]})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "input 'input': expected FP32 values, got 1e+300 at index 5, outside the range "
        f"{F32}."
    }
    r = c.post("/v2/models/rf32/infer", json={"inputs": [{**row, "data": [1.0] * 6}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        (
            "INT64",
            [1.5],
            "input 'f0': expected INT64 values, got 1.5 at index 0, which has a fraction.",
        ),
        (
            "INT64",
            [1e300],
            "input 'f0': expected INT64 values, got 1e+300 at index 0, outside the range "
            "-9223372036854775808..9223372036854775807.",
        ),
        (
            "UINT8",
            [300],
            "input 'f0': expected UINT8 values, got 300 at index 0, outside the range 0..255.",
        ),
        (
            "FP16",
            [1e6],
            "input 'f0': expected FP16 values, got 1000000.0 at index 0, outside the range "
            "-65504..65504.",
        ),
        ("BOOL", ["x"], "input 'f0': the data are not all BOOL values."),
        ("BOOL", [2], "input 'f0': the data are not all BOOL values."),
        ("FP64", ["1.5"], "input 'f0': the data are not all FP64 values."),
        ("FP64", [True], "input 'f0': the data are not all FP64 values."),
    ],
)
def test_v2_json_data_must_be_values_of_its_datatype(serve, tmp_path, datatype, data, message):
    modelpack.save(lambda df: np.zeros(len(df)), tmp_path / "p", signature=modelpack.Signature())
    c = serve(tmp_path / "p", name="p")
    tensor = {"name": "f0", "shape": [1], "datatype": datatype, "data": data}
    r = c.post("/v2/models/p/infer", json={"inputs": [tensor]})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": message}
