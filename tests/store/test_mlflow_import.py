"""``import_mlflow`` / ``modelpack import-mlflow`` against stores the real MLflow 3.17.2 wrote.

One MLflow script (in the MLflow virtualenv) logs the same content into a file store, an SQLite
database, a PostgreSQL database and a live ``mlflow server``, and dumps what MLflow's own client
returns for each; every import is compared with that dump.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from modelpack.client import Client
from modelpack.entities import to_ms
from modelpack.mlflow_store import import_mlflow

SOURCES = ("file", "sqlite", "postgresql", "http")

MAKE_SOURCES = r"""
import json, math, sys
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from sklearn.linear_model import LogisticRegression

out = Path(sys.argv[1])
targets = json.loads(sys.argv[2])


def fill(uri, label):
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    c = MlflowClient(uri, uri)
    base = 1_700_000_000_000
    # A server proxies artifacts itself; elsewhere each store gets a folder of its own.
    where = (lambda name: None) if label == "http" else (lambda name: str(out / label / name))
    alpha = c.create_experiment(
        "exp-alpha", where("alpha"), tags={"team": "ml", "mlflow.note.content": "alpha"}
    )
    beta = c.create_experiment("exp-beta", where("beta"))
    gone = c.create_experiment("exp-gone", where("gone"))
    parent = c.create_run(alpha, run_name="parent", start_time=base, tags={"kind": "parent"})
    rid = parent.info.run_id
    pts = [
        Metric("loss", 1.0, base + 10, 0), Metric("loss", 0.5, base + 20, 1),
        Metric("loss", 0.5, base + 30, 1),  # the same (step, value), later
        Metric("loss", 0.25, base + 40, 2), Metric("loss", 0.25, base + 40, 2),  # exact twice
        Metric("loss", float("nan"), base + 50, 3), Metric("loss", 0.1, base + 60, 4),
        Metric("acc", float("inf"), base + 10, 0), Metric("acc", float("-inf"), base + 20, 1),
        Metric("acc", 0.9, base + 30, 2), Metric("acc", 0.8, base + 30, 2),
    ]
    c.log_batch(rid, metrics=pts[:5], params=[Param("lr", "0.01"), Param("depth", "5")],
                tags=[RunTag("stage", "train")])
    c.log_batch(rid, metrics=pts[5:])
    c.log_metric(rid, "loss", 0.1, timestamp=base + 60, step=4)  # exact again, another call
    src = out / f"files-{label}"
    (src / "plots").mkdir(parents=True)
    (src / "data" / "nested").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "plots" / "a.txt").write_text("plot a\n")
    (src / "data" / "nested" / "b.json").write_text('{"b": 1}\n')
    c.log_artifacts(rid, str(src))
    c.log_artifact(rid, str(src / "top.txt"), "extra")
    c.set_terminated(rid, "FINISHED", end_time=base + 1000)
    child = c.create_run(alpha, run_name="child", start_time=base + 100,
                         tags={"mlflow.parentRunId": rid}).info.run_id
    c.log_metric(child, "loss", 0.3, timestamp=base + 110, step=0)
    c.set_terminated(child, "KILLED", end_time=base + 200)
    dead = c.create_run(alpha, run_name="deleted-one", start_time=base + 300).info.run_id
    c.log_param(dead, "p", "1")
    c.set_terminated(dead, "FINISHED", end_time=base + 400)
    c.delete_run(dead)
    g = c.create_run(gone, run_name="in-gone", start_time=base + 500).info.run_id
    c.set_terminated(g, "FINISHED", end_time=base + 600)
    c.delete_experiment(gone)

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.1]])
    y = np.array([0, 1, 0, 1])
    mlflow.set_experiment(experiment_id=beta)
    for i in range(3):
        with mlflow.start_run(run_name=f"train-{i}"):
            mlflow.log_param("C", str(1.0 + i))
            mlflow.sklearn.log_model(
                LogisticRegression(C=1.0 + i).fit(X, y), name="model",
                registered_model_name="demo", serialization_format="pickle",
                pip_requirements=["scikit-learn"],
            )
    c.update_registered_model("demo", description="the demo model")
    c.set_registered_model_tag("demo", "owner", "team-a")
    c.delete_model_version("demo", "2")
    c.transition_model_version_stage("demo", "1", "Production")
    c.transition_model_version_stage("demo", "3", "Staging")
    c.set_registered_model_alias("demo", "champion", "3")
    c.set_registered_model_alias("demo", "previous", "1")
    c.set_model_version_tag("demo", "3", "validated", "yes")
    c.update_model_version("demo", "1", description="first one")
    # A version MLflow accepts but no importer converts: a flavor nobody knows.
    with mlflow.start_run(run_name="odd") as run:
        odd = out / f"odd-{label}"
        odd.mkdir()
        (odd / "MLmodel").write_text("flavors:\n  fancy_flavor:\n    data: x.bin\n")
        (odd / "x.bin").write_bytes(b"\0\1")
        mlflow.log_artifacts(str(odd), "odd_model")
        odd_run = run.info.run_id
    c.create_registered_model("odd", tags={"k": "v"}, description="cannot convert")
    c.create_model_version("odd", f"{c.get_run(odd_run).info.artifact_uri}/odd_model", odd_run)
    return c


def number(v):
    return v if math.isfinite(v) else repr(v)


def dump(c):
    exps = c.search_experiments(view_type=ViewType.ALL)
    d = {"experiments": [], "runs": [], "models": []}
    for e in exps:
        d["experiments"].append({
            "id": e.experiment_id, "name": e.name, "lifecycle_stage": e.lifecycle_stage,
            "tags": e.tags, "creation_time": e.creation_time,
        })
    runs = c.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL)

    def files(run_id, path=None):
        found = []
        for f in c.list_artifacts(run_id, path):
            found += files(run_id, f.path) if f.is_dir else [[f.path, f.file_size]]
        return found

    for r in runs:
        i = r.info
        d["runs"].append({
            "run_id": i.run_id, "experiment_id": i.experiment_id, "run_name": i.run_name,
            "user_id": i.user_id, "status": i.status, "start_time": i.start_time,
            "end_time": i.end_time, "lifecycle_stage": i.lifecycle_stage,
            "params": r.data.params, "tags": r.data.tags,
            "metrics": {k: number(v) for k, v in r.data.metrics.items()},
            "history": {
                k: [[number(m.value), m.timestamp, m.step]
                    for m in c.get_metric_history(i.run_id, k)]
                for k in r.data.metrics
            },
            "artifacts": sorted(files(i.run_id)),
        })
    for m in c.search_registered_models():
        # search_model_versions leaves aliases out on SQL stores; get_model_version has them.
        versions = [c.get_model_version(m.name, v.version)
                    for v in c.search_model_versions(f"name = '{m.name}'")]
        d["models"].append({
            "name": m.name, "description": m.description, "tags": m.tags,
            "aliases": {a: int(v) for a, v in m.aliases.items()},
            "versions": sorted(({
                "version": int(v.version), "stage": v.current_stage,
                "description": v.description or "", "source": v.source, "run_id": v.run_id,
                "tags": v.tags, "aliases": sorted(v.aliases),
                "creation_timestamp": v.creation_timestamp,
                "last_updated_timestamp": v.last_updated_timestamp,
            } for v in versions), key=lambda v: v["version"]),
        })
    return d


import time
result = {}
for label, uri in targets.items():
    start = time.time()
    if label == "http":  # the server started with this script; it is up by now, or soon
        import urllib.request
        for _ in range(480):  # 120 s at most
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        else:
            raise SystemExit(f"mlflow server at {uri} did not answer /health in 120 s")
    result[label] = dump(fill(uri, label))
    print(label, round(time.time() - start, 1), file=sys.stderr)
print(json.dumps(result))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_sources(mlflow_env, postgres_server, tmp_path_factory):
    """``{label: (uri, dump)}`` for the four MLflow stores, all with the same content."""
    import psycopg

    tmp = tmp_path_factory.mktemp("mlflow-sources")
    database = f"mlflow_src_{uuid.uuid4().hex[:10]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    port = _free_port()
    http = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                str(mlflow_env.bin / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{tmp / 'server.db'}",
                "--artifacts-destination",
                str(tmp / "server-artifacts"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--workers",
                "1",
            ],
            cwd=tmp,
            env=mlflow_env.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        uris = {
            "file": (tmp / "mlruns").as_uri(),
            "sqlite": f"sqlite:///{tmp / 'mlflow.db'}",
            "postgresql": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
            "http": http,
        }
        try:
            dumps = mlflow_env.json(
                MAKE_SOURCES, str(tmp), json.dumps(uris), cwd=tmp, MLFLOW_ALLOW_FILE_STORE="true"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nmlflow server log:\n{log.read_text()[-3000:]}") from None
        yield {label: (uris[label], dumps[label]) for label in SOURCES}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _number(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)


def _files(root: Path) -> list[list]:
    return sorted(
        [p.relative_to(root).as_posix(), p.stat().st_size] for p in root.rglob("*") if p.is_file()
    )


def assert_same_as_mlflow(client: Client, dump: dict) -> None:
    """The destination holds what MLflow's client returned, field by field."""
    store = client.store
    for e in dump["experiments"]:
        got = store.get_experiment(e["id"])  # ids kept: the destination had them free
        assert (got.name, got.lifecycle_stage, dict(got.tags)) == (
            e["name"],
            e["lifecycle_stage"],
            e["tags"],
        )
        assert to_ms(got.creation_time) == e["creation_time"]
        assert got.artifact_location == f"{client.artifact_root}/{e['id']}"
    parents = {}
    for r in dump["runs"]:
        got = client.get_run(r["run_id"])
        info = got.info
        assert {
            "experiment_id": info.experiment_id,
            "run_name": info.run_name,
            "user_id": info.user_id,
            "status": info.status,
            "start_time": to_ms(info.start_time),
            "end_time": None if info.end_time is None else to_ms(info.end_time),
            "lifecycle_stage": info.lifecycle_stage,
            "params": dict(got.data.params),
            "tags": dict(got.data.tags),
            "metrics": {k: _number(v) for k, v in got.data.metrics.items()},
        } == {
            k: r[k]
            for k in (
                "experiment_id",
                "run_name",
                "user_id",
                "status",
                "start_time",
                "end_time",
                "lifecycle_stage",
                "params",
                "tags",
                "metrics",
            )
        }
        for key, points in r["history"].items():
            ours = [
                [_number(m.value), m.timestamp, m.step]
                for m in client.get_metric_history(r["run_id"], key)
            ]
            # Every point MLflow returns, duplicates included; ours come by step, then time.
            assert ours == sorted(points, key=lambda p: (p[2], p[1]))
        assert (
            info.artifact_uri
            == f"{client.artifact_root}/{r['experiment_id']}/{r['run_id']}/artifacts"
        )
        folder = Path(info.artifact_uri)
        assert (_files(folder) if folder.is_dir() else []) == [list(f) for f in r["artifacts"]]
        parents[r["run_id"]] = info.parent_run_id
        if "mlflow.parentRunId" in r["tags"]:
            assert info.parent_run_id == r["tags"]["mlflow.parentRunId"]
    for m in dump["models"]:
        got = client.get_registered_model(m["name"])
        assert (got.description, dict(got.tags), dict(got.aliases)) == (
            m["description"],
            m["tags"],
            m["aliases"],
        )
        versions = client.search_model_versions(f"name = '{m['name']}'")
        convertible = [v for v in m["versions"] if m["name"] != "odd"]
        assert (
            sorted(
                (
                    {
                        "version": v.version,
                        "stage": v.stage,
                        "description": v.description,
                        "source": v.source,
                        "run_id": v.run_id,
                        "tags": dict(v.tags),
                        "aliases": sorted(v.aliases),
                        "creation_timestamp": to_ms(v.created_at),
                        "last_updated_timestamp": to_ms(v.updated_at),
                    }
                    for v in versions
                ),
                key=lambda v: v["version"],
            )
            == convertible
        )


@pytest.mark.parametrize("source", SOURCES)
def test_import_equals_what_mlflow_returns(source, mlflow_sources, client, tmp_path):
    uri, dump = mlflow_sources[source]
    report = import_mlflow(uri, client, progress=False)

    assert_same_as_mlflow(client, dump)
    runs = len(dump["runs"])
    assert {k: (c.source, c.copied, c.existing, c.failed) for k, c in report.counts.items()} == {
        "experiments": (4, 4, 0, 0),
        "runs": (runs, runs, 0, 0),
        "registered models": (2, 2, 0, 0),
        "model versions": (3, 2, 0, 1),
        "aliases": (2, 2, 0, 0),
    }
    [(kind, what, why)] = report.failures
    assert (kind, what) == ("model versions", "'odd' v1")
    assert "fancy_flavor" in why
    # Version 2 was deleted in MLflow: the gap stays, and the number is never handed out again.
    assert [v.version for v in client.search_model_versions("name = 'demo'")] == [3, 1]
    if source != "http":  # a server does not show deleted versions; the stores do
        history = client.get_model_history("demo")
        assert [(h.action, h.comment) for h in history if h.version == 2] == [
            ("delete", "imported")
        ]
    package = client.resolve("models:/demo@champion")
    import modelpack

    assert modelpack.load(package).predict([[0.0, 1.0], [1.0, 0.0]]).tolist() == [0, 1]

    again = import_mlflow(uri, client, progress=False)
    assert again.copied == 0
    assert {k: (c.copied, c.existing) for k, c in again.counts.items()} == {
        "experiments": (0, 4),
        "runs": (0, runs),
        "registered models": (0, 2),
        "model versions": (0, 2),
        "aliases": (0, 2),
    }
    assert "Nothing to copy" in again.table()
    assert_same_as_mlflow(client, dump)


KILLER = r"""
import os, signal, sys
from modelpack.store import imports

name, at = sys.argv[1], int(sys.argv[2])
real, calls = getattr(imports, name), [0]


def dying(*args, **kwargs):
    calls[0] += 1
    if calls[0] == at:  # midway: this object's files are copied, its rows not committed
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)


setattr(imports, name, dying)
from modelpack.cli import main

sys.exit(main(sys.argv[3:]))
"""


def test_an_import_killed_midway_is_finished_by_the_next(mlflow_sources, tmp_path, capsys):
    uri, dump = mlflow_sources["sqlite"]
    dest = f"sqlite:///{tmp_path / 'dest' / 'modelpack.db'}"
    root = tmp_path / "artifacts"
    argv = ["import-mlflow", "--from", uri, "--to", dest, "--artifact-root", str(root)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}

    def run(name: str, at: str, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", KILLER, name, at, *argv, *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    # Killed in the third run's copy, then in the first version's registration.
    assert run("insert_run", "3").returncode == -signal.SIGKILL
    assert run("insert_version", "1").returncode == -signal.SIGKILL
    done = run("insert_run", "0", "--progress")
    assert done.returncode == 1, done.stderr  # 1: the 'odd' version cannot be converted
    assert "objects" in done.stderr  # the bar
    client = Client(dest, str(root))
    assert_same_as_mlflow(client, dump)
    # No duplicate points (the histories above are exact), and only the two registered
    # packages in registry storage: the killed registration's copy was collected.
    assert len(list((root / "registry").iterdir())) == 2
    lines = done.stdout.splitlines()
    assert lines[1:7] == [
        "kind               source  copied  already there  failed",
        "experiments        4       0       4              0",
        f"runs               {len(dump['runs'])}       0       {len(dump['runs'])}              0",
        "registered models  2       1       1              0",
        "model versions     3       2       0              1",
        "aliases            2       2       0              0",
    ]
    assert lines[7:] == [
        "failed: model version 'odd' v1: This MLflow model's flavor is fancy_flavor, which "
        "modelpack cannot load. Supported MLflow flavors: sklearn, pytorch, onnx, "
        "python_function (a PythonModel, loader_module mlflow.pyfunc.model).",
    ]

    from modelpack.cli import main

    assert main([*argv, "--json", "--no-progress"]) == 1
    again = json.loads(capsys.readouterr().out)
    assert {k: (c["copied"], c["already_there"]) for k, c in again["counts"].items()} == {
        "experiments": (0, 4),
        "runs": (0, len(dump["runs"])),
        "registered models": (0, 2),
        "model versions": (0, 2),
        "aliases": (0, 2),
    }
    assert [f["what"] for f in again["failures"]] == ["'odd' v1"]
    assert main([*argv, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "Nothing to copy: everything else is already there; 1 could not be copied" in out


def test_a_server_is_read_page_by_page(mlflow_sources, tmp_path, monkeypatch):
    from modelpack import mlflow_rest

    # Pages of two: every listing and every metric history takes several requests.
    monkeypatch.setattr(mlflow_rest, "PAGE", 2)
    monkeypatch.setattr(mlflow_rest, "HISTORY_PAGE", 2)
    calls: list[str] = []
    real = mlflow_rest.RestReader._json

    def spy(self, path, params=None, body=None):
        calls.append(path)
        return real(self, path, params, body)

    monkeypatch.setattr(mlflow_rest.RestReader, "_json", spy)
    uri, dump = mlflow_sources["http"]
    client = Client(f"sqlite:///{tmp_path / 'paged.db'}", str(tmp_path / "artifacts"))
    report = import_mlflow(uri, client, progress=False)
    assert report.counts["runs"].copied == len(dump["runs"])
    assert_same_as_mlflow(client, dump)
    histories = sum(len(r["history"]) for r in dump["runs"])
    assert calls.count("metrics/get-history") > histories  # some took more than one page
    assert calls.count("experiments/search") == 2  # four experiments, two a page
