#!/usr/bin/env python
"""Benchmark ``modelpack serve`` (issue 4) against ``mlflow models serve`` and an HTTP ceiling.

Four servers, each one uvicorn process with one worker and the access log off, all on
127.0.0.1 and all answering the same single-row ``dataframe_split`` JSON body:

- ``modelpack serve`` on the benchmark random forest (sklearn flavor, default batching);
- the same package with ``--flavor onnx`` (the forest converted by skl2onnx at save time);
- ``mlflow models serve --env-manager local`` on the very same forest object, saved with
  ``mlflow.sklearn.save_model`` (MLflow in its own virtualenv, ``--mlflow-python``);
- a minimal Starlette app returning a constant JSON (the HTTP ceiling on this machine).

Load comes from ``wrk`` (one thread) with a Lua script that POSTs the body and reports the
latency percentiles, at 1, 8 and 64 connections, ``--duration`` seconds each, after a warm-up,
``--rounds`` times (the tables give the mean over rounds). The levels are interleaved across
the servers (all four stay up, idle ones cost nothing; the order reverses every round) so that
background noise hits every server alike. Every run must have zero non-2xx responses and
zero socket errors or timeouts; the modelpack servers' own ``/metrics`` must also show no
status other than 200 on /invocations.

Cold start: from ``Popen`` to the first 200 from ``/ready`` (modelpack) or ``/ping`` (MLflow,
which answers only once the model is loaded), median of 3 fresh processes.

Fixture: RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0) on
make_classification(n_samples=10000, n_features=20, random_state=0), saved with
``modelpack.save(rf, path, input_example=X[:5], also=("onnx",))``.

Usage:
    python benchmarks/bench_serve.py                 # full run (about 6 minutes)
    python benchmarks/bench_serve.py --quick         # smoke run: 3 s per level, 1 cold start
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from _report import table, verdict

# ----------------------------------------------------------------------------- targets

RF_THROUGHPUT_VS_MLFLOW = 10.0  # RF at 64 connections: >= 10x MLflow's requests/s
ONNX_VS_CEILING = 0.70  # ONNX at 64 connections: >= 70% of the constant app's requests/s
LEVELS = (1, 8, 64)
N_FEATURES = 20
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}

# ----------------------------------------------------------------------------- helpers


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0
         ) -> tuple[int, bytes]:  # fmt: skip
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ----------------------------------------------------------------------------- fixtures

MLFLOW_SAVE = """
import pickle, sys
import numpy as np, pandas as pd
import mlflow.sklearn
from mlflow.models import infer_signature
work = sys.argv[1]
with open(work + "/rf.pkl", "rb") as f:
    rf = pickle.load(f)
X = np.load(work + "/X.npy")
df = pd.DataFrame(X[:5], columns=[f"f{i}" for i in range(X.shape[1])])
# MLflow 3.17's default serialization (skops) refuses the forest's tree type unless trusted.
mlflow.sklearn.save_model(rf, work + "/mlflow_rf", signature=infer_signature(df, rf.predict(X[:5])),
                          skops_trusted_types=["sklearn.tree._tree.Tree"])
"""

CONSTANT_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def invocations(request):
    return JSONResponse({"predictions": [1]})


async def ping(request):
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]),
                        Route("/ping", ping, methods=["GET"])])
"""

# wrk script: POST the body; at the end print one JSON line with the counts and percentiles.
WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[BODY]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


def build_fixtures(work: Path, mlflow_python: str) -> dict:
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelpack

    X, y = make_classification(n_samples=10000, n_features=N_FEATURES, random_state=0)
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(X, y)
    pkg = work / "rf_pkg"
    modelpack.save(rf, pkg, input_example=X[:5], also=("onnx",))
    # MLflow gets the very same fitted object (same scikit-learn and numpy in both envs).
    np.save(work / "X.npy", X)
    with open(work / "rf.pkl", "wb") as f:
        pickle.dump(rf, f)
    proc = subprocess.run([mlflow_python, "-c", MLFLOW_SAVE, str(work)], capture_output=True,
                          text=True, env={**os.environ, **MLFLOW_ENV})  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"saving the MLflow model failed:\n{proc.stderr[-4000:]}")
    (work / "constant_app.py").write_text(CONSTANT_APP)
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [X[0].tolist()]}})
    (work / "post.lua").write_text(WRK_LUA.replace("BODY", body))
    expected = rf.predict(X[:1]).tolist()
    return {"pkg": pkg, "mlflow_model": work / "mlflow_rf", "body": body.encode(),
            "expected": expected, "lua": work / "post.lua"}  # fmt: skip


# ----------------------------------------------------------------------------- servers


class Server:
    """One server process: started in its own session so the whole group can be stopped."""

    def __init__(self, name: str, argv: list[str], ready: str, work: Path,
                 env: dict | None = None, modelpack: bool = False) -> None:  # fmt: skip
        self.name, self.argv, self.ready_path = name, argv, ready
        self.work, self.env, self.modelpack = work, env, modelpack
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> float:
        """Start a fresh process; seconds from Popen to the first 200 from the ready path."""
        self.port = free_port()
        self.starts += 1
        argv = [a.replace("{PORT}", str(self.port)) for a in self.argv]
        log_path = self.work / f"{self.name.replace(' ', '_')}.{self.starts}.log"
        log = open(log_path, "wb")  # noqa: SIM115
        env = {**os.environ, **(self.env or {})}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, cwd=self.work)  # fmt: skip
        log.close()
        while True:
            try:
                status, _ = http("GET", self.url + self.ready_path, timeout=2.0)
            except OSError:
                status = 0
            if status == 200:
                return time.perf_counter() - t0
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{tail}")
            if time.perf_counter() - t0 > timeout:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout} s")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # the session leader: its pid is the group id
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        try:  # MLflow's CLI runs uvicorn as a child: make sure nothing in the group lingers
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def metrics(self) -> dict[str, float]:
        """The modelpack server's /invocations status counts and batch-size totals."""
        status, text = http("GET", self.url + "/metrics")
        assert status == 200, f"{self.name} /metrics answered {status}"
        out: dict[str, float] = {}
        for line in text.decode().splitlines():
            m = re.match(r'modelpack_requests_total\{route="/invocations",status="(\d+)"\} (\S+)',
                         line)  # fmt: skip
            if m:
                out[f"status_{m[1]}"] = float(m[2])
            m = re.match(r"modelpack_batch_rows_(sum|count) (\S+)", line)
            if m:
                out[f"batch_{m[1]}"] = float(m[2])
        return out


def check_answer(server: Server, fx: dict) -> None:
    status, body = http("POST", server.url + "/invocations", fx["body"])
    if status != 200:
        raise RuntimeError(f"{server.name}: /invocations answered {status}: {body[:300]!r}")
    predictions = json.loads(body)["predictions"]
    if predictions != fx["expected"]:
        raise RuntimeError(f"{server.name}: predicted {predictions}, expected {fx['expected']}")


# ----------------------------------------------------------------------------- load


def wrk(server: Server, lua: Path, connections: int, seconds: float) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
            "-s", str(lua), server.url + "/invocations"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed on {server.name}:\n{proc.stdout}\n{proc.stderr}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")][-1]
    r = json.loads(line[len("WRKJSON ") :])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["p50"], r["p99"] = r["p50_us"] / 1e6, r["p99_us"] / 1e6
    bad = {k: r[k] for k in ("non2xx", "connect", "read", "write", "timeout") if r[k]}
    if bad or r["requests"] == 0:
        raise RuntimeError(f"{server.name} at {connections} connections: {r['requests']} "
                           f"responses, errors {bad}\n{proc.stdout}")  # fmt: skip
    return r


def run_load(servers: list[Server], fx: dict, seconds: float, warmup: float, rounds: int
             ) -> dict:  # fmt: skip
    """Every (server, level) ``rounds`` times; levels interleaved across servers, the server
    order reversed on odd rounds. The result per (server, level) is the mean over rounds."""
    runs: dict[str, dict[int, list[dict]]] = {s.name: {c: [] for c in LEVELS} for s in servers}
    for s in servers:
        check_answer(s, fx)
        wrk(s, fx["lua"], 8, warmup)  # warm-up: discarded
    for rnd in range(rounds):
        for c in LEVELS:
            for s in servers if rnd % 2 == 0 else servers[::-1]:
                before = s.metrics() if s.modelpack else None
                r = wrk(s, fx["lua"], c, seconds)
                if before is not None:
                    after = s.metrics()
                    other = {k: v - before.get(k, 0.0) for k, v in after.items()
                             if k.startswith("status_") and k != "status_200"
                             and v - before.get(k, 0.0)}  # fmt: skip
                    if other:
                        raise RuntimeError(f"{s.name} at {c} connections answered {other}")
                    calls = after["batch_count"] - before["batch_count"]
                    rows = after["batch_sum"] - before["batch_sum"]
                    r["rows_per_call"] = rows / calls if calls else float("nan")
                    r["served_200"] = after["status_200"] - before["status_200"]
                runs[s.name][c].append(r)
                extra = f"  rows/call {r['rows_per_call']:.1f}" if "rows_per_call" in r else ""
                print(f"  [{rnd + 1}] {s.name:<16} c={c:<3} {r['rps']:8.1f} req/s  "
                      f"p50 {ms(r['p50'])}  p99 {ms(r['p99'])}{extra}", flush=True)  # fmt: skip
    results: dict[str, dict[int, dict]] = {}
    for name, levels in runs.items():
        results[name] = {}
        for c, rs in levels.items():
            keys = ("rps", "p50", "p99", "rows_per_call")
            results[name][c] = {k: statistics.fmean(r[k] for r in rs) for k in keys if k in rs[0]}
            results[name][c]["runs"] = rs
    return results


# ----------------------------------------------------------------------------- report


def report(load: dict, cold: dict, rounds: int, seconds: float) -> dict:
    mp, onnx, mlf, const = "modelpack RF", "modelpack ONNX", "MLflow RF", "constant app"
    rows = []
    for name in (mp, onnx, mlf, const):
        for c in LEVELS:
            r = load[name][c]
            rows.append([
                name, str(c), f"{r['rps']:.0f}", ms(r["p50"]), ms(r["p99"]),
                f"{r['rps'] / load[mlf][c]['rps']:.1f}x",
                f"{r['rps'] / load[const][c]['rps']:.0%}",
                f"{r['rows_per_call']:.1f}" if "rows_per_call" in r else "-",
            ])  # fmt: skip
    table(f"Throughput and latency (wrk -t1, single-row dataframe_split; mean of {rounds} x "
          f"{seconds:g} s per row)",
          ["server", "conns", "req/s", "p50", "p99", "req/s vs MLflow", "vs constant",
           "rows/model call"], rows)  # fmt: skip

    rf64, mlf64, onnx64, const64 = load[mp][64], load[mlf][64], load[onnx][64], load[const][64]
    rf1, mlf1 = load[mp][1], load[mlf][1]
    ratio = rf64["rps"] / mlf64["rps"]
    onnx_share = onnx64["rps"] / const64["rps"]
    targets = [
        ("RF, 64 conns: req/s >= 10x MLflow", f"{ratio:.1f}x ({rf64['rps']:.0f} vs "
         f"{mlf64['rps']:.0f})", ratio >= RF_THROUGHPUT_VS_MLFLOW),
        ("RF, 64 conns: p99 below MLflow's", f"{ms(rf64['p99'])} vs {ms(mlf64['p99'])}",
         rf64["p99"] < mlf64["p99"]),
        ("RF, 1 conn: p50 no worse than MLflow's", f"{ms(rf1['p50'])} vs {ms(mlf1['p50'])}",
         rf1["p50"] <= mlf1["p50"]),
        ("ONNX, 64 conns: >= 70% of constant ceiling", f"{onnx_share:.0%} ({onnx64['rps']:.0f}"
         f" vs {const64['rps']:.0f})", onnx_share >= ONNX_VS_CEILING),
    ]  # fmt: skip
    table("Targets", ["target", "measured", "result"],
          [[t, m, verdict(ok)] for t, m, ok in targets])  # fmt: skip

    crow = []
    for name, times in cold.items():
        crow.append([name, ms(statistics.median(times)), ", ".join(ms(t) for t in times)])
    table("Cold start: Popen to first 200 from /ready (modelpack) or /ping (MLflow, constant)",
          ["server", "median", "runs"], crow)  # fmt: skip
    return {"targets": [{"target": t, "measured": m, "pass": ok} for t, m, ok in targets]}


def versions(mlflow_python: str) -> dict:
    import numpy
    import onnxruntime
    import sklearn
    import starlette
    import uvicorn

    import modelpack

    def has(mod: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(mod) is not None

    probe = ("import mlflow, sklearn, uvicorn, starlette, fastapi, pandas, importlib.util as u; "
             "print(mlflow.__version__, sklearn.__version__, uvicorn.__version__, "
             "starlette.__version__, fastapi.__version__, pandas.__version__, "
             "bool(u.find_spec('uvloop')), bool(u.find_spec('httptools')))")  # fmt: skip
    out = subprocess.run([mlflow_python, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, **MLFLOW_ENV}).stdout.split()  # fmt: skip
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_line = (wrk_version.stdout or wrk_version.stderr).splitlines()[0]
    return {
        "python": platform.python_version(), "modelpack": modelpack.__version__,
        "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
        "onnxruntime": onnxruntime.__version__, "uvicorn": uvicorn.__version__,
        "starlette": starlette.__version__, "uvloop": has("uvloop"),
        "httptools": has("httptools"), "mlflow-venv": " ".join(out), "wrk": wrk_line,
        "cpus": os.cpu_count(), "platform": platform.platform(),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s per level, 1 start")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=2, help="wrk runs per server and level")
    ap.add_argument("--cold-starts", type=int, default=3)
    ap.add_argument("--mlflow-python", default="/tmp/mlflow-venv/bin/python",
                    help="python of the virtualenv with mlflow==3.17.2")  # fmt: skip
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    seconds, warmup, n_cold, rounds = args.duration, 2.0, args.cold_starts, args.rounds
    if args.quick:
        seconds, warmup, n_cold, rounds = 3.0, 1.0, 1, 1
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    mlflow_bin = str(Path(args.mlflow_python).with_name("mlflow"))
    # MLflow's CLI runs `uvicorn` from PATH: give it the venv's, as an activated venv would.
    venv_bin = str(Path(args.mlflow_python).parent)
    mlflow_env = {**MLFLOW_ENV, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                  "VIRTUAL_ENV": str(Path(venv_bin).parent)}  # fmt: skip
    started = time.perf_counter()
    info = versions(args.mlflow_python)
    print("modelpack serving benchmark (issue 4)" + (" [quick]" if args.quick else ""))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        fx = build_fixtures(work, args.mlflow_python)
        print(f"(fixtures built in {time.perf_counter() - t0:.1f} s)")
        serve = [sys.executable, "-m", "modelpack.cli", "serve", str(fx["pkg"]), "--port",
                 "{PORT}", "--log-level", "warning"]  # fmt: skip
        servers = [
            Server("modelpack RF", serve, "/ready", work, modelpack=True),
            Server("modelpack ONNX", [*serve, "--flavor", "onnx"], "/ready", work,
                   modelpack=True),
            Server("MLflow RF", [mlflow_bin, "models", "serve", "-m", str(fx["mlflow_model"]),
                                 "--env-manager", "local", "-p", "{PORT}", "--host",
                                 "127.0.0.1"], "/ping", work, env=mlflow_env),
            Server("constant app", [sys.executable, "-m", "uvicorn", "constant_app:app",
                                    "--app-dir", str(work), "--port", "{PORT}", "--workers", "1",
                                    "--no-access-log", "--log-level", "warning"], "/ping", work),
        ]  # fmt: skip
        cold: dict[str, list[float]] = {}
        try:
            print(f"\ncold starts ({n_cold} each, one server at a time):")
            for s in servers:
                cold[s.name] = []
                for i in range(n_cold):
                    cold[s.name].append(s.start())
                    if i < n_cold - 1:
                        s.stop()
                print(f"  {s.name:<16} " + ", ".join(ms(t) for t in cold[s.name]), flush=True)
            print(f"\nload ({rounds} x {seconds:g} s per server and level, interleaved):")
            load = run_load(servers, fx, seconds, warmup, rounds)
        finally:
            for s in servers:
                s.stop()
    summary = report(load, cold, rounds, seconds)
    print(f"\ntotal benchmark time: {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"versions": info, "cold_start_s": cold,
                                               "load": load, **summary}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
