"""Bad input gives an error that names the file, row, line, byte and column, and leaves nothing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from batchfiles import FEATURES, write_input

from modelpack import errors
from modelpack.batch import predict_file


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def big_features(n, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((n, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "id", np.arange(n, dtype=np.int64))
    return frame


# ---------------------------------------------------------------------------- a failure midway


def test_uncastable_csv_value_at_row_150000_leaves_no_output(packages, tmp_path):
    src = write_input(big_features(200_000), tmp_path / "big.csv")
    lines = src.read_bytes().split(b"\n")
    fields = lines[150_001].split(b",")
    fields[4] = b"abc"  # f3 of data row 150,000 (line 150,002: the header is line 1)
    lines[150_001] = b",".join(fields)
    data = b"\n".join(lines)
    src.write_bytes(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    byte = data.index(lines[150_001])
    with pytest.raises(errors.SchemaError) as e:
        predict_file(packages["sklearn"], src, out_dir / "scores.parquet", keep_columns=["id"])
    assert str(e.value) == (
        f"{src}: row 150000 (line 150002, byte {byte}): column 'f3': cannot cast 'abc' to double."
    )
    assert e.value.field == "f3"
    assert leftovers(out_dir) == []


def test_uncastable_parquet_value_at_row_150000_with_workers_leaves_no_output(tmp_path):
    import pandas as pd

    import modelpack

    example = pd.DataFrame({"n": np.arange(3, dtype=np.int64), "x": np.zeros(3)})
    modelpack.save(lambda d: d["x"].to_numpy() + d["n"].to_numpy(), tmp_path / "m",
                   input_example=example)  # fmt: skip
    n = np.arange(200_000, dtype=np.float64)  # a float column the signature reads as long
    n[150_000] = 2.5
    src = write_input(pd.DataFrame({"n": n, "x": np.zeros(len(n))}), tmp_path / "d.parquet")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(
        errors.SchemaError,
        match=r"d\.parquet: row 150000: column 'n': cannot cast 2\.5 \(double\) to long\.$",
    ):
        predict_file(tmp_path / "m", src, out_dir / "o.csv", workers=2, batch_size=20_000)
    assert leftovers(out_dir) == []


def test_model_failing_midway_leaves_no_output(packages, batch_frame, tmp_path):
    frame = batch_frame.copy()
    frame.loc[130, "f2"] = 1000.0
    src = write_input(frame, tmp_path / "d.jsonl")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for workers in (1, 2):
        with pytest.raises(
            errors.FlavorError,
            match=r"d\.jsonl: rows 100-149: the model raised ValueError: value out of range$",
        ):
            predict_file(packages["fails_on_big_values"], src, out_dir / "o.parquet",
                         batch_size=50, workers=workers, keep_columns=["id", "name"])  # fmt: skip
        assert leftovers(out_dir) == []


def test_an_interrupt_leaves_no_output_nor_temporary_file(packages, inputs, tmp_path, monkeypatch):
    from modelpack.batch import _scorer

    calls = []
    real = _scorer.Scorer.__call__

    def interrupted(self, x):  # Ctrl-C arrives while the third batch is scored
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(_scorer.Scorer, "__call__", interrupted)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        predict_file(packages["row_sum"], inputs["csv"], out_dir / "o.csv", batch_size=50,
                     keep_columns=["id", "name"])  # fmt: skip
    assert len(calls) == 3 and leftovers(out_dir) == []


def test_a_package_that_fails_to_load_in_the_workers(packages, inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_TEST_BREAK_LOAD", "1")  # only processes started now see it
    with pytest.raises(
        errors.FlavorError,
        match=r"^Loading the package in a worker process failed: RuntimeError: cannot open the "
        r"lookup table$",
    ):
        predict_file(packages["fails_to_load"], inputs["csv"], tmp_path / "o.csv", workers=2,
                     keep_columns=["id", "name"])  # fmt: skip
    assert leftovers(tmp_path) == []


def test_a_modified_package_is_refused_before_any_worker_starts(packages, inputs, tmp_path):
    import shutil

    shutil.copytree(packages["row_sum"], tmp_path / "m")
    with open(tmp_path / "m" / "model" / "python_model.pkl", "ab") as f:
        f.write(b"\0")
    with pytest.raises(errors.IntegrityError, match=r"model/python_model\.pkl"):
        predict_file(tmp_path / "m", inputs["csv"], tmp_path / "o.csv", workers=2)
    assert leftovers(tmp_path) == ["m"]


# ---------------------------------------------------------------------------- unreadable input


def test_malformed_csv_names_row_line_and_byte(packages, batch_frame, tmp_path):
    src = write_input(batch_frame.head(20), tmp_path / "d.csv")
    lines = src.read_bytes().split(b"\n")
    lines[8] = b"1,2,3"  # data row 7
    data = b"\n".join(lines)
    src.write_bytes(data)
    byte = data.index(b"\n1,2,3\n") + 1
    with pytest.raises(errors.SchemaError) as e:
        predict_file(packages["sklearn"], src, tmp_path / "o.csv", keep_columns=["id"])
    assert str(e.value) == (
        f"{src}: row 7 (line 9, byte {byte}): expected 8 values (one per header column), got 3."
    )


def test_malformed_jsonl_names_row_line_and_byte(packages, batch_frame, tmp_path):
    src = write_input(batch_frame.head(20), tmp_path / "d.jsonl")
    lines = src.read_bytes().split(b"\n")
    lines[7] = lines[7][:-5]  # cut off the end of row 7
    data = b"\n".join(lines)
    src.write_bytes(data)
    byte = data.index(lines[7])
    with pytest.raises(
        errors.SchemaError,
        match=rf"d\.jsonl: row 7 \(line 8, byte {byte}\): not valid JSON \(.+\)\.$",
    ):
        predict_file(packages["sklearn"], src, tmp_path / "o.csv")


def test_jsonl_value_of_the_wrong_type(packages, batch_frame, tmp_path):
    src = write_input(batch_frame.head(20), tmp_path / "d.jsonl")
    lines = src.read_text().split("\n")
    record = json.loads(lines[12])
    record["f1"] = "high"
    lines[12] = json.dumps(record)
    src.write_text("\n".join(lines))
    with pytest.raises(
        errors.SchemaError,
        match=r"d\.jsonl: row 12 \(line 13, byte \d+\): column 'f1': cannot cast 'high' to "
        r"double\.",
    ):
        predict_file(packages["sklearn"], src, tmp_path / "o.csv")


def test_missing_integer_value_names_row_and_line(tmp_path):
    import pandas as pd

    import modelpack

    example = pd.DataFrame({"n": np.arange(3, dtype=np.int64)})
    modelpack.save(lambda d: d["n"].to_numpy(), tmp_path / "m", input_example=example)
    src = tmp_path / "d.csv"
    src.write_text("n\n1\n2\n\n3\nNA\n")
    with pytest.raises(
        errors.SchemaError,
        match=r"d\.csv: row 3: column 'n': a missing value, but long cannot hold missing "
        r"values; fill them, or declare the column as double\.",
    ):
        predict_file(tmp_path / "m", src, tmp_path / "o.csv")
    src.write_text("n\n1\n2\n3\nNA\n")
    with pytest.raises(errors.SchemaError, match=r"d\.csv: row 3 \(line 5\): column 'n': a miss"):
        predict_file(tmp_path / "m", src, tmp_path / "o.csv")


def test_not_a_parquet_file(packages, tmp_path):
    src = tmp_path / "d.parquet"
    src.write_text("f0,f1\n1,2\n")
    with pytest.raises(errors.SchemaError, match=r"d\.parquet: cannot be read as Parquet \(.+\)\."):
        predict_file(packages["sklearn"], src, tmp_path / "o.csv")


def test_empty_files(packages, tmp_path):
    (tmp_path / "d.csv").write_text("")
    with pytest.raises(
        errors.SchemaError,
        match=r"d\.csv: the file is empty; expected a header line of column names\.",
    ):
        predict_file(packages["sklearn"], tmp_path / "d.csv", tmp_path / "o.csv")
    (tmp_path / "d.jsonl").write_text("\n")
    with pytest.raises(
        errors.SchemaError,
        match=r"d\.jsonl: missing required columns 'f0', 'f1', .+ the input "
        r"has: no columns\.",
    ):
        predict_file(packages["sklearn"], tmp_path / "d.jsonl", tmp_path / "o.csv")


# ---------------------------------------------------------------------------- columns


def test_missing_required_columns_are_named(packages, batch_frame, tmp_path):
    src = write_input(batch_frame.drop(columns=["f2", "f4"]), tmp_path / "d.parquet")
    with pytest.raises(errors.SchemaError) as e:
        predict_file(packages["sklearn"], src, tmp_path / "o.csv")
    assert str(e.value) == (
        f"{src}: missing required columns 'f2', 'f4'. The model takes: f0 (double), "
        f"f1 (double), f2 (double), f3 (double), f4 (double), f5 (double); the input has: id, "
        f"f0, f1, f3, f5, name."
    )
    assert e.value.field == "f2"


def test_keep_column_that_is_not_there(packages, inputs, tmp_path):
    with pytest.raises(
        errors.SchemaError, match=r"data\.csv: no column 'idx' to keep\. Its columns: id, f0"
    ):
        predict_file(packages["sklearn"], inputs["csv"], tmp_path / "o.csv", keep_columns=["idx"])


def test_tensor_model_needs_the_right_number_of_columns(packages, inputs, tmp_path):
    with pytest.raises(
        errors.SchemaError,
        match=re.escape(
            "data.parquet: the model takes 6 feature columns (a tensor of shape (-1, 6)); the "
            "input has 7 besides --keep-columns: id, f0, f1, f2, f3, f4, f5. Keep the other "
            "columns with --keep-columns, or drop them from the file."
        ),
    ):
        predict_file(packages["torch"], inputs["parquet"], tmp_path / "o.csv",
                     keep_columns=["name"])  # fmt: skip


def test_prediction_column_that_clashes_with_a_kept_one(packages, batch_frame, tmp_path):
    src = write_input(batch_frame.assign(prediction=1), tmp_path / "d.parquet")
    with pytest.raises(
        errors.InvalidArgument,
        match=r"The output would have two columns named 'prediction' \(a kept column and a "
        r"prediction\)\. Rename the prediction with --prediction-column",
    ):
        predict_file(packages["sklearn"], src, tmp_path / "o.csv", keep_columns=["prediction"])
    assert leftovers(tmp_path) == ["d.parquet"]


def test_prediction_column_with_several_outputs(packages, inputs, tmp_path):
    with pytest.raises(
        errors.InvalidArgument,
        match=r"--prediction-column names a single output, but this model returns 2 \(label, "
        r"probabilities\), each in a column of its own name\. Leave --prediction-column out\.",
    ):
        predict_file(packages["onnx"], inputs["parquet"], tmp_path / "o.csv",
                     keep_columns=["id", "name"], prediction_column="p")  # fmt: skip


# ---------------------------------------------------------------------------- arguments


def test_missing_package_and_input(packages, inputs, tmp_path):
    with pytest.raises(errors.NotFound, match=r"No model package at '.*nope': the path does"):
        predict_file(tmp_path / "nope", inputs["csv"], tmp_path / "o.csv")
    with pytest.raises(errors.NotFound, match=r"Input file '.*absent\.csv' does not exist\."):
        predict_file(packages["sklearn"], tmp_path / "absent.csv", tmp_path / "o.csv")
    with pytest.raises(errors.InvalidArgument, match=r"Input '.*' is a folder; give a file\."):
        predict_file(packages["sklearn"], tmp_path, tmp_path / "o.csv", input_format="csv")


def test_unknown_flavor(packages, inputs, tmp_path):
    with pytest.raises(
        errors.UnknownFlavor, match=r"This package does not store the 'onnx' flavor\. Stored: sk"
    ):
        predict_file(packages["sklearn"], inputs["csv"], tmp_path / "o.csv", flavor="onnx")


def test_output_folder_must_exist(packages, inputs, tmp_path):
    with pytest.raises(
        errors.NotFound,
        match=r"The output folder '.*no/such' does not exist; create it first, or choose another",
    ):
        predict_file(packages["sklearn"], inputs["csv"], tmp_path / "no" / "such" / "o.csv")


def test_existing_output_needs_overwrite(packages, inputs, tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("keep me")
    with pytest.raises(
        errors.AlreadyExists,
        match=r"Output '.*o\.csv' already exists\. Pass --overwrite \(overwrite=True\) to replace "
        r"it, or choose another path\.",
    ):
        predict_file(packages["sklearn"], inputs["csv"], out)
    assert out.read_text() == "keep me"
    predict_file(packages["sklearn"], inputs["csv"], out, overwrite=True)
    assert out.read_text().startswith('"prediction"\n')
    with pytest.raises(errors.InvalidArgument, match=r"Output '.*' is a folder; give a file path"):
        predict_file(packages["sklearn"], inputs["csv"], tmp_path, output_format="csv")


def test_formats_that_cannot_be_guessed(packages, inputs, tmp_path):
    src = tmp_path / "d.txt"
    src.write_text("f0\n1\n")
    with pytest.raises(
        errors.InvalidArgument,
        match=r"Cannot guess the input format of '.*d\.txt' from its extension \(known: \.csv, "
        r"\.jsonl, \.ndjson, \.parquet, \.pq\)\. Pass --input-format with one of: csv, jsonl, ",
    ):
        predict_file(packages["sklearn"], src, tmp_path / "o.csv")
    with pytest.raises(errors.InvalidArgument, match=r"Cannot guess the output format of '.*o'"):
        predict_file(packages["sklearn"], inputs["csv"], tmp_path / "o")
    with pytest.raises(
        errors.InvalidArgument,
        match=r"Cannot guess the format of stdin: pass --input-format csv or jsonl\.",
    ):
        predict_file(packages["sklearn"], "-", tmp_path / "o.csv")
    with pytest.raises(
        errors.InvalidArgument,
        match=r"Cannot guess the format of stdout: pass --output-format csv or jsonl\.",
    ):
        predict_file(packages["sklearn"], inputs["parquet"], "-")
    with pytest.raises(errors.InvalidArgument, match=r"Parquet cannot be streamed through stdin"):
        predict_file(packages["sklearn"], "-", tmp_path / "o.csv", input_format="parquet")
    with pytest.raises(
        errors.InvalidArgument, match=r"Unknown output format 'xls'\. Supported: csv, jsonl, par"
    ):
        predict_file(packages["sklearn"], inputs["csv"], tmp_path / "o.csv", output_format="xls")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0\."),
        ({"max_line_bytes": 0}, r"max_line_bytes must be an integer >= 1, got 0\."),
        ({"workers": "2"}, r"workers must be an integer >= 1, got '2'\."),
        ({"keep_columns": "id"}, r"keep_columns must be a list of column names, got 'id'\."),
        ({"prediction_column": ""}, r"prediction_column must be a non-empty string, got ''\."),
    ],
)
def test_options_that_cannot_work(option, message, packages, inputs, tmp_path):
    with pytest.raises(errors.InvalidArgument, match=message):
        predict_file(packages["sklearn"], inputs["csv"], tmp_path / "o.csv", **option)
