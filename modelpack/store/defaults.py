"""Where the store is when nothing says otherwise (no SQLAlchemy here: the artifact code reads
it without opening the store package's SQL modules)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_DIR", "PROXY_PATH", "default_artifact_root", "default_tracking_uri"]

DEFAULT_DIR = "modelpack-store"


def default_tracking_uri() -> str:
    """``MODELPACK_TRACKING_URI``, else the embedded SQLite store under ./modelpack-store."""
    uri = os.environ.get("MODELPACK_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(DEFAULT_DIR, 'modelpack.db').absolute()}"


PROXY_PATH = "/api/2.0/mlflow-artifacts/artifacts"


def default_artifact_root(tracking_uri: str) -> str:
    """``MODELPACK_ARTIFACT_ROOT``, else ``artifacts/`` beside an SQLite file (or in
    ./modelpack-store for other databases); for a ``modelpack server`` (``http(s)://``), its
    artifact proxy, ``<url>/api/2.0/mlflow-artifacts/artifacts`` (the server decides where
    runs' artifacts and registered packages go)."""
    if tracking_uri.lower().startswith(("http://", "https://")):
        return tracking_uri.rstrip("/") + PROXY_PATH
    root = os.environ.get("MODELPACK_ARTIFACT_ROOT")
    if root:
        return root if "://" in root else str(Path(root).absolute())
    if tracking_uri.startswith("sqlite:///") and ":memory:" not in tracking_uri:
        return str(Path(tracking_uri[len("sqlite:///") :]).absolute().parent / "artifacts")
    return str(Path(DEFAULT_DIR, "artifacts").absolute())
