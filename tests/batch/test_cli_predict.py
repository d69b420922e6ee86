"""``modelpack predict``: summary and progress on stderr, stdin/stdout, errors, Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from batchfiles import FEATURES, write_input
from tolerances import FLOAT32

import modelpack
from modelpack.cli import main

SUMMARY = r"scored {rows} rows in \d+\.\d\d s \([\d,]+ rows/s\) -> {where}\n"


def test_cli_writes_the_file_and_one_summary_line(packages, inputs, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    code = main(["predict", str(packages["sklearn"]), "-i", str(inputs["parquet"]), "-o",
                 str(out), "--keep-columns", "id, name", "--batch-size", "100"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0 and captured.out == ""
    # Not a terminal: no progress bar, only the summary.
    assert re.fullmatch(SUMMARY.format(rows=300, where=re.escape(str(out))), captured.err)
    assert out.read_text().splitlines()[0] == '"id","name","prediction"'


def test_cli_shows_a_progress_bar_on_a_terminal(packages, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    out = tmp_path / "scores.parquet"
    code = main(["predict", str(packages["sklearn"]), "-i", str(inputs["csv"]), "-o", str(out),
                 "--batch-size", "100"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    assert re.search(r"300/300 \[[\d:]+<[\d:]+, +[\d.]+k? rows/s\]", err), err
    assert re.search(SUMMARY.format(rows=300, where=re.escape(str(out))), err)


def test_cli_errors_are_one_line(packages, inputs, tmp_path, capsys):
    out = tmp_path / "o.csv"
    out.write_text("x")
    code = main(["predict", str(packages["sklearn"]), "-i", str(inputs["csv"]), "-o", str(out)])
    assert code == 1
    assert capsys.readouterr().err == (
        f"error: Output {str(out)!r} already exists. Pass --overwrite (overwrite=True) to "
        f"replace it, or choose another path.\n"
    )
    code = main(["predict", str(tmp_path / "nope"), "-i", str(inputs["csv"]), "-o", "-"])
    assert code == 1
    assert capsys.readouterr().err.startswith("error: No model package at ")


def test_stdin_to_stdout_in_a_subprocess(packages, batch_frame, tmp_path):
    src = write_input(batch_frame, tmp_path / "d.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "modelpack.cli", "predict", str(packages["sklearn"]), "-i", "-",
         "-o", "-", "--input-format", "csv", "--keep-columns", "id"],
        input=src.read_bytes(), capture_output=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert re.fullmatch(SUMMARY.format(rows=300, where="stdout"), proc.stderr.decode())
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == '"id","prediction"'
    expected = modelpack.load(packages["sklearn"]).predict(batch_frame[FEATURES])
    assert lines[1:] == [f"{i},{p}" for i, p in zip(batch_frame["id"], expected, strict=True)]


def test_jsonl_stdin_to_stdout(packages, batch_frame, tmp_path, monkeypatch, capsys):
    src = write_input(batch_frame, tmp_path / "d.jsonl")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(src.read_bytes())))
    stdout = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["predict", str(packages["torch"]), "-i", "-", "-o", "-", "--input-format",
                 "jsonl", "--keep-columns", "name,id", "--batch-size", "128"])  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in stdout.buffer.getvalue().splitlines()]
    assert len(records) == 300 and list(records[0]) == ["name", "id", "prediction_0",
                                                        "prediction_1"]  # fmt: skip
    expected = modelpack.load(packages["torch"]).predict(batch_frame[FEATURES].to_numpy(np.float32))
    got = np.array([[r["prediction_0"], r["prediction_1"]] for r in records])
    np.testing.assert_allclose(got, expected, **FLOAT32)
    assert [r["name"] for r in records] == batch_frame["name"].tolist()


def test_ctrl_c_with_workers_leaves_no_output(packages, batch_frame, tmp_path):
    import pandas as pd

    src = write_input(pd.concat([batch_frame] * 2), tmp_path / "d.parquet")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelpack.cli", "predict", str(packages["slow"]), "-i", str(src),
         "-o", str(out_dir / "o.csv"), "--workers", "2", "--batch-size", "10",
         "--keep-columns", "id,name"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(out_dir.iterdir()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        assert [p.name.endswith(".modelpack-tmp") for p in out_dir.iterdir()] == [True]
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    assert err.decode().endswith("interrupted\n")
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("flag", ["--workers", "--batch-size"])
def test_cli_rejects_counts_below_one(flag, packages, inputs, tmp_path, capsys):
    code = main(["predict", str(packages["sklearn"]), "-i", str(inputs["csv"]), "-o",
                 str(tmp_path / "o.csv"), flag, "0"])  # fmt: skip
    name = flag[2:].replace("-", "_")
    assert code == 1
    assert capsys.readouterr().err == f"error: {name} must be an integer >= 1, got 0.\n"
