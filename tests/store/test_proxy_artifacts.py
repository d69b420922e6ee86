"""``ProxyArtifactStore``: the artifact store protocol over a real server's artifact proxy
(local and S3 roots behind it), the URI forms ``artifact_store`` routes to it, and what it
refuses of a server's answers."""

from __future__ import annotations

import http.server
import importlib.util
import json
import sys
import threading
from pathlib import Path

import pytest

from modelpack.artifacts import FileInfo, artifact_store
from modelpack.errors import InvalidArgument, ModelpackError, NotFound
from modelpack.proxy_artifacts import ProxyArtifactStore, parse_proxy_uri, proxy_uri

ROUTE = "/api/2.0/mlflow-artifacts/artifacts"


def _live_server_module():
    """tests/server/live_server.py, loaded under a name of its own (it is not on this
    folder's import path)."""
    path = Path(__file__).resolve().parents[1] / "server" / "live_server.py"
    spec = importlib.util.spec_from_file_location("proxy_tests_live_server", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


start_server = _live_server_module().start_server


@pytest.fixture
def live(tmp_path):
    started = []

    def start(**options):
        server = start_server(tmp_path / f"server{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


TREE = {
    "MLmodel": b"flavors: {}\n",
    "model/weights.bin": bytes(range(256)) * 1000,
    "model/sub/deep/note.txt": "déjà vu".encode(),
    "my folder/a file.txt": b"spaces",
}


def write_tree(root: Path) -> Path:
    for rel, data in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


# ---------------------------------------------------------------------- URIs


def test_proxy_uri_and_its_parse_are_inverse():
    assert proxy_uri("http://h:5000", "1/r/artifacts") == f"http://h:5000{ROUTE}/1/r/artifacts"
    assert proxy_uri("http://h:5000/", "") == f"http://h:5000{ROUTE}"
    assert proxy_uri("https://h/team", "a b/é") == f"https://h/team{ROUTE}/a%20b/%C3%A9"
    assert parse_proxy_uri(proxy_uri("https://h/team", "a b/é")) == ("https://h/team", "a b/é")
    assert parse_proxy_uri(f"http://h:1{ROUTE}") == ("http://h:1", "")
    assert parse_proxy_uri("s3://bucket/x") is None
    assert parse_proxy_uri("/local/path") is None


def test_mlflow_artifacts_uris_name_the_tracking_server_or_their_host(monkeypatch):
    monkeypatch.setenv("MODELPACK_TRACKING_URI", "http://tracker:5000/prefix/")
    assert parse_proxy_uri("mlflow-artifacts:/1/r/artifacts") == (
        "http://tracker:5000/prefix",
        "1/r/artifacts",
    )
    assert parse_proxy_uri("mlflow-artifacts:///1/r") == ("http://tracker:5000/prefix", "1/r")
    assert parse_proxy_uri("mlflow-artifacts://other:8080/1/r") == ("http://other:8080", "1/r")
    store = artifact_store("mlflow-artifacts:/1/r/artifacts")
    assert isinstance(store, ProxyArtifactStore)
    assert store.uri == f"http://tracker:5000/prefix{ROUTE}/1/r/artifacts"
    assert store.local_path("model/MLmodel") is None
    monkeypatch.setenv("MODELPACK_TRACKING_URI", "http://me:hunter2@tracker:5000")
    store = artifact_store("mlflow-artifacts:/1/r")
    assert store.transport.headers["Authorization"].startswith("Basic ")
    assert "hunter2" not in repr(store) and "hunter2" not in store.shown
    with pytest.raises(InvalidArgument, match="Refusing to delete") as refused:
        store.delete("")
    assert "hunter2" not in str(refused.value)


def test_mlflow_artifacts_without_a_tracking_server_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELPACK_TRACKING_URI", f"sqlite:///{tmp_path}/db.sqlite")
    with pytest.raises(InvalidArgument, match=r"Set MODELPACK_TRACKING_URI to the server"):
        artifact_store("mlflow-artifacts:/1/r/artifacts")
    monkeypatch.delenv("MODELPACK_TRACKING_URI")
    with pytest.raises(InvalidArgument, match=r"not a server\. Set MODELPACK_TRACKING_URI"):
        artifact_store("mlflow-artifacts:/x")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://h:1/elsewhere/x", "must name a server's artifact proxy"),
        (f"http://h:1{ROUTE}extra/x", "must name a server's artifact proxy"),
        (f"http://h:1{ROUTE}/a?x=1", "has a query or fragment"),
        (f"http://h:1{ROUTE}/a/../b", "must not contain '..'"),
        ("mlflow-artifacts://h:1/a/../../b", "must not contain '..'"),
        ("http://user:secret@h:1/x", "'http://user:***@h:1/x'"),
    ],
)
def test_bad_proxy_uris_are_refused(uri, message):
    with pytest.raises(InvalidArgument, match=message.replace("?", r"\?").replace("*", r"\*")):
        artifact_store(uri)


# ---------------------------------------------------------------------- through a server


def test_files_and_nested_folders_round_trip(live, tmp_path):
    server = live()
    store = artifact_store(f"{server.url}{ROUTE}/exp/run/artifacts")
    assert isinstance(store, ProxyArtifactStore)
    source = write_tree(tmp_path / "src")

    store.put_dir(source, "pkg")
    store.put_file(source / "MLmodel", "single/MLmodel")
    root = tmp_path / "server0" / "artifacts" / "exp" / "run" / "artifacts"
    for rel, data in TREE.items():
        assert (root / "pkg" / rel).read_bytes() == data

    assert store.list() == [FileInfo("pkg", True, None), FileInfo("single", True, None)]
    assert store.list("pkg/model") == [
        FileInfo("pkg/model/sub", True, None),
        FileInfo("pkg/model/weights.bin", False, len(TREE["model/weights.bin"])),
    ]
    assert store.list("pkg/MLmodel") == []  # a file has no children
    assert store.list("nothing") == []
    assert store.list_files("pkg") == sorted(TREE)
    assert store.exists("pkg/model/sub") and store.exists("pkg/MLmodel")
    assert not store.exists("pkg/absent") and not store.exists("nothing/at/all")

    out = tmp_path / "out"
    store.get_dir("pkg", out / "pkg")
    for rel, data in TREE.items():
        assert (out / "pkg" / rel).read_bytes() == data
    store.get_file("pkg/model/weights.bin", out / "w.bin")
    assert (out / "w.bin").read_bytes() == TREE["model/weights.bin"]
    assert not [p for p in out.rglob("*") if ".modelpack-tmp-" in p.name]  # nothing half-done

    store.get_dir("", out / "everything")
    assert sorted(
        p.relative_to(out / "everything").as_posix()
        for p in (out / "everything").rglob("*")
        if p.is_file()
    ) == sorted(  # fmt: skip
        [f"pkg/{rel}" for rel in TREE] + ["single/MLmodel"]
    )

    store.delete("pkg/model")
    assert store.list_files("pkg") == ["MLmodel", "my folder/a file.txt"]
    store.delete("pkg/model")  # missing is fine
    store.put_file(source / "MLmodel", "pkg/MLmodel")  # replaces
    with pytest.raises(InvalidArgument, match="Refusing to delete the whole artifact store"):
        store.delete("")


def test_missing_artifacts_raise_not_found_and_leave_nothing(live, tmp_path):
    server = live()
    store = ProxyArtifactStore(server.url, "exp")
    target = tmp_path / "out" / "f.txt"
    with pytest.raises(NotFound, match=r"No artifact 'exp/absent\.txt'"):
        store.get_file("absent.txt", target)
    assert list(target.parent.iterdir()) == []
    with pytest.raises(NotFound, match=r"No artifact directory 'absent'"):
        store.get_dir("absent", tmp_path / "dir")
    with pytest.raises(NotFound, match=r"Local file .* does not exist"):
        store.put_file(tmp_path / "nope", "x")


def test_unsafe_paths_are_refused_before_anything_is_sent(live, tmp_path):
    server = live()
    store = ProxyArtifactStore(server.url, "exp")
    (tmp_path / "f").write_bytes(b"x")
    for bad in ["../x", "a/../../x", "/abs", "a\\b", "a//b"]:
        with pytest.raises(InvalidArgument):
            store.put_file(tmp_path / "f", bad)
        with pytest.raises(InvalidArgument):
            store.get_file(bad, tmp_path / "g")
    with pytest.raises(InvalidArgument, match="Artifact proxy prefix"):
        ProxyArtifactStore(server.url, "a/../b")
    assert not (tmp_path / "server0" / "artifacts").exists() or not any(
        (tmp_path / "server0" / "artifacts").iterdir()
    )


def test_mlflow_artifacts_uri_goes_to_the_tracking_server(live, tmp_path, monkeypatch):
    server = live()
    monkeypatch.setenv("MODELPACK_TRACKING_URI", server.url)
    (tmp_path / "a.txt").write_text("via the tracking server")
    artifact_store("mlflow-artifacts:/e/r/artifacts").put_file(tmp_path / "a.txt", "a.txt")
    port = server.url.rsplit(":", 1)[1]
    other = artifact_store(f"mlflow-artifacts://127.0.0.1:{port}/e/r")
    other.get_file("artifacts/a.txt", tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text() == "via the tracking server"


def test_an_s3_root_behind_the_server(live, tmp_path, s3_bucket, monkeypatch):
    import boto3

    endpoint, bucket = s3_bucket
    monkeypatch.setenv("MODELPACK_S3_ENDPOINT_URL", endpoint)
    server = live(artifact_root=f"s3://{bucket}/team")
    store = artifact_store(proxy_uri(server.url, "exp/run/artifacts"))
    store.put_dir(write_tree(tmp_path / "src"), "pkg")
    keys = sorted(
        o["Key"]
        for o in boto3.client("s3", endpoint_url=endpoint)
        .list_objects_v2(Bucket=bucket)
        .get("Contents", [])
    )
    assert keys == sorted(f"team/exp/run/artifacts/pkg/{rel}" for rel in TREE)
    store.get_dir("pkg", tmp_path / "out")
    for rel, data in TREE.items():
        assert (tmp_path / "out" / rel).read_bytes() == data
    assert store.list("pkg") == [
        FileInfo("pkg/MLmodel", False, len(TREE["MLmodel"])),
        FileInfo("pkg/model", True, None),
        FileInfo("pkg/my folder", True, None),
    ]
    store.delete("pkg/model")
    assert store.list_files("pkg") == ["MLmodel", "my folder/a file.txt"]


# ---------------------------------------------------------------------- a hostile server


class _Lister(http.server.BaseHTTPRequestHandler):
    """Answers every listing with an entry a client must not turn into a path."""

    entries: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"files": self.entries}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "..", "is_dir": True},
        {"path": "../escape.txt", "is_dir": False, "file_size": 1},
        {"path": "", "is_dir": False},
        {"path": 7, "is_dir": False},
    ],
)
def test_a_listing_that_names_a_path_outside_is_refused(tmp_path, entry):
    handler = type("Lister", (_Lister,), {"entries": [entry]})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        store = ProxyArtifactStore(f"http://127.0.0.1:{httpd.server_address[1]}", "x")
        with pytest.raises(ModelpackError, match="expected a plain name"):
            store.get_dir("", tmp_path / "out" / "inside")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))
