"""The artifact proxy on a real uvicorn server, spoken to with raw HTTP (the exact bytes of a
path, as an attacker sends them): MLflow's wire shapes, --no-serve-artifacts, every traversal
variant refused on GET, PUT, list and DELETE with nothing read or written outside the root, the
registry's copies read-only, the size limit, and the permission each path needs."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
from live_server import start_server

from modelpack.server.artifacts import access_for, check_path
from modelpack.server.wire import ApiError

API = "/api/2.0/mlflow-artifacts/artifacts"
SECRET = b"the secret outside the artifact root"


@pytest.fixture
def live(tmp_path):
    """``start(**options) -> LiveServer``; every server started is stopped after the test."""
    started = []

    def start(**options):
        server = start_server(tmp_path / f"server{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def request(url, method, target, body=None, headers=None):
    """``(status, headers, body)`` of one request whose target is sent byte for byte."""
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def error_of(body):
    detail = json.loads(body)
    return detail["error_code"], detail["message"]


# ---------------------------------------------------------------------- MLflow's wire


def test_put_get_list_delete_answer_as_mlflow(live):
    server = live()
    status, _, body = request(server.url, "PUT", f"{API}/e/r/artifacts/notes/a.txt", b"hello")
    assert (status, json.loads(body)) == (200, {})
    status, _, body = request(server.url, "PUT", f"{API}/e/r/artifacts/page.html", b"<script>")
    assert status == 200

    status, headers, body = request(server.url, "GET", f"{API}/e/r/artifacts/notes/a.txt")
    assert (status, body) == (200, b"hello")
    assert headers["content-length"] == "5"
    assert headers["content-type"].startswith("text/plain")
    assert (
        headers["content-disposition"] == "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt"
    )
    assert headers["x-content-type-options"] == "nosniff"

    # An uploaded page is never rendered by a browser: an attachment, sniffing off, sandboxed.
    status, headers, body = request(server.url, "GET", f"{API}/e/r/artifacts/page.html")
    assert (status, body) == (200, b"<script>")
    assert headers["content-disposition"].startswith("attachment;")
    assert headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in headers["content-security-policy"]

    status, _, body = request(server.url, "GET", f"{API}?path=e/r/artifacts")
    assert status == 200
    assert json.loads(body) == {
        "files": [
            {"path": "notes", "is_dir": True},
            {"path": "page.html", "is_dir": False, "file_size": 8},
        ]  # fmt: skip
    }
    ajax = "/ajax-api/2.0/mlflow-artifacts/artifacts"
    status, _, body = request(server.url, "GET", f"{ajax}?path=e/r/artifacts/notes/")
    assert json.loads(body) == {"files": [{"path": "a.txt", "is_dir": False, "file_size": 5}]}
    assert json.loads(request(server.url, "GET", f"{API}?path=nothing/here")[2]) == {"files": []}

    status, _, body = request(server.url, "DELETE", f"{API}/e/r/artifacts/notes")
    assert (status, json.loads(body)) == (200, {})
    assert json.loads(request(server.url, "GET", f"{API}?path=e/r/artifacts")[2]) == {
        "files": [{"path": "page.html", "is_dir": False, "file_size": 8}]
    }
    # Deleting what is not there is fine, as in MLflow.
    assert request(server.url, "DELETE", f"{API}/e/r/artifacts/notes")[0] == 200


def test_paths_with_spaces_and_unicode_travel_encoded_once(live, tmp_path):
    server = live()
    quoted = urllib.parse.quote("e/données/my file.txt")
    assert request(server.url, "PUT", f"{API}/{quoted}", "é".encode())[0] == 200
    assert (tmp_path / "server0/artifacts/e/données/my file.txt").read_text() == "é"
    status, headers, body = request(server.url, "GET", f"{API}/{quoted}")
    assert (status, body) == (200, "é".encode())
    assert headers["content-disposition"] == (
        "attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt"
    )


def test_missing_files_and_folders_are_404_without_server_paths(live, tmp_path):
    server = live()
    status, _, body = request(server.url, "GET", f"{API}/e/nothing.txt")
    assert status == 404
    code, message = error_of(body)
    assert code == "RESOURCE_DOES_NOT_EXIST"
    assert str(tmp_path) not in message
    request(server.url, "PUT", f"{API}/e/folder/x.txt", b"x")
    status, _, body = request(server.url, "GET", f"{API}/e/folder")
    assert status == 404
    assert error_of(body)[1] == (
        "Artifact 'e/folder' is a folder, not a file; list it with "
        "/api/2.0/mlflow-artifacts/artifacts?path=e/folder."
    )
    status, _, body = request(server.url, "GET", f"{API}/")
    assert status == 400
    assert error_of(body)[1].startswith("Missing artifact path: name a file")


def test_no_serve_artifacts_answers_503_on_every_route(live, tmp_path):
    server = live(serve_artifacts=False)
    for method, target, body in [
        ("GET", f"{API}/e/a.txt", None),
        ("PUT", f"{API}/e/a.txt", b"data"),
        ("GET", f"{API}?path=e", None),
        ("DELETE", f"{API}/e/a.txt", None),
        ("GET", "/ajax-api/2.0/mlflow-artifacts/artifacts?path=e", None),
    ]:
        status, _, answer = request(server.url, method, target, body)
        assert status == 503, (method, target)
        code, message = error_of(answer)
        assert code == "TEMPORARILY_UNAVAILABLE"
        assert "started with --no-serve-artifacts" in message
    assert not (tmp_path / "server0/artifacts/e").exists()


def test_uploads_past_the_limit_are_413_and_store_nothing(live, tmp_path):
    server = live(max_artifact_bytes=1000)
    status, _, body = request(server.url, "PUT", f"{API}/e/big.bin", b"x" * 5000)
    assert status == 413
    code, message = error_of(body)
    # (The security layer may refuse a declared size before the proxy sees the request.)
    assert code == "REQUEST_ENTITY_TOO_LARGE"
    assert "5000 bytes" in message and "--max-artifact-bytes" in message
    # Without a Content-Length (chunked), the count while streaming stops it.
    status, _, body = request(server.url, "PUT", f"{API}/e/big.bin", iter([b"x" * 600, b"y" * 600]))
    assert status == 413
    assert "is over 1000 bytes" in error_of(body)[1]
    assert request(server.url, "PUT", f"{API}/e/ok.bin", b"x" * 1000)[0] == 200
    assert sorted(os.listdir(tmp_path / "server0/artifacts/e")) == ["ok.bin"]


def test_an_upload_cut_short_leaves_nothing_behind(live, tmp_path):
    server = live()
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"PUT {API}/e/cut.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
            + b"x" * 1000
        )
    folder = tmp_path / "server0/artifacts/e"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not folder.exists() or any(folder.iterdir())):
        time.sleep(0.05)  # the server notices the disconnect and removes its temp file
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert request(server.url, "GET", f"{API}/e/cut.bin")[0] == 404


def test_a_file_never_replaces_a_folder(live, tmp_path):
    server = live()
    assert request(server.url, "PUT", f"{API}/e/folder/x.txt", b"x")[0] == 200
    status, _, body = request(server.url, "PUT", f"{API}/e/folder", b"y")
    assert status == 400
    assert error_of(body)[1] == "Artifact path 'e/folder' is a folder; a file cannot replace it."
    status, _, body = request(server.url, "PUT", f"{API}/e/folder/x.txt/under", b"y")
    assert status == 400
    assert error_of(body)[1] == "Artifact path 'e/folder/x.txt/under': a parent of it is a file."
    assert (tmp_path / "server0/artifacts/e/folder/x.txt").read_bytes() == b"x"


# ---------------------------------------------------------------------- traversal


# Paths as they appear in the request target (after /artifacts/), each meant to reach
# <tmp>/outside/secret.txt from the artifact root <tmp>/serverN/artifacts.
TRAVERSALS = {
    "plain ..": "../../outside/secret.txt",
    "inner ..": "e/../../../outside/secret.txt",
    "encoded ..": "%2e%2e/%2e%2e/outside/secret.txt",
    "encoded slashes": "..%2f..%2foutside%2fsecret.txt",
    "double encoded": "%252e%252e/%252e%252e/outside/secret.txt",
    "double encoded slashes": "%252e%252e%252f%252e%252e%252foutside%252fsecret.txt",
    "backslashes": "..%5c..%5coutside%5csecret.txt",
    "absolute": "%2Ftmp%2Foutside%2Fsecret.txt",
    "drive letter": "C:/Windows/win.ini",
    "dot segment": "./e/a.txt",
    "empty segment": "e//a.txt",
    "NUL": "e/a.txt%00.png",
    "fragment": "e/a.txt%23x",
    "symlink": "link/secret.txt",
    "symlink itself": "link",
}


def plant(tmp_path, server_dir):
    """The outside file, and a link inside the root that points at its folder."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_bytes(SECRET)
    root = server_dir / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "link").is_symlink():
        (root / "link").symlink_to(outside, target_is_directory=True)
    return outside


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes()) for p in folder.rglob("*"))


@pytest.fixture
def attacked(live, tmp_path):
    server = live()
    outside = plant(tmp_path, tmp_path / "server0")
    before = snapshot(outside)
    yield server
    assert snapshot(outside) == before  # nothing outside was written or deleted
    assert (outside / "secret.txt").read_bytes() == SECRET


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "LIST"])
def test_every_traversal_variant_is_refused(attacked, method):
    for name, raw in TRAVERSALS.items():
        if method == "LIST":
            target, verb = f"{API}?path={raw}", "GET"
        else:
            target, verb = f"{API}/{raw}", method
        body = b"overwritten" if method == "PUT" else None
        status, _, answer = request(attacked.url, verb, target, body)
        assert 400 <= status < 500, (name, method, status, answer)
        assert SECRET not in answer, (name, method)


def test_refusals_name_the_reason(attacked, tmp_path):
    def message(raw):
        status, _, body = request(attacked.url, "GET", f"{API}/{raw}")
        assert status == 400, raw
        text = error_of(body)[1]
        assert str(tmp_path) not in text  # no path of the server's in an answer
        return text

    assert "encoded twice" in message(TRAVERSALS["double encoded"])
    assert "'..' segment" in message(TRAVERSALS["encoded .."])
    assert "backslash" in message(TRAVERSALS["backslashes"])
    assert "absolute" in message(TRAVERSALS["absolute"])
    assert "absolute" in message(TRAVERSALS["drive letter"])
    assert "control character" in message(TRAVERSALS["NUL"])
    assert "'#'" in message(TRAVERSALS["fragment"])
    assert "symlink" in message(TRAVERSALS["symlink"])


def test_a_listing_through_a_planted_link_shows_nothing_outside(attacked, tmp_path):
    status, _, body = request(attacked.url, "GET", f"{API}?path=link")
    assert status == 400
    assert b"secret" not in body
    # The link itself is listed as what it is (its own size), never followed.
    status, _, body = request(attacked.url, "GET", f"{API}?path=")
    assert json.loads(body)["files"] == [
        {"path": "link", "is_dir": False, "file_size": len(str(tmp_path / "outside"))}
    ]


@pytest.mark.parametrize(
    ("raw", "folder", "expected"),
    [
        ("a/b.txt", False, "a/b.txt"),
        ("", True, ""),
        ("/", True, ""),
        ("a/b/", True, "a/b"),
        ("100%.txt", False, "100%.txt"),  # a % that decodes to nothing is a plain character
    ],
)
def test_check_path_accepts_clean_paths(raw, folder, expected):
    assert check_path(raw, folder=folder) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "a/",
        "a//b",
        "..",
        "a/..",
        "/a",
        "C:x",
        "a\\b",
        "a#b",
        "a\x00b",
        "%2e%2e/a",
        "a/%2F",
        "x" * 2000,
    ],  # fmt: skip
)
def test_check_path_refuses(raw):
    with pytest.raises(ApiError) as caught:
        check_path(raw)
    assert caught.value.code == "INVALID_PARAMETER_VALUE"


# ---------------------------------------------------------------------- the registry, access


def test_the_registry_is_read_only_through_the_proxy(live, tmp_path):
    server = live()
    folder = tmp_path / "server0/artifacts/registry" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    (folder / "modelpack.yaml").write_text("kept")
    target = f"{API}/registry/{folder.name}/modelpack.yaml"
    for method, body in [("PUT", b"replaced"), ("DELETE", None)]:
        status, _, answer = request(server.url, method, target, body)
        assert status == 403, method
        code, message = error_of(answer)
        assert code == "PERMISSION_DENIED"
        assert "read-only through the artifact proxy" in message
    assert request(server.url, "PUT", f"{API}/registry/new.txt", b"x")[0] == 403
    assert (folder / "modelpack.yaml").read_text() == "kept"
    assert not (folder.parent / "new.txt").exists()
    assert request(server.url, "GET", target)[2] == b"kept"


def test_access_follows_the_path(server_state, tmp_path, forest):
    import modelpack

    state = server_state
    root = state.artifact_root
    experiment = state.store.create_experiment("e")
    run = state.client.create_run(experiment)
    custom = state.store.create_experiment("custom", artifact_location=f"{root}/team/deep")
    path = f"{experiment}/{run.info.run_id}/artifacts/model/MLmodel"

    for method, level in [("GET", "READ"), ("PUT", "EDIT"), ("DELETE", "MANAGE")]:
        access = access_for(state, method, path)
        assert (access.kind, access.resource, access.level) == ("permission", "experiment", level)
        assert access.locate(None) == experiment
    logged = f"{experiment}/models/{uuid.uuid4().hex}/artifacts/MLmodel"
    assert access_for(state, "PUT", logged).locate(None) == experiment
    # An experiment's own location deeper under the root; the deepest location wins.
    assert access_for(state, "GET", "team/deep/r/artifacts/x").locate(None) == custom
    assert access_for(state, "GET", "team/x").kind == "admin"

    upload = uuid.uuid4().hex
    assert access_for(state, "PUT", f"uploads/{upload}/pkg/modelpack.yaml").kind == "login"
    assert access_for(state, "GET", "uploads").kind == "admin"
    assert access_for(state, "PUT", "uploads/not-an-id/x").kind == "admin"
    for unknown in ["", "elsewhere/x", f"{uuid.uuid4().hex}/r/artifacts/x"]:
        assert access_for(state, "GET", unknown).kind == "admin", unknown

    pkg = tmp_path / "pkg"
    modelpack.save(forest, pkg)
    version = state.client.register_model(str(pkg), "Churn")
    folder = version.storage_location[len(root) + 1 :]
    assert folder.startswith("registry/")
    access = access_for(state, "GET", f"{folder}/modelpack.yaml")
    assert (access.kind, access.resource, access.level) == (
        "permission",
        "registered_model",
        "READ",
    )
    assert access.locate(None) == "Churn"
    assert access_for(state, "GET", f"registry/{uuid.uuid4().hex}/x").kind == "admin"
    with pytest.raises(ApiError, match="read-only through the artifact proxy"):
        access_for(state, "PUT", f"{folder}/modelpack.yaml")


def test_the_path_s_own_access_is_checked_before_anything_is_stored(api, server_state, tmp_path):
    from modelpack.errors import PermissionDenied

    seen = []

    def authorize(call):
        access = call.endpoint.access
        seen.append((access.kind, access.level))
        if access.kind == "permission":
            raise PermissionDenied(f"No {access.level} permission on experiment.")

    experiment = server_state.store.create_experiment("guarded")
    server_state.auth.authorize = authorize  # the instance's checker, for this app only
    answer = api.put(f"{API}/{experiment}/r/artifacts/a.txt", content=b"data")
    assert answer.status_code == 403
    assert answer.json()["error_code"] == "PERMISSION_DENIED"
    assert seen == [("login", None), ("permission", "EDIT")]
    assert not Path(server_state.artifact_root, experiment).exists()
