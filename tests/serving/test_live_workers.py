"""`--workers 2`: two processes share the port, each with its own model and metrics."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx2
import numpy as np
from live import LiveServer, running

import modelpack

LOAD_SECONDS = "modelpack_model_load_seconds"


async def _fresh_connections(url: str, requests: list[dict | None]) -> list[httpx2.Response]:
    """Each request on a connection of its own, all at once, so that both workers accept some."""

    async def one(body: dict | None) -> httpx2.Response:
        async with httpx2.AsyncClient(base_url=url, timeout=20) as http:
            if body is None:
                return await http.get("/metrics")
            return await http.post("/invocations", json=body)

    return await asyncio.wait_for(asyncio.gather(*(one(b) for b in requests)), 60)


def test_two_workers_serve_correctly_and_stop_on_sigterm(tmp_path, forest, xy):
    path = tmp_path / "forest"
    modelpack.save(forest, path, input_example=xy[0][:5])
    pack = modelpack.load(path)
    server = LiveServer(str(path), tmp_path, label="workers", args=["--workers", "2"])
    x = np.random.default_rng(9).normal(size=(24, 6))
    with running(server):
        workers: set[float] = set()
        deadline = time.monotonic() + 30  # the second worker may still be loading its model
        while time.monotonic() < deadline:  # rounds of fresh connections until both answered
            bodies = [{"inputs": x[i : i + 3].tolist()} for i in range(0, 24, 3)]
            responses = asyncio.run(_fresh_connections(server.url, [*bodies, *[None] * 8]))
            for i, response in enumerate(responses[:8]):
                assert response.status_code == 200, (response.text, server.logs())
                expected = pack.predict(x[3 * i : 3 * i + 3])
                assert response.json() == {"predictions": expected.tolist()}
                assert response.headers["x-model-version"] == pack.model_id
            # Each worker loaded the model itself: its load time tells the workers apart.
            for response in responses[8:]:
                assert response.status_code == 200
                workers |= {
                    float(line.split()[-1])
                    for line in response.text.splitlines()
                    if line.startswith(LOAD_SECONDS + " ")
                }
            if len(workers) == 2:
                break
            time.sleep(0.2)
        assert len(workers) == 2, (workers, server.logs())
        assert server.logs().count("Application startup complete.") == 2

        server.signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0, server.logs()
    assert server.logs().count("Finished server process") == 2, server.logs()
