"""The security layer in process: the Host allowlist, CORS, cross-origin state changes, the
headers, the limits, the one authentication check and the 500 without a trace. Most tests
wrap a tiny Starlette app with ``secured`` (the checks come before any route, so the route
can be anything); the rest use ``create_app``'s real routes."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from modelpack.errors import Unauthenticated
from modelpack.server.config import ServerOptions
from modelpack.server.endpoints import Principal
from modelpack.server.main import with_default_hosts
from modelpack.server.security import PRINCIPAL, PUBLIC_CALLER, secured

ANN = Principal(user="ann", role="editor", authenticated=True)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
REFUSED_HOST = (
    "The Host header 'evil.example' is not one this server answers to; if clients reach it by "
    "that name, add the name to --allowed-hosts."
)


class RecordingAuth:
    """Records which paths the layer asks about; refuses a request without a token when
    ``required``."""

    def __init__(self, required: bool = False) -> None:
        self.asked: list[str] = []
        self.required = required

    def authenticate(self, headers, path):
        self.asked.append(path)
        if self.required and headers.get("authorization") != "Bearer good":
            raise Unauthenticated("A token is needed: send Authorization: Bearer <token>.")
        return ANN


async def echo(request):
    principal = request.scope.get(PRINCIPAL)
    body = await request.body()
    return JSONResponse({"user": principal.user if principal else None, "size": len(body)})


async def fails(request):
    raise RuntimeError("secret detail in /srv/modelpack/store.py")


async def page(request):
    return PlainTextResponse("<html>ui</html>", media_type="text/html")


def tiny(auth=None, **options):
    """A TestClient on a small app behind ``secured``, and the auth double it asks."""
    auth = auth or RecordingAuth()
    app = Starlette(
        routes=[
            Route("/api/2.0/mlflow/thing", echo, methods=METHODS),
            Route("/api/2.0/mlflow-artifacts/artifacts/{path:path}", echo, methods=["PUT"]),
            Route("/api/2.0/mlflow/fails", fails, methods=["GET", "POST"]),
            Route("/health", lambda r: PlainTextResponse("OK")),
            Route("/version", lambda r: PlainTextResponse("0.1.0")),
            Route("/ui", page),
        ]
    )
    state = SimpleNamespace(options=ServerOptions(**options), auth=auth)
    return TestClient(secured(app, state), raise_server_exceptions=False), auth


# ---------------------------------------------------------------------- Host allowlist


def test_only_allowed_hosts_are_answered():
    client, _ = tiny(allowed_hosts="127.0.0.1, localhost, ::1")
    for host in ("localhost:5000", "127.0.0.1", "[::1]:5000", "LOCALHOST."):
        r = client.get("/api/2.0/mlflow/thing", headers={"host": host})
        assert r.status_code == 200, host
    for host in ("evil.example", "localhost.evil.example", "127.0.0.1.evil.example:5000"):
        r = client.get("/api/2.0/mlflow/thing", headers={"host": host})
        assert r.status_code == 400, host
        assert r.json()["error_code"] == "BAD_REQUEST"
        assert "--allowed-hosts" in r.json()["message"]
        assert r.headers["x-content-type-options"] == "nosniff"
    r = client.post("/ui", headers={"host": "evil.example"})  # every route, the UI's too
    assert r.json() == {"error_code": "BAD_REQUEST", "message": REFUSED_HOST}


def test_a_request_without_host_is_refused():
    client, _ = tiny(allowed_hosts="localhost")
    app = client.app
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/2.0/mlflow/thing",
        "headers": [],
        "query_string": b"",
    }
    import asyncio

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400
    assert b"has no Host header" in sent[1]["body"]


def test_health_and_version_answer_any_host_and_ask_no_auth():
    client, auth = tiny(RecordingAuth(required=True), allowed_hosts="localhost")
    for path in ("/health", "/version"):
        r = client.get(path, headers={"host": "10.0.0.7:5000"})
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-store"
    assert auth.asked == []


def test_default_hosts_follow_the_bound_address():
    loopback = ("127.0.0.1", "localhost", "::1")
    for host in ("127.0.0.1", "localhost", "::1"):
        assert with_default_hosts(ServerOptions(host=host)).allowed_hosts == loopback
    wide = with_default_hosts(ServerOptions(host="0.0.0.0", auth="token")).allowed_hosts
    assert wide[-4:] == (*loopback, "ip")
    assert socket.gethostname().lower() in wide
    named = with_default_hosts(ServerOptions(host="models.internal", auth="token"))
    assert named.allowed_hosts[0] == "models.internal"
    given = ServerOptions(host="0.0.0.0", allowed_hosts="a.example")
    assert with_default_hosts(given).allowed_hosts == ("a.example",)

    client, _ = tiny(allowed_hosts=wide)
    for host, status in (
        ("10.1.2.3:5000", 200),  # any address: a rebinding page's Host is a name
        ("[fe80::1]:5000", 200),
        ("localhost", 200),
        (f"{socket.gethostname()}:5000", 200),
        ("evil.example", 400),
        ("10.1.2.3.evil.example", 400),
    ):
        r = client.get("/api/2.0/mlflow/thing", headers={"host": host})
        assert r.status_code == status, host


def test_create_app_checks_no_host_unless_told(server_app):
    api, _ = server_app  # TestClient's Host is 'testserver'; modelpack server always tells
    assert api.get("/api/3.0/mlflow/server-info").status_code == 200


# ---------------------------------------------------------------------- CORS


def test_cors_is_off_by_default():
    client, _ = tiny()
    r = client.options(
        "/api/2.0/mlflow/thing",
        headers={"origin": "https://ui.example", "access-control-request-method": "POST"},
    )
    assert r.status_code == 403
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    assert "--cors-origins" in r.json()["message"]
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/api/2.0/mlflow/thing", headers={"origin": "https://ui.example"})
    assert r.status_code == 200  # a read is answered, but no browser lets the page see it
    assert "access-control-allow-origin" not in r.headers


def test_listed_origins_get_preflight_and_cors_headers():
    client, auth = tiny(RecordingAuth(required=True), cors_origins="https://ui.example")
    r = client.options(
        "/api/2.0/mlflow/thing",
        headers={
            "origin": "https://ui.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "Authorization, Content-Type",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://ui.example"
    assert r.headers["access-control-allow-methods"] == "GET, POST, PUT, PATCH, DELETE"
    assert "authorization" in r.headers["access-control-allow-headers"]
    assert r.headers["vary"] == "Origin"
    assert auth.asked == []  # a preflight carries no credentials
    r = client.post(
        "/api/2.0/mlflow/thing",
        headers={"origin": "https://ui.example", "authorization": "Bearer good"},
        json={},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://ui.example"
    for headers, why in (
        ({"origin": "https://other.example", "access-control-request-method": "GET"}, "origins"),
        ({"origin": "https://ui.example", "access-control-request-method": "TRACE"}, "TRACE"),
        (
            {
                "origin": "https://ui.example",
                "access-control-request-method": "GET",
                "access-control-request-headers": "x-evil",
            },
            "'x-evil'",
        ),
    ):
        r = client.options("/api/2.0/mlflow/thing", headers=headers)
        assert r.status_code == 403, headers
        assert why in r.json()["message"]
        assert "access-control-allow-origin" not in r.headers


# ---------------------------------------------------------------------- cross-origin changes


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_cross_origin_state_changes_are_refused(method):
    client, _ = tiny(cors_origins="https://ui.example")
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "http://testserver.evil.example"},
        {"origin": "http://testserver:8080"},  # another port is another origin
        {"origin": "null"},  # a sandboxed frame or a file:// page
        {"referer": "https://evil.example/page.html"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://testserver", "sec-fetch-site": "cross-site"},
    ):
        r = client.request(method, "/api/2.0/mlflow/thing", headers=headers, content=b"{}")
        assert r.status_code == 403, headers
        assert r.json()["error_code"] == "PERMISSION_DENIED"
        assert "--cors-origins" in r.json()["message"]
    for headers in (
        {},  # MLflow's and modelpack's clients send no Origin
        {"origin": "http://testserver"},  # the server's own pages
        {"origin": "https://testserver"},  # ... behind a TLS proxy
        {"referer": "http://testserver/ui/runs"},
        {"sec-fetch-site": "same-origin", "origin": "http://testserver"},
        {"origin": "https://ui.example", "sec-fetch-site": "cross-site"},  # listed
    ):
        r = client.request(method, "/api/2.0/mlflow/thing", headers=headers, content=b"{}")
        assert r.status_code == 200, headers


def test_cross_origin_reads_pass():
    client, _ = tiny()
    r = client.get("/api/2.0/mlflow/thing", headers={"origin": "https://evil.example"})
    assert r.status_code == 200


# ---------------------------------------------------------------------- headers


def test_security_headers_on_every_answer():
    client, _ = tiny()
    for path, api in (
        ("/api/2.0/mlflow/thing", True),
        ("/api/2.0/nothing-here", True),
        ("/health", True),
        ("/ui", False),
        ("/no-such-page", False),
    ):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["referrer-policy"] == "no-referrer", path
        csp = r.headers["content-security-policy"]
        if api:
            assert r.headers["cache-control"] == "no-store", path
            assert csp == "default-src 'none'; frame-ancestors 'none'; sandbox"
        else:
            assert "cache-control" not in r.headers, path
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "'unsafe-inline'" not in csp


# ---------------------------------------------------------------------- limits


def test_bodies_over_the_limit_are_413():
    client, auth = tiny(max_body_bytes=1000, max_artifact_bytes=5000)
    r = client.post("/api/2.0/mlflow/thing", content=b"x" * 1001)
    assert r.status_code == 413
    assert r.json() == {
        "error_code": "REQUEST_ENTITY_TOO_LARGE",
        "message": "The request body is 1001 bytes; this server takes at most 1000 "
        "(--max-body-bytes).",
    }
    assert client.post("/api/2.0/mlflow/thing", content=b"x" * 1000).json()["size"] == 1000

    def chunks(n):
        for _ in range(n):
            yield b"x" * 400

    r = client.post("/api/2.0/mlflow/thing", content=chunks(3))  # no Content-Length
    assert r.status_code == 413
    assert "over 1000 bytes" in r.json()["message"]

    path = "/api/2.0/mlflow-artifacts/artifacts/a/b.bin"
    assert client.put(path, content=b"x" * 4000).json()["size"] == 4000
    r = client.put(path, content=b"x" * 5001)
    assert r.status_code == 413
    assert "at most 5000 (--max-artifact-bytes)" in r.json()["message"]


def test_too_many_header_fields_are_refused():
    client, auth = tiny()
    headers = [(f"x-h{i}", "1") for i in range(101)]
    r = client.get("/api/2.0/mlflow/thing", headers=headers)
    assert r.status_code == 400
    assert "at most 100" in r.json()["message"]
    assert auth.asked == []


def test_a_413_from_create_app_route(server_app):
    api, state = server_app
    limit = state.options.max_body_bytes
    r = api.post("/api/2.0/mlflow/logged-models", content=b" " * (limit + 1))
    assert r.status_code == 413


# ---------------------------------------------------------------------- no stack trace


def test_an_unexpected_error_is_a_500_without_detail(caplog):
    client, _ = tiny()
    with caplog.at_level(logging.ERROR, logger="modelpack.server"):
        for method in ("GET", "POST"):
            r = client.request(method, "/api/2.0/mlflow/fails")
            assert r.status_code == 500
            assert r.json() == {
                "error_code": "INTERNAL_ERROR",
                "message": "The server failed to answer this request; its log says why.",
            }
            assert r.headers["x-content-type-options"] == "nosniff"
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 2  # once each, with the traceback, in the server's log only
    assert "secret detail" in str(logged[0].exc_info[1])


def test_an_error_in_a_create_app_route_is_a_500_without_detail(tmp_path, caplog):
    from modelpack.server import create_app
    from modelpack.store import engines

    url = f"sqlite:///{tmp_path}/db.sqlite"
    app = create_app(backend_store_uri=url, artifact_root=str(tmp_path / "a"))
    app.app.router.routes.append(Route("/api/2.0/test-only/fails", fails))
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        with caplog.at_level(logging.ERROR, logger="modelpack.server"):
            r = client.get("/api/2.0/test-only/fails")
    engines.dispose(url)
    assert r.status_code == 500
    assert r.json()["error_code"] == "INTERNAL_ERROR"
    for leak in ("Traceback", "secret", "/srv", ".py", str(tmp_path)):
        assert leak not in r.text
    assert any(rec.exc_info for rec in caplog.records)


# ---------------------------------------------------------------------- authentication


def test_every_path_but_the_public_ones_is_authenticated():
    client, auth = tiny(RecordingAuth(required=True))
    for method, path in (
        ("GET", "/api/2.0/mlflow/thing"),
        ("POST", "/api/2.0/mlflow/thing"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/x"),
        ("GET", "/ui"),
        ("GET", "/api/2.0/no-such-route"),
        ("OPTIONS", "/api/2.0/mlflow/thing"),  # not a preflight: no Access-Control-Request-*
    ):
        r = client.request(method, path)
        assert r.status_code == 401, (method, path)
        assert r.json() == {
            "error_code": "UNAUTHENTICATED",
            "message": "A token is needed: send Authorization: Bearer <token>.",
        }
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["x-frame-options"] == "DENY"
    assert auth.asked == [
        "/api/2.0/mlflow/thing",
        "/api/2.0/mlflow/thing",
        "/api/2.0/mlflow-artifacts/artifacts/x",
        "/ui",
        "/api/2.0/no-such-route",
        "/api/2.0/mlflow/thing",
    ]
    r = client.get("/api/2.0/mlflow/thing", headers={"authorization": "Bearer good"})
    assert r.json()["user"] == "ann"  # the principal reaches the route


def test_every_route_of_create_app_passes_the_check(server_app, monkeypatch):
    api, state = server_app
    asked: list[str] = []

    def refuse(headers, path):
        asked.append(path)
        raise Unauthenticated("No token.")

    monkeypatch.setattr(state.auth, "authenticate", refuse)
    app = api.app.app
    checked = 0
    for route in app.routes:
        path = route.path.replace("{", "").replace("}", "").replace(":path", "")
        for method in sorted(route.methods - {"HEAD"}):
            r = api.request(method, path)
            if route.path in ("/health", "/version"):
                assert r.status_code == 200, route.path
            else:
                assert r.status_code == 401, (method, route.path, r.text)
                checked += 1
    assert checked > 0 and len(asked) == checked
    assert "/health" not in asked


def test_public_paths_get_the_public_caller():
    seen = []

    async def who(request):
        seen.append(request.scope[PRINCIPAL])
        return PlainTextResponse("OK")

    app = Starlette(routes=[Route("/health", who)])
    auth = RecordingAuth(required=True)
    state = SimpleNamespace(options=ServerOptions(), auth=auth)
    assert TestClient(secured(app, state)).get("/health").text == "OK"
    assert seen == [PUBLIC_CALLER] and auth.asked == []


def test_websockets_are_refused():
    client, _ = tiny()
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/api/2.0/mlflow/thing"):
        pass


def test_with_tokens_the_real_check_answers_401_and_public_paths_pass(tmp_path):
    from modelpack.server import create_app
    from modelpack.store import engines

    url = f"sqlite:///{tmp_path}/db.sqlite"
    app = create_app(backend_store_uri=url, artifact_root=str(tmp_path / "a"), auth="token")
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        for path in ("/api/3.0/mlflow/server-info", "/api/2.0/no-such-route", "/ui"):
            r = client.get(path)
            assert r.status_code == 401, path
            assert r.json()["error_code"] == "UNAUTHENTICATED"
        assert client.get("/health").text == "OK"
        assert client.get("/version").status_code == 200
    engines.dispose(url)
