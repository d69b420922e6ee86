"""Turning ``runs:/``, ``models:/`` and ``s3://`` URIs into local package directories.

Packages in a local artifact root are used where they lie. Remote ones are downloaded into the
content-addressed cache (``~/.cache/modelpack/packages/<model_id>-<manifest sha>``, private:
0700), verified, and renamed into place, so a warm second resolution downloads nothing.

Neither place is trusted: a registered version's or logged model's manifest must hash to what
the store recorded for it, checked on every resolution, cache hit or not; the manifest's own
hashes then cover every other file, which every load verifies.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack.errors import FormatError, IntegrityError, InvalidArgument, ModelpackError
from modelpack.manifest import check_model_id, check_recorded, check_sha256, read_manifest_bytes

if TYPE_CHECKING:
    from modelpack.client import Client

_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<ref>[^/]+)|@(?P<alias>[^/]+))/?$")
_RUNS = re.compile(r"^runs:/(?P<run_id>[0-9A-Za-z_-]+)/(?P<path>.+?)/?$")


def model_version_for(client: Client, uri: str) -> Any:
    """The ``ModelVersion`` a ``models:/`` URI names."""
    from modelpack.entities import STAGES

    m = _MODELS.match(uri)
    if not m:
        raise InvalidArgument(
            f"Malformed model URI {uri!r}. Use models:/<name>/<version>, models:/<name>/<stage>,"
            f" models:/<name>@<alias> or models:/<name>/latest."
        )
    name, ref, alias = m["name"], m["ref"], m["alias"]
    store = client.store
    if alias is not None:
        return store.get_model_version_by_alias(name, alias)
    assert ref is not None
    if ref.isdigit():
        return store.get_model_version(name, int(ref))
    if ref.lower() == "latest":
        return store.get_newest_version(name)
    if ref.lower() in (s.lower() for s in STAGES):
        return store.get_version_in_stage(name, ref)
    raise InvalidArgument(
        f"Model URI {uri!r}: {ref!r} is not a version number, a stage "
        f"({', '.join(STAGES)}) or 'latest'; for an alias write models:/{name}@{ref}."
    )


@dataclass(frozen=True)
class Recorded:
    """The manifest sha256 a store recorded for a package: what every load of it must match."""

    sha256: str
    model_id: str
    what: str  # the package, for messages: its URI
    by: str  # who recorded it, for messages


def resolve(client: Client, uri: str) -> Path:
    """The local directory of the package ``uri`` names, its manifest checked against the
    hash its store recorded (registered versions and logged models)."""
    return resolve_recorded(client, uri)[0]


def resolve_recorded(client: Client, uri: str) -> tuple[Path, Recorded | None]:
    """``resolve``, and the record the package was checked against (``None`` if it has none).

    Raises:
        IntegrityError: the manifest differs from the one the registry or the run recorded.
    """
    from modelpack.uris import resolve_local

    if uri.startswith("models:/"):
        version = model_version_for(client, uri)
        pinned = _recorded(
            version.manifest_sha256, version.model_id, uri, "the registry", "registered version"
        )
        return _fetch(version.storage_location, "", pinned), pinned
    if uri.startswith("runs:/"):
        m = _RUNS.match(uri)
        if not m:
            raise InvalidArgument(f"Malformed run URI {uri!r}. Use runs:/<run_id>/<path>.")
        run = client.get_run(m["run_id"])
        logged = client.store.get_logged_model(run.info.run_id, m["path"])
        recorded = (
            _recorded(
                logged.manifest_sha256,
                logged.model_id,
                uri,
                "the tracking store (log_model)",
                "logged model",
            )
            if logged
            else None
        )
        return _fetch(run.info.artifact_uri, m["path"], recorded), recorded
    if uri.startswith("s3://"):
        return _fetch(uri, "", None), None
    return resolve_local(uri), None


def _recorded(sha: Any, model_id: Any, uri: str, by: str, kind: str) -> Recorded:
    """A store's record, checked before it names a cache path (DESIGN.md §9 rule 8)."""
    try:
        check_sha256(sha, f"the manifest sha256 recorded for {kind} {uri}")
        check_model_id(model_id, f"the model_id recorded for {kind} {uri}")
    except FormatError as exc:
        raise IntegrityError(
            f"{exc.message} The store's record is damaged; register or log the model again.",
            [("modelpack.yaml", "unrecorded")],
        ) from None
    return Recorded(sha, model_id, uri, by)


def check_recorded_manifest(root: Path, recorded: Recorded) -> str:
    """Read the manifest of the package at ``root`` and check it against ``recorded``."""
    return check_recorded(
        root, read_manifest_bytes(root), recorded.sha256, recorded.what, recorded.by
    )


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
    cache = private_cache()
    if recorded is not None:
        hit = cache / f"{recorded.model_id}-{recorded.sha256[:16]}"
        if hit.is_symlink():
            raise IntegrityError(
                f"{recorded.what}: the cache entry {hit} is a symlink; delete it to download "
                f"the package again.",
                [(str(hit), "symlink")],
            )
        if (hit / "modelpack.yaml").is_file():
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
        import modelpack

        if recorded is not None:
            actual = check_recorded_manifest(staging, recorded)
        else:
            actual = hashlib.sha256(read_manifest_bytes(staging)).hexdigest()
        manifest = modelpack.verify(staging)
        target = cache / f"{manifest.model_id}-{actual[:16]}"
        if (target / "modelpack.yaml").is_file():
            if recorded is not None:
                check_recorded_manifest(target, recorded)
            return target
        try:
            os.rename(staging, target)
        except OSError:  # another process filled the same entry first
            if not (target / "modelpack.yaml").is_file():
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
