"""Every route of the server needs a token: the test walks the app's route table (every route,
every method, path parameters filled in) and fails on any route that answers without one.

A route added later, by an ``Endpoint`` or mounted any other way, is walked too; only the paths
in ``PUBLIC`` may answer without a token (MLflow leaves the same two open for probes).
"""

from __future__ import annotations

import uuid

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from modelpack.server import create_app
from modelpack.store import auth as store_auth

PUBLIC = frozenset({"/health", "/version"})

# A plausible value for each path parameter, by name (by its convertor when unnamed here).
VALUES = {"model_id": "m-" + "0" * 32, "tag_key": "k", "experiment_id": "1", "run_id": "0" * 32}


def starlette_of(app):
    """The Starlette app inside the middleware the server wraps it in."""
    for _ in range(10):
        if isinstance(app, Starlette):
            return app
        app = app.app
    raise AssertionError("no Starlette app inside the server's wrappers")


def probes(routes, prefix=""):
    """``(method, path)`` for every route: every method, path parameters filled in."""
    for route in routes:
        if isinstance(route, Route):
            values = {}
            for name, convertor in route.param_convertors.items():
                kind = type(convertor).__name__
                values[name] = {
                    "PathConvertor": "dir/file.txt",
                    "IntegerConvertor": "1",
                    "FloatConvertor": "1.5",
                    "UUIDConvertor": str(uuid.UUID(int=1)),
                }.get(kind, VALUES.get(name, "x1"))
            path = prefix + route.path_format.format(**values)
            for method in sorted(route.methods or {"GET"}):
                yield method, path
        elif isinstance(route, Mount):
            if route.routes:
                yield from probes(route.routes, prefix + route.path)
            else:  # an ASGI app mounted whole (static files): a file under it
                yield "GET", f"{prefix}{route.path}/index.html"
        else:
            raise AssertionError(
                f"{route!r} is a kind of route this walker does not know: teach it to probe "
                f"the new kind, so that its authentication is tested too"
            )


def answers_without_token(app, admin_token, public=PUBLIC):
    """The routes of ``app`` that answer a caller without a token (or refuse the admin's).
    (A forged or revoked token takes the same path as none: tests/server/test_auth.py.)

    Returns ``(problems, probed)``.
    """
    problems, probed = [], 0
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        for method, path in probes(starlette_of(app).routes):
            probed += 1
            body = {} if method not in ("GET", "HEAD") else None
            anonymous = client.request(method, path, json=body)
            admin = client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {admin_token}"}
            )
            if path in public:
                if anonymous.status_code == 401:
                    problems.append(f"{method} {path}: public, yet 401 without a token")
                continue
            if anonymous.status_code != 401:
                problems.append(f"{method} {path}: {anonymous.status_code} without a token")
            if admin.status_code == 401:
                problems.append(f"{method} {path}: 401 with an admin's token")
    return problems, probed


@pytest.fixture
def server(tmp_path):
    app = create_app(
        backend_store_uri=f"sqlite:///{tmp_path / 'store.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        auth="token",
    )
    token = store_auth.create_token(app.state.server.store, "root", "admin")[1]
    return app, token


def test_every_route_answers_401_without_a_token(server):
    app, token = server
    problems, probed = answers_without_token(app, token)
    assert probed >= 40  # the API's routes, each under /api and /ajax-api
    assert problems == []


def test_the_walker_sees_every_route_of_the_table(server):
    app, _ = server
    paths = {path for _, path in probes(starlette_of(app).routes)}
    assert "/api/2.0/modelpack/tokens/create" in paths
    assert "/ajax-api/2.0/modelpack/tokens/create" in paths
    assert "/api/2.0/mlflow/experiments/permissions/update" in paths


def test_the_walker_catches_a_route_that_skips_authentication(server):
    app, token = server

    async def leak(request):
        return PlainTextResponse("secret")

    bare = Starlette(routes=[Route("/api/2.0/leak/{name}", leak, methods=["GET", "POST"])])
    problems, probed = answers_without_token(bare, token)
    assert probed == 3  # GET, HEAD, POST
    assert problems == [
        "GET /api/2.0/leak/x1: 200 without a token",
        "HEAD /api/2.0/leak/x1: 200 without a token",
        "POST /api/2.0/leak/x1: 200 without a token",
    ]
