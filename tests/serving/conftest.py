"""Packages to serve, and in-process clients (Starlette's TestClient runs the lifespan)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

import modelpack
from modelpack.serving import create_app


@pytest.fixture
def column_package(tmp_path, frame_forest, frame):
    path = tmp_path / "churn"
    modelpack.save(frame_forest, path, input_example=frame.head(3))
    return path


@pytest.fixture
def tensor_package(tmp_path, forest, xy):
    path = tmp_path / "rf"
    modelpack.save(forest, path, input_example=xy[0][:3], also=("onnx",))
    return path


@pytest.fixture
def serve():
    """``serve(uri, **options)`` -> a started TestClient; all are closed after the test."""
    clients = []

    def start(uri, **options):
        client = TestClient(create_app(str(uri), **options), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)
