"""Logging, listing and downloading artifacts through Client: every path no store can hold, and
every file-system failure, is a modelpack error naming the problem — on a local artifact root
and on S3 (moto on 127.0.0.1). Nothing is written by a refused call."""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager

import pytest

import modelpack
from modelpack.errors import InvalidArgument, NotFound

# The tracking store plays no part in these: SQLite only.
pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture(params=["local", "s3"])
def client(request, store_url, tmp_path, monkeypatch):
    if request.param == "local":
        root = str(tmp_path / "artifacts")
    else:
        endpoint, bucket = request.getfixturevalue("s3_bucket")
        monkeypatch.setenv("MODELPACK_S3_ENDPOINT_URL", endpoint)
        root = f"s3://{bucket}/team"
    return modelpack.Client(store_url, artifact_root=root)


@pytest.fixture
def run_id(client):
    return client.create_run(client.create_experiment("e")).info.run_id


@pytest.fixture
def file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x")
    return path


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "folder"
    (path / "sub").mkdir(parents=True)
    (path / "a.txt").write_text("a")
    (path / "sub" / "b.txt").write_text("b")
    return path


def _too_long(path: str) -> str:
    """The message for artifact path ``path``, built from the two limits it breaks."""
    shown = re.escape(repr(path[:40])) + r"\.\.\."
    size = len(path.encode())
    if size > 1024:
        return rf"^Artifact path {shown} is {size} bytes long; the limit is 1024 \(artifact store "
    name = max(path.split("/"), key=lambda part: len(part.encode()))
    named = "" if name == path else rf": the name {re.escape(repr(name[:40]))}\.\.\."
    return (
        rf"^Artifact path {shown}{named} is {len(name.encode())} bytes long; file systems allow "
        rf"255 bytes per name \(artifact store "
    )


TOO_LONG = {"5000": "x" * 5000, "deep": "a/" * 5000, "1900": "a/" * 1900, "name": "y" * 300,
            "utf8": "é" * 128}  # fmt: skip


@pytest.mark.parametrize("folder_path", TOO_LONG.values(), ids=TOO_LONG.keys())
def test_a_path_no_store_can_hold_is_refused_before_any_write(
    client, run_id, file, folder, tmp_path, folder_path
):
    """Before: OSError (File name too long) or RecursionError from the local file system."""
    logged = f"{folder_path.rstrip('/')}/f.txt"
    with pytest.raises(InvalidArgument, match=_too_long(logged)):
        client.log_artifact(run_id, file, folder_path)
    with pytest.raises(InvalidArgument, match=_too_long(folder_path.rstrip("/"))):
        client.log_artifacts(run_id, folder, folder_path)
    # The same paths, asked for: refused the same way, not an OSError from the file system.
    with pytest.raises(InvalidArgument, match=_too_long(logged)):
        client.download_artifacts(run_id, logged, tmp_path / "out")
    with pytest.raises(InvalidArgument, match=_too_long(logged)):
        client.list_artifacts(run_id, logged)
    assert client.list_artifacts(run_id) == []
    assert not (tmp_path / "out").exists()


def test_the_s3_key_limit_counts_the_run_s_prefix(client, run_id, file):
    path = "/".join(["d" * 200] * 5)  # 1004 bytes: a local store holds it, S3 cannot
    if client.artifact_root.startswith("s3://"):
        with pytest.raises(
            InvalidArgument,
            match=rf"Artifact path 'd{{80}}\.\.\.d{{74}}/f\.txt': its S3 key in "
            rf"{re.escape(client.artifact_root)}/\w+/{run_id}/artifacts would be 10\d\d bytes "
            rf"long; S3 allows 1024\. Use a shorter artifact path\.",
        ):
            client.log_artifact(run_id, file, path)
        assert client.list_artifacts(run_id) == []
    else:
        client.log_artifact(run_id, file, path)
        assert [f.path for f in client.list_artifacts(run_id)] == ["d" * 200]


def test_an_absolute_artifact_path_is_refused_not_made_relative(client, run_id, file, folder):
    for log, source in ((client.log_artifact, file), (client.log_artifacts, folder)):
        with pytest.raises(
            InvalidArgument,
            match=r"^Artifact path '/etc/plots' is absolute; artifact paths are relative to the "
            r"run's artifacts \(e\.g\. 'etc/plots'\)\.$",
        ):
            log(run_id, source, "/etc/plots")
    assert client.list_artifacts(run_id) == []
    client.log_artifact(run_id, file, "plots/")  # a trailing slash names the same folder
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == ["plots/f.txt"]


def test_a_local_path_too_long_for_the_file_system_is_an_invalid_argument(client, run_id):
    local = "/tmp/" + "z" * 5000
    with pytest.raises(
        InvalidArgument,
        match=r"^log_artifact: the path '/tmp/z{75}\.\.\.z{80}' \(5005 bytes\) is too long for the "
        r"file system; use a shorter path\.$",
    ):
        client.log_artifact(run_id, local)
    with pytest.raises(InvalidArgument, match=r"^log_artifacts: the path '/tmp/z{75}\.\.\."):
        client.log_artifacts(run_id, local)


def test_missing_sources_are_not_found(client, run_id, file, tmp_path):
    with pytest.raises(NotFound, match=r"^log_artifact: '.*nope\.txt' is not a file\.$"):
        client.log_artifact(run_id, tmp_path / "nope.txt")
    with pytest.raises(NotFound, match=r"^log_artifacts: '.*nodir' is not a directory\.$"):
        client.log_artifacts(run_id, tmp_path / "nodir")
    with pytest.raises(NotFound, match=rf"^Run '{run_id}' has no artifacts\.$"):
        client.download_artifacts(run_id, "", tmp_path / "out")
    client.log_artifact(run_id, file, "sub")
    with pytest.raises(NotFound, match=rf"^Run '{run_id}' has no artifact 'sub/nope\.txt'\.$"):
        client.download_artifacts(run_id, "sub/nope.txt", tmp_path / "out")


def test_a_file_where_the_download_folder_should_be_is_named(client, run_id, file, tmp_path):
    client.log_artifact(run_id, file, "sub")
    blocker = tmp_path / "blocker"
    blocker.write_text("in the way")
    for dst in (blocker, blocker / "below"):
        with pytest.raises(
            InvalidArgument,
            match=rf"^Cannot download the artifacts of run '{run_id}': '{re.escape(str(blocker))}"
            rf"': (File exists|Not a directory); a file is where a folder must be\.$",
        ):
            client.download_artifacts(run_id, "sub", dst)
    assert blocker.read_text() == "in the way"


@pytest.fixture
def deep(tmp_path):
    """A folder path 1500 levels below tmp_path, removed afterwards without recursion (pytest's
    own clean-up, shutil.rmtree, would raise RecursionError on it)."""
    yield tmp_path.joinpath("deep", *["q"] * 1500)
    pending, seen = [tmp_path / "deep"], []
    while pending:
        folder = pending.pop()
        if not folder.is_dir():
            continue
        seen.append(folder)
        for entry in folder.iterdir():
            (pending.append if entry.is_dir() else os.unlink)(entry)
    for folder in reversed(seen):
        folder.rmdir()


def test_a_download_folder_thousands_deep_is_made_without_recursion(client, run_id, file, deep):
    """Before: RecursionError from Path.mkdir(parents=True)."""
    client.log_artifact(run_id, file, "sub")
    got = client.download_artifacts(run_id, "sub", deep)
    assert got == deep / "sub" and (got / "f.txt").read_text() == "x"


def test_everything_logs_and_downloads_at_the_root(client, run_id, folder, tmp_path):
    client.log_artifacts(run_id, folder)
    assert [f.path for f in client.list_artifacts(run_id)] == ["a.txt", "sub"]
    out = client.download_artifacts(run_id, "", tmp_path / "out")
    assert out == tmp_path / "out"
    found = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert found == {"a.txt", "sub/b.txt"}


@contextmanager
def _unblocking(fifo, seconds: float = 10.0):
    """If anything opens ``fifo`` to read it within ``seconds``, give it an end of file at once,
    so a store that wrongly reads the pipe fails the test instead of hanging it."""
    done = threading.Event()

    def writer() -> None:
        while not done.wait(0.02):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader yet
                continue

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    threading.Timer(seconds, done.set).start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_a_pipe_in_a_logged_folder_is_refused_before_any_write(client, run_id, folder):
    """Before: the S3 upload read the pipe, waiting forever for a writer."""
    pipe = folder / "sub" / "pipe"
    os.mkfifo(pipe)
    with _unblocking(pipe):
        with pytest.raises(
            InvalidArgument,
            match=r"pipe is not a regular file \(a pipe, socket or device\); artifact directories "
            r"hold files and folders only\.$",
        ):
            client.log_artifacts(run_id, folder, "logs")
    assert client.list_artifacts(run_id) == []
