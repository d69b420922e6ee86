"""predict_file: every format and flavor round-trips; order, kept columns and output names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from batchfiles import FEATURES, write_input
from tolerances import FLOAT64, tolerance

import modelpack
from modelpack.batch import predict_file

FLAVORS = ("sklearn", "torch", "onnx", "python")
FORMATS = ("parquet", "csv", "jsonl")


def read(path):
    import pandas as pd

    path = str(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    if path.endswith(".csv"):
        return pd.read_csv(path)
    with open(path) as f:
        return pd.DataFrame([json.loads(line) for line in f])


def model_rows(flavor, frame):
    """The features as the package's signature takes them."""
    x = frame[FEATURES]
    return x.to_numpy(np.float32) if flavor in ("torch", "onnx") else x


def expected_columns(out, base="prediction"):
    """``pack.predict``'s output as the output columns predict_file names."""
    if isinstance(out, dict):
        cols = {}
        for name, arr in out.items():
            cols.update(expected_columns(arr, name))
        return cols
    if out.ndim == 1:
        return {base: out}
    return {f"{base}_{j}": out[:, j] for j in range(out.shape[1])}


def assert_scores(result, pack, flavor, frame, keep=()):
    out = expected_columns(pack.predict(model_rows(flavor, frame)))
    assert list(result.columns) == [*keep, *out]
    for name, values in out.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(result[name].to_numpy(), values, **tolerance(values))
        else:  # labels
            np.testing.assert_array_equal(result[name].to_numpy(), values)
    for name in keep:
        assert result[name].tolist() == frame[name].tolist()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_format_and_flavor_round_trips(flavor, fmt, packages, inputs, batch_frame, tmp_path):
    # The tensor models (torch, onnx) take the columns that are not kept, in file order.
    out = tmp_path / "scores.parquet"
    keep = ["id", "name"]
    result = predict_file(packages[flavor], inputs[fmt], out, batch_size=64, keep_columns=keep)
    assert result.rows == len(batch_frame) and result.output == str(out)
    assert_scores(read(out), modelpack.load(packages[flavor]), flavor, batch_frame, keep)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_outputs_round_trip(fmt, packages, inputs, batch_frame, tmp_path):
    out = tmp_path / f"scores.{fmt}"
    predict_file(packages["onnx"], inputs["parquet"], out, keep_columns=["id", "name"])
    result = read(out)
    assert list(result.columns) == ["id", "name", "label", "probabilities_0", "probabilities_1"]
    assert_scores(result, modelpack.load(packages["onnx"]), "onnx", batch_frame, ("id", "name"))


def test_several_workers_keep_the_input_order(packages, batch_frame, tmp_path):
    import pandas as pd

    big = pd.concat([batch_frame] * 10, ignore_index=True)
    big["id"] = np.arange(len(big))
    src = write_input(big, tmp_path / "big.csv")
    out = tmp_path / "scores.parquet"
    # A python model: its workers start faster than scikit-learn's (no sklearn import).
    result = predict_file(
        packages["python"], src, out, batch_size=250, workers=2, keep_columns=["id", "name"]
    )
    scores = read(out)
    assert result.rows == len(big) == len(scores)
    assert scores["id"].tolist() == list(range(len(big)))
    assert_scores(scores, modelpack.load(packages["python"]), "python", big, ("id", "name"))


def test_keep_columns_come_first_and_keep_their_types(packages, inputs, batch_frame, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "scores.parquet"
    predict_file(packages["sklearn"], inputs["csv"], out, keep_columns=["name", "id", "f0"])
    table = pq.read_table(out)
    assert table.column_names == ["name", "id", "f0", "prediction"]
    assert str(table.schema.field("id").type) == "int64"
    assert str(table.schema.field("name").type) == "string"
    assert table.column("f0").to_pylist() == batch_frame["f0"].tolist()


def test_predict_proba_columns_are_named_by_class(packages, inputs, batch_frame, tmp_path):
    out = tmp_path / "p.csv"
    predict_file(packages["sklearn_proba"], inputs["parquet"], out, prediction_column="p")
    result = read(out)
    assert list(result.columns) == ["p_0", "p_1"]
    proba = modelpack.load(packages["sklearn_proba"]).predict(batch_frame[FEATURES])
    np.testing.assert_allclose(result[["p_0", "p_1"]].to_numpy(), proba, **FLOAT64)


def test_prediction_column_renames_the_single_output(packages, inputs, tmp_path):
    out = tmp_path / "p.parquet"
    predict_file(packages["sklearn"], inputs["parquet"], out, prediction_column="churn")
    assert list(read(out).columns) == ["churn"]


def test_an_optional_onnx_flavor_is_chosen_with_flavor(forest, tmp_path, batch_frame):
    frame = batch_frame[FEATURES]
    modelpack.save(forest, tmp_path / "pkg", input_example=frame.to_numpy()[:5], also=("onnx",))
    src = write_input(frame, tmp_path / "d.parquet")
    predict_file(tmp_path / "pkg", src, tmp_path / "a.parquet", flavor="onnx")
    predict_file(tmp_path / "pkg", src, tmp_path / "b.parquet")
    np.testing.assert_array_equal(
        read(tmp_path / "a.parquet")["prediction"], forest.predict(frame.to_numpy())
    )
    np.testing.assert_array_equal(
        read(tmp_path / "a.parquet")["prediction"], read(tmp_path / "b.parquet")["prediction"]
    )


def test_an_input_without_rows_gives_an_output_without_rows(packages, batch_frame, tmp_path):
    for fmt in ("parquet", "csv", "jsonl"):
        src = write_input(batch_frame.head(0), tmp_path / f"empty.{fmt}")
        if fmt == "jsonl":
            src.write_text("")
            continue  # an empty JSON-lines file names no columns: tested with the errors
        out = tmp_path / f"out-{fmt}.parquet"
        result = predict_file(packages["sklearn"], src, out, keep_columns=["id"])
        assert result.rows == 0
        assert list(read(out).columns) == ["id", "prediction"] and len(read(out)) == 0


def test_integer_and_nullable_columns_follow_the_signature(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"n": np.arange(5, dtype=np.int64), "x": np.linspace(0, 1, 5)})
    modelpack.save(lambda d: d["n"].to_numpy() * 2 + d["x"].to_numpy(), tmp_path / "m",
                   input_example=frame)  # fmt: skip
    src = tmp_path / "d.csv"
    src.write_text("n,x\n0,0.0\n1,\n2,0.5\n")  # a missing double reads as NaN
    predict_file(tmp_path / "m", src, tmp_path / "o.csv")
    out = read(tmp_path / "o.csv")["prediction"].to_numpy()
    np.testing.assert_array_equal(out[[0, 2]], [0.0, 4.5])
    assert np.isnan(out[1])


def test_blank_lines_and_crlf_are_read_like_pyarrow_does(packages, batch_frame, tmp_path):
    src = write_input(batch_frame.head(20), tmp_path / "d.csv")
    lines = src.read_text().splitlines()
    lines[5:5] = ["", ""]
    src.write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())
    out = tmp_path / "o.parquet"
    assert predict_file(packages["sklearn"], src, out, keep_columns=["id"]).rows == 20
    assert read(out)["id"].tolist() == batch_frame["id"].head(20).tolist()


def test_a_package_without_signature_gets_the_columns_not_kept(batch_frame, tmp_path):
    from batchfiles import by_value

    modelpack.save(by_value("row_sum"), tmp_path / "m", infer_signature=False)
    assert modelpack.load(tmp_path / "m").signature is None
    src = write_input(batch_frame[["id", *FEATURES]], tmp_path / "d.csv")
    predict_file(tmp_path / "m", src, tmp_path / "o.jsonl", keep_columns=["id"], batch_size=100)
    result = read(tmp_path / "o.jsonl")
    np.testing.assert_allclose(result["prediction"], batch_frame[FEATURES].sum(axis=1), **FLOAT64)
    assert result["id"].tolist() == batch_frame["id"].tolist()
