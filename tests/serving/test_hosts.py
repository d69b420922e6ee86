"""The Host allowlist in process: which names pass, every route covered, how the default is
chosen (a real server's answers are in test_live_connections.py)."""

from __future__ import annotations

import pytest

import modelpack
from modelpack.hosts import HostCheck
from modelpack.serving.config import ServeOptions
from modelpack.serving.server import with_default_hosts

REFUSED = (
    "The Host header 'testserver' is not one this server answers to; if clients reach it by "
    "that name, add the name to --allowed-hosts."
)


def test_every_route_checks_the_host(serve, column_package):
    c = serve(column_package, name="churn", allowed_hosts="127.0.0.1, localhost")
    routes = [
        ("POST", "/invocations", {"inputs": [[0.0] * 6]}),
        ("POST", "/v2/models/churn/infer", {"inputs": []}),
        ("GET", "/ping", None),
        ("GET", "/health", None),
        ("GET", "/version", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/v2", None),
        ("GET", "/v2/models/churn", None),
        ("GET", "/nope", None),
    ]
    for method, path, body in routes:
        r = c.request(method, path, json=body)  # TestClient's Host is 'testserver'
        assert r.status_code == 400, (path, r.text)
        assert r.json() == (
            {"error": REFUSED}
            if path.startswith("/v2")
            else {"error_code": "BAD_REQUEST", "message": REFUSED}
        )
        r = c.request(method, path, json=body, headers={"host": "localhost:8080"})
        assert r.status_code != 400 or path == "/v2/models/churn/infer", (path, r.text)
    r = c.post("/invocations", json={"inputs": [[0.0] * 6]}, headers={"host": "127.0.0.1"})
    assert r.status_code == 200


def test_create_app_checks_no_host_unless_told(serve, column_package):
    assert serve(column_package).get("/ping").status_code == 200  # Host: testserver


@pytest.mark.parametrize(
    ("patterns", "host", "allowed"),
    [
        (("127.0.0.1", "localhost", "::1"), b"127.0.0.1:8080", True),
        (("127.0.0.1", "localhost", "::1"), b"[::1]:8080", True),
        (("127.0.0.1", "localhost", "::1"), b"[::1]", True),
        (("127.0.0.1", "localhost", "::1"), b"Localhost.", True),
        (("127.0.0.1", "localhost", "::1"), b"127.0.0.2", False),
        (("127.0.0.1", "localhost", "::1"), b"localhost.evil.example", False),
        (("127.0.0.1", "localhost", "::1"), b"evil.example:8080", False),
        (("127.0.0.1", "localhost", "::1"), b"", False),
        (("127.0.0.1", "localhost", "::1"), None, False),
        (("models.internal:8080",), b"models.internal:8080", True),
        (("models.internal:8080",), b"models.internal:9090", False),
        (("models.internal:8080",), b"models.internal", False),
        (("*.corp.example",), b"a.corp.example", True),
        (("*.corp.example",), b"a.b.corp.example:443", True),
        (("*.corp.example",), b"corp.example", False),
        (("*.corp.example",), b"evilcorp.example", False),
        (("*",), b"anything.at.all", True),
        (("*",), None, True),
    ],
)
def test_host_patterns(patterns, host, allowed):
    check = HostCheck(patterns)
    assert check.allows(host) is allowed
    assert check.allows(host) is allowed  # the second answer comes from its cache


def test_the_default_follows_the_bound_address():
    loopback = ("127.0.0.1", "localhost", "::1")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert with_default_hosts(ServeOptions(host=host)).allowed_hosts == loopback
    for host in ("0.0.0.0", "::", "10.1.2.3", "models.internal"):
        assert with_default_hosts(ServeOptions(host=host)).allowed_hosts == ("*",)
    given = ServeOptions(host="0.0.0.0", allowed_hosts="models.internal")
    assert with_default_hosts(given).allowed_hosts == ("models.internal",)


def test_options_are_validated():
    assert ServeOptions(allowed_hosts=" A.example ,, *.corp.example:8080 ").allowed_hosts == (
        "a.example",
        "*.corp.example:8080",
    )
    assert ServeOptions(allowed_hosts=["[::1]:80", "::1"]).allowed_hosts == ("[::1]:80", "::1")
    with pytest.raises(
        modelpack.InvalidArgument, match=r"Not a host name for --allowed-hosts: 'a b'"
    ):
        ServeOptions(allowed_hosts="ok.example, a b")
    with pytest.raises(modelpack.InvalidArgument, match="allowed_hosts is empty"):
        ServeOptions(allowed_hosts=" , ")
    with pytest.raises(modelpack.InvalidArgument, match="read_timeout_s must be a number >= 0"):
        ServeOptions(read_timeout_s=-1)
    with pytest.raises(modelpack.InvalidArgument, match="max_connections must be a positive"):
        ServeOptions(max_connections=0)
