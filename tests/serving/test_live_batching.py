"""Adaptive batching on a real server: concurrent clients each get exactly their own rows."""

from __future__ import annotations

import asyncio

import httpx2
import numpy as np
import pandas as pd
import pytest
from live import LiveServer, batch_histogram, running
from tolerances import FLOAT64

import modelpack

COLUMNS = [f"f{i}" for i in range(6)]
BAD_MESSAGE = "Column 'f0': expected double, got string"


@pytest.fixture(scope="module")
def servers(tmp_path_factory, frame_forest, frame):
    root = tmp_path_factory.mktemp("batching")
    path = root / "forest"
    modelpack.save(frame_forest, path, input_example=frame[:5], predict_method="predict_proba")
    batched = LiveServer(
        str(path),
        root,
        label="batched",
        args=["--max-batch-size", "16", "--max-batch-delay-ms", "5"],
    )
    unbatched = LiveServer(str(path), root, label="unbatched", args=["--max-batch-size", "1"])
    with running(batched, unbatched):
        yield {"pack": modelpack.load(path), "batched": batched, "unbatched": unbatched}


def _body(rows: np.ndarray, form: str) -> dict:
    if form == "split":
        return {"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}}
    if form == "records":
        return {"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in rows.tolist()]}
    return {"inputs": {c: rows[:, i].tolist() for i, c in enumerate(COLUMNS)}}


async def _send_all(url: str, bodies: list[dict]) -> list[httpx2.Response]:
    limits = httpx2.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx2.AsyncClient(base_url=url, timeout=30.0, limits=limits) as http:
        calls = [http.post("/invocations", json=b) for b in bodies]
        return await asyncio.wait_for(asyncio.gather(*calls), 60)


def _expected(pack, rows: np.ndarray) -> np.ndarray:
    return np.asarray(pack.predict(pd.DataFrame(rows, columns=COLUMNS)))


def test_concurrent_clients_get_their_own_rows_and_only_the_bad_one_fails(servers):
    server, pack = servers["batched"], servers["pack"]
    rng = np.random.default_rng(7)
    inputs, bodies = [], []
    for i in range(200):
        n = 1 if i % 2 == 0 else int(rng.integers(2, 6))
        rows = rng.normal(size=(n, 6)) * 2
        inputs.append(rows)
        bodies.append(_body(rows, ("split", "records", "inputs")[i % 3]))
    bad = 137
    bodies[bad] = {"dataframe_split": {"columns": COLUMNS, "data": [["x", 1, 2, 3, 4, 5]]}}
    before = batch_histogram(server.metrics())

    responses = asyncio.run(_send_all(server.url, bodies))

    after = batch_histogram(server.metrics())
    for i, (rows, response) in enumerate(zip(inputs, responses, strict=True)):
        if i == bad:
            assert response.status_code == 400, response.text
            error = response.json()
            assert error["error_code"] == "BAD_REQUEST"
            assert error["message"].startswith(BAD_MESSAGE), error
            continue
        assert response.status_code == 200, (i, response.text, server.logs())
        got = np.asarray(response.json()["predictions"])
        np.testing.assert_allclose(got, _expected(pack, rows), **FLOAT64, err_msg=f"request {i}")
    valid_rows = sum(len(r) for i, r in enumerate(inputs) if i != bad)
    calls = after["count"] - before["count"]
    # Every valid row went through the model exactly once, in calls of at most 16 rows...
    assert after["sum"] - before["sum"] == valid_rows
    assert after["le=16.0"] - before["le=16.0"] == calls
    # ...and concurrent requests were merged: fewer model calls than requests, and some calls
    # held more rows (> 8) than any single request (<= 5) has.
    assert calls < 199, (calls, after)
    assert calls - (after["le=8.0"] - before["le=8.0"]) > 0, after


def test_a_request_larger_than_the_batch_runs_alone(servers):
    server, pack = servers["batched"], servers["pack"]
    rows = np.random.default_rng(3).normal(size=(40, 6))
    before = batch_histogram(server.metrics())
    response = httpx2.post(f"{server.url}/invocations", json=_body(rows, "split"), timeout=10)
    after = batch_histogram(server.metrics())
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["predictions"])
    np.testing.assert_allclose(got, _expected(pack, rows), **FLOAT64)
    # One model call of all 40 rows: not cut to the batch size, not merged with anything.
    assert after["count"] - before["count"] == 1
    assert after["sum"] - before["sum"] == 40
    assert after["le=32.0"] - before["le=32.0"] == 0
    assert after["le=64.0"] - before["le=64.0"] == 1


def test_max_batch_size_1_disables_batching(servers):
    server, pack = servers["unbatched"], servers["pack"]
    rng = np.random.default_rng(11)
    inputs = [rng.normal(size=(1, 6)) for _ in range(60)]
    before = batch_histogram(server.metrics())

    responses = asyncio.run(_send_all(server.url, [_body(r, "split") for r in inputs]))

    after = batch_histogram(server.metrics())
    for rows, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200, response.text
        got = np.asarray(response.json()["predictions"])
        np.testing.assert_allclose(got, _expected(pack, rows), **FLOAT64)
    assert after["count"] - before["count"] == 60
    assert after["sum"] - before["sum"] == 60
    assert after["le=1.0"] - before["le=1.0"] == 60  # every model call had exactly one row
