"""Artifact storage: a local directory or an S3 prefix behind one small protocol (DESIGN.md §6).

Every relative path that comes in (``dest``, ``src``, ``prefix``, ``path``) and every key that
comes back from S3 passes ``modelpack.paths`` before it touches a file (DESIGN.md §9 rule 2).
boto3 is imported only when an S3 store first talks to S3.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from modelpack import atomic
from modelpack.errors import FormatError, InvalidArgument, ModelpackError, NotFound
from modelpack.file_info import TMP_PREFIX, FileInfo
from modelpack.paths import MAX_PATH_BYTES, check_length, check_relative, resolve_inside
from modelpack.uris import redact

__all__ = [
    "ArtifactStore",
    "FileInfo",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "artifact_store",
    "download_artifacts",
    "fetch",
]

ENDPOINT_ENV = "MODELPACK_S3_ENDPOINT_URL"
_DELETE_BATCH = 1000  # the most keys S3's DeleteObjects accepts per call
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")  # 2+ chars, so "C:" is not a scheme
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{1,254}$")


class ArtifactStore(Protocol):
    """Files under a root URI, addressed by relative POSIX paths."""

    uri: str

    def put_file(self, local: Path, dest: str) -> None: ...
    def put_dir(self, local_dir: Path, dest: str) -> None: ...
    def get_file(self, src: str, local: Path) -> None: ...
    def get_dir(self, src: str, local_dir: Path) -> None: ...
    def list_files(self, prefix: str = "") -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def delete(self, prefix: str) -> None: ...
    def local_path(self, path: str) -> Path | None: ...
    def list(self, prefix: str = "") -> list[FileInfo]: ...


def artifact_store(uri: str) -> ArtifactStore:
    """The store for ``uri``: a path, ``file:///abs/dir``, ``s3://bucket/prefix``, or a tracking
    server's artifact proxy (``mlflow-artifacts:/<path>``, ``mlflow-artifacts://host:port/<path>``,
    ``http(s)://host:port/api/2.0/mlflow-artifacts/artifacts/<path>``).

    Raises:
        InvalidArgument: an empty URI, a malformed one, or an unsupported scheme.
    """
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"Expected an artifact store URI or path, got {uri!r}.")
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    if scheme == "":
        return LocalArtifactStore(Path(uri))
    if scheme == "file":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(
                f"file URI {redact(uri)!r} names host {redact(parsed.netloc)!r}; "
                "only local files are supported."
            )
        return LocalArtifactStore(Path(unquote(parsed.path)))
    if scheme == "s3":
        parsed = urlparse(uri)
        return S3ArtifactStore(parsed.netloc, parsed.path)
    if scheme in ("http", "https", "mlflow-artifacts"):
        from modelpack.proxy_artifacts import proxy_store

        return proxy_store(uri)  # a tracking server's artifact proxy
    raise InvalidArgument(
        f"Unsupported artifact store URI {redact(uri)!r} (scheme {scheme!r}). "
        "Supported: a local path, file:///abs/dir, s3://bucket/prefix."
    )


def absolute_root(uri: str) -> str:
    """An artifact root that is a local path, made absolute (what is stored of it, in runs'
    artifact URIs and versions' storage locations, then resolves from any folder); a URI with a
    scheme (``s3://``, ``file:///``) as it is."""
    if not isinstance(uri, str) or not uri or _SCHEME.match(uri):
        return uri
    return os.path.abspath(uri)


_REGISTRY_FOLDER = re.compile(r"registry/[0-9a-f]{32}")


def registry_folder(root: str, location: str) -> str | None:
    """``registry/<id>`` if ``location`` is a version folder of the registry under the
    artifact root ``root``, else None: the only thing a version's deletion may remove.

    For a local root the folder must also be itself on disk (no link swapped in on the way).
    """
    root = root.rstrip("/")
    if not isinstance(location, str) or not location.startswith(f"{root}/"):
        return None
    rel = location[len(root) + 1 :]
    if not _REGISTRY_FOLDER.fullmatch(rel):
        return None
    try:
        artifact_store(root).local_path(rel)  # refuses a link or an escape on the real path
    except InvalidArgument:
        return None
    return rel


def _checked(rel: str, uri: str) -> str:
    try:
        checked = str(check_relative(rel, "Artifact path"))
        check_length(checked, "Artifact path")
        return checked
    except FormatError as exc:
        raise InvalidArgument(f"{exc.message.rstrip('.')} (artifact store {uri}).") from None


def _inside(root: Path, rel: str, uri: str, what: str = "Artifact path") -> Path:
    try:
        check_length(str(check_relative(rel, what)), what)
        return resolve_inside(root, rel, what)
    except FormatError as exc:
        raise InvalidArgument(f"{exc.message.rstrip('.')} (artifact store {uri}).") from None


def _short(text: object, keep: int = 160) -> str:
    text = str(text)
    return repr(text) if len(text) <= keep else f"'{text[: keep // 2]}...{text[-keep // 2 :]}'"


@contextmanager
def file_errors(action: str) -> Iterator[None]:
    """Raise the ``OSError`` of a file operation as modelpack's error, after ``action``
    ("Cannot write artifact 'x' in /root"), naming the path and what the system said."""
    try:
        yield
    except OSError as exc:
        raise _file_error(exc, action) from exc


def _file_error(exc: OSError, action: str) -> ModelpackError:
    where = _short(exc.filename) if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{action}: {where} does not exist.")
    if exc.errno == errno.ENAMETOOLONG:
        size = len(os.fsencode(exc.filename)) if exc.filename is not None else 0
        return InvalidArgument(
            f"{action}: the path {where} ({size} bytes) is too long for the file system; "
            f"use a shorter path."
        )
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return InvalidArgument(f"{action}: {where}: {reason}; a file is where a folder must be.")
    if isinstance(exc, IsADirectoryError):
        return InvalidArgument(f"{action}: {where} is a folder; a file cannot replace it.")
    return ModelpackError(f"{action}: {where}: {reason}.")


def makedirs(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)`` without recursion: a path thousands of
    folders deep raises the file system's error, never RecursionError."""
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix and name else prefix or name


def _walk_local(top: Path) -> tuple[list[str], list[str]]:
    """Files and empty leaf directories under ``top`` as relative POSIX paths ("" is ``top``).

    Links are refused rather than followed: one could point anywhere on the machine. The walk
    keeps its own stack: os.walk recurses, and a tree thousands of folders deep would raise
    RecursionError.
    """
    files: list[str] = []
    empty: list[str] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(top, rel_dir)) as scan:
            entries = [e for e in scan if not e.name.startswith(TMP_PREFIX)]
        if not entries:
            empty.append(rel_dir)
        for entry in entries:
            if entry.is_symlink():
                raise InvalidArgument(
                    f"{entry.path} is a symbolic link; artifact directories may not contain links."
                )
            rel = _join(rel_dir, entry.name)
            if entry.is_dir(follow_symlinks=False):
                pending.append(rel)
            elif entry.is_file(follow_symlinks=False):
                files.append(rel)
            else:  # a pipe would block the copy forever; a device or socket has no content
                raise InvalidArgument(
                    f"{entry.path} is not a regular file (a pipe, socket or device); artifact "
                    f"directories hold files and folders only."
                )
    return sorted(files), empty


def _local_source(local: Path, want_dir: bool) -> Path:
    local = Path(local)
    kind = "directory" if want_dir else "file"
    if not local.exists():
        raise NotFound(f"Local {kind} {local} does not exist.")
    if local.is_dir() != want_dir or not (want_dir or local.is_file()):
        raise InvalidArgument(f"Local path {local} is not a {kind}.")
    return local


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a synced temp file, so readers see all of it or none."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=TMP_PREFIX)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)
        atomic.publish(tmp, dst)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LocalArtifactStore:
    """Artifacts in a directory; created on first write, written atomically file by file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.uri = str(self.root)

    def __repr__(self) -> str:
        return f"LocalArtifactStore({self.uri!r})"

    def _dir(self, prefix: str) -> Path:
        return self._path(prefix) if prefix else Path(os.path.realpath(self.root))

    def _path(self, rel: str) -> Path:
        return _inside(self.root, rel, self.uri)

    def _target(self, rel: str, path: Path | None = None) -> Path:
        """``rel``'s path, ready to be replaced by a file."""
        path = path or self._path(rel)
        if path.is_dir():
            raise InvalidArgument(
                f"Artifact path {rel!r} is a directory in {self.uri}; a file cannot replace it."
            )
        try:
            makedirs(path.parent)
        except (FileExistsError, NotADirectoryError):
            raise InvalidArgument(
                f"Artifact path {rel!r}: a parent of it is a file in {self.uri}."
            ) from None
        return path

    def _writing(self, dest: str) -> AbstractContextManager[None]:
        return file_errors(f"Cannot write artifact {_short(dest)} in {self.uri}")

    def _reading(self, src: str) -> AbstractContextManager[None]:
        return file_errors(f"Cannot read artifact {_short(src)} in {self.uri}")

    def put_file(self, local: Path, dest: str) -> None:
        """Copy the file ``local`` to ``dest``, replacing what was there."""
        with self._writing(dest):
            src = _local_source(local, want_dir=False)
            _copy_atomic(src, self._target(dest))

    def put_dir(self, local_dir: Path, dest: str) -> None:
        """Copy the tree ``local_dir`` to ``dest`` ("" is the root), merging into what is there."""
        dest = _checked(dest, self.uri) if dest else ""
        with self._writing(dest):
            files, empty = _walk_local(_local_source(local_dir, want_dir=True))
            targets = [self._path(_join(dest, rel)) for rel in files]  # all checked first
            for rel, path in zip(files, targets, strict=True):
                _copy_atomic(Path(local_dir, rel), self._target(_join(dest, rel), path))
            for rel in empty:
                makedirs(self._dir(_join(dest, rel)))

    def get_file(self, src: str, local: Path) -> None:
        """Copy the artifact ``src`` to the file ``local``."""
        path = self._path(src)
        with self._reading(src):
            if not path.is_file():
                raise NotFound(f"No artifact file {src!r} in {self.uri}.")
            local = Path(local)
            makedirs(local.parent)
            _copy_atomic(path, local)

    def get_dir(self, src: str, local_dir: Path) -> None:
        """Copy every file under ``src`` ("" is the root) into ``local_dir`` (created if
        missing)."""
        top = self._dir(src)
        with self._reading(src):
            if not top.is_dir():
                raise NotFound(f"No artifact directory {src!r} in {self.uri}.")
            files, empty = _walk_local(top)
            local_dir = Path(local_dir)
            for rel in files:
                target = _inside(local_dir, rel, self.uri, "Download target")
                makedirs(target.parent)
                _copy_atomic(top / rel, target)
            for rel in empty:
                makedirs(_inside(local_dir, rel, self.uri, "Download target") if rel else local_dir)

    def list_files(self, prefix: str = "") -> list[str]:
        """Every file under ``prefix``, recursively, relative to ``prefix``."""
        top = self._dir(prefix)
        with self._reading(prefix):
            return _walk_local(top)[0] if top.is_dir() else []

    def exists(self, path: str) -> bool:
        """Whether a file or directory is at ``path``."""
        found = self._path(path)
        with self._reading(path):
            return found.exists()

    def delete(self, prefix: str) -> None:
        """Remove the file or tree at ``prefix``; a missing one is fine."""
        if prefix == "":
            raise InvalidArgument(f"Refusing to delete the whole artifact store {self.uri}.")
        path = self._path(prefix)
        with file_errors(f"Cannot delete artifact {_short(prefix)} in {self.uri}"):
            if path.is_dir():
                # Rename first, so readers never see a half-deleted tree under the real name.
                doomed = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}")
                os.replace(path, doomed)
                shutil.rmtree(doomed)
            else:
                with suppress(FileNotFoundError):
                    path.unlink()

    def local_path(self, path: str) -> Path | None:
        """The real path of ``path`` on disk (it need not exist yet)."""
        return self._path(path)

    def list(self, prefix: str = "") -> list[FileInfo]:
        """The direct children of ``prefix``; [] when it is missing or a file."""
        top = self._dir(prefix)
        out = []
        with self._reading(prefix):
            if not top.is_dir():
                return []
            prefix = _checked(prefix, self.uri) if prefix else ""  # normalised: "a//b" is "a/b"
            with os.scandir(top) as entries:
                for e in entries:
                    if e.name.startswith(TMP_PREFIX):
                        continue
                    is_dir = e.is_dir(follow_symlinks=False)
                    size = None if is_dir else e.stat(follow_symlinks=False).st_size
                    out.append(FileInfo(_join(prefix, e.name), is_dir, size))
        return sorted(out, key=lambda f: f.path)


class S3ArtifactStore:
    """Artifacts under ``s3://bucket/prefix``; an empty directory is kept as a ``dir/`` marker."""

    def __init__(
        self, bucket: str, prefix: str, *, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        if not isinstance(bucket, str) or not _BUCKET.match(bucket):
            raise InvalidArgument(
                f"Invalid S3 bucket name {redact(str(bucket))!r}: expected s3://bucket/prefix."
            )
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.prefix = _checked(prefix, self.uri) if prefix else ""
        self._endpoint_url = endpoint_url
        self._s3 = client
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.uri!r})"

    @property
    def _client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                endpoint = self._endpoint_url or os.environ.get(ENDPOINT_ENV) or None
                config = Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"mode": "standard", "total_max_attempts": 3},
                    # S3-compatible servers (MinIO, Ceph) rarely resolve bucket subdomains.
                    s3={"addressing_style": "path"} if endpoint else None,
                )
                session = boto3.session.Session()  # the default session is not thread-safe
                self._s3 = session.client("s3", endpoint_url=endpoint, config=config)
            return self._s3

    def _endpoint(self) -> str:
        return redact(str(self._client.meta.endpoint_url))

    def _key(self, rel: str) -> str:
        key = _join(self.prefix, _checked(rel, self.uri))
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > MAX_PATH_BYTES:
            raise InvalidArgument(
                f"Artifact path {_short(rel)}: its S3 key in {self.uri} would be {size} bytes "
                f"long; S3 allows {MAX_PATH_BYTES}. Use a shorter artifact path."
            )
        return key

    def _dir_key(self, rel: str) -> str:
        """The key prefix of everything under ``rel`` ("" is the store root)."""
        key = self._key(rel) if rel else self.prefix
        return f"{key}/" if key else ""

    @contextmanager
    def _errors(self, path: str | None = None) -> Iterator[None]:
        """Turn botocore's exceptions into modelpack's, naming the URI and never credentials."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            # Not chained: botocore's messages quote the endpoint URL, user:password@ and all.
            raise self._translate(exc, path) from None

    def _translate(self, exc: BaseException, path: str | None) -> ModelpackError:
        from boto3.exceptions import RetriesExceededError, S3UploadFailedError
        from botocore import exceptions as bex

        # upload_file wraps a ClientError; download_file wraps its last connection error.
        if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
            exc = exc.__context__
        elif isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
            exc = exc.last_exception
        where = f"{self.uri} (endpoint {self._endpoint()})"
        if isinstance(exc, bex.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey") and path is not None and self._bucket_exists():
                return NotFound(f"No artifact file {path!r} in {self.uri}.")
            if code in ("404", "NoSuchBucket"):
                return NotFound(
                    f"S3 bucket {self.bucket!r} does not exist (endpoint {self._endpoint()})."
                )
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return ModelpackError(
                    f"S3 denied access to {where}: {code}. Check the credentials and bucket policy."
                )
            return ModelpackError(f"S3 request on {where} failed: {code}.")
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return ModelpackError(
                f"No usable AWS credentials for {self.uri}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE."
            )
        if isinstance(exc, bex.ConnectionError):
            return ModelpackError(
                f"Cannot reach S3 endpoint {self._endpoint()} for {self.uri}: {_reason(exc)}."
            )
        return ModelpackError(f"S3 request on {where} failed: {type(exc).__name__}.")

    def _local(self, action: str) -> AbstractContextManager[None]:
        """Errors of the local side of a transfer (the file read or written)."""
        return file_errors(f"{action} ({self.uri})")

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            return False
        return True

    def _keys(self, prefix_key: str) -> list[tuple[str, int]]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix_key
        )
        with self._errors():
            return [(o["Key"], o["Size"]) for page in pages for o in page.get("Contents", [])]

    def put_file(self, local: Path, dest: str) -> None:
        """Upload the file ``local`` to ``dest``, replacing what was there."""
        src = _local_source(local, want_dir=False)
        key = self._key(dest)
        with self._errors(), self._local(f"Cannot upload {_short(src)}"):
            self._client.upload_file(str(src), self.bucket, key)

    def put_dir(self, local_dir: Path, dest: str) -> None:
        """Upload the tree ``local_dir`` to ``dest`` ("" is the root), merging into what is
        there."""
        dest = _checked(dest, self.uri) if dest else ""
        with self._local(f"Cannot upload {_short(local_dir)}"):
            files, empty = _walk_local(_local_source(local_dir, want_dir=True))
        keys = [self._key(_join(dest, rel)) for rel in files]
        markers = [self._dir_key(_join(dest, rel)) for rel in empty if _join(dest, rel)]
        with self._errors(), self._local(f"Cannot upload {_short(local_dir)}"):
            for rel, key in zip(files, keys, strict=True):
                self._client.upload_file(str(Path(local_dir, rel)), self.bucket, key)
            for key in markers:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=b"")

    def get_file(self, src: str, local: Path) -> None:
        """Download the artifact ``src`` to the file ``local``."""
        key = self._key(src)
        local = Path(local)
        with self._errors(src), self._local(f"Cannot download artifact {_short(src)}"):
            makedirs(local.parent)
            self._client.download_file(self.bucket, key, str(local))

    def get_dir(self, src: str, local_dir: Path) -> None:
        """Download every object under ``src`` ("" is the root) into ``local_dir`` (created if
        missing).

        Raises:
            InvalidArgument: a key under ``src`` would land outside ``local_dir``; nothing is
                downloaded then.
        """
        base = self._dir_key(src)
        local_dir = Path(local_dir)
        plan: list[tuple[str, Path]] = []
        dirs = []
        for key, _ in self._keys(base):
            rel = key[len(base) :]
            if rel == "":
                dirs.append(local_dir)
                continue
            try:
                target = resolve_inside(local_dir, rel.removesuffix("/"), "its path")
            except FormatError as exc:
                raise InvalidArgument(
                    f"Refusing to download S3 key {key!r} from {self.uri}: {exc.message}"
                ) from None
            if rel.endswith("/"):
                dirs.append(target)
            else:
                plan.append((key, target))
        if not plan and not dirs:
            raise NotFound(f"No artifact directory {src!r} in {self.uri}.")
        with self._errors(src), self._local(f"Cannot download artifact {_short(src)}"):
            for d in dirs:
                makedirs(d)
            for key, target in plan:
                makedirs(target.parent)
                self._client.download_file(self.bucket, key, str(target))

    def list_files(self, prefix: str = "") -> list[str]:
        """Every file under ``prefix``, recursively, relative to ``prefix``."""
        base = self._dir_key(prefix)
        rels = (key[len(base) :] for key, _ in self._keys(base))
        return sorted(r for r in rels if r and not r.endswith("/"))

    def exists(self, path: str) -> bool:
        """Whether an object, or any object under ``path/``, exists."""
        from botocore.exceptions import ClientError

        key = self._key(path)
        with self._errors():
            try:
                self._client.head_object(Bucket=self.bucket, Key=key)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                    raise
            found = self._client.list_objects_v2(Bucket=self.bucket, Prefix=f"{key}/", MaxKeys=1)
        return bool(found.get("KeyCount"))

    def delete(self, prefix: str) -> None:
        """Remove the object at ``prefix`` and every object under ``prefix/``; missing is fine."""
        if prefix == "":
            raise InvalidArgument(f"Refusing to delete the whole artifact store {self.uri}.")
        key = self._key(prefix)
        keys = [key] + [k for k, _ in self._keys(f"{key}/")]
        with self._errors():
            for i in range(0, len(keys), _DELETE_BATCH):
                batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
                resp = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                if resp.get("Errors"):
                    first = resp["Errors"][0]
                    raise ModelpackError(
                        f"S3 could not delete {len(resp['Errors'])} object(s) under "
                        f"{self.uri}/{prefix}: {first.get('Key')!r}: {first.get('Code')}."
                    )

    def local_path(self, path: str) -> Path | None:
        """None: S3 objects have no local path."""
        self._key(path)
        return None

    def list(self, prefix: str = "") -> list[FileInfo]:
        """The direct children of ``prefix``; [] when nothing is under it."""
        base = self._dir_key(prefix)
        prefix = base[len(self.prefix) :].strip("/")  # as checked and normalised
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base, Delimiter="/"
        )
        out = []
        with self._errors():
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    name = cp["Prefix"][len(base) : -1]
                    if name:
                        out.append(FileInfo(_join(prefix, name), True, None))
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(base) :]
                    if name:  # "" is the marker of ``prefix`` itself
                        out.append(FileInfo(_join(prefix, name), False, obj["Size"]))
        return sorted(out, key=lambda f: f.path)


def _reason(exc: BaseException) -> str:
    """A short, credential-free cause of a connection failure (botocore -> urllib3 -> socket)."""
    import socket

    from botocore.exceptions import ConnectTimeoutError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectTimeoutError):
            return "connection timed out"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "host name not found"
        seen = seen.__cause__ or seen.__context__
    return "connection failed"


def fetch(
    store: ArtifactStore, path: str, dst_path: str | os.PathLike[str] | None, owner: str
) -> Path:
    """Download the file or folder ``path`` of ``store`` (everything for ``""``) into
    ``dst_path`` (default: a new temporary folder); returns the local path. ``owner`` names
    whose artifacts these are in errors ("Run 'abc'")."""
    # What to fetch is checked before anything is made on the local side.
    files = store.list_files(path) if path else []
    single = bool(path) and not files and store.exists(path)
    if path and not files and not single:
        raise NotFound(f"{owner} has no artifact {path!r}.")
    if not path and not store.list(""):
        raise NotFound(f"{owner} has no artifacts.")
    dest = Path(dst_path) if dst_path else Path(tempfile.mkdtemp(prefix="modelpack-"))
    with file_errors(f"Cannot download the artifacts of {owner[:1].lower()}{owner[1:]}"):
        makedirs(dest)
    if not path:
        store.get_dir("", dest)
        return dest
    target = dest / path.rstrip("/").rsplit("/", 1)[-1]
    (store.get_file if single else store.get_dir)(path, target)
    return target


def _run_artifact_uri(run_id: str, tracking_uri: str | None) -> str:
    """The artifact URI of the run ``run_id``, read from the store's ``runs`` table (or asked
    of the server, for an http(s) tracking URI)."""
    import sqlalchemy as sa

    from modelpack.store import defaults, engines, schema

    url = tracking_uri or defaults.default_tracking_uri()
    if url.startswith(("http://", "https://")):  # a modelpack server: ask it
        from modelpack.store.rest import RestStore

        return str(RestStore(url).get_run(run_id).info.artifact_uri)
    engine = engines.engine_for(url, create=False)
    with engines.translated(engine), engine.connect() as conn:
        found = conn.execute(
            sa.select(schema.runs.c.artifact_uri).where(schema.runs.c.run_id == run_id)
        ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No run with id {run_id!r} in the tracking store at {redact(url)}.")
    return str(found)


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Download artifacts to a local folder, as ``mlflow.artifacts.download_artifacts``:
    ``artifact_uri`` (``runs:/<run_id>/<path>``, a path, ``file://`` or ``s3://`` URI) or
    ``run_id`` with an optional ``artifact_path``. Returns the local path (a ``Path``, where
    MLflow returns a str).

    Example:
        >>> local = modelpack.artifacts.download_artifacts(run_id=run_id, artifact_path="plots")
    """
    from modelpack import uris

    if (artifact_uri is None) == (run_id is None):
        raise InvalidArgument(
            "download_artifacts takes artifact_uri, or run_id (with artifact_path), exactly one."
        )
    if artifact_uri is not None and artifact_path is not None:
        raise InvalidArgument(
            "artifact_path goes with run_id; with artifact_uri, put the path in the URI."
        )
    if run_id is not None:
        store = artifact_store(_run_artifact_uri(run_id, tracking_uri))
        return fetch(store, artifact_path or "", dst_path, f"Run {run_id!r}")
    assert artifact_uri is not None
    parsed = uris.parse(artifact_uri)
    if isinstance(parsed, uris.RunURI):
        store = artifact_store(_run_artifact_uri(parsed.run_id, tracking_uri))
        return fetch(store, parsed.path, dst_path, f"Run {parsed.run_id!r}")
    if isinstance(parsed, uris.ModelURI):
        raise InvalidArgument(
            f"{artifact_uri!r} names a registered version: load it with modelpack.load(uri), or "
            f"download its package with modelpack.Client().resolve(uri)."
        )
    text = str(artifact_uri).rstrip("/") or "/"
    root, sep, name = text.rpartition("/")
    if not sep:  # "file.txt": in the current folder
        root, name = ".", text
    elif root.endswith((":", ":/")):  # "s3://bucket": the whole bucket
        root, name = text, ""
    elif not root:  # "/file.txt"
        root = "/"
    return fetch(artifact_store(root), name, dst_path, repr(artifact_uri))
