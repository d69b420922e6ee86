"""One contract suite over both artifact stores: a local directory and S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modelpack import artifacts
from modelpack.artifacts import (
    FileInfo,
    LocalArtifactStore,
    S3ArtifactStore,
    artifact_store,
)
from modelpack.errors import InvalidArgument, ModelpackError, NotFound
from modelpack.uris import redact

BINARY = bytes(range(256)) * 64 + b"\x00\xff" * 1000
TREE = {
    "MLmodel": b"flavors: {}\n",
    "model/weights.bin": BINARY,
    "model/sub/deep.txt": b"deep\n",
    "données/ñandú 模型.txt": "unicode ✓\n".encode(),
}


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "store")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return S3ArtifactStore(bucket, "root/prefix", endpoint_url=endpoint)


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "tree", TREE)


# --- the contract, over both stores -------------------------------------------------------------


def test_file_round_trip_keeps_binary_content(store, tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(BINARY)
    store.put_file(src, "a/b/w.bin")
    store.get_file("a/b/w.bin", tmp_path / "out" / "w.bin")
    assert (tmp_path / "out" / "w.bin").read_bytes() == BINARY


def test_dir_round_trip_keeps_nested_and_unicode_files(store, tree, tmp_path):
    store.put_dir(tree, "run1/artifacts")
    store.get_dir("run1/artifacts", tmp_path / "out")
    assert read_tree(tmp_path / "out") == TREE


def test_put_dir_and_get_dir_take_the_root_as_empty_path(store, tree, tmp_path):
    store.put_dir(tree, "")
    assert store.list_files() == sorted(TREE)
    store.get_dir("", tmp_path / "out")
    assert read_tree(tmp_path / "out") == TREE


def test_list_gives_direct_children_with_sizes(store, tree):
    store.put_dir(tree, "pkg")
    assert store.list("pkg") == [
        FileInfo("pkg/MLmodel", False, len(TREE["MLmodel"])),
        FileInfo("pkg/données", True, None),
        FileInfo("pkg/model", True, None),
    ]
    assert store.list("pkg/model") == [
        FileInfo("pkg/model/sub", True, None),
        FileInfo("pkg/model/weights.bin", False, len(BINARY)),
    ]
    assert store.list() == [FileInfo("pkg", True, None)]
    assert store.list("missing") == []
    assert store.list("pkg/MLmodel") == []


def test_list_files_is_recursive_and_relative_to_prefix(store, tree):
    store.put_dir(tree, "pkg")
    assert store.list_files("pkg") == sorted(TREE)
    assert store.list_files("pkg/model") == ["sub/deep.txt", "weights.bin"]
    assert store.list_files() == sorted(f"pkg/{rel}" for rel in TREE)
    assert store.list_files("missing") == []


def test_exists_sees_files_and_directories(store, tree):
    store.put_dir(tree, "pkg")
    assert store.exists("pkg")
    assert store.exists("pkg/model/sub")
    assert store.exists("pkg/model/weights.bin")
    assert not store.exists("pkg/nope")
    assert not store.exists("pk")


def test_delete_is_recursive_exact_and_tolerates_missing(store, tree, tmp_path):
    store.put_dir(tree, "pkg")
    store.put_dir(tree, "pkgx")  # shares the prefix string, must survive
    store.delete("pkg")
    assert not store.exists("pkg")
    assert store.list_files("pkgx") == sorted(TREE)
    store.delete("pkg")
    store.delete("pkgx/model/weights.bin")
    assert not store.exists("pkgx/model/weights.bin")
    assert store.exists("pkgx/model/sub/deep.txt")


def test_delete_of_the_root_is_refused(store):
    with pytest.raises(InvalidArgument, match="Refusing to delete the whole artifact store"):
        store.delete("")


def test_put_overwrites_files_and_merges_directories(store, tree, tmp_path):
    src = tmp_path / "f.txt"
    src.write_bytes(b"one")
    store.put_file(src, "f.txt")
    src.write_bytes(b"two!")
    store.put_file(src, "f.txt")
    assert store.list() == [FileInfo("f.txt", False, 4)]

    store.put_dir(tree, "pkg")
    write_tree(tmp_path / "v2", {"MLmodel": b"v2\n", "extra/new.txt": b"new\n"})
    store.put_dir(tmp_path / "v2", "pkg")
    store.get_dir("pkg", tmp_path / "out")
    assert read_tree(tmp_path / "out") == {**TREE, "MLmodel": b"v2\n", "extra/new.txt": b"new\n"}


def test_empty_directories_round_trip(store, tmp_path):
    (tmp_path / "empty").mkdir()
    store.put_dir(tmp_path / "empty", "e")
    assert store.exists("e")
    store.get_dir("e", tmp_path / "out-e")
    assert list((tmp_path / "out-e").iterdir()) == []

    tree = write_tree(tmp_path / "t", {"a.txt": b"a"})
    (tree / "hollow" / "inner").mkdir(parents=True)
    store.put_dir(tree, "t")
    assert store.list("t") == [FileInfo("t/a.txt", False, 1), FileInfo("t/hollow", True, None)]
    assert store.list_files("t") == ["a.txt"]
    store.get_dir("t", tmp_path / "out-t")
    assert (tmp_path / "out-t" / "hollow" / "inner").is_dir()
    assert read_tree(tmp_path / "out-t") == {"a.txt": b"a"}


BAD_PATHS = [
    ("../x", "Artifact path '../x': must not contain '..' or '.' segments"),
    ("a/../../x", "Artifact path 'a/../../x': must not contain '..' or '.' segments"),
    ("a/./b", "Artifact path 'a/./b': must not contain '..' or '.' segments"),
    ("/etc/passwd", "Artifact path '/etc/passwd': must be relative"),
    ("a\\b", "Artifact path 'a\\\\b': contains a NUL or backslash"),
    ("", "Artifact path: expected a non-empty relative path, got ''"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_PATHS, ids=[b for b, _ in BAD_PATHS])
def test_unsafe_paths_are_refused_by_every_method(store, tree, tmp_path, bad, message):
    file = tree / "MLmodel"
    calls = [
        lambda: store.put_file(file, bad),
        lambda: store.get_file(bad, tmp_path / "out"),
        lambda: store.exists(bad),
        lambda: store.local_path(bad),
    ]
    if bad:  # "" is the root for these
        calls += [
            lambda: store.put_dir(tree, bad),
            lambda: store.get_dir(bad, tmp_path / "out"),
            lambda: store.list(bad),
            lambda: store.list_files(bad),
            lambda: store.delete(bad),
        ]
    for call in calls:
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            call()
    assert store.list_files() == []
    assert not (tmp_path / "out").exists()


def test_missing_sources_are_not_found(store, tmp_path):
    with pytest.raises(NotFound, match=r"Local file .*nope\.txt does not exist\."):
        store.put_file(tmp_path / "nope.txt", "x")
    with pytest.raises(NotFound, match=r"Local directory .*nodir does not exist\."):
        store.put_dir(tmp_path / "nodir", "x")
    with pytest.raises(NotFound, match=f"No artifact file 'a/nope' in {re.escape(store.uri)}"):
        store.get_file("a/nope", tmp_path / "out.txt")
    with pytest.raises(NotFound, match=f"No artifact directory 'nope' in {re.escape(store.uri)}"):
        store.get_dir("nope", tmp_path / "out")
    assert not (tmp_path / "out.txt").exists()


def test_put_dir_refuses_symlinks_before_writing_anything(store, tree, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (tree / "model" / "link").symlink_to(secret)
    with pytest.raises(InvalidArgument, match=r"model/link is a symbolic link; artifact dir"):
        store.put_dir(tree, "pkg")
    assert store.list_files() == []


def test_local_path_is_the_real_file_for_local_stores_only(store, tree):
    store.put_dir(tree, "pkg")
    path = store.local_path("pkg/model/weights.bin")
    if isinstance(store, S3ArtifactStore):
        assert path is None
    else:
        assert path.read_bytes() == BINARY
        assert path == Path(os.path.realpath(store.root)) / "pkg/model/weights.bin"


# --- the local store ----------------------------------------------------------------------------


def test_local_constructor_does_no_io(tmp_path):
    store = LocalArtifactStore(tmp_path / "a" / "b")
    assert store.list() == [] and store.list_files() == [] and not store.exists("x")
    assert not (tmp_path / "a").exists()


def test_local_store_refuses_paths_through_a_symlink(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "store" / "link").symlink_to(tmp_path / "outside")
    src = write_tree(tmp_path / "t", {"f": b"x"}) / "f"
    with pytest.raises(InvalidArgument, match=r"Artifact path 'link/f': .*symlink"):
        store.put_file(src, "link/f")
    with pytest.raises(InvalidArgument, match=r"Artifact path 'link': .*symlink"):
        store.delete("link")
    assert list((tmp_path / "outside").iterdir()) == []


def test_local_writes_leave_no_temporary_files(tmp_path, tree):
    store = LocalArtifactStore(tmp_path / "store")
    store.put_dir(tree, "pkg")
    store.put_dir(tree, "pkg")
    store.delete("pkg/model")
    names = [p.name for p in (tmp_path / "store").rglob("*")]
    assert names and not any(n.startswith(".modelpack-tmp-") for n in names)


def test_local_put_file_over_a_directory_is_refused(tmp_path, tree):
    store = LocalArtifactStore(tmp_path / "store")
    store.put_dir(tree, "pkg")
    with pytest.raises(InvalidArgument, match=r"Artifact path 'pkg/model' is a directory in"):
        store.put_file(tree / "MLmodel", "pkg/model")


# --- the S3 store -------------------------------------------------------------------------------


def test_s3_get_dir_refuses_keys_that_escape_the_target(s3_bucket, tmp_path):
    import boto3

    endpoint, bucket = s3_bucket
    client = boto3.client("s3", endpoint_url=endpoint)
    client.put_object(Bucket=bucket, Key="p/run/ok.txt", Body=b"ok")
    client.put_object(Bucket=bucket, Key="p/run/a/../../../escaped.txt", Body=b"evil")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "p/run/a/../../../escaped.txt" in keys  # S3 keeps the key verbatim
    store = S3ArtifactStore(bucket, "p", endpoint_url=endpoint)
    out = tmp_path / "deep" / "out"
    with pytest.raises(
        InvalidArgument,
        match=r"Refusing to download S3 key 'p/run/a/../../../escaped.txt' from s3://.*/p: "
        r"its path 'a/../../../escaped.txt': must not contain '..'",
    ):
        store.get_dir("run", out)
    assert not out.exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_s3_get_dir_refuses_a_key_with_an_absolute_tail(s3_bucket, tmp_path):
    import boto3

    endpoint, bucket = s3_bucket
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key="run//abs", Body=b"")
    store = S3ArtifactStore(bucket, "", endpoint_url=endpoint)
    with pytest.raises(InvalidArgument, match=r"S3 key 'run//abs'.*must be relative"):
        store.get_dir("run", tmp_path / "out")


def test_s3_missing_bucket_is_not_found(moto_server, tmp_path):
    store = S3ArtifactStore("no-such-bucket", "p", endpoint_url=moto_server)
    message = rf"S3 bucket 'no-such-bucket' does not exist \(endpoint {re.escape(moto_server)}\)"
    with pytest.raises(NotFound, match=message):
        store.list_files()
    with pytest.raises(NotFound, match=message):
        store.get_file("x", tmp_path / "x")
    with pytest.raises(NotFound, match=message):
        store.put_file(write_tree(tmp_path / "t", {"f": b"1"}) / "f", "f")


def test_s3_unreachable_endpoint_names_it_without_credentials(aws_credentials):
    import boto3
    from botocore.config import Config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = sock.getsockname()[1]
        # The store's own client retries with backoff (up to ~7 s here); this one fails at once.
        client = boto3.client(
            "s3",
            endpoint_url=f"http://user:secret@127.0.0.1:{port}",
            config=Config(retries={"total_max_attempts": 1}),
        )
        with pytest.raises(ModelpackError) as info:
            S3ArtifactStore("bucket", "p", client=client).list()
    assert str(info.value) == (
        f"Cannot reach S3 endpoint http://user:***@127.0.0.1:{port} for s3://bucket/p: "
        f"connection refused."
    )
    assert "secret" not in str(info.value) and "testing" not in str(info.value)


def test_s3_client_fails_fast_and_uses_path_style_for_custom_endpoints(aws_credentials):
    config = S3ArtifactStore("bucket", "p", endpoint_url="http://minio:9000")._client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 60)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert config.s3 == {"addressing_style": "path"}


def test_s3_endpoint_comes_from_the_environment(s3_bucket, tmp_path, monkeypatch):
    endpoint, bucket = s3_bucket
    src = write_tree(tmp_path / "t", {"f": b"env"}) / "f"
    for var in ("MODELPACK_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(var, endpoint)
        store = artifact_store(f"s3://{bucket}/{var}")
        store.put_file(src, "f")
        assert store.list_files() == ["f"]
        monkeypatch.delenv(var)


def test_s3_accepts_a_ready_client(s3_bucket, tmp_path):
    import boto3

    endpoint, bucket = s3_bucket
    store = S3ArtifactStore(bucket, "p", client=boto3.client("s3", endpoint_url=endpoint))
    store.put_file(write_tree(tmp_path / "t", {"f": b"1"}) / "f", "f")
    assert store.exists("f")


def test_s3_delete_goes_in_batches(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "_DELETE_BATCH", 2)
    endpoint, bucket = s3_bucket
    store = S3ArtifactStore(bucket, "p", endpoint_url=endpoint)
    store.put_dir(write_tree(tmp_path / "t", {f"f{i}": b"x" for i in range(5)}), "d")
    store.delete("d")
    assert store.list_files() == []


def test_s3_store_imports_boto3_only_when_used():
    code = (
        "import sys\nfrom modelpack.artifacts import artifact_store\n"
        "artifact_store('s3://bucket/prefix')\nprint('boto3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- URIs and redaction -------------------------------------------------------------------------


def test_artifact_store_dispatches_on_the_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert artifact_store("file:///srv/artifacts").uri == "/srv/artifacts"
    assert artifact_store("file://localhost/srv/a%20b").uri == "/srv/a b"
    assert artifact_store(str(tmp_path / "x")).uri == str(tmp_path / "x")
    relative = artifact_store("rel/dir")
    assert isinstance(relative, LocalArtifactStore)
    assert relative.uri == str(tmp_path / "rel" / "dir")
    s3 = artifact_store("s3://my-bucket/team/runs/")
    assert isinstance(s3, S3ArtifactStore)
    assert (s3.bucket, s3.prefix, s3.uri) == ("my-bucket", "team/runs", "s3://my-bucket/team/runs")
    assert artifact_store("s3://my-bucket").uri == "s3://my-bucket"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "gs://bucket/p",
            "Unsupported artifact store URI 'gs://bucket/p' (scheme 'gs'). "
            "Supported: a local path, file:///abs/dir, s3://bucket/prefix.",
        ),
        ("https://user:pw@host/x", "Unsupported artifact store URI 'https://user:***@host/x'"),
        ("file://remote/x", "file URI 'file://remote/x' names host 'remote'"),
        ("s3://", "Invalid S3 bucket name '': expected s3://bucket/prefix."),
        ("s3://bucket/a/../b", "Artifact path 'a/../b': must not contain '..'"),
        ("", "Expected an artifact store URI or path, got ''."),
    ],
)
def test_artifact_store_rejects_bad_uris(uri, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        artifact_store(uri)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:secret@host:9000", "http://user:***@host:9000"),
        ("https://key:p@ss@minio:9000/bucket", "https://key:***@minio:9000/bucket"),
        ("endpoint http://u:s@h:1 failed", "endpoint http://u:***@h:1 failed"),
        ("postgresql://postgres@db:5432/x", "postgresql://postgres@db:5432/x"),
        ("http://host:9000/path@v2", "http://host:9000/path@v2"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_redact_hides_passwords(text, expected):
    assert redact(text) == expected
