"""`--workers 2`: two processes share the port, each with its own model; /metrics adds up over
them, whichever one answers the scrape."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time

import httpx2
import numpy as np
import pytest
from live import LiveServer, raw_http, running
from prometheus_client.parser import text_string_to_metric_families

import modelpack

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/net/tcp"), reason="tells the workers apart through /proc (Linux)"
)


async def _all_at_once(
    server: LiveServer, requests: list[dict | None]
) -> tuple[list[httpx2.Response], dict[int, int]]:
    """Each request on a connection of its own, all at once, so that both workers accept some.
    Returns the responses and ``{pid: connections}``: which worker accepted them, seen while
    every connection is still open."""
    answered: list[httpx2.Response] = []
    all_answered, release = asyncio.Event(), asyncio.Event()

    async def one(body: dict | None) -> httpx2.Response:
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            if body is None:
                response = await http.get("/metrics")
            else:
                response = await http.post("/invocations", json=body)
            answered.append(response)
            if len(answered) == len(requests):
                all_answered.set()
            await release.wait()
        return response

    tasks = [asyncio.ensure_future(one(body)) for body in requests]
    waiter = asyncio.ensure_future(all_answered.wait())
    try:  # a request that fails ends the wait at once; gather then raises its error
        await asyncio.wait([waiter, *tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        held = server.connections() if all_answered.is_set() else {}
    finally:
        release.set()
        waiter.cancel()
    return list(await asyncio.wait_for(asyncio.gather(*tasks), 30)), held


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _answered_200(text: str) -> float:
    requests = _samples(text, "modelpack_requests_total")
    return requests.get((("route", "/invocations"), ("status", "200")), 0.0)


def _loaded_pids(text: str) -> set[int]:
    return {int(dict(labels)["pid"]) for labels in _samples(text, "modelpack_model_load_seconds")}


def test_two_workers_serve_correctly_and_stop_on_sigterm(tmp_path, forest, xy):
    path = tmp_path / "forest"
    modelpack.save(forest, path, input_example=xy[0][:5])
    pack = modelpack.load(path)
    server = LiveServer(str(path), tmp_path, label="workers", args=["--workers", "2"])
    x = np.random.default_rng(9).normal(size=(24, 6))
    with running(server):
        workers: set[int] = set()
        deadline = time.monotonic() + 30  # the second worker may still be loading its model
        while time.monotonic() < deadline:  # rounds of fresh connections until both answered
            bodies = [{"inputs": x[i : i + 3].tolist()} for i in range(0, 24, 3)]
            responses, held = asyncio.run(_all_at_once(server, bodies))
            for i, response in enumerate(responses):
                assert response.status_code == 200, (response.text, server.logs())
                expected = pack.predict(x[3 * i : 3 * i + 3])
                assert response.json() == {"predictions": expected.tolist()}
                assert response.headers["x-model-version"] == pack.model_id
            workers |= set(held)
            if len(workers) == 2:
                break
            time.sleep(0.2)
        assert len(workers) == 2, (workers, server.logs())
        assert server.logs().count("Application startup complete.") == 2
        # Each worker loaded the model itself, and reports its own load time.
        assert _loaded_pids(httpx2.get(f"{server.url}/metrics").text) == workers
        # Every worker has the Host allowlist and the connection protocol: fresh connections
        # (spread over both) with a foreign Host, or with bytes that are no request, get 400.
        for _ in range(8):
            answer = raw_http(
                server.port,
                b"GET /ping HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 400 ") and b"--allowed-hosts" in answer, answer
            answer = raw_http(server.port, b"hello world")
            assert answer.startswith(b"HTTP/1.1 400 ") and b"Invalid HTTP request" in answer

        server.signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0, server.logs()
    assert server.logs().count("Finished server process") == 2, server.logs()


def test_metrics_add_up_over_workers_whichever_answers(tmp_path, forest, xy):
    path = tmp_path / "forest"
    modelpack.save(forest, path, input_example=xy[0][:5])
    tmp = tmp_path / "tmp"  # where the server makes its metrics directory
    tmp.mkdir()
    server = LiveServer(
        str(path),
        tmp_path,
        label="metrics",
        args=["--workers", "2"],
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    body = {"inputs": xy[0][:2].tolist()}
    with running(server):
        # /ready answers once one worker is up; the other may still be loading its model.
        deadline = time.monotonic() + 60
        while server.logs(100_000).count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.1)
        sent, served_by = 0, set()
        deadline = time.monotonic() + 30
        while len(served_by) < 2 and time.monotonic() < deadline:
            responses, held = asyncio.run(_all_at_once(server, [body] * 8))
            assert [r.status_code for r in responses] == [200] * 8, server.logs()
            sent += len(responses)
            served_by |= set(held)
            time.sleep(0.1)
        assert len(served_by) == 2, (served_by, server.logs())

        # Both workers served some of the requests, so a worker alone counts fewer than sent.
        # Rounds go on (bounded) until both workers have answered a scrape: on a loaded
        # machine the kernel may hand one worker every connection for a while.
        scraped_by: set[int] = set()
        deadline = time.monotonic() + 30
        for done in range(60):
            if (scraped_by == served_by and done >= 5) or time.monotonic() > deadline:
                break
            responses, held = asyncio.run(_all_at_once(server, [None] * 6))
            scraped_by |= set(held)
            for response in responses:
                assert response.status_code == 200
                assert _answered_200(response.text) == sent, (sent, response.text)
                assert _loaded_pids(response.text) == served_by, response.text
        assert scraped_by == served_by, (scraped_by, served_by)

        (state,) = tmp.glob("modelpack-metrics-*")
        assert stat.S_IMODE(state.stat().st_mode) == 0o700

        # A worker that dies is replaced; its requests still count, its gauges go.
        victim = min(served_by)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = httpx2.get(f"{server.url}/metrics", timeout=5).text
            pids = _loaded_pids(text)
            if victim not in pids and len(pids) == 2:
                break
            time.sleep(0.1)
        assert victim not in pids and len(pids) == 2, (victim, text, server.logs())
        assert _answered_200(text) == sent, text

        server.signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0, server.logs()
    assert not state.exists(), list(state.iterdir())
