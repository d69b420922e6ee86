"""The server in process: ``api`` is a started Starlette TestClient on a fresh SQLite store and
artifact root in ``tmp_path``; ``server_state`` is its ``ServerState`` (the store, the client,
experiment "0")."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient


def state_of(app: Any) -> Any:
    """The ``ServerState`` of an app that ``create_app`` returned, whether or not the security
    layer wraps the Starlette app (the wrapper keeps it as ``.app``)."""
    seen = 0
    while app is not None and seen < 8:  # bounded: a few wrappers at most
        state = getattr(app, "state", None)
        server = getattr(state, "server", None) if state is not None else None
        if server is not None:
            return server
        app = getattr(app, "app", None)
        seen += 1
    raise AssertionError("create_app's app exposes no ServerState (app.state.server)")


@pytest.fixture
def server_app(tmp_path):
    """``(TestClient, ServerState)`` for a server on ``tmp_path``'s SQLite store (started)."""
    from modelpack.server import create_app
    from modelpack.store import engines

    url = f"sqlite:///{tmp_path}/db.sqlite"
    app = create_app(backend_store_uri=url, artifact_root=str(tmp_path / "artifacts"))
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield client, state_of(app)
    engines.dispose(url)


@pytest.fixture
def api(server_app):
    """A started TestClient on a fresh server (SQLite in tmp_path)."""
    return server_app[0]


@pytest.fixture
def server_state(server_app):
    """The ``ServerState`` behind ``api``."""
    return server_app[1]
