#!/usr/bin/env python
"""Benchmark tracking and the registry (issue 3), side by side with MLflow, both on SQLite.

1. Metric logging, 10,000 points into one run: 10,000 fluent ``log_metric`` calls (one key,
   steps 0..9999); 100 fluent ``log_metrics`` calls of 100 keys each; 10 ``Client.log_batch``
   calls of 1,000 points each (one key, steps 0..9999).
2. ``register_model`` 50 times: a tiny sklearn model logged once, registered 50 times under
   one name; time per call.
3. ``models:/Bench/Production`` resolved warm (after a first resolution): the registry lookup
   alone, URI -> local package directory, URI -> loaded model.

Every measurement gets a fresh store (``sqlite:///<tmp>/modelpack.db`` with artifacts beside it;
``sqlite:///<tmp>/mlflow.db`` with a local artifact directory). modelpack runs in this process;
MLflow runs in a subprocess with the interpreter given by ``--mlflow-python`` (its own virtualenv,
e.g. ``python -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow
scikit-learn``), from a small script written to a temporary file, with
``MLFLOW_DISABLE_TELEMETRY=true`` and ``DO_NOT_TRACK=true``. Without ``--mlflow-python`` (or if
it does not exist) the MLflow side is skipped.

MLflow's 10,000 ``log_metric`` calls are measured in full when a 1,000-call probe predicts they
take at most 60 s; otherwise 1,000 calls are timed and multiplied by 10, which the table says.

Usage:
    python benchmarks/bench_store.py --mlflow-python /tmp/mlflow-venv/bin/python
    python benchmarks/bench_store.py --quick      # smoke run, fewer repeats, MLflow extrapolated
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _report import table, verdict

# ----------------------------------------------------------------------------- targets

LOG_METRIC_TARGET_S = 1.0  # 10,000 fluent log_metric calls
RESOLVE_TARGET_S = 0.005  # warm Client.resolve("models:/Bench/Production")

N_POINTS = 10_000
N_REGISTER = 50
MODEL = "Bench"
URI = f"models:/{MODEL}/Production"
MLFLOW_FULL_LIMIT_S = 60.0  # above this (predicted), MLflow's log_metric is extrapolated
MLFLOW_LOG_METRIC_BUDGET_S = 120.0  # repeats of MLflow's full 10,000 calls fit in this

# ----------------------------------------------------------------------------- helpers


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def ratio(mlflow: float | None, mp: float) -> str:
    return "-" if mlflow is None else f"{mlflow / mp:.1f}x"


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Time ``n`` calls of ``fn`` one by one."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def tiny_model() -> tuple[Any, Any]:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=100, n_features=4, n_informative=2, random_state=0)
    return LogisticRegression().fit(X, y), X


# ----------------------------------------------------------------------------- modelpack side


@contextmanager
def mp_store(work: Path, tag: str) -> Iterator[str]:
    """A fresh modelpack store (SQLite file, artifacts beside it), made the tracking URI."""
    import modelpack
    from modelpack.store import engines

    folder = Path(tempfile.mkdtemp(prefix=f"mp-{tag}-", dir=work))
    uri = f"sqlite:///{folder}/modelpack.db"
    modelpack.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        engines.dispose(uri)


def mp_log_metric(work: Path, repeats: int) -> dict:
    import modelpack

    times = []
    for _ in range(repeats):
        with mp_store(work, "log_metric") as uri:
            with modelpack.start_run(experiment="bench") as run:
                t0 = time.perf_counter()
                for i in range(N_POINTS):
                    modelpack.log_metric("loss", 1.0 / (i + 1), step=i)
                times.append(time.perf_counter() - t0)
            assert (
                len(modelpack.Client(uri).get_metric_history(run.info.run_id, "loss")) == N_POINTS
            )
    return {"n": N_POINTS, "times": times, "extrapolated": False}


def mp_log_metrics(work: Path, repeats: int) -> dict:
    import modelpack

    times = []
    for _ in range(repeats):
        with mp_store(work, "log_metrics") as uri:
            with modelpack.start_run(experiment="bench") as run:
                t0 = time.perf_counter()
                for i in range(100):
                    modelpack.log_metrics({f"m{j}": (i + j) / 1e3 for j in range(100)}, step=i)
                times.append(time.perf_counter() - t0)
            assert len(modelpack.Client(uri).get_metric_history(run.info.run_id, "m99")) == 100
    return {"times": times}


def mp_log_batch(work: Path, repeats: int) -> dict:
    import modelpack

    times = []
    for _ in range(repeats):
        with mp_store(work, "log_batch") as uri:
            client = modelpack.Client(uri)
            with modelpack.start_run(experiment="bench") as run:
                run_id = run.info.run_id
                stamp = int(time.time() * 1000)
                batches = [
                    [("loss", 1.0 / (s + 1), stamp, s) for s in range(b * 1000, (b + 1) * 1000)]
                    for b in range(N_POINTS // 1000)
                ]
                t0 = time.perf_counter()
                for batch in batches:
                    client.log_batch(run_id, metrics=batch)
                times.append(time.perf_counter() - t0)
            assert len(client.get_metric_history(run_id, "loss")) == N_POINTS
    return {"times": times}


def mp_register(work: Path, repeats: int) -> dict:
    import modelpack

    model, X = tiny_model()
    per_call, first, total = [], [], []
    for _ in range(repeats):
        with mp_store(work, "register"):
            with modelpack.start_run(experiment="bench"):
                info = modelpack.log_model(model, "model", input_example=X[:3])
            t, last = [], None
            for _ in range(N_REGISTER):
                t0 = time.perf_counter()
                last = modelpack.register_model(info.model_uri, MODEL)
                t.append(time.perf_counter() - t0)
            assert last is not None and int(last.version) == N_REGISTER
            per_call.append(median(t))
            first.append(t[0])
            total.append(sum(t))
    return {"per_call": per_call, "first": first, "total": total}


def mp_resolve(work: Path, n_lookup: int, n_resolve: int, n_load: int) -> dict:
    import numpy as np

    import modelpack

    model, X = tiny_model()
    with mp_store(work, "resolve") as uri:
        with modelpack.start_run(experiment="bench"):
            info = modelpack.log_model(model, "model", input_example=X[:3])
        modelpack.register_model(info.model_uri, MODEL)
        client = modelpack.Client(uri)
        client.transition_model_version_stage(MODEL, 1, "Production")
        t0 = time.perf_counter()
        path = modelpack.Client(uri).resolve(URI)  # the first resolution
        first = time.perf_counter() - t0
        assert (Path(path) / "modelpack.yaml").is_file()
        pack = modelpack.load(URI)
        assert np.array_equal(pack.predict(X), model.predict(X))
        lookup = timed(lambda: client.get_latest_versions(MODEL, ["Production"]), n_lookup)
        resolve = timed(lambda: modelpack.Client(uri).resolve(URI), n_resolve)
        load = timed(lambda: modelpack.load(URI), n_load)
    return {
        "first_resolve": first,
        "lookup": median(lookup),
        "resolve": median(resolve),
        "load": median(load),
        "n": [n_lookup, n_resolve, n_load],
    }


# ----------------------------------------------------------------------------- MLflow side

# Run by the MLflow virtualenv's interpreter: argv = config JSON, result path.
MLFLOW_WORKER = r"""
import json, os, statistics, sys, tempfile, time, warnings

warnings.filterwarnings("ignore")  # stage deprecation (FutureWarning) and the like
cfg = json.loads(sys.argv[1])
out_path = sys.argv[2]

import mlflow
import sklearn
import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities import Metric

N_POINTS, MODEL = cfg["n_points"], cfg["model"]
URI = f"models:/{MODEL}/Production"


def fresh(tag):
    folder = tempfile.mkdtemp(prefix=f"mlflow-{tag}-", dir=cfg["work"])
    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("bench", artifact_location=os.path.join(folder, "artifacts"))
    mlflow.set_experiment(experiment_id=exp)
    return uri


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def tiny_model():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=100, n_features=4, n_informative=2, random_state=0)
    return LogisticRegression().fit(X, y), X


def log_metric_once(n):
    fresh("log_metric")
    with mlflow.start_run() as run:
        t0 = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        elapsed = time.perf_counter() - t0
    assert len(MlflowClient().get_metric_history(run.info.run_id, "loss")) == n
    return elapsed


def log_metric():
    probe = log_metric_once(1000)
    predicted = probe * N_POINTS / 1000
    if cfg["quick"] or predicted > cfg["full_limit_s"]:
        times = [probe] + [log_metric_once(1000) for _ in range(cfg["repeats"] - 1)]
        return {"n": 1000, "times": times, "extrapolated": True, "predicted": predicted}
    repeats = max(1, min(cfg["repeats"], int(cfg["budget_s"] // predicted)))
    times = [log_metric_once(N_POINTS) for _ in range(repeats)]
    return {"n": N_POINTS, "times": times, "extrapolated": False, "probe_1000": probe}


def log_metrics():
    times = []
    for _ in range(cfg["repeats"]):
        fresh("log_metrics")
        with mlflow.start_run() as run:
            t0 = time.perf_counter()
            for i in range(100):
                mlflow.log_metrics({f"m{j}": (i + j) / 1e3 for j in range(100)}, step=i)
            times.append(time.perf_counter() - t0)
        assert len(MlflowClient().get_metric_history(run.info.run_id, "m99")) == 100
    return {"times": times}


def log_batch():
    times = []
    for _ in range(cfg["repeats"]):
        fresh("log_batch")
        client = MlflowClient()
        with mlflow.start_run() as run:
            run_id = run.info.run_id
            stamp = int(time.time() * 1000)
            batches = [
                [Metric("loss", 1.0 / (s + 1), stamp, s) for s in range(b * 1000, (b + 1) * 1000)]
                for b in range(N_POINTS // 1000)
            ]
            t0 = time.perf_counter()
            for batch in batches:
                client.log_batch(run_id, metrics=batch)
            times.append(time.perf_counter() - t0)
        assert len(client.get_metric_history(run_id, "loss")) == N_POINTS
    return {"times": times}


def register():
    model, X = tiny_model()
    per_call, first, total = [], [], []
    for _ in range(cfg["repeats"]):
        fresh("register")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", input_example=X[:3])
        t, last = [], None
        for _ in range(cfg["n_register"]):
            t0 = time.perf_counter()
            last = mlflow.register_model(info.model_uri, MODEL)
            t.append(time.perf_counter() - t0)
        assert int(last.version) == cfg["n_register"]
        per_call.append(statistics.median(t))
        first.append(t[0])
        total.append(sum(t))
    return {"per_call": per_call, "first": first, "total": total}


def resolve():
    import numpy as np

    model, X = tiny_model()
    fresh("resolve")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", input_example=X[:3])
    mlflow.register_model(info.model_uri, MODEL)
    client = MlflowClient()
    client.transition_model_version_stage(MODEL, 1, "Production")
    t0 = time.perf_counter()
    path = mlflow.artifacts.download_artifacts(URI)  # the first resolution
    first = time.perf_counter() - t0
    assert os.path.isfile(os.path.join(path, "MLmodel"))
    loaded = mlflow.pyfunc.load_model(URI)
    assert np.array_equal(np.asarray(loaded.predict(X)), model.predict(X))
    n_lookup, n_resolve, n_load = cfg["n"]
    lookup = timed(lambda: client.get_latest_versions(MODEL, ["Production"]), n_lookup)
    res = timed(lambda: mlflow.artifacts.download_artifacts(URI), n_resolve)
    load = timed(lambda: mlflow.pyfunc.load_model(URI), n_load)
    return {
        "first_resolve": first,
        "lookup": statistics.median(lookup),
        "resolve": statistics.median(res),
        "load": statistics.median(load),
        "n": cfg["n"],
    }


result = globals()[cfg["section"]]()
result["versions"] = {
    "mlflow": mlflow.__version__,
    "scikit-learn": sklearn.__version__,
    "sqlalchemy": sqlalchemy.__version__,
    "python": sys.version.split()[0],
}
with open(out_path, "w") as f:
    json.dump(result, f)
"""


class MlflowRunner:
    """Runs sections of ``MLFLOW_WORKER`` in fresh subprocesses of the MLflow interpreter."""

    def __init__(self, python: str, work: Path) -> None:
        self.python = python
        self.work = work / "mlflow"
        self.work.mkdir()
        self.script = self.work / "mlflow_worker.py"
        self.script.write_text(MLFLOW_WORKER)
        self.env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ENABLE_ASYNC_LOGGING"):
            self.env.pop(key, None)
        self.versions: dict = {}

    def run(self, section: str, **cfg: Any) -> dict:
        out = self.work / f"{section}.json"
        config = {"section": section, "work": str(self.work), "n_points": N_POINTS,
                  "n_register": N_REGISTER, "model": MODEL, **cfg}  # fmt: skip
        proc = subprocess.run(
            [self.python, str(self.script), json.dumps(config), str(out)],
            cwd=self.work,  # anything MLflow writes relative to the cwd stays in the temp dir
            env=self.env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"MLflow worker {section!r} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        result = json.loads(out.read_text())
        self.versions = result.pop("versions")
        return result


# ----------------------------------------------------------------------------- sections


def bench_metrics(work: Path, mlf: MlflowRunner | None, reps: dict) -> dict:
    mp = {
        "log_metric": mp_log_metric(work, reps["mp"]),
        "log_metrics": mp_log_metrics(work, reps["mp"]),
        "log_batch": mp_log_batch(work, reps["mp"]),
    }
    ml: dict = {}
    if mlf:
        ml["log_metric"] = mlf.run(
            "log_metric",
            repeats=reps["ml_log_metric"],
            quick=reps["quick"],
            full_limit_s=MLFLOW_FULL_LIMIT_S,
            budget_s=MLFLOW_LOG_METRIC_BUDGET_S,
        )
        ml["log_metrics"] = mlf.run("log_metrics", repeats=reps["ml"])
        ml["log_batch"] = mlf.run("log_batch", repeats=reps["ml"])

    def total(res: dict | None) -> float | None:
        """Median seconds for all 10,000 points (scaled up when fewer were timed)."""
        if res is None:
            return None
        return median(res["times"]) * N_POINTS / res.get("n", N_POINTS)

    rows, result = [], {"modelpack": mp, "mlflow": ml}
    labels = {
        "log_metric": "log_metric x 10,000 (fluent; 1 key, steps 0..9999)",
        "log_metrics": "log_metrics x 100 (fluent; 100 keys each, steps 0..99)",
        "log_batch": "Client.log_batch x 10 (1,000 points each; 1 key)",
    }
    for kind, label in labels.items():
        m, o = total(mp[kind]), total(ml.get(kind))
        calls = {"log_metric": N_POINTS, "log_metrics": 100, "log_batch": 10}[kind]
        ml_text = "skipped" if o is None else fmt(o)
        if o is not None and ml[kind].get("extrapolated"):
            ml_text += f" (1,000 timed, x10; median of {len(ml[kind]['times'])})"
        elif o is not None:
            ml_text += f" (median of {len(ml[kind]['times'])})"
        target, ok = "-", "-"
        if kind == "log_metric":
            target, ok = f"<= {LOG_METRIC_TARGET_S:.0f} s", verdict(m <= LOG_METRIC_TARGET_S)
            result["log_metric_pass"] = m <= LOG_METRIC_TARGET_S
        per = f"{fmt(m / calls)} / {fmt(o / calls) if o is not None else '-'}"
        rows.append([label, fmt(m), ml_text, ratio(o, m), per, target, ok])
    table(
        f"1. Metric logging: 10,000 points into one run (median of {reps['mp']} fresh stores "
        f"for modelpack; MLflow's count is in its cells)",
        ["workload", "modelpack", "MLflow", "MLflow / modelpack", "per call (mp / MLflow)",
         "target", "result"],
        rows,
    )  # fmt: skip
    return result


def bench_register(work: Path, mlf: MlflowRunner | None, reps: dict) -> dict:
    mp = mp_register(work, reps["reg"])
    ml = mlf.run("register", repeats=reps["reg"]) if mlf else None
    rows = []
    for key, label in (
        ("per_call", "per call (median of the 50)"),
        ("first", "first call (creates the registered model)"),
        ("total", "all 50 calls"),
    ):
        m = median(mp[key])
        o = median(ml[key]) if ml else None
        rows.append([label, fmt(m), "skipped" if o is None else fmt(o), ratio(o, m)])
    table(
        f"2. register_model x {N_REGISTER}, one tiny sklearn model, one name (median of "
        f"{reps['reg']} fresh stores)",
        ["measure", "modelpack", "MLflow", "MLflow / modelpack"],
        rows,
    )
    return {"modelpack": mp, "mlflow": ml}


def bench_resolve(work: Path, mlf: MlflowRunner | None, reps: dict) -> dict:
    n = reps["resolve_n"]
    mp = mp_resolve(work, *n)
    ml = mlf.run("resolve", n=list(n)) if mlf else None
    rows = []
    specs = (
        ("lookup", "registry lookup: Client.get_latest_versions(name, ['Production'])",
         "same", n[0]),
        ("resolve", "URI -> local package dir", "Client(uri).resolve(URI) / "
         "mlflow.artifacts.download_artifacts(URI)", n[1]),
        ("load", "URI -> loaded model", "modelpack.load(URI) / mlflow.pyfunc.load_model(URI)",
         n[2]),
    )  # fmt: skip
    for key, label, calls, count in specs:
        m = mp[key]
        o = ml[key] if ml else None
        target, ok = "-", "-"
        if key == "resolve":
            target = f"<= {RESOLVE_TARGET_S * 1e3:.0f} ms"
            ok = verdict(m <= RESOLVE_TARGET_S)
        rows.append([label, calls, str(count), fmt(m), "skipped" if o is None else fmt(o),
                     ratio(o, m), target, ok])  # fmt: skip
    m, o = mp["first_resolve"], ml["first_resolve"] if ml else None
    rows.append(["first resolution (info)", "as the resolve row", "1", fmt(m),
                 "skipped" if o is None else fmt(o), ratio(o, m), "-", "-"])  # fmt: skip
    table(
        f"3. Resolving {URI} warm (median per call)",
        ["operation", "call (modelpack / MLflow)", "calls", "modelpack", "MLflow",
         "MLflow / modelpack", "target", "result"],
        rows,
    )  # fmt: skip
    return {"modelpack": mp, "mlflow": ml, "resolve_pass": mp["resolve"] <= RESOLVE_TARGET_S}


# ----------------------------------------------------------------------------- main


def versions() -> dict:
    import sklearn
    import sqlalchemy

    import modelpack

    return {"python": platform.python_version(), "modelpack": modelpack.__version__,
            "sqlalchemy": sqlalchemy.__version__, "scikit-learn": sklearn.__version__,
            "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(),
            "machine": platform.machine(), "platform": platform.platform()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repeats")
    ap.add_argument(
        "--mlflow-python",
        help="the python of a virtualenv with mlflow and scikit-learn (default: skip MLflow)",
    )
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["metrics", "register", "resolve"],
        help="run only these sections",
    )
    args = ap.parse_args()
    if args.quick:
        reps = {"mp": 1, "ml": 1, "ml_log_metric": 1, "reg": 1, "resolve_n": (20, 20, 5)}
    else:
        reps = {"mp": 5, "ml": 3, "ml_log_metric": 3, "reg": 3, "resolve_n": (200, 200, 50)}
    reps["quick"] = args.quick
    sections = set(args.only or ["metrics", "register", "resolve"])

    start = time.perf_counter()
    info = versions()
    print(
        "modelpack tracking and registry benchmark (issue 3)" + (" [quick]" if args.quick else "")
    )
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    results: dict = {"versions": info, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        work = Path(tmp)
        os.environ["MODELPACK_CACHE_DIR"] = str(work / "cache")
        os.environ.pop("MODELPACK_ARTIFACT_ROOT", None)
        mlf = None
        if args.mlflow_python and Path(args.mlflow_python).exists():
            mlf = MlflowRunner(args.mlflow_python, work)
        else:
            why = "not given" if not args.mlflow_python else f"{args.mlflow_python} not found"
            print(f"MLflow: skipped (--mlflow-python {why})")
        if "metrics" in sections:
            results["metrics"] = bench_metrics(work, mlf, reps)
        if "register" in sections:
            results["register"] = bench_register(work, mlf, reps)
        if "resolve" in sections:
            results["resolve"] = bench_resolve(work, mlf, reps)
        if mlf:
            results["mlflow_versions"] = mlf.versions
            print("\nMLflow side: " + ", ".join(f"{k} {v}" for k, v in mlf.versions.items()))
    print(f"\ntotal benchmark time: {time.perf_counter() - start:.0f} s")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
