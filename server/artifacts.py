"""MLflow's artifact proxy (``MlflowArtifactsService``, MLFLOW_COMPAT.md §1.3): clients read and
write the artifact store through the server, so they need no credentials of it.

- ``PUT    /api/2.0/mlflow-artifacts/artifacts/<path>``: the raw body, streamed to a temp file
  (bounded by ``--max-artifact-bytes``), then put in the store; answers ``{}``.
- ``GET    /api/2.0/mlflow-artifacts/artifacts/<path>``: the file, streamed, as an attachment.
- ``GET    /api/2.0/mlflow-artifacts/artifacts?path=<dir>``: ``{"files": [{"path": basename,
  "is_dir", "file_size"}]}`` (basenames, as MLflow answers).
- ``DELETE /api/2.0/mlflow-artifacts/artifacts/<path>``: the file or folder; ``{}``.

The same routes are mounted under ``/ajax-api/2.0``. Every path passes ``check_path`` (the
traversal classes of MLFLOW_COMPAT.md §2: double encoding, backslashes, absolute paths, ``..``)
and, where it is used, the store's own containment check on the real path (symlinks).
What a path needs depends on what it is (``access_for``): a path inside an experiment's artifact
location needs READ / EDIT / MANAGE on that experiment, a user's staging folder
``uploads/<32 hex>/`` a login, a registered version's folder ``registry/<id>/`` READ on its
model (and it is read-only here), anything else an admin.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import mimetypes
import os
import re
import shutil
import stat
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from modelpack import atomic
from modelpack.artifacts import ArtifactStore, artifact_store, makedirs
from modelpack.errors import FormatError, InvalidArgument, ModelpackError, NotFound
from modelpack.file_info import TMP_PREFIX
from modelpack.paths import check_length, check_relative
from modelpack.server.endpoints import (
    ADMIN,
    LOGIN,
    Access,
    Call,
    Endpoint,
    on_experiment,
    on_model,
)
from modelpack.server.wire import ApiError, json_response

__all__ = ["ENDPOINTS", "ROUTE", "access_for", "check_path"]

log = logging.getLogger("modelpack.server")

ROUTE = "/mlflow-artifacts/artifacts"
CHUNK = 1024 * 1024  # what a request handler holds of a body at a time
MAX_DEPTH = 64  # folders deep that an artifact path may look for its experiment's location

REGISTRY = "registry"
UPLOADS = "uploads"
_ID = re.compile(r"[0-9a-f]{32}")
_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LEVEL = {"GET": "READ", "HEAD": "READ", "PUT": "EDIT", "DELETE": "MANAGE"}


# ---------------------------------------------------------------------- the one path check


def check_path(raw: Any, *, folder: bool = False) -> str:
    """``raw`` as a relative artifact path, or ``ApiError`` saying why it is refused.

    Starlette has decoded the URL once; what still looks percent-encoded was encoded twice
    (``%252e%252e`` arrives as ``%2e%2e``: CVE-2024-1560), so it is refused rather than decoded
    again. Also refused: ``..`` and ``.`` segments, empty segments, absolute paths, drive
    letters, backslashes (CVE-2023-2780), ``#``, NUL and other control characters, paths longer
    than the stores hold. ``folder``: a listing's path, where ``""`` is the root and one
    trailing ``/`` is allowed. Containment on the real path (symlinks) is checked where the
    path is used, by the artifact store.
    """
    if not isinstance(raw, str):
        raise _refused(raw, "expected a string")
    path = raw
    if folder:
        if path in ("", "/"):
            return ""
        path = path.removesuffix("/")
    if path == "":
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            "Missing artifact path: name a file, as /api/2.0/mlflow-artifacts/artifacts/<path>; "
            "list a folder with /api/2.0/mlflow-artifacts/artifacts?path=<folder>.",
        )
    encoded = _ENCODED.search(path)
    if encoded:
        raise _refused(
            raw,
            f"it still holds the percent-encoded {encoded.group()!r} after URL decoding, so it "
            "was encoded twice (a path traversal trick); encode a path once",
        )
    if _CONTROL.search(path):
        raise _refused(raw, "it contains a NUL or another control character")
    if "\\" in path:
        raise _refused(raw, "it contains a backslash; artifact paths use '/' only")
    if "#" in path:
        raise _refused(raw, "it contains '#'")
    if path.startswith("/") or _DRIVE.match(path):
        raise _refused(raw, "it is absolute; artifact paths are relative to the artifact root")
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise _refused(raw, "it has an empty, '.' or '..' segment")
    try:
        check_length(str(check_relative(path, "Artifact path")), "Artifact path")
    except FormatError as exc:
        raise ApiError("INVALID_PARAMETER_VALUE", exc.message) from None
    return path


def _refused(raw: Any, why: str) -> ApiError:
    shown = repr(raw) if len(repr(raw)) <= 120 else repr(raw)[:117] + "..."
    return ApiError("INVALID_PARAMETER_VALUE", f"Refusing artifact path {shown}: {why}.")


# ---------------------------------------------------------------------- who may do what


def access_for(state: Any, method: str, path: str) -> Access:
    """What ``method`` on the checked artifact ``path`` needs (see the module docstring).

    Raises:
        ApiError: PERMISSION_DENIED for a write into ``registry/``, whoever asks.
    """
    segments = path.split("/") if path else []
    head = segments[0] if segments else ""
    level = _LEVEL[method]
    if head == REGISTRY:
        if level != "READ":
            raise ApiError(
                "PERMISSION_DENIED",
                f"{path!r} is in registry/, the registry's own copies of registered versions, "
                "which are read-only through the artifact proxy. Register a new version "
                "instead (model-versions/create), or delete the version to remove its files.",
            )
        name = _version_owner(state, segments[1]) if len(segments) > 1 else None
        return on_model("READ", lambda call: name) if name is not None else ADMIN
    if head == UPLOADS:
        # A user's staging folder for registering a local package: the random id is the key.
        return LOGIN if len(segments) > 1 and _ID.fullmatch(segments[1]) else ADMIN
    experiment_id = _experiment_of(state, segments)
    if experiment_id is not None:
        return on_experiment(level, lambda call: experiment_id)
    return ADMIN


def _experiment_of(state: Any, segments: list[str]) -> str | None:
    """The store's id of the experiment whose artifact location holds the path (the deepest
    one, when locations nest); the root itself is nobody's."""
    if not segments:
        return None
    import sqlalchemy as sa

    from modelpack.store import engines, schema

    root = state.artifact_root
    candidates = [
        f"{root}/{'/'.join(segments[:depth])}"
        for depth in range(1, min(len(segments), MAX_DEPTH) + 1)
    ]
    table = schema.experiments
    engine = state.store.engine
    with engines.translated(engine), engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.experiment_id, table.c.artifact_location).where(
                table.c.artifact_location.in_(candidates)
            )
        ).all()
    if not rows:
        return None
    return str(max(rows, key=lambda row: len(row.artifact_location)).experiment_id)


def _version_owner(state: Any, folder_id: str) -> str | None:
    """The name of the registered model whose version lives in ``registry/<folder_id>``."""
    if not _ID.fullmatch(folder_id):
        return None
    import sqlalchemy as sa

    from modelpack.store import engines, schema

    versions, models = schema.model_versions, schema.registered_models
    location = f"{state.artifact_root}/{REGISTRY}/{folder_id}"
    engine = state.store.engine
    with engines.translated(engine), engine.connect() as conn:
        name = conn.execute(
            sa.select(models.c.name)
            .join(versions, versions.c.model == models.c.id)
            .where(versions.c.storage_location == location)
            .limit(1)
        ).scalar_one_or_none()
    return None if name is None else str(name)


async def _begin(call: Call, method: str, *, folder: bool = False) -> str:
    """The checked path of ``call``, after the proxy-is-on and the permission checks."""
    state = call.state
    if not state.options.serve_artifacts:
        raise ApiError(
            "TEMPORARILY_UNAVAILABLE",
            "This server was started with --no-serve-artifacts, so it does not proxy "
            "artifacts: read and write the artifact store directly (the URI is the run's "
            "artifact_uri), or restart the server with --serve-artifacts.",
        )
    path = check_path(call.params.get("path", ""), folder=folder)

    def authorize() -> None:
        access = access_for(state, method, path)
        endpoint = dataclasses.replace(call.endpoint, access=access)
        state.auth.authorize(dataclasses.replace(call, endpoint=endpoint))

    await run_in_threadpool(authorize)
    return path


# ---------------------------------------------------------------------- the store


@functools.lru_cache(maxsize=16)
def _store(root: str) -> ArtifactStore:
    """One store per artifact root (an S3 store keeps its client and connections)."""
    return artifact_store(root)


def _answerable(exc: ModelpackError, state: Any, action: str) -> ApiError:
    """``exc`` of the artifact store as an answer that names no path of the server's."""
    if isinstance(exc, NotFound | InvalidArgument | FormatError):
        message = re.sub(r" ?\(artifact store [^)]*\)", "", exc.message)
        for root in {state.artifact_root, os.path.realpath(state.artifact_root)}:
            message = message.replace(root, "<artifact root>")
        code = "RESOURCE_DOES_NOT_EXIST" if isinstance(exc, NotFound) else "INVALID_PARAMETER_VALUE"
        return ApiError(code, message)
    log.error("artifact store failed to %s: %s", action, exc)
    return ApiError(
        "INTERNAL_ERROR", f"The artifact store failed to {action}; the server's log says why."
    )


async def _in_store(state: Any, action: str, fn: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except ModelpackError as exc:
        raise _answerable(exc, state, action) from None


# ---------------------------------------------------------------------- handlers


async def upload(call: Call) -> Response:
    """PUT: the body, chunk by chunk, into a temp file, then into the store atomically. On a
    local root the temp file is beside its destination and renamed into place (a 2 GiB upload
    is written once); on S3 it is a temp file the store then uploads."""
    path = await _begin(call, "PUT")
    state = call.state
    limit = state.options.max_artifact_bytes
    declared = call.request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    store = _store(state.artifact_root)
    local = await _in_store(state, f"store {path!r}", store.local_path, path)
    if local is not None:
        folder = await _in_store(state, f"store {path!r}", _folder_for, local, path)
        staging = None
        fd, name = await run_in_threadpool(tempfile.mkstemp, "", TMP_PREFIX, str(folder))
        await run_in_threadpool(os.close, fd)
        body = Path(name)
    else:
        staging = await run_in_threadpool(tempfile.mkdtemp, None, "modelpack-upload-")
        body = Path(staging, "body")
    try:
        try:
            size = await _receive(call, body, limit)
        except ClientDisconnect:
            raise ApiError(
                "BAD_REQUEST", f"The upload of {path!r} broke off before the whole body came."
            ) from None
        if declared is not None and declared.strip().isdigit() and size != int(declared):
            raise ApiError(
                "BAD_REQUEST",
                f"The upload of {path!r} sent {size} bytes; its Content-Length said {declared}.",
            )
        if local is not None:
            await _in_store(state, f"store {path!r}", _publish, store, body, local, path)
        else:
            await _in_store(state, f"store {path!r}", store.put_file, body, path)
    finally:
        if staging is not None:
            await run_in_threadpool(shutil.rmtree, staging, True)
        else:
            await run_in_threadpool(_discard, body)
    return json_response({})


def _folder_for(local: Path, path: str) -> Path:
    """The folder of the checked real path ``local``, made if missing."""
    if local.is_dir():
        raise InvalidArgument(f"Artifact path {path!r} is a folder; a file cannot replace it.")
    try:
        makedirs(local.parent)
    except (FileExistsError, NotADirectoryError):
        raise InvalidArgument(f"Artifact path {path!r}: a parent of it is a file.") from None
    return local.parent


def _publish(store: ArtifactStore, body: Path, local: Path, path: str) -> None:
    """Rename the received ``body`` to ``local``, once the path is checked again (DESIGN.md
    §9 rule 2: where it is used) and found unchanged."""
    if store.local_path(path) != local or local.is_dir():
        raise InvalidArgument(f"Artifact path {path!r} changed while it was being uploaded.")
    atomic.publish(body, local)


def _discard(body: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        body.unlink()


async def _receive(call: Call, target: Path, limit: int) -> int:
    """Write the request body to ``target``, at most ``CHUNK`` bytes held at a time."""
    file = await run_in_threadpool(open, target, "wb")
    size = 0
    pending = bytearray()
    try:
        async for chunk in call.request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(None, limit)
            pending += chunk
            if len(pending) >= CHUNK:
                await run_in_threadpool(file.write, pending)
                pending.clear()
        if pending:
            await run_in_threadpool(file.write, pending)
    finally:
        await run_in_threadpool(file.close)
    return size


def _too_large(size: int | None, limit: int) -> ApiError:
    what = f"is {size} bytes" if size is not None else f"is over {limit} bytes"
    return ApiError(
        "REQUEST_ENTITY_TOO_LARGE",
        f"The artifact {what}; this server takes at most {limit} bytes (--max-artifact-bytes).",
    )


async def download(call: Call) -> Response:
    """GET: the file, streamed from the local root (or from a temp copy of an S3 object)."""
    path = await _begin(call, "GET")
    state = call.state
    store = _store(state.artifact_root)
    local = await _in_store(state, f"read {path!r}", store.local_path, path)
    if local is not None:
        file, size = await _in_store(state, f"read {path!r}", _open_local, local, path)
    else:
        file, size = await _in_store(state, f"read {path!r}", _open_remote, store, path)
    name = path.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": _attachment(name),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return StreamingResponse(
        iterate_in_threadpool(_chunks(file)), headers=headers, media_type=media_type
    )


def _open_local(local: Path, path: str) -> tuple[IO[bytes], int]:
    """The file at the checked real path ``local``, opened without following a link."""
    try:
        fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise NotFound(f"No artifact {path!r}.") from None
    except OSError as exc:
        if exc.errno == getattr(os, "ELOOP", 40) or isinstance(exc, NotADirectoryError):
            raise InvalidArgument(f"Artifact path {path!r} is a symbolic link.") from None
        raise ModelpackError(f"Cannot open artifact {path!r}: {exc.strerror}.") from None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise NotFound(
            f"Artifact {path!r} is a folder, not a file; list it with "
            f"/api/2.0/mlflow-artifacts/artifacts?path={urllib.parse.quote(path)}."
        )
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InvalidArgument(f"Artifact {path!r} is not a regular file.")
    return os.fdopen(fd, "rb"), info.st_size


def _open_remote(store: ArtifactStore, path: str) -> tuple[IO[bytes], int]:
    """The object at ``path``, copied to a temp file that is unlinked at once (the open file
    keeps it until the answer is sent): memory stays bounded whatever its size."""
    staging = tempfile.mkdtemp(prefix="modelpack-download-")
    try:
        local = Path(staging, "body")
        store.get_file(path, local)
        file = open(local, "rb")  # noqa: SIM115 - closed by _chunks when the answer ends
        return file, os.fstat(file.fileno()).st_size
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _chunks(file: IO[bytes]) -> Iterator[bytes]:
    with file:
        while chunk := file.read(CHUNK):
            yield chunk


def _attachment(name: str) -> str:
    """``Content-Disposition: attachment``, the name both as ASCII and in RFC 5987 form."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in name)
    quoted = urllib.parse.quote(name, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"


async def list_artifacts(call: Call) -> Response:
    """GET ?path=<folder>: the folder's entries, basenames only (MLflow's answer)."""
    path = await _begin(call, "GET", folder=True)
    state = call.state
    entries = await _in_store(state, f"list {path!r}", _store(state.artifact_root).list, path)
    files = []
    for entry in entries:
        item: dict[str, Any] = {"path": entry.path.rsplit("/", 1)[-1], "is_dir": entry.is_dir}
        if not entry.is_dir and entry.size is not None:
            item["file_size"] = entry.size
        files.append(item)
    return json_response({"files": files})


async def delete(call: Call) -> Response:
    """DELETE: the file or folder at the path; a missing one is fine (as MLflow's)."""
    path = await _begin(call, "DELETE")
    state = call.state
    await _in_store(state, f"delete {path!r}", _store(state.artifact_root).delete, path)
    return json_response({})


_BY_PATH = "(the permission it needs depends on the path: see server/artifacts.py)"

ENDPOINTS = [
    Endpoint(
        ("GET",),
        f"{ROUTE}/{{path:path}}",
        download,
        LOGIN,
        f"Download an artifact, streamed {_BY_PATH}.",
        raw=True,
    ),
    Endpoint(
        ("PUT",),
        f"{ROUTE}/{{path:path}}",
        upload,
        LOGIN,
        f"Upload an artifact: the raw body, streamed to the artifact store {_BY_PATH}.",
        raw=True,
    ),
    Endpoint(
        ("DELETE",),
        f"{ROUTE}/{{path:path}}",
        delete,
        LOGIN,
        f"Delete an artifact file or folder {_BY_PATH}.",
        raw=True,
    ),
    Endpoint(
        ("GET",),
        ROUTE,
        list_artifacts,
        LOGIN,
        f"List a folder of artifacts (?path=<folder>; basenames) {_BY_PATH}.",
        raw=True,
    ),
]
