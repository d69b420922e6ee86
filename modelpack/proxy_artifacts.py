"""Artifacts through a tracking server's artifact proxy (MLflow's ``mlflow-artifacts`` API,
MLFLOW_COMPAT.md §1.3): the ``ArtifactStore`` of ``modelpack.artifacts`` over HTTP, so a client
needs no credentials of the artifact store behind the server.

URIs that ``modelpack.artifacts.artifact_store`` routes here:

- ``http(s)://host:port[/prefix]/api/2.0/mlflow-artifacts/artifacts/<path>``
- ``mlflow-artifacts:/<path>``: on the tracking server, ``MODELPACK_TRACKING_URI``
- ``mlflow-artifacts://host:port/<path>``: on that server (http)

Files stream both ways with bounded memory: an upload is read from disk in chunks, a download
is written in chunks to a temp file beside its destination, then renamed into place (readers
see the whole file or none). Folders are walked through listings; an empty folder is not kept
(the proxy has no folders of its own, as MLflow's).
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
import urllib.parse
from contextlib import suppress
from pathlib import Path
from typing import Any

from modelpack import atomic
from modelpack.errors import FormatError, InvalidArgument, ModelpackError, NotFound, Unavailable
from modelpack.file_info import TMP_PREFIX, FileInfo
from modelpack.paths import check_length, check_relative, resolve_inside
from modelpack.uris import redact

__all__ = [
    "ROUTE",
    "SCHEME",
    "ProxyArtifactStore",
    "parse_proxy_uri",
    "proxy_store",
    "proxy_uri",
]

ROUTE = "/api/2.0/mlflow-artifacts/artifacts"
SCHEME = "mlflow-artifacts"


# ---------------------------------------------------------------------- URIs


def proxy_uri(server_url: str, path: str = "") -> str:
    """The HTTP URI of the artifact ``path`` on the server ``server_url``:
    ``http://host:port[/prefix]/api/2.0/mlflow-artifacts/artifacts/<path>`` (the path
    URL-encoded). ``mlflow-artifacts:/<path>`` on a server at ``server_url`` is this."""
    base = server_url.rstrip("/") + ROUTE
    path = path.strip("/")
    return f"{base}/{urllib.parse.quote(path, safe='/')}" if path else base


def parse_proxy_uri(uri: str, tracking_uri: str | None = None) -> tuple[str, str] | None:
    """``(server_url, path)`` of a proxy URI (the forms in the module docstring), or None if
    ``uri`` is none of them. ``tracking_uri`` (default: ``MODELPACK_TRACKING_URI``) is the
    server of ``mlflow-artifacts:/<path>``.

    Raises:
        InvalidArgument: an http(s) URI that does not name the artifact proxy, a query or
            fragment, or ``mlflow-artifacts:/`` without an http(s) tracking server.
    """
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https", SCHEME):
        return None
    if parsed.query or parsed.fragment or "#" in uri:
        raise InvalidArgument(
            f"Artifact URI {redact(uri)!r} has a query or fragment; a proxy URI names a path only."
        )
    if scheme == SCHEME:
        path = urllib.parse.unquote(parsed.path).strip("/")
        if parsed.netloc:
            return f"http://{parsed.netloc}", path
        server = tracking_uri
        if server is None:
            from modelpack.store.defaults import default_tracking_uri

            server = default_tracking_uri()
        if not server.lower().startswith(("http://", "https://")):
            raise InvalidArgument(
                f"{uri!r} is on the tracking server's artifact proxy, but the tracking URI is "
                f"{redact(server)!r}, not a server. Set MODELPACK_TRACKING_URI to the server "
                f"(http://host:port), or use mlflow-artifacts://host:port/<path>."
            )
        return server.rstrip("/"), path
    where = parsed.path.find(ROUTE)
    rest = parsed.path[where + len(ROUTE) :] if where >= 0 else ""
    if where < 0 or rest[:1] not in ("", "/"):
        raise InvalidArgument(
            f"Unsupported artifact store URI {redact(uri)!r}: an http(s) artifact URI must name "
            f"a server's artifact proxy, http://host:port{ROUTE}/<path>."
        )
    server = f"{parsed.scheme}://{parsed.netloc}{parsed.path[:where]}"
    return server, urllib.parse.unquote(rest).strip("/")


def proxy_store(uri: str) -> Any:
    """The ``ProxyArtifactStore`` of a proxy URI (see ``parse_proxy_uri``)."""
    found = parse_proxy_uri(uri)
    if found is None:
        raise InvalidArgument(f"{redact(uri)!r} is not an artifact proxy URI.")
    return ProxyArtifactStore(found[0], found[1])


# ---------------------------------------------------------------------- the store
# (``list`` is the last method of the class: above it, ``list[str]`` is still the builtin)


def _checked(rel: str, what: str = "Artifact path") -> str:
    if isinstance(rel, str) and "//" in rel:
        raise InvalidArgument(f"{what} {rel!r}: has an empty segment ('//').")
    try:
        checked = str(check_relative(rel, what))
        check_length(checked, what)
    except FormatError as exc:
        raise InvalidArgument(exc.message) from None
    return checked


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix and name else prefix or name


def _mkdirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidArgument(f"Cannot make the folder {path}: a file is in the way.") from None
    except OSError as exc:
        raise ModelpackError(f"Cannot make the folder {path}: {exc.strerror or exc}.") from None


class ProxyArtifactStore:
    """Artifacts under ``prefix`` on the artifact proxy of the server at ``server_url``.

    Args:
        server_url: ``http(s)://host:port[/prefix]``.
        prefix: the folder under the proxy's root this store is rooted at ("" is the root).
        token: the bearer token (default: ``MODELPACK_TRACKING_TOKEN`` or MLflow's variables,
            as ``modelpack.transport.Transport`` reads them).
    """

    def __init__(
        self,
        server_url: str,
        prefix: str = "",
        *,
        token: str | None = None,
    ) -> None:
        from modelpack.transport import shared

        prefix = prefix.strip("/")
        self.prefix = _checked(prefix, "Artifact proxy prefix") if prefix else ""
        self.transport = shared(server_url, token=token)
        self.server_url = self.transport.url
        self.uri = proxy_uri(self.server_url, self.prefix)
        self.shown = redact(self.uri)  # the URI in messages: never a password

    def __repr__(self) -> str:
        return f"ProxyArtifactStore({self.shown!r})"

    def _full(self, rel: str) -> str:
        """The path under the proxy's root of ``rel`` ("" is this store's root)."""
        return _join(self.prefix, _checked(rel)) if rel else self.prefix

    def _route(self, rel: str) -> str:
        full = self._full(rel)
        return f"{ROUTE}/{urllib.parse.quote(full, safe='/')}"

    # ------------------------------------------------------------------ writes

    def put_file(self, local: Path, dest: str) -> None:
        """Upload the file ``local`` to ``dest``, replacing what was there (streamed)."""
        local = Path(local)
        if not local.exists():
            raise NotFound(f"Local file {local} does not exist.")
        if not local.is_file():
            raise InvalidArgument(f"Local path {local} is not a file.")
        route = self._route(dest)
        content_type = mimetypes.guess_type(dest)[0] or "application/octet-stream"
        for attempt in range(2):
            try:
                with open(local, "rb") as stream:
                    size = os.fstat(stream.fileno()).st_size
                    self.transport.upload(route, stream, size, content_type)
                return
            except Unavailable:
                # A PUT replaces the whole file, so sending it again is safe.
                if attempt:
                    raise
            except OSError as exc:
                raise ModelpackError(f"Cannot read {local}: {exc.strerror or exc}.") from None

    def put_dir(self, local_dir: Path, dest: str) -> None:
        """Upload every file of the tree ``local_dir`` under ``dest`` ("" is the root).

        Raises:
            InvalidArgument: the tree holds a link or something that is not a file or folder;
                nothing is uploaded then.
        """
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise NotFound(f"Local directory {local_dir} does not exist.")
        dest = _checked(dest) if dest else ""
        files: list[str] = []
        pending = [""]
        while pending:  # its own stack: a deep tree never raises RecursionError
            rel_dir = pending.pop()
            with os.scandir(local_dir / rel_dir) as scan:
                entries = sorted(scan, key=lambda e: e.name)
            for entry in entries:
                rel = _join(rel_dir, entry.name)
                if entry.is_symlink():
                    raise InvalidArgument(
                        f"{entry.path} is a symbolic link; artifact directories may not "
                        f"contain links."
                    )
                if entry.is_dir(follow_symlinks=False):
                    pending.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    files.append(rel)
                else:
                    raise InvalidArgument(f"{entry.path} is not a regular file or folder.")
        for rel in files:
            self._full(_join(dest, rel))  # every path checked before anything is sent
        for rel in files:
            self.put_file(local_dir / rel, _join(dest, rel))

    def delete(self, prefix: str) -> None:
        """Remove the file or folder at ``prefix``; a missing one is fine."""
        if prefix == "":
            raise InvalidArgument(f"Refusing to delete the whole artifact store {self.shown}.")
        self.transport.call("DELETE", self._route(prefix), idempotent=True)

    # ------------------------------------------------------------------ reads

    def _walk(self, top: str) -> tuple[list[str], list[str]]:
        """Files and empty folders under ``top``, relative to it (a folder is listed once)."""
        files: list[str] = []
        empty: list[str] = []
        pending = [""]
        while pending:
            rel_dir = pending.pop()
            entries = self.list(_join(top, rel_dir))
            if not entries and rel_dir:
                empty.append(rel_dir)
            for entry in entries:
                rel = entry.path[len(top) + 1 :] if top else entry.path
                (pending if entry.is_dir else files).append(rel)
        return sorted(files), sorted(empty)

    def list_files(self, prefix: str = "") -> list[str]:
        """Every file under ``prefix``, recursively, relative to ``prefix``."""
        return self._walk(_checked(prefix) if prefix else "")[0]

    def exists(self, path: str) -> bool:
        """Whether a file or folder is at ``path`` (asked of its parent's listing)."""
        path = _checked(path)
        parent, _, name = path.rpartition("/")
        return any(entry.path == path for entry in self.list(parent)) if name else False

    def get_file(self, src: str, local: Path) -> None:
        """Download the artifact ``src`` to the file ``local``: streamed into a temp file
        beside it, then renamed into place."""
        local = Path(local)
        route = self._route(src)
        if local.is_dir():
            raise InvalidArgument(f"Download target {local} is a folder; a file cannot replace it.")
        _mkdirs(local.parent)
        try:
            fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=TMP_PREFIX)
        except OSError as exc:
            raise ModelpackError(f"Cannot write into {local.parent}: {exc.strerror}.") from None
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = self.transport.download(route)
                try:
                    for chunk in chunks:
                        out.write(chunk)
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()  # the download's own connection, also when writing failed
            atomic.publish(tmp, local)
        except BaseException as exc:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise ModelpackError(f"Cannot write {local}: {exc.strerror or exc}.") from None
            raise

    def get_dir(self, src: str, local_dir: Path) -> None:
        """Download every file under ``src`` ("" is the root) into ``local_dir`` (created if
        missing). Names the server lists are checked before they become local paths."""
        top = _checked(src) if src else ""
        local_dir = Path(local_dir)
        files, empty = self._walk(top)
        if not files and not empty and top:
            parent, _, name = top.rpartition("/")
            if not any(e.path == top and e.is_dir for e in self.list(parent)):
                raise NotFound(f"No artifact directory {src!r} in {self.shown}.")
        targets = []
        for rel in files:
            try:
                targets.append(resolve_inside(local_dir, rel, "Download target"))
            except FormatError as exc:
                raise InvalidArgument(f"{exc.message} ({self.shown})") from None
        _mkdirs(local_dir)
        for rel, target in zip(files, targets, strict=True):
            self.get_file(_join(top, rel), target)
        for rel in empty:
            try:
                _mkdirs(resolve_inside(local_dir, rel, "Download target"))
            except FormatError as exc:
                raise InvalidArgument(f"{exc.message} ({self.shown})") from None

    def local_path(self, path: str) -> Path | None:
        """None: a proxied artifact has no local path."""
        self._full(path)
        return None

    def list(self, prefix: str = "") -> list[Any]:
        """The direct children of ``prefix``; [] when it is missing or a file."""
        full = self._full(prefix) if prefix else self.prefix
        answer = self.transport.call("GET", ROUTE, params={"path": full} if full else None)
        files = answer.get("files", [])
        if not isinstance(files, list):
            raise ModelpackError(
                f"The artifact proxy of {self.shown} answered a listing without a list of files."
            )
        base = _checked(prefix) if prefix else ""
        out = []
        for item in files:
            name = item.get("path") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise ModelpackError(
                    f"The artifact proxy of {self.shown} listed an entry named {name!r} under "
                    f"{base or '/'!r}; expected a plain name."
                )
            is_dir = bool(item.get("is_dir"))
            size = item.get("file_size")
            if is_dir or isinstance(size, bool) or not isinstance(size, int):
                size = None
            out.append(FileInfo(_join(base, name), is_dir, size))
        return sorted(out, key=lambda f: f.path)
