"""Turning ``runs:/``, ``models:/`` and ``s3://`` URIs into local package directories.

Packages in a local artifact root are used where they lie. Remote ones are downloaded into the
content-addressed cache (``~/.cache/modelpack/packages/<model_id>-<manifest sha>``), verified,
and renamed into place, so a warm second resolution downloads nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack.errors import IntegrityError, InvalidArgument

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


def resolve(client: Client, uri: str) -> Path:
    from modelpack.uris import resolve_local

    if uri.startswith("models:/"):
        version = model_version_for(client, uri)
        return _fetch(version.storage_location, "", version.model_id, version.manifest_sha256)
    if uri.startswith("runs:/"):
        m = _RUNS.match(uri)
        if not m:
            raise InvalidArgument(f"Malformed run URI {uri!r}. Use runs:/<run_id>/<path>.")
        run = client.get_run(m["run_id"])
        logged = client.store.get_logged_model(run.info.run_id, m["path"])
        return _fetch(
            run.info.artifact_uri,
            m["path"],
            logged.model_id if logged else None,
            logged.manifest_sha256 if logged else None,
        )
    if uri.startswith("s3://"):
        return _fetch(uri, "", None, None)
    return resolve_local(uri)


def cache_root() -> Path:
    env = os.environ.get("MODELPACK_CACHE_DIR")
    if env:
        return Path(env) / "packages"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "modelpack" / "packages"


def _fetch(root_uri: str, path: str, model_id: str | None, sha: str | None) -> Path:
    """The package at ``path`` under ``root_uri``: in place if local, else from the cache."""
    from modelpack.artifacts import LocalArtifactStore, artifact_store

    if not path:  # a whole store (a registered version): fetch it as a folder of its parent
        root_uri, _, path = root_uri.rstrip("/").rpartition("/")
    store = artifact_store(root_uri)
    if isinstance(store, LocalArtifactStore):
        local = store.local_path(path)
        assert local is not None
        return local
    cache = cache_root()
    if model_id and sha:
        hit = cache / f"{model_id}-{sha[:16]}"
        if (hit / "modelpack.yaml").is_file():
            return hit
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".download-{uuid.uuid4().hex[:12]}"
    try:
        store.get_dir(path, staging)
        import modelpack

        manifest = modelpack.verify(staging)
        actual = hashlib.sha256((staging / "modelpack.yaml").read_bytes()).hexdigest()
        if sha and actual != sha:
            raise IntegrityError(
                f"modelpack.yaml of {root_uri}/{path}: sha256 is {actual[:12]}..., the store "
                f"says {sha[:12]}.... The package was modified after it was registered.",
                [("modelpack.yaml", "modified")],
            )
        target = cache / f"{manifest.model_id}-{actual[:16]}"
        if (target / "modelpack.yaml").is_file():
            return target
        try:
            os.rename(staging, target)
        except OSError:  # another process filled the same entry first
            if not (target / "modelpack.yaml").is_file():
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
