"""Signature inference and enforcement for every input kind (DESIGN.md §4)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelpack import ColSpec, ColumnSchema, ParamSpec, Signature, TensorSchema, TensorSpec
from modelpack import infer_signature as infer
from modelpack.enforcement import ColumnPlan, ParamPlan, TensorPlan
from modelpack.errors import FormatError, SchemaError

COLS = ColumnSchema((ColSpec("age", "long"), ColSpec("score", "double"), ColSpec("name", "string")))


# ------------------------------------------------------------------ inference


def test_infer_from_dataframe_maps_every_type():
    df = pd.DataFrame(
        {
            "b": [True, False],
            "i32": np.array([1, 2], dtype=np.int32),
            "i64": [1, 2],
            "f32": np.array([1.5, 2.5], dtype=np.float32),
            "f64": [1.5, 2.5],
            "s": ["a", "b"],
            "raw": [b"x", b"y"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        }
    )
    sig = infer(df)
    assert [(c.name, c.type) for c in sig.inputs.columns] == [
        ("b", "boolean"),
        ("i32", "integer"),
        ("i64", "long"),
        ("f32", "float"),
        ("f64", "double"),
        ("s", "string"),
        ("raw", "binary"),
        ("ts", "datetime"),
    ]


def test_infer_from_numpy_array_is_a_tensor_with_free_batch():
    sig = infer(np.zeros((3, 4, 5), dtype=np.float32), np.zeros(3, dtype=np.int64))
    assert sig.inputs == TensorSchema((TensorSpec("float32", (-1, 4, 5)),))
    assert sig.outputs.to_dict() == {"kind": "tensor", "dtype": "int64", "shape": [-1]}


def test_infer_from_dict_of_columns_records_rows_and_arrow():
    expected = [("a", "long"), ("b", "string")]
    for data in (
        {"a": [1, 2], "b": ["x", "y"]},
        [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
        pa.table({"a": [1, 2], "b": ["x", "y"]}),
    ):
        assert [(c.name, c.type) for c in infer(data).inputs.columns] == expected
    assert infer([[1.0, 2.0], [3.0, 4.0]]).inputs == TensorSchema((TensorSpec("float64", (-1, 2)),))


def test_infer_dict_of_multidimensional_arrays_is_named_tensors():
    sig = infer({"img": np.zeros((2, 3, 3)), "mask": np.zeros((2, 3), dtype=bool)})
    assert sig.inputs.to_dict() == {
        "kind": "tensors",
        "tensors": [
            {"dtype": "float64", "shape": [-1, 3, 3], "name": "img"},
            {"dtype": "bool", "shape": [-1, 3], "name": "mask"},
        ],
    }


def test_infer_params_types_and_defaults():
    sig = infer(
        np.zeros((1, 2)), params={"threshold": 0.5, "top_k": 3, "mode": "fast", "strict": False}
    )
    assert [(p.name, p.type, p.default) for p in sig.params] == [
        ("threshold", "double", 0.5),
        ("top_k", "long", 3),
        ("mode", "string", "fast"),
        ("strict", "boolean", False),
    ]


def test_infer_rejects_mixed_and_empty_columns():
    with pytest.raises(SchemaError, match=r"Column 'x': cannot infer one type .*long, string"):
        infer([{"x": 1}, {"x": "a"}])
    with pytest.raises(SchemaError, match=r"Column 'x': every value in the example is missing"):
        infer({"x": [None, None]})
    with pytest.raises(SchemaError, match="Cannot infer a schema from an empty list"):
        infer([])


def test_signature_round_trips_through_dict():
    sig = Signature(
        COLS, TensorSchema((TensorSpec("int64", (-1,)),)), (ParamSpec("threshold", "double", 0.5),)
    )
    assert Signature.from_dict(sig.to_dict()) == sig


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"inputs": {"kind": "rows"}}, "unknown kind 'rows'"),
        (
            {"inputs": {"kind": "columns", "columns": [{"name": "a", "type": "int"}]}},
            "Column 'a': unknown type 'int'. Supported: boolean, integer, long",
        ),
        ({"inputs": {"kind": "tensor", "dtype": "float32", "shape": [-2]}}, "shape must be"),
        (
            {"inputs": {"kind": "columns", "columns": [{"name": "a", "type": "long", "x": 1}]}},
            "column: unknown key 'x'",
        ),
        ({"outputs": {"kind": "tensor", "dtype": "complex"}}, "missing key 'shape'"),
        ({"extra": 1}, "signature: unknown key 'extra'"),
    ],
)
def test_signature_from_dict_names_the_bad_key(d, message):
    with pytest.raises(FormatError, match=message):
        Signature.from_dict(d)


# ------------------------------------------------------------------ columns


@pytest.fixture
def plan():
    return ColumnPlan(COLS)


def _check(cols):
    assert list(cols) == ["age", "score", "name"]
    assert cols["age"].dtype == np.int64 and cols["age"].tolist() == [41, 30]
    assert cols["score"].dtype == np.float64 and cols["score"].tolist() == [0.5, 2.0]
    assert cols["name"].tolist() == ["ann", "bob"]
    assert cols.n_rows == 2


def test_every_column_input_kind_is_accepted(plan):
    records = [{"age": 41, "score": 0.5, "name": "ann"}, {"age": 30, "score": 2, "name": "bob"}]
    df = pd.DataFrame(records)
    for data in (
        df,
        df[["name", "score", "age"]],  # any order
        df.assign(extra=1),  # extra columns dropped
        {"age": [41, 30], "score": [0.5, 2.0], "name": ["ann", "bob"]},
        {
            "age": np.array([41, 30], dtype=np.int32),
            "score": np.array([0.5, 2], np.float32),
            "name": np.array(["ann", "bob"]),
        },  # safe widening
        records,
        [[41, 0.5, "ann"], [30, 2.0, "bob"]],
        pa.Table.from_pandas(df),
    ):
        _check(plan(data))


def test_numeric_matrix_is_read_positionally():
    plan = ColumnPlan(ColumnSchema((ColSpec("a", "double"), ColSpec("b", "long"))))
    cols = plan(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert cols["a"].tolist() == [1.0, 3.0] and cols["b"].dtype == np.int64
    with pytest.raises(SchemaError, match=r"Expected 2 columns \(a, b\); got an array of shape"):
        plan(np.zeros((2, 3)))


def test_missing_required_column_is_named(plan):
    with pytest.raises(
        SchemaError,
        match=r"Missing required column 'score'\. Expected columns: "
        r"age \(long\), score \(double\), name \(string\); got: age, name",
    ) as e:
        plan({"age": [1], "name": ["x"]})
    assert e.value.field == "score"


def test_optional_column_is_filled_when_absent():
    plan = ColumnPlan(ColumnSchema((ColSpec("a", "double"), ColSpec("b", "double", False))))
    cols = plan({"a": [1.0, 2.0]})
    assert np.isnan(cols["b"]).all() and len(cols["b"]) == 2


def test_fractional_float_into_long_names_row_and_value(plan):
    with pytest.raises(
        SchemaError,
        match=r"Column 'age': expected long, got double with "
        r"fractional values \(row 1: 41\.5\)\.",
    ):
        plan({"age": [3.0, 41.5], "score": [1.0, 1.0], "name": ["a", "b"]})


def test_integral_floats_cast_into_long(plan):
    assert plan({"age": [3.0, 4.0], "score": [1, 2], "name": ["a", "b"]})["age"].dtype == np.int64


def test_nan_in_integer_column_is_refused(plan):
    with pytest.raises(
        SchemaError,
        match=r"Column 'age': expected long, got a missing value "
        r"\(NaN\) at row 0\. Integer types cannot hold missing values",
    ):
        plan({"age": [np.nan, 1.0], "score": [1.0, 1.0], "name": ["a", "b"]})
    with pytest.raises(SchemaError, match=r"Column 'age': expected long, got a missing value"):
        plan([{"age": None, "score": 1.0, "name": "a"}])


def test_string_into_number_is_refused(plan):
    with pytest.raises(
        SchemaError,
        match=r"Column 'score': expected double, got string at row 1 "
        r"\('x'\)",
    ):
        plan([{"age": 1, "score": 1.0, "name": "a"}, {"age": 1, "score": "x", "name": "b"}])
    with pytest.raises(
        SchemaError, match=r"Column 'score': expected double, got string at row 0 \('1\.5'\)\."
    ):
        plan({"age": [1], "score": np.array(["1.5"]), "name": ["a"]})


def test_number_into_string_and_bool_into_number_are_refused(plan):
    with pytest.raises(SchemaError, match=r"Column 'name': expected string, got long"):
        plan({"age": [1], "score": [1.0], "name": [5]})
    with pytest.raises(SchemaError, match=r"Column 'age': expected long, got boolean"):
        plan({"age": [True], "score": [1.0], "name": ["a"]})


def test_out_of_range_integer_is_refused():
    plan = ColumnPlan(ColumnSchema((ColSpec("n", "integer"),)))
    with pytest.raises(
        SchemaError,
        match=r"Column 'n': expected integer, got 3000000000 at row "
        r"0, outside the range",
    ):
        plan({"n": np.array([3_000_000_000])})


def test_datetime_binary_and_boolean_columns():
    plan = ColumnPlan(
        ColumnSchema((ColSpec("t", "datetime"), ColSpec("b", "binary"), ColSpec("ok", "boolean")))
    )
    cols = plan(
        {
            "t": ["2024-05-01T10:00:00Z", dt.datetime(2024, 5, 2)],
            "b": [b"\x00", b"x"],
            "ok": [True, False],
        }
    )
    assert cols["t"].dtype == np.dtype("datetime64[ns]")
    assert str(cols["t"][0]) == "2024-05-01T10:00:00.000000000"
    assert cols["b"].tolist() == [b"\x00", b"x"] and cols["ok"].dtype == bool
    with pytest.raises(SchemaError, match=r"Column 't': expected datetime .*Invalid isoformat"):
        plan({"t": ["yesterday"], "b": [b""], "ok": [True]})
    with pytest.raises(SchemaError, match=r"Column 'ok': expected boolean, got long\."):
        plan({"t": ["2024-01-01"], "b": [b""], "ok": [1]})


def test_columns_of_different_lengths_are_refused(plan):
    with pytest.raises(
        SchemaError,
        match=r"Column 'score' has 1 values; the columns before it "
        r"have 2",
    ):
        plan({"age": [1, 2], "score": [1.0], "name": ["a", "b"]})


def test_bad_records_and_rows_are_named(plan):
    with pytest.raises(SchemaError, match=r"Record 1 is a list; every record must be an object"):
        plan([{"age": 1}, [1, 2]])
    with pytest.raises(SchemaError, match=r"Row 0 has 2 values; expected 3 \(age, score, name\)"):
        plan([[1, 2.0]])


def test_empty_list_is_an_error_and_zero_rows_are_not(plan):
    with pytest.raises(SchemaError, match=r"Input is an empty list: there are no rows to predict"):
        plan([])
    cols = plan(pd.DataFrame({"age": pd.Series([], dtype="int64"), "score": [], "name": []}))
    assert cols.n_rows == 0


def test_unreadable_input_type_is_named(plan):
    with pytest.raises(SchemaError, match=r"Cannot read columns from set"):
        plan({1, 2})


# ------------------------------------------------------------------ tensors

TENSOR = TensorSchema((TensorSpec("float32", (-1, 3)),))


def test_tensor_fast_path_returns_the_same_array():
    x = np.zeros((2, 3), dtype=np.float32)
    assert TensorPlan(TENSOR)(x) is x


def test_tensor_accepts_lists_frames_and_widens_safely():
    plan = TensorPlan(TensorSchema((TensorSpec("float64", (-1, 3)),)))
    for data in (
        [[1, 2, 3]],
        np.array([[1, 2, 3]], dtype=np.int32),
        np.array([[1, 2, 3]], dtype=np.float32),
        pd.DataFrame([[1, 2, 3]]),
    ):
        out = plan(data)
        assert out.dtype == np.float64 and out.tolist() == [[1.0, 2.0, 3.0]]


def test_tensor_shape_and_rank_errors():
    plan = TensorPlan(TENSOR)
    with pytest.raises(SchemaError, match=r"Input tensor: expected shape \(-1, 3\), got \(2, 4\)"):
        plan(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(SchemaError, match=r"expected shape \(-1, 3\), got \(3,\)"):
        plan(np.zeros(3, dtype=np.float32))
    with pytest.raises(SchemaError, match=r"the nested lists are ragged"):
        plan([[1, 2, 3], [1, 2]])


def test_tensor_dtype_errors():
    plan = TensorPlan(TensorSchema((TensorSpec("int64", (-1,)),)))
    with pytest.raises(
        SchemaError,
        match=r"Input tensor: expected int64, got double with "
        r"fractional values \(row 1: 0\.5\)",
    ):
        plan(np.array([1.0, 0.5]))
    with pytest.raises(SchemaError, match=r"Input tensor: expected int64, got string"):
        plan(np.array(["a"]))


def test_named_tensors():
    plan = TensorPlan(
        TensorSchema((TensorSpec("float32", (-1, 2), "a"), TensorSpec("int64", (-1,), "b")))
    )
    out = plan({"a": [[1, 2]], "b": [3], "ignored": [0]})
    assert out["a"].dtype == np.float32 and out["b"].tolist() == [3] and "ignored" not in out
    with pytest.raises(SchemaError, match=r"Missing tensor 'b'\. Expected tensors: a, b"):
        plan({"a": [[1, 2]]})
    with pytest.raises(SchemaError, match=r"takes several named tensors \('a', 'b'\); pass a dict"):
        plan(np.zeros((1, 2)))


# ------------------------------------------------------------------ params


def test_params_defaults_casts_and_errors():
    plan = ParamPlan((ParamSpec("threshold", "double", 0.5), ParamSpec("k", "long", 3)))
    assert plan(None) == {"threshold": 0.5, "k": 3}
    assert plan({"threshold": 1}) == {"threshold": 1.0, "k": 3}
    with pytest.raises(
        SchemaError,
        match=r"Unknown param 'top'\. This model accepts: threshold "
        r"\(double, default 0\.5\), k \(long, default 3\)",
    ):
        plan({"top": 1})
    with pytest.raises(SchemaError, match=r"Param 'k': expected long, got string \('3'\)"):
        plan({"k": "3"})
    with pytest.raises(SchemaError, match=r"Param 'k': expected long, got boolean"):
        plan({"k": True})
    with pytest.raises(SchemaError, match=r"Unknown param 'x'\. This model accepts no params"):
        ParamPlan(())({"x": 1})
