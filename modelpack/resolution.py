"""Turning model URIs and registered versions into local package directories.

Packages in a local artifact root are used where they lie. Remote ones are downloaded into the
content-addressed cache (``~/.cache/modelpack/packages/<model_id>-<manifest sha>``, private:
0700), verified, and renamed into place, so a warm second resolution downloads nothing.

Neither place is trusted: a registered version's or logged model's manifest must hash to what
the store recorded for it, checked on every resolution, cache hit or not; the manifest's own
hashes then cover every other file, which every load verifies.

Store URIs are read from a ``source``: anything with a ``store`` (a ``modelpack.Client``), by
default the ``MODELPACK_TRACKING_URI`` store, which must exist (resolving never creates one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from modelpack import uris
from modelpack.entities import ModelVersion
from modelpack.errors import FormatError, IntegrityError, ModelpackError
from modelpack.integrity import verify_files
from modelpack.manifest import (
    MANIFEST_NAME,
    check_model_id,
    check_recorded,
    check_sha256,
    read_manifest,
    read_manifest_bytes,
)

__all__ = ["Recorded", "cache_root", "model_version", "resolve", "resolve_recorded"]


class Source(Protocol):
    """Where store URIs are read from: a ``modelpack.Client``, or anything with a ``store``."""

    @property
    def store(self) -> Any: ...


class _DefaultSource:
    """The default store, opened on first use and only for reading."""

    @cached_property
    def store(self) -> Any:
        from modelpack.store import open_store

        return open_store(create=False)


Target = str | os.PathLike[str] | ModelVersion


def model_version(source: Source, uri: str | uris.ModelURI) -> ModelVersion:
    """The ``ModelVersion`` a ``models:/`` URI names now."""
    parsed = uri if isinstance(uri, uris.ModelURI) else uris.parse(uri)
    if not isinstance(parsed, uris.ModelURI):
        raise TypeError(f"Expected a models:/ URI, got {uri!r}.")
    store = source.store
    if parsed.alias is not None:
        return store.get_model_version_by_alias(parsed.name, parsed.alias)
    if parsed.version is not None:
        return store.get_model_version(parsed.name, parsed.version)
    if parsed.stage is not None:
        return store.get_version_in_stage(parsed.name, parsed.stage)
    return store.get_newest_version(parsed.name)


@dataclass(frozen=True)
class Recorded:
    """The manifest sha256 a store recorded for a package: what every load of it must match."""

    sha256: str
    model_id: str
    what: str  # the package, for messages: its URI
    by: str  # who recorded it, for messages


def resolve(target: Target, source: Source | None = None) -> Path:
    """The local directory of the package ``target`` names (a path or URI, or a registered
    ``ModelVersion``), its manifest checked against the hash its store recorded."""
    return resolve_recorded(target, source)[0]


def resolve_recorded(target: Target, source: Source | None = None) -> tuple[Path, Recorded | None]:
    """``resolve``, and the record the package was checked against (``None`` if it has none).

    Raises:
        IntegrityError: the manifest differs from the one the registry or the run recorded.
    """
    if isinstance(target, ModelVersion):
        return _version(target)
    parsed = uris.parse(target)
    if isinstance(parsed, Path):
        return _mlflow_converted(parsed), None
    if isinstance(parsed, uris.S3URI):
        return _fetch(parsed.uri, "", None), None
    source = source if source is not None else _DefaultSource()
    if isinstance(parsed, uris.ModelURI):
        return _version(model_version(source, parsed), str(parsed))
    run = source.store.get_run(parsed.run_id)
    logged = source.store.get_logged_model(run.info.run_id, parsed.path)
    recorded = (
        _recorded(
            logged.manifest_sha256,
            logged.model_id,
            str(parsed),
            "the tracking store (log_model)",
            "logged model",
        )
        if logged
        else None
    )
    return _fetch(run.info.artifact_uri, parsed.path, recorded), recorded


def _version(version: ModelVersion, uri: str | None = None) -> tuple[Path, Recorded]:
    what = uri or version.uri
    pinned = _recorded(
        version.manifest_sha256, version.model_id, what, "the registry", "registered version"
    )
    return _fetch(version.storage_location, "", pinned), pinned


def _recorded(sha: Any, model_id: Any, uri: str, by: str, kind: str) -> Recorded:
    """A store's record, checked before it names a cache path (DESIGN.md §9 rule 8)."""
    try:
        check_sha256(sha, f"the manifest sha256 recorded for {kind} {uri}")
        check_model_id(model_id, f"the model_id recorded for {kind} {uri}")
    except FormatError as exc:
        raise IntegrityError(
            f"{exc.message} The store's record is damaged; register or log the model again.",
            [(MANIFEST_NAME, "unrecorded")],
        ) from None
    return Recorded(sha, model_id, uri, by)


def check_recorded_manifest(root: Path, recorded: Recorded) -> str:
    """Read the manifest of the package at ``root`` and check it against ``recorded``."""
    return check_recorded(
        root, read_manifest_bytes(root), recorded.sha256, recorded.what, recorded.by
    )


def _is_mlflow_model(folder: Path) -> bool:
    from modelpack import mlflow_models

    return mlflow_models.is_mlflow_model(folder)


def _mlflow_converted(folder: Path) -> Path:
    """``folder``, or, when it is an MLflow model directory (an ``MLmodel``, no manifest), the
    package converted from it in the cache (converted once per content; modelpack.mlflow_models)."""
    if not _is_mlflow_model(folder):
        return folder
    from modelpack import mlflow_models

    return mlflow_models.cached_package(folder, private_cache())


def cache_root() -> Path:
    env = os.environ.get("MODELPACK_CACHE_DIR")
    if env:
        return Path(env) / "packages"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "modelpack" / "packages"


def private_cache() -> Path:
    """``cache_root()``, created 0700 (every level modelpack creates), and checked private.

    A cache another user can write to lets them swap a package between its verification and
    its loading, which no check on the files can see. Such a cache is refused, not repaired:
    chmod would not remove what was already planted, and the directory may be shared on
    purpose; the message says how to fix it.

    Raises:
        ModelpackError: the cache belongs to another user or others may write to it.
    """
    cache = cache_root()
    missing = [p for p in (cache, *cache.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # another process made it first: it is checked below
            continue
        os.chmod(directory, 0o700)  # the umask may have taken owner bits away
    st = os.stat(cache)
    fix = f"Run: chmod 700 {cache} (or set MODELPACK_CACHE_DIR to a private directory)."
    if not stat.S_ISDIR(st.st_mode):
        raise ModelpackError(f"The package cache {cache} is not a directory. {fix}")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ModelpackError(
            f"The package cache {cache} belongs to another user (uid {st.st_uid}); they could "
            f"swap a package after it is verified. Set MODELPACK_CACHE_DIR to a directory of "
            f"your own."
        )
    if os.name == "posix" and st.st_mode & 0o022:
        raise ModelpackError(
            f"The package cache {cache} is writable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"they could swap a package after it is verified. {fix}"
        )
    return cache


def _fetch(root_uri: str, path: str, recorded: Recorded | None) -> Path:
    """The package at ``path`` under ``root_uri``: in place if local, else from the cache.

    Wherever it comes from, its manifest must be the one ``recorded`` (when there is a record);
    the files themselves are verified against that manifest by whoever loads them.
    """
    from modelpack.artifacts import LocalArtifactStore, artifact_store

    if not path:  # a whole store (a registered version): fetch it as a folder of its parent
        root_uri, _, path = root_uri.rstrip("/").rpartition("/")
    store = artifact_store(root_uri)
    if isinstance(store, LocalArtifactStore):
        local = store.local_path(path)
        assert local is not None
        if recorded is not None:
            check_recorded_manifest(local, recorded)
            return local
        return _mlflow_converted(local)
    cache = private_cache()
    if recorded is not None:
        hit = cache / f"{recorded.model_id}-{recorded.sha256[:16]}"
        if hit.is_symlink():
            raise IntegrityError(
                f"{recorded.what}: the cache entry {hit} is a symlink; delete it to download "
                f"the package again.",
                [(str(hit), "symlink")],
            )
        if (hit / MANIFEST_NAME).is_file():
            try:
                check_recorded_manifest(hit, recorded)
            except IntegrityError as exc:
                raise IntegrityError(
                    f"{exc.message} It was taken from the cache: delete {hit} to download it "
                    f"again.",
                    exc.problems,
                ) from None
            return hit
    staging = cache / f".download-{uuid.uuid4().hex[:12]}"
    try:
        store.get_dir(path, staging)
        if recorded is None and _is_mlflow_model(staging):
            return _mlflow_converted(staging)
        if recorded is not None:
            actual = check_recorded_manifest(staging, recorded)
        else:
            actual = hashlib.sha256(read_manifest_bytes(staging)).hexdigest()
        manifest = read_manifest(staging)
        verify_files(staging, manifest.files)
        target = cache / f"{manifest.model_id}-{actual[:16]}"
        if (target / MANIFEST_NAME).is_file():
            if recorded is not None:
                check_recorded_manifest(target, recorded)
            return target
        try:
            os.rename(staging, target)
        except OSError:  # another process filled the same entry first
            if not (target / MANIFEST_NAME).is_file():
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
