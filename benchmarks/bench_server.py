"""The team server (issue 12): `modelpack server` against `mlflow server` 3.17.2, side by side on
the same PostgreSQL, in the same run.

    python benchmarks/bench_server.py [--mlflow-python PATH] [--search-runs 100000]
                                      [--sweep-runs 100000] [--server-sweep-runs 10000]

Sections (numbers go in benchmarks/RESULTS.md):

1. 10,000 ``log_metric`` calls + ``end_run``: modelpack to ``modelpack server`` (PostgreSQL),
   the ``mlflow`` client to ``mlflow server`` (PostgreSQL), and modelpack straight to PostgreSQL
   and to SQLite.
2. 32 concurrent clients posting ``runs/log-batch`` (100 metrics each) to each server started
   with ``--workers 2``: requests/s and p50/p99 latency. The same load generator (raw HTTP,
   the same request bodies) for both servers: the API is the same.
3. ``runs/search`` on an experiment of N runs x 10 params x 10 metrics, a filter and an order
   by a metric, first page of 100 (median of 20 requests, timed at the client on loopback).
   Both stores are filled with the same rows by bulk SQL (COPY), not through either API.
4. A sweep through the Python API: each run ``start_run`` + 10 params + 10 metrics +
   ``end_run``, on SQLite and through the server.
5. Cold start (Popen to the first 200 from /health) and idle RSS of each server (all its
   processes).

MLflow runs from its own virtualenv (``--mlflow-python``; default: the contract tests' one
under ~/.cache/modelpack-tests, built by tests/mlflow_env.py); without it, MLflow's columns
say "-". PostgreSQL: ``postgresql://postgres@127.0.0.1:5432`` (databases ``bench_mp`` and
``bench_mlflow`` are dropped and created).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

PG = "postgresql://postgres@127.0.0.1:5432"
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PYTHONWARNINGS": "ignore"}
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(name: str) -> str:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def rss_mib(pid: int) -> float:
    """The resident memory of ``pid`` and its children, MiB."""
    total = 0
    pids = [pid]
    try:
        children = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Server:
    """A server subprocess on a free port, up when /health answers 200."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **QUIET, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{argv[:3]} exited: {self.proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"{argv[:3]} did not answer /health within 120 s")
        self.cold_start_s = time.perf_counter() - started
        time.sleep(1.0)
        self.idle_rss_mib = rss_mib(self.proc.pid)

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def modelpack_server(store: str, artifacts: Path, workers: int = 1) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "modelpack.cli", "server", "--backend-store-uri", store,
            "--artifact-root", str(artifacts), "--port", str(port), "--workers", str(workers),
            "--log-level", "warning"]  # fmt: skip
    return Server(argv, port)


def mlflow_server(python: str, store: str, artifacts: Path, workers: int = 1) -> Server:
    port = free_port()
    mlflow = str(Path(python).parent / "mlflow")
    store = store.replace("postgresql://", "postgresql+psycopg2://")
    argv = [mlflow, "server", "--backend-store-uri", store, "--artifacts-destination",
            str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers",
            str(workers)]  # fmt: skip
    return Server(argv, port)


# ---------------------------------------------------------------------- 1. log_metric x 10,000


def mp_log_metrics(tracking_uri: str, n: int) -> float:
    """Seconds for ``n`` log_metric calls and end_run, in a fresh process (no warm caches)."""
    code = textwrap.dedent(
        """
        import sys, time, modelpack
        modelpack.set_tracking_uri(sys.argv[1])
        modelpack.set_experiment("bench-log")
        run = modelpack.start_run()
        start = time.perf_counter()
        for i in range(int(sys.argv[2])):
            modelpack.log_metric("loss", 1.0 / (i + 1), step=i)
        modelpack.end_run()
        print(time.perf_counter() - start)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, tracking_uri, str(n)],
        capture_output=True, text=True, check=True, env={**os.environ, **QUIET},
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def mlflow_log_metrics(python: str, url: str, n: int) -> float:
    code = textwrap.dedent(
        """
        import sys, time, mlflow
        mlflow.set_tracking_uri(sys.argv[1])
        mlflow.set_experiment("bench-log")
        run = mlflow.start_run()
        start = time.perf_counter()
        for i in range(int(sys.argv[2])):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        mlflow.end_run()
        print(time.perf_counter() - start)
        """
    )
    out = subprocess.run(
        [python, "-c", code, url, str(n)],
        capture_output=True, text=True, check=True, env={**os.environ, **QUIET},
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- 2. concurrent log-batch


def api(url: str, method: str, route: str, body: Any = None) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    data = None if body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"} if data else {}
    conn.request(method, f"/api/2.0/mlflow/{route}", body=data, headers=headers)
    reply = conn.getresponse()
    payload = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"{route}: {reply.status} {payload[:300]!r}")
    return json.loads(payload or b"{}")


def concurrent_log_batch(url: str, clients: int, seconds: float) -> dict[str, float]:
    experiment = api(url, "POST", "experiments/create", {"name": f"load-{uuid.uuid4().hex[:8]}"})
    runs = [
        api(url, "POST", "runs/create", {"experiment_id": experiment["experiment_id"],
                                         "start_time": int(time.time() * 1000)})["run"]["info"]
        ["run_id"]
        for _ in range(clients)
    ]  # fmt: skip
    host, port = url.removeprefix("http://").split(":")
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.monotonic() + seconds
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        step = 0
        barrier.wait()
        while time.monotonic() < stop_at:
            stamp = int(time.time() * 1000)
            body = json.dumps({"run_id": runs[i], "metrics": [
                {"key": f"m{k}", "value": random.random(), "timestamp": stamp, "step": step}
                for k in range(100)]})  # fmt: skip
            start = time.perf_counter()
            try:
                conn.request("POST", "/api/2.0/mlflow/runs/log-batch", body=body,
                             headers={"Content-Type": "application/json"})  # fmt: skip
                reply = conn.getresponse()
                reply.read()
                ok = reply.status == 200
            except OSError:
                ok = False
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
            latencies[i].append(time.perf_counter() - start)
            errors[i] += not ok
            step += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = sorted(x for per in latencies for x in per)
    return {
        "requests_per_s": len(flat) / seconds,
        "p50_ms": 1000 * flat[len(flat) // 2],
        "p99_ms": 1000 * flat[min(len(flat) - 1, int(len(flat) * 0.99))],
        "errors": float(sum(errors)),
    }


# ---------------------------------------------------------------------- 3. runs/search


def fill_modelpack(store_uri: str, artifacts: Path, n: int) -> str:
    """An experiment of ``n`` runs x 10 params x 10 metrics in modelpack's schema, by COPY."""
    import psycopg

    import modelpack

    client = modelpack.Client(store_uri, str(artifacts))
    experiment = client.create_experiment("search-bench")
    now = int(time.time() * 1000)
    rng = random.Random(0)
    with psycopg.connect(store_uri) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY runs (run_id, experiment_id, run_name, user_id, status, start_time, end_time, "
            "lifecycle_stage, artifact_uri, parent_run_id) FROM STDIN"
        ) as copy:
            ids = []
            for i in range(n):
                run_id = uuid.uuid4().hex
                ids.append(run_id)
                copy.write_row((run_id, experiment, f"run-{i}", "bench", "FINISHED", now + i,
                                now + i + 1, "active", f"{artifacts}/{experiment}/{run_id}",
                                None))  # fmt: skip
        with cur.copy("COPY params (run_id, key, value) FROM STDIN") as copy:
            for run_id in ids:
                for k in range(10):
                    copy.write_row((run_id, f"p{k}", str(rng.randint(0, 100))))
        for table in ("metrics", "latest_metrics"):
            rng = random.Random(1)
            with cur.copy(f"COPY {table} (run_id, key, value, timestamp, step) FROM STDIN") as copy:
                for run_id in ids:
                    for k in range(10):
                        copy.write_row((run_id, f"m{k}", rng.random(), now, 0))
        conn.commit()
        cur.execute("ANALYZE")
    return experiment


def fill_mlflow(store_uri: str, n: int, experiment_id: str) -> None:
    """The same rows in MLflow's schema (its server created the tables)."""
    import psycopg

    now = int(time.time() * 1000)
    rng = random.Random(0)
    with psycopg.connect(store_uri) as conn, conn.cursor() as cur:
        ids = []
        with cur.copy(
            "COPY runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
            "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
            "experiment_id) FROM STDIN"
        ) as copy:
            for i in range(n):
                run_id = uuid.uuid4().hex
                ids.append(run_id)
                copy.write_row((run_id, f"run-{i}", "LOCAL", "", "", "bench", "FINISHED",
                                now + i, now + i + 1, "", "active", f"/a/{run_id}",
                                int(experiment_id)))  # fmt: skip
        with cur.copy("COPY params (key, value, run_uuid) FROM STDIN") as copy:
            for run_id in ids:
                for k in range(10):
                    copy.write_row((f"p{k}", str(rng.randint(0, 100)), run_id))
        rng = random.Random(1)
        values = [[rng.random() for _ in range(10)] for _ in ids]
        with cur.copy(
            "COPY metrics (key, value, timestamp, run_uuid, step, is_nan) FROM STDIN"
        ) as copy:
            for run_id, vals in zip(ids, values, strict=True):
                for k in range(10):
                    copy.write_row((f"m{k}", vals[k], now, run_id, 0, False))
        with cur.copy(
            "COPY latest_metrics (key, value, timestamp, step, is_nan, run_uuid) FROM STDIN"
        ) as copy:
            for run_id, vals in zip(ids, values, strict=True):
                for k in range(10):
                    copy.write_row((f"m{k}", vals[k], now, 0, False, run_id))
        conn.commit()
        cur.execute("ANALYZE")


def time_search(url: str, experiment_id: str, repeats: int = 20) -> tuple[float, int]:
    body = {
        "experiment_ids": [experiment_id],
        "filter": "metrics.m0 > 0.5 and params.p1 != '7'",
        "order_by": ["metrics.m1 DESC"],
        "max_results": 100,
    }
    found = len(api(url, "POST", "runs/search", body).get("runs", []))  # warm
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        api(url, "POST", "runs/search", body)
        samples.append(time.perf_counter() - start)
    return 1000 * statistics.median(samples), found


# ---------------------------------------------------------------------- 4. the sweep


def sweep(tracking_uri: str, n: int) -> float:
    """Milliseconds a run for ``n`` runs of start_run + 10 params + 10 metrics + end_run."""
    code = textwrap.dedent(
        """
        import sys, time, modelpack
        modelpack.set_tracking_uri(sys.argv[1])
        modelpack.set_experiment("sweep")
        n = int(sys.argv[2])
        params = {f"p{k}": k for k in range(10)}
        start = time.perf_counter()
        for i in range(n):
            with modelpack.start_run():
                modelpack.log_params(params)
                modelpack.log_metrics({f"m{k}": i * k / n for k in range(10)})
        modelpack.flush()
        print(1000 * (time.perf_counter() - start) / n)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, tracking_uri, str(n)],
        capture_output=True, text=True, check=True, env={**os.environ, **QUIET},
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def default_mlflow_python() -> str | None:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import mlflow_env

        python = mlflow_env.venv_dir() / "bin" / "python"
        return str(python) if python.exists() else None
    except Exception:  # noqa: BLE001 - no MLflow: its columns say "-"
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlflow-python", default=None)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument(
        "--mlflow-points",
        type=int,
        default=1_000,
        help="points for MLflow's client (about 50 ms each: its time is scaled to --points)",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--search-runs", type=int, default=100_000)
    parser.add_argument("--sweep-runs", type=int, default=100_000)
    parser.add_argument("--server-sweep-runs", type=int, default=10_000)
    parser.add_argument("--only", default="1,2,3,4,5")
    args = parser.parse_args()
    only = set(args.only.split(","))
    mlflow_python = args.mlflow_python or default_mlflow_python()
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    print(f"MLflow: {mlflow_python or 'not available'}; work in {work}")

    mp_db, ml_db = fresh_database("bench_mp"), fresh_database("bench_mlflow")
    mp = modelpack_server(mp_db, work / "mp-artifacts", workers=2)
    ml = mlflow_server(mlflow_python, ml_db, work / "ml-artifacts", 2) if mlflow_python else None
    try:
        if "5" in only:
            print("\n## 5. Cold start and idle RSS (--workers 2, PostgreSQL)")
            print("| server | cold start (Popen to /health 200) | idle RSS, all processes |")
            print("|---|---|---|")
            print(f"| modelpack server | {mp.cold_start_s:.2f} s | {mp.idle_rss_mib:.0f} MiB |")
            if ml:
                print(f"| mlflow server 3.17.2 | {ml.cold_start_s:.2f} s | "
                      f"{ml.idle_rss_mib:.0f} MiB |")  # fmt: skip
        if "1" in only:
            print(f"\n## 1. {args.points:,} log_metric calls + end_run")
            print("| client -> store | seconds |")
            print("|---|---|")
            secs = mp_log_metrics(mp.url, args.points)
            print(f"| modelpack -> modelpack server (PostgreSQL) | {secs:.2f} |")
            if ml:
                n = min(args.points, args.mlflow_points)
                secs = mlflow_log_metrics(mlflow_python, ml.url, n)  # type: ignore[arg-type]
                scaled = secs * args.points / n
                print(f"| mlflow 3.17.2 -> mlflow server (PostgreSQL) | {scaled:.2f} "
                      f"({n:,} points took {secs:.2f} s, scaled) |")  # fmt: skip
            direct = fresh_database("bench_mp_direct")
            secs = mp_log_metrics(direct, args.points)
            print(f"| modelpack -> PostgreSQL directly | {secs:.2f} |")
            secs = mp_log_metrics(f"sqlite:///{work}/direct.db", args.points)
            print(f"| modelpack -> SQLite directly | {secs:.2f} |")
        if "2" in only:
            print(f"\n## 2. {args.clients} concurrent clients, runs/log-batch of 100 metrics, "
                  f"{args.load_seconds:.0f} s, --workers 2")  # fmt: skip
            print("| server | requests/s | metrics/s | p50 | p99 | errors |")
            print("|---|---|---|---|---|---|")
            for name, server in (("modelpack server", mp), ("mlflow server 3.17.2", ml)):
                if server is None:
                    continue
                r = concurrent_log_batch(server.url, args.clients, args.load_seconds)
                print(
                    f"| {name} | {r['requests_per_s']:.0f} | {100 * r['requests_per_s']:,.0f}"
                    f" | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['errors']:.0f} |"
                )
        if "3" in only:
            print(f"\n## 3. runs/search: {args.search_runs:,} runs x 10 params x 10 metrics, "
                  f"filter + order by a metric, first page of 100 (median of 20)")  # fmt: skip
            print("| server | median | runs returned |")
            print("|---|---|---|")
            experiment = fill_modelpack(mp_db, work / "mp-artifacts", args.search_runs)
            ms, found = time_search(mp.url, experiment)
            print(f"| modelpack server | {ms:.1f} ms | {found} |")
            if ml:
                eid = api(ml.url, "POST", "experiments/create", {"name": "search-bench"})
                fill_mlflow(ml_db, args.search_runs, eid["experiment_id"])
                ms, found = time_search(ml.url, eid["experiment_id"])
                print(f"| mlflow server 3.17.2 | {ms:.1f} ms | {found} |")
        if "4" in only:
            print("\n## 4. Sweep: start_run + 10 params + 10 metrics + end_run, per run")
            print("| target | runs | ms a run |")
            print("|---|---|---|")
            ms = sweep(f"sqlite:///{work}/sweep.db", args.sweep_runs)
            print(f"| modelpack -> SQLite | {args.sweep_runs:,} | {ms:.2f} |")
            ms = sweep(mp.url, args.server_sweep_runs)
            print(f"| modelpack -> modelpack server (PostgreSQL) | "
                  f"{args.server_sweep_runs:,} | {ms:.2f} |")  # fmt: skip
    finally:
        mp.stop()
        if ml:
            ml.stop()


if __name__ == "__main__":
    main()
