"""Shapes of text input that once took quadratic time or unbounded memory: very wide headers,
very long lines, many small batches. Each runs in a child process where a hang would show, with
a timeout far above what it takes (a second or two) and far below what it once took."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from batchfiles import FEATURES, by_value

import modelpack
from modelpack import errors
from modelpack.batch import DEFAULT_MAX_LINE_BYTES, _readers, predict_file

TIMEOUT_S = 15  # each takes 1-3 s; before the fix, 20 s to minutes
LIMIT_MIB = 300  # peak RSS refusing a 64 MiB line takes ~90 MiB; it once took ~400
ROWS = 3

# Runs the command in a child, with a timeout, and prints its exit code, its stderr and its
# peak RSS in MiB (Linux: KiB units). A timed-out child is killed and the script fails.
MEASURE = (
    "import json, resource, subprocess, sys\n"
    "proc = subprocess.run(sys.argv[2:], capture_output=True, text=True,\n"
    "                      timeout=float(sys.argv[1]))\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024\n"
    "print(json.dumps([proc.returncode, proc.stderr, peak]))\n"
)


def predict(package, src, out, *options):
    """``modelpack predict`` in a child: (exit code, stderr, peak RSS in MiB)."""
    command = [sys.executable, "-m", "modelpack.cli", "predict", str(package), "-i", str(src),
               "-o", str(out), *options]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(TIMEOUT_S), *command],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, f"no result within {TIMEOUT_S} s:\n{proc.stderr[-2000:]}"
    return tuple(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A model that sums the six columns its signature names, and one without a signature."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("models")
    example = pd.DataFrame(np.ones((3, len(FEATURES))), columns=FEATURES)
    modelpack.save(by_value("row_sum"), folder / "six", input_example=example)
    modelpack.save(by_value("row_sum"), folder / "any")
    return {"six": folder / "six", "any": folder / "any"}


def wide_file(path, width):
    """ROWS rows of ``width`` columns: ``width - 6`` text ones, then the model's six."""
    extra = [f"extra_{i}" for i in range(width - len(FEATURES))]
    rows = [[float(r * 10 + i) for i in range(len(FEATURES))] for r in range(ROWS)]
    with open(path, "w") as f:
        if path.suffix == ".csv":
            f.write(",".join(extra + FEATURES) + "\n")
            for values in rows:
                f.write(",".join(["x"] * len(extra) + [str(v) for v in values]) + "\n")
        else:
            for values in rows:
                record = dict.fromkeys(extra, "x") | dict(zip(FEATURES, values, strict=True))
                f.write(json.dumps(record) + "\n")
    return [sum(values) for values in rows]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("width", [40_000, 80_000])
def test_a_wide_file_reads_only_the_columns_the_model_takes(models, tmp_path, fmt, width):
    src, out = tmp_path / f"wide.{fmt}", tmp_path / "out.csv"
    expected = wide_file(src, width)
    code, stderr, _ = predict(models["six"], src, out, "--keep-columns", "f0")
    assert code == 0, stderr
    import pandas as pd

    scored = pd.read_csv(out)
    assert list(scored.columns) == ["f0", "prediction"]
    assert scored["prediction"].tolist() == expected


def test_a_model_without_a_signature_takes_at_most_10000_columns(models, tmp_path):
    src = tmp_path / "wide.csv"
    wide_file(src, 10_002)
    message = (
        r"wide\.csv: the input has 10,001 columns besides --keep-columns; the package has no "
        r"input signature, so the model takes every column, and at most 10,000 are read that "
        r"way\. Save the package with an input_example"
    )
    with pytest.raises(errors.SchemaError, match=message):
        predict_file(models["any"], src, tmp_path / "out.csv", keep_columns=["f0"])
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_64_mib_line_is_refused_as_soon_as_it_passes_the_limit(models, tmp_path, fmt):
    src = tmp_path / f"long.{fmt}"
    with open(src, "w") as f:
        if fmt == "csv":
            f.write(",".join(FEATURES) + "\n" + ",".join("1" * 6) + "\n")
        else:
            f.write(json.dumps(dict.fromkeys(FEATURES, 1)) + "\n")
        start = f.tell()
        f.write("7" * (64 << 20) + "\n")
    code, stderr, peak = predict(models["six"], src, tmp_path / "out.csv")
    line = 3 if fmt == "csv" else 2
    assert code == 1
    assert stderr == (
        f"error: {src}: line {line} (from byte {start}) is longer than the limit of 16,777,216 "
        f"bytes. Each line is one record and ends with a newline; if the records really are "
        f"this long, raise --max-line-bytes.\n"
    )
    assert peak < LIMIT_MIB, f"peak RSS {peak} MiB refusing a 64 MiB line"
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_max_line_bytes_is_the_longest_line_read(models, tmp_path, fmt):
    src = tmp_path / f"lines.{fmt}"
    if fmt == "csv":
        lines = [",".join(FEATURES), "1,2,3,4,5,6", "1,2,3,4,5,66666666"]
    else:
        lines = [json.dumps(dict.fromkeys(FEATURES, 1)), json.dumps(dict.fromkeys(FEATURES, 999))]
    src.write_text("\n".join(lines) + "\n")  # the longest line, last, is refused or read
    longest = max(len(line) for line in lines)
    out = tmp_path / "out.csv"
    predict_file(models["six"], src, out, max_line_bytes=longest)
    assert len(out.read_text().splitlines()) == len(lines) - (fmt == "csv") + 1
    message = (
        rf"lines\.{fmt}: line {len(lines)} \(from byte {len(src.read_bytes()) - longest - 1}\) is "
        rf"longer than the limit of {longest - 1:,} bytes\. .* raise --max-line-bytes\.$"
    )
    with pytest.raises(errors.SchemaError, match=message):
        predict_file(models["six"], src, out, max_line_bytes=longest - 1, overwrite=True)


def test_a_header_longer_than_the_limit_is_refused(models, tmp_path):
    src = tmp_path / "h.csv"
    src.write_text(",".join(FEATURES) + "\n1,2,3,4,5,6\n")
    with pytest.raises(errors.SchemaError, match=r"h\.csv: line 1 \(from byte 0\) is longer than"):
        predict_file(models["six"], src, tmp_path / "o.csv", max_line_bytes=10)


def test_the_cli_takes_max_line_bytes(models, tmp_path, capsys):
    from modelpack.cli import main

    src = tmp_path / "d.csv"
    src.write_text(",".join(FEATURES) + "\n1,2,3,4,5,6\n")  # the header is the longest line: 17
    argv = ["predict", str(models["six"]), "-i", str(src), "-o", str(tmp_path / "o.csv")]
    assert main([*argv, "--max-line-bytes", "17"]) == 0
    assert main([*argv, "--overwrite", "--max-line-bytes", "16"]) == 1
    assert "d.csv: line 1 (from byte 0) is longer than the limit of 16 bytes." in (
        capsys.readouterr().err
    )
    assert DEFAULT_MAX_LINE_BYTES == 16 << 20


def test_small_batches_read_ahead_a_bounded_amount(tmp_path):
    """The bytes read but not yet handed out stay bounded, batch after batch: they once grew by
    up to 64 KiB a batch, to the whole file, with each batch copying them again."""
    src = tmp_path / "short.csv"
    src.write_text("a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(300_000)))  # 3 MiB
    with _readers.open_input(str(src), "csv", 10, DEFAULT_MAX_LINE_BYTES) as reader:
        rows = 0
        for chunk in reader.batches(["a", "b"], {}):
            rows += chunk.table.num_rows
            ahead = reader.stream.tell() - reader.bytes_read
            assert ahead <= (1 << 20) + (1 << 16), f"{ahead} bytes read ahead after {rows} rows"
            if rows >= 20_000:
                break
    assert rows == 20_000


def test_blank_lines_before_the_first_record_do_not_fix_the_types(models, tmp_path):
    src = tmp_path / "blank.jsonl"
    records = [json.dumps({"id": i} | dict.fromkeys(FEATURES, i)) for i in range(3)]
    src.write_text("\n\n" + "\n".join(records) + "\n")  # a first batch of two blank lines
    out = tmp_path / "out.jsonl"
    predict_file(models["six"], src, out, batch_size=2, keep_columns=["id"])
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"id": i, "prediction": 6 * i} for i in range(3)
    ]
