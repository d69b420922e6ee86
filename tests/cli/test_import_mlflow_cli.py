"""``modelpack import-mlflow``: what it says about sources it cannot read, and objects it cannot
copy, on hand-written MLflow file stores (the real MLflow's stores: tests/store/)."""

from __future__ import annotations

import socket
import sqlite3

import pytest

from modelpack.cli import main
from modelpack.client import Client

RUN_OK = "a" * 32
RUN_BAD = "b" * 32


def _import(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["import-mlflow", "--no-progress", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dest(tmp_path):
    return [
        "--to",
        f"sqlite:///{tmp_path / 'dest' / 'mp.db'}",
        "--artifact-root",
        str(tmp_path / "art"),
    ]


def test_sources_it_cannot_read_are_named_with_the_fix(capsys, tmp_path, dest):
    code, _, err = _import(capsys, "--from", "ftp://host/mlruns", *dest)
    assert code == 1
    assert err.startswith(
        "error: Cannot read an MLflow store at 'ftp://host/mlruns' (scheme 'ftp')"
    )
    assert "http://host:port" in err

    code, _, err = _import(capsys, "--from", str(tmp_path / "nope"), *dest)
    assert (
        err == f"error: No MLflow file store at {tmp_path / 'nope'}: the folder does not exist.\n"
    )

    (tmp_path / "empty").mkdir()
    code, _, err = _import(capsys, "--from", str(tmp_path / "empty"), *dest)
    assert "is not an MLflow file store: no experiment folder with a meta.yaml" in err

    code, _, err = _import(capsys, "--from", f"sqlite:///{tmp_path / 'missing.db'}", *dest)
    assert err.startswith("error: No MLflow database at sqlite:///")
    assert "the file does not exist" in err

    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE x (a INT)").connection.close()
    code, _, err = _import(capsys, "--from", f"sqlite:///{tmp_path / 'other.db'}", *dest)
    assert "is not an MLflow store: it has no experiments, experiment_tags, runs" in err

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _import(capsys, "--from", f"http://127.0.0.1:{port}", *dest)
    assert code == 1
    assert err.startswith(f"error: Cannot reach the MLflow server http://127.0.0.1:{port}: ")
    assert err.rstrip().endswith("Is the server running?")


def _write_store(root):
    """An mlruns folder as MLflow's FileStore lays it out: one experiment, two runs."""
    exp = root / "mlruns" / "0"
    for run_id, metric in ((RUN_OK, "10 1.5 2 ds digest"), (RUN_BAD, "10 1.5 2 3")):
        run = exp / run_id
        (run / "metrics").mkdir(parents=True)
        (run / "params").mkdir()
        (run / "tags").mkdir()
        (run / "metrics" / "m").write_text(metric + "\n")
        (run / "params" / "lr").write_text("0.1")
        (run / "tags" / "mlflow.runName").write_text(run_id[:4])
        (run / "meta.yaml").write_text(
            f"artifact_uri: mlflow-artifacts:/0/{run_id}/artifacts\nend_time: 6\n"
            f"experiment_id: '0'\nlifecycle_stage: active\nrun_id: {run_id}\n"
            f"run_name: {run_id[:4]}\nstart_time: 5\nstatus: 3\nuser_id: u\n"
        )
    (exp / "meta.yaml").write_text(
        f"artifact_location: {exp.as_uri()}\ncreation_time: 1\nexperiment_id: '0'\n"
        f"last_update_time: 2\nlifecycle_stage: active\nname: Default\n"
    )
    proxied = root / "server-artifacts" / "0" / RUN_OK / "artifacts"
    proxied.mkdir(parents=True)
    (proxied / "f.txt").write_text("hello")
    return root / "mlruns"


def test_objects_it_cannot_copy_are_reported_and_the_rest_copied(capsys, tmp_path, dest):
    mlruns = _write_store(tmp_path)
    code, out, _ = _import(capsys, "--from", str(mlruns), *dest)
    assert code == 1
    lines = out.splitlines()
    assert lines[1:4] == [
        "kind               source  copied  already there  failed",
        "experiments        1       1       0              0",
        "runs               2       0       0              2",
    ]
    assert (
        f"failed: run {RUN_OK}: Run {RUN_OK}'s artifacts is at "
        f"'mlflow-artifacts:/0/{RUN_OK}/artifacts', on an MLflow server's artifact proxy. Import "
        f"through the server (--from http://host:port), or pass --artifacts-destination with "
        f"the server's --artifacts-destination folder." in lines
    )
    assert (
        f"failed: run {RUN_BAD}: {mlruns / '0' / RUN_BAD / 'metrics' / 'm'} line 1: expected "
        f"2, 3 or 5 fields, got 4; MLflow cannot read this metric either." in lines
    )

    server = str(tmp_path / "server-artifacts")
    code, out, _ = _import(capsys, "--from", str(mlruns), *dest, "--artifacts-destination", server)
    assert out.splitlines()[3] == "runs               2       1       0              1"
    assert "Copied 1 metric points and 1 artifact files." in out
    client = Client(dest[1], dest[3])
    run = client.get_run(RUN_OK)
    assert (run.info.run_name, run.info.user_id, run.info.status) == ("aaaa", "u", "FINISHED")
    assert dict(run.data.params) == {"lr": "0.1"}
    # MLflow reads a 5-field line (with a dataset) as step 0; so does the import.
    [point] = client.get_metric_history(RUN_OK, "m")
    assert (point.value, point.timestamp, point.step) == (1.5, 10, 0)
    assert [f.path for f in client.list_artifacts(RUN_OK)] == ["f.txt"]
