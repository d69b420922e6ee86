"""Registry-driven hot swap on a real server, under continuous load, with zero failed requests.

Four clients keep predicting while the test promotes v2 to Production, rolls back to v1, then
promotes a v3 that fails its smoke test in the server and a v4 whose files were modified in
registry storage. Every response must succeed, and its body must come from the version its
X-Model-Version header names.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import numpy as np
from live import HOST, LiveServer, constant_model, running

import modelpack

NAME = "Churn"
BROKEN_ENV = "MODELPACK_TEST_BROKEN_VERSION"
LOAD_DEADLINE_S = 30.0  # the load threads stop by then whatever happens
WAIT_S = 8.0  # for each swap to reach every client


def _v2_request(value: float) -> dict:
    tensor = {"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [value, value]}
    return {"inputs": [tensor]}


class Load:
    """Client threads predicting in a loop; each records (status, X-Model-Version, value)."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.records: list[list[tuple[int, str, float | str]]] = [[] for _ in range(clients)]
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, i: int) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE_S
        v2 = i == 3  # one client speaks the Open Inference Protocol, the others MLflow's
        with httpx2.Client(base_url=self.url, timeout=10) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    if v2:
                        response = http.post(f"/v2/models/{NAME}/infer", json=_v2_request(i))
                    else:
                        response = http.post("/invocations", json={"inputs": [[float(i), 0.0]]})
                    payload = response.json()
                    value = (
                        response.text
                        if response.status_code != 200
                        else payload["outputs"][0]["data"][0]
                        if v2
                        else payload["predictions"][0]
                    )
                    self.records[i].append(
                        (response.status_code, response.headers.get("x-model-version", ""), value)
                    )
                except Exception as exc:  # noqa: BLE001 - counted as a failure
                    self.records[i].append((0, "", f"{type(exc).__name__}: {exc}"))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(LOAD_DEADLINE_S)

    def last_versions(self) -> set[str]:
        return {r[-1][1] if r else "" for r in self.records}

    def counts(self) -> list[int]:
        return [len(r) for r in self.records]


def wait_until(
    condition: Callable[[], bool], what: str, server: LiveServer, timeout: float = WAIT_S
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{server.logs()}")
        time.sleep(0.02)


def _register(
    client: modelpack.Client, tmp_path: Path, value: float, fail_env: str | None = None
) -> modelpack.ModelVersion:
    path = tmp_path / f"model-{value}"
    modelpack.save(constant_model(value, fail_env, 0.005), path, input_example=np.zeros((2, 2)))
    return client.register_model(str(path), NAME)


def _v2_head(port: int, length: int) -> bytes:
    return (
        f"POST /v2/models/{NAME}/infer HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        f"Connection: close\r\n\r\n"
    ).encode()


def test_hot_swap_and_rollback_under_load_with_zero_failures(tracking_env, client, tmp_path):
    versions = [_register(client, tmp_path, v) for v in (1.0, 2.0)]
    versions.append(_register(client, tmp_path, 3.0, fail_env=BROKEN_ENV))
    versions.append(_register(client, tmp_path, 4.0))
    assert [v.version for v in versions] == [1, 2, 3, 4]
    # v4 is modified in registry storage after registration: it must fail verification.
    pickle = Path(versions[3].storage_location) / "model" / "python_model.pkl"
    pickle.write_bytes(pickle.read_bytes() + b"\0")
    client.transition_model_version_stage(NAME, 1, "Production")

    env = {**os.environ, BROKEN_ENV: "1"}
    assert env["MODELPACK_TRACKING_URI"] == tracking_env
    server = LiveServer(
        f"models:/{NAME}/Production",
        tmp_path,
        env=env,
        label="swap",
        args=["--poll-interval-s", "0.2", "--request-timeout-s", "5"],
    )
    with running(server), Load(server.url) as load:
        wait_until(lambda: min(load.counts()) >= 5, "every client answered by v1", server)
        assert load.last_versions() == {"1"}

        # A v2 request whose body is still arriving when the swap happens.
        body = json.dumps(_v2_request(5.0)).encode()
        with socket.create_connection((HOST, server.port), timeout=10) as slow:
            slow.sendall(_v2_head(server.port, len(body)) + body[:20])
            time.sleep(0.1)  # the server has the head: the handler is waiting for the body

            client.transition_model_version_stage(
                NAME, 2, "Production", archive_existing_versions=True
            )
            wait_until(lambda: load.last_versions() == {"2"}, "every client answered by v2", server)

            slow.sendall(body[20:])
            answer = b""
            while chunk := slow.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), (answer[:400], server.logs())
        head, payload = answer.split(b"\r\n\r\n", 1)
        served_by = [
            h.split(b":", 1)[1].strip().decode()
            for h in head.split(b"\r\n")
            if h.lower().startswith(b"x-model-version:")
        ]
        assert json.loads(payload)["outputs"][0]["data"] == [float(served_by[0])]

        client.transition_model_version_stage(NAME, 1, "Production", archive_existing_versions=True)
        wait_until(lambda: load.last_versions() == {"1"}, "every client back on v1", server)

        client.transition_model_version_stage(NAME, 3, "Production", archive_existing_versions=True)
        wait_until(
            lambda: "last_reload_error" in httpx2.get(f"{server.url}/health").json(),
            "v3 to fail",
            server,
        )
        health = httpx2.get(f"{server.url}/health").json()
        assert health["version"] == "1"
        assert health["last_reload_error"]["version"] == "3"
        assert "RuntimeError" in health["last_reload_error"]["error"], health
        assert f"{BROKEN_ENV} is set" in health["last_reload_error"]["error"], health
        version = httpx2.get(f"{server.url}/version").json()
        assert version["version"] == "1"
        assert version["last_reload_error"] == health["last_reload_error"]
        metrics = server.metrics()
        assert metrics[("modelpack_model_reload_failures_total", ())] == 1
        assert (
            metrics[
                (
                    "modelpack_model_info",
                    (("model_id", versions[0].model_id), ("name", NAME), ("version", "1")),
                )
            ]
            == 1
        )
        counts = load.counts()
        wait_until(
            lambda: min(c - b for c, b in zip(load.counts(), counts, strict=True)) >= 5,
            "more answers after the failed reload",
            server,
        )

        client.transition_model_version_stage(NAME, 4, "Production", archive_existing_versions=True)
        wait_until(
            lambda: (
                httpx2.get(f"{server.url}/health")
                .json()
                .get("last_reload_error", {})
                .get("version")
                == "4"
            ),
            "v4 to fail",
            server,
        )
        error = httpx2.get(f"{server.url}/version").json()["last_reload_error"]["error"]
        assert error.startswith("IntegrityError: "), error
        assert "model/python_model.pkl" in error, error
        assert server.metrics()[("modelpack_model_reload_failures_total", ())] == 2
        counts = load.counts()
        wait_until(
            lambda: min(c - b for c, b in zip(load.counts(), counts, strict=True)) >= 5,
            "more answers after the second failed reload",
            server,
        )

    failures = [r for rs in load.records for r in rs if r[0] != 200]
    assert failures == [], (failures[:10], server.logs())
    for i, records in enumerate(load.records):
        # The body comes from the version the header names...
        mismatched = [r for r in records if float(r[1]) != r[2]]
        assert mismatched == [], (i, mismatched[:10])
        # ...and each client saw v1, then only v2, then only v1 again: never a step back.
        runs = [records[0][1]]
        for _, header, _ in records:
            if header != runs[-1]:
                runs.append(header)
        assert runs == ["1", "2", "1"], (i, runs)
    assert "Swapped Churn: version 1 -> 2" in server.logs(100_000)
    assert "Swapped Churn: version 2 -> 1" in server.logs(100_000)
