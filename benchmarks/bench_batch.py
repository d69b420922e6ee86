#!/usr/bin/env python
"""Benchmark batch scoring (issue 5): ``modelpack predict`` against the raw baseline and MLflow.

Input: 1,000,000 rows x 20 float64 columns (``f0``..``f19``), as Parquet (pyarrow's default
writer: snappy, row groups of 1Mi rows) and as CSV (``pyarrow.csv.write_csv``); 2,000,000 rows
too, for the memory-flatness check. Model: the benchmark random forest,
``RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)`` on
``make_classification(n_samples=10000, n_features=20, random_state=0)``, saved once as a
modelpack package (column signature f0..f19) and once as an MLflow model (cloudpickle, like the
package); the raw baseline unpickles the very same ``model.pkl`` as modelpack.

Every candidate runs as its own process, timed from start to exit (imports and model loading
included, for all alike; plus ~20 ms for a small wrapper process that reports the peak), with
its peak RSS: the sum over the process and its children (worker processes), sampled every 20 ms
from /proc, and the largest single process's exact peak (``ru_maxrss``). Candidates:

- raw: pyarrow reads the whole file, ``model.predict`` on the matrix, pyarrow writes the
  predictions (Parquet in, Parquet out; CSV in, CSV out).
- modelpack: ``modelpack predict PKG -i IN -o OUT --workers N`` (1 and 2).
- mlflow: ``mlflow models predict -m MODEL -i IN -o OUT -t csv --env-manager local`` from its
  own virtualenv (``--mlflow`` or ``/tmp/mlflow-venv/bin/mlflow``); CSV only: its CLI reads
  JSON and CSV, not Parquet.

Targets (issue 5): modelpack's throughput >= 0.9x the raw baseline with one worker and above it
with two; peak RSS <= 1 GiB, and flat from 1M to 2M rows (here: 2M rows within 10% of 1M).

Usage:
    python benchmarks/bench_batch.py                 # full run: 3 repeats (about 10 minutes)
    python benchmarks/bench_batch.py --quick         # 1 repeat, 200k/400k rows
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _report import table, verdict

N_FEATURES = 20
RAW_RATIO_TARGET = 0.9
RSS_LIMIT_MIB = 1024
FLAT_RATIO = 1.10
MLFLOW_DEFAULT = "/tmp/mlflow-venv/bin/mlflow"

RAW_CODE = """
import sys, cloudpickle
import numpy as np, pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
model_pkl, src, out = sys.argv[1:4]
with open(model_pkl, "rb") as f:
    model = cloudpickle.load(f)
table = pq.read_table(src) if src.endswith(".parquet") else pacsv.read_csv(src)
X = np.column_stack([table.column(c).to_numpy() for c in table.column_names])
result = pa.table({"prediction": model.predict(X)})
pq.write_table(result, out) if out.endswith(".parquet") else pacsv.write_csv(result, out)
"""

MLFLOW_SAVE = """
import sys, pickle, mlflow.sklearn
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
# cloudpickle, as modelpack's package (MLflow 3's default is skops).
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="cloudpickle")
"""


# ----------------------------------------------------------------------------- measuring


def _tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, in KiB (0 for processes already gone)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


# Runs the candidate and prints the largest peak RSS among its processes (KiB). A wrapper, because
# Linux keeps a process's RSS high-water mark across exec: a candidate forked straight from this
# (large) benchmark process would report this process's size as its own peak.
WRAPPER = (
    "import resource, subprocess, sys\n"
    "proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def measure(command: list[str], env: dict | None = None) -> dict:
    """Run ``command``: wall seconds, and peak RSS in MiB of all its processes together
    (sampled) and of the largest one (exact)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            # The candidate and its workers, without the wrapper itself.
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid) - _rss_kib(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    code, maxrss = (int(x) for x in out.split())
    if proc.returncode != 0 or code != 0:
        raise RuntimeError(f"{command} failed ({code}):\n{err.decode()[-3000:]}")
    return {"wall": wall, "tree_mib": peak[0] / 1024, "self_mib": maxrss / 1024}


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


# ----------------------------------------------------------------------------- fixtures


def build(work: Path, rows_list: list[int], mlflow: str | None) -> dict:
    import cloudpickle
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelpack

    X, y = make_classification(n_samples=10000, n_features=N_FEATURES, random_state=0)
    names = [f"f{i}" for i in range(N_FEATURES)]
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(X, y)
    pkg = work / "pkg"
    modelpack.save(rf, pkg, input_example=pd.DataFrame(X[:5], columns=names), overwrite=True)
    fx: dict = {"pkg": pkg, "model_pkl": pkg / "model" / "model.pkl", "inputs": {}}
    with open(work / "rf.pkl", "wb") as f:
        cloudpickle.dump(rf, f)
    rng = np.random.default_rng(0)
    for rows in rows_list:
        data = pa.table({c: rng.standard_normal(rows) for c in names})
        fx["inputs"][("parquet", rows)] = work / f"in-{rows}.parquet"
        fx["inputs"][("csv", rows)] = work / f"in-{rows}.csv"
        pq.write_table(data, fx["inputs"][("parquet", rows)])
        pacsv.write_csv(data, fx["inputs"][("csv", rows)])
    if mlflow:
        python = str(Path(mlflow).parent / "python")
        fx["mlflow_model"] = work / "mlflow_model"
        shutil.rmtree(fx["mlflow_model"], ignore_errors=True)
        subprocess.run([python, "-c", MLFLOW_SAVE, str(work / "rf.pkl"), str(fx["mlflow_model"])],
                       check=True, env=mlflow_env())  # fmt: skip
    return fx


def mlflow_env() -> dict:
    env = dict(os.environ)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env


def commands(fx: dict, fmt: str, rows: int, out: Path, mlflow: str | None) -> dict:
    src = str(fx["inputs"][(fmt, rows)])
    pack = [sys.executable, "-m", "modelpack.cli", "predict", str(fx["pkg"]), "-i", src,
            "-o", str(out), "--overwrite"]  # fmt: skip
    cands = {
        "raw": [sys.executable, "-c", RAW_CODE, str(fx["model_pkl"]), src, str(out)],
        "modelpack, 1 worker": [*pack, "--workers", "1"],
        "modelpack, 2 workers": [*pack, "--workers", "2"],
    }
    if mlflow and fmt == "csv":
        # It writes {"predictions": [...]} as JSON, whatever the input.
        cands["mlflow models predict"] = [mlflow, "models", "predict", "-m",
                                          str(fx["mlflow_model"]), "-i", src, "-o",
                                          str(out.with_suffix(".json")), "-t", "csv",
                                          "--env-manager", "local"]  # fmt: skip
    return cands


def run_all(fx: dict, work: Path, rows_list: list[int], repeats: int, mlflow: str | None):
    """results[(fmt, rows, candidate)] = list of measurements."""
    results: dict = {}
    plan = []
    for fmt in ("parquet", "csv"):
        for rows in rows_list:
            for name, cmd in commands(fx, fmt, rows, work / f"out.{fmt}", mlflow).items():
                if rows != rows_list[0] and name == "modelpack, 2 workers":
                    continue  # the 2M-row runs check memory flatness, one worker is enough
                plan.append((fmt, rows, name, cmd))
    for i in range(repeats):
        # Interleaved, the order reversed every other round, so drift hits all alike.
        for fmt, rows, name, cmd in plan if i % 2 == 0 else plan[::-1]:
            env = mlflow_env() if name.startswith("mlflow") else None
            m = measure(cmd, env)
            results.setdefault((fmt, rows, name), []).append(m)
            line = f"  [{i + 1}/{repeats}] {fmt:7} {rows:>9,} {name:22} {m['wall']:6.2f} s  "
            line += f"tree {m['tree_mib']:5.0f} MiB  self {m['self_mib']:5.0f} MiB"
            print(line, flush=True)
            mlf = name.startswith("mlflow")
            check_output(work / ("out.json" if mlf else f"out.{fmt}"), rows, name)
    return results


def check_output(out: Path, rows: int, name: str) -> None:
    """Every candidate wrote one prediction per row."""
    if out.suffix == ".json":
        with open(out) as f:
            n = len(json.load(f)["predictions"])
    elif out.suffix == ".parquet":
        import pyarrow.parquet as pq

        n = pq.ParquetFile(out).metadata.num_rows
    else:
        with open(out, "rb") as f:
            n = sum(1 for _ in f) - 1  # the header
    if n != rows:
        raise RuntimeError(f"{name} wrote {n} rows to {out}, expected {rows}")


# ----------------------------------------------------------------------------- report


def report(results: dict, rows_list: list[int]) -> dict:
    med = {k: {f: statistics.median(m[f] for m in v) for f in ("wall", "tree_mib", "self_mib")}
           for k, v in results.items()}  # fmt: skip
    base_rows, big_rows = rows_list
    summary: dict = {}
    for fmt in ("parquet", "csv"):
        raw = med[(fmt, base_rows, "raw")]
        rows_out = []
        for (f, rows, name), m in med.items():
            if f != fmt or rows != base_rows:
                continue
            tput = rows / m["wall"]
            ratio = raw["wall"] / m["wall"]
            target, ok = "-", "-"
            if name == "modelpack, 1 worker":
                target, ok = f">= {RAW_RATIO_TARGET}x raw", verdict(ratio >= RAW_RATIO_TARGET)
            elif name == "modelpack, 2 workers":
                target, ok = "> 1.0x raw", verdict(ratio > 1.0)
            rss_ok = "-"
            if name.startswith("modelpack"):
                rss_ok = verdict(m["tree_mib"] <= RSS_LIMIT_MIB)
            rows_out.append([name, f"{m['wall']:.2f} s", f"{tput:,.0f}", f"{ratio:.2f}x", target,
                             ok, f"{m['tree_mib']:.0f} MiB", f"{m['self_mib']:.0f} MiB",
                             rss_ok])  # fmt: skip
            summary[f"{fmt}/{name}"] = {**m, "rows_per_s": tput, "vs_raw": ratio}
        table(f"{fmt}: {base_rows:,} rows x {N_FEATURES} columns (median of runs)",
              ["candidate", "wall", "rows/s", "vs raw", "target", "result", "peak RSS (all procs)",
               "peak RSS (largest proc)", "RSS <= 1 GiB"], rows_out)  # fmt: skip
    flat_rows = []
    for fmt in ("parquet", "csv"):
        for name in ("raw", "modelpack, 1 worker", "mlflow models predict"):
            if (fmt, base_rows, name) not in med or (fmt, big_rows, name) not in med:
                continue
            a, b = med[(fmt, base_rows, name)], med[(fmt, big_rows, name)]
            growth = b["tree_mib"] / a["tree_mib"]
            ok = verdict(growth <= FLAT_RATIO and b["tree_mib"] <= RSS_LIMIT_MIB)
            flat_rows.append([fmt, name, f"{a['tree_mib']:.0f} MiB", f"{b['tree_mib']:.0f} MiB",
                              f"{growth:.2f}x", f"{base_rows / a['wall']:,.0f}",
                              f"{big_rows / b['wall']:,.0f}",
                              ok if name.startswith("modelpack") else "-"])  # fmt: skip
            summary[f"{fmt}/{name}/growth"] = growth
    table(f"Peak RSS from {base_rows:,} to {big_rows:,} rows (target for modelpack: "
          f"<= {FLAT_RATIO:.2f}x and <= 1 GiB)",
          ["format", "candidate", f"peak RSS {base_rows:,}", f"peak RSS {big_rows:,}", "growth",
           f"rows/s {base_rows:,}", f"rows/s {big_rows:,}", "result"], flat_rows)  # fmt: skip
    return summary


def versions(mlflow: str | None) -> dict:
    import numpy
    import pyarrow
    import sklearn

    import modelpack

    info = {"python": platform.python_version(), "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "scikit-learn": sklearn.__version__,
            "modelpack": modelpack.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform()}  # fmt: skip
    if mlflow:
        out = subprocess.run([mlflow, "--version"], capture_output=True, text=True,
                             env=mlflow_env())  # fmt: skip
        info["mlflow"] = out.stdout.strip().rsplit(" ", 1)[-1]
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 200k/400k rows, 1 repeat")
    ap.add_argument("--repeats", type=int, help="runs of each candidate (default 3; quick 1)")
    ap.add_argument("--mlflow", default=MLFLOW_DEFAULT, help="the mlflow executable to compare")
    ap.add_argument("--workdir", help="keep the generated files here instead of a temp folder")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    args = ap.parse_args()
    rows_list = [200_000, 400_000] if args.quick else [1_000_000, 2_000_000]
    repeats = args.repeats or (1 if args.quick else 3)
    mlflow = args.mlflow if args.mlflow and Path(args.mlflow).exists() else None
    start = time.perf_counter()
    print("modelpack batch-scoring benchmark (issue 5)" + (" [quick]" if args.quick else ""))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    info = versions(mlflow)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if not mlflow:
        print(f"(no mlflow at {args.mlflow}: its rows are left out)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_batch_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        fx = build(work, rows_list, mlflow)
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB"
                          for p in fx["inputs"].values())  # fmt: skip
        print(f"(fixtures built in {time.perf_counter() - t0:.0f} s: {sizes})")
        results = run_all(fx, work, rows_list, repeats, mlflow)
        summary = report(results, rows_list)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal benchmark time: {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"versions": info, "results": summary}, indent=2))


if __name__ == "__main__":
    main()
