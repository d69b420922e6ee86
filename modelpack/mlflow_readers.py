"""Reading an MLflow tracking store and registry: one interface, three stores.

The readers: a ``./mlruns`` folder (``FileReader``, here: its meta.yaml, metrics, params and
tags files), an MLflow database (``mlflow_sql.SqlReader``: MLflow's tables read with SQLAlchemy
reflection, read-only) and an MLflow tracking server (``mlflow_rest.RestReader``: its REST API,
paged); ``mlflow_store.open_reader(uri)`` picks one. MLflow itself is never imported. Each
reader returns what MLflow's own client would for the same store: the metric history point by
point, duplicates and NaN included, in MLflow's order.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from modelpack.errors import InvalidArgument, ModelpackError, NotFound
from modelpack.store.imports import MetricPoint

__all__ = [
    "Reader",
    "SourceExperiment",
    "SourceModel",
    "SourceRun",
    "SourceVersion",
    "copy_tree",
    "local_uri",
    "resolve_source",
    "version_from_dict",
]

# MLflow's RunStatus enum, as its file store writes it into meta.yaml.
RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
DELETED_VERSION = "Deleted_Internal"  # how MLflow's stores keep a deleted version's row
PAGE = 1000
HISTORY_PAGE = 25000  # what MLflow's client asks for


@dataclass(frozen=True)
class SourceExperiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRun:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    params: Mapping[str, str]
    tags: Mapping[str, str]
    metric_keys: tuple[str, ...]
    local_dir: str | None = None  # a file store's run folder (a deleted experiment's is moved)


@dataclass(frozen=True)
class SourceVersion:
    name: str
    version: int
    stage: str
    description: str
    source: str
    run_id: str | None
    user_id: str
    status: str
    creation_time: int
    last_updated_time: int
    tags: Mapping[str, str]
    storage_location: str | None = None


@dataclass(frozen=True)
class SourceModel:
    name: str
    description: str
    creation_time: int
    last_updated_time: int
    tags: Mapping[str, str]
    aliases: Mapping[str, int]
    versions: tuple[SourceVersion, ...]
    deleted_versions: tuple[int, ...] = ()  # numbers the source used for deleted versions


class Reader(Protocol):
    """What the copier asks of an MLflow store."""

    description: str

    def experiments(self) -> list[SourceExperiment]: ...
    def runs(self, experiment: SourceExperiment) -> list[SourceRun]: ...
    def metric_history(self, run: SourceRun, key: str) -> list[MetricPoint]: ...
    def download_run_artifacts(self, run: SourceRun, dest: Path) -> None: ...
    def registered_models(self) -> list[SourceModel]: ...
    def download_version(self, version: SourceVersion, dest: Path) -> None: ...


# ---------------------------------------------------------------------------- artifacts


def copy_tree(uri: str, dest: Path, artifacts_destination: str | None, what: str) -> None:
    """Copy the artifact folder ``uri`` (a path, ``file:``, ``s3:`` or, with
    ``artifacts_destination``, ``mlflow-artifacts:`` URI) into ``dest``; a missing folder
    copies nothing."""
    from modelpack.artifacts import artifact_store

    store = artifact_store(local_uri(uri, artifacts_destination, what))
    if store.list(""):
        store.get_dir("", dest)


def local_uri(uri: str, artifacts_destination: str | None, what: str) -> str:
    """``uri`` as modelpack's artifact stores read it."""
    if uri.startswith("mlflow-artifacts:"):
        if not artifacts_destination:
            raise InvalidArgument(
                f"{what} is at {uri!r}, on an MLflow server's artifact proxy. Import through "
                f"the server (--from http://host:port), or pass --artifacts-destination with "
                f"the server's --artifacts-destination folder."
            )
        rest = urllib.parse.urlparse(uri).path.lstrip("/")
        return f"{artifacts_destination.rstrip('/')}/{rest}"
    return uri


# ---------------------------------------------------------------------------- file store


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelpackError(f"Cannot read MLflow's {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelpackError(f"MLflow's {path} is not a mapping; the file store is damaged.")
    return data


def _key_files(folder: Path) -> dict[str, str]:
    """``{key: contents}`` of a params or tags folder (a key with "/" is a nested file)."""
    out: dict[str, str] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class FileReader:
    """An ``mlruns`` folder, as MLflow's FileStore and its registry's file store write it."""

    RESERVED = frozenset({".trash", "models"})
    RUN_SUBFOLDERS = frozenset({"tags", "datasets", "traces", "models"})

    def __init__(self, root: Path, artifacts_destination: str | None = None) -> None:
        self.root = root.absolute()
        self.artifacts_destination = artifacts_destination
        self.description = f"MLflow file store {self.root}"
        if not self.root.is_dir():
            raise NotFound(f"No MLflow file store at {self.root}: the folder does not exist.")
        if not any((d / "meta.yaml").is_file() for d in self.root.iterdir() if d.is_dir()):
            raise NotFound(
                f"{self.root} is not an MLflow file store: no experiment folder with a "
                f"meta.yaml in it. Pass the mlruns folder itself."
            )
        self._dirs: dict[str, Path] = {}

    def experiments(self) -> list[SourceExperiment]:
        found = []
        folders = [d for d in self.root.iterdir() if d.name not in self.RESERVED]
        trash = self.root / ".trash"
        if trash.is_dir():
            folders += list(trash.iterdir())
        for folder in sorted(folders):
            meta = folder / "meta.yaml"
            if not folder.is_dir() or not meta.is_file():
                continue
            m = _read_yaml(meta)
            experiment = SourceExperiment(
                experiment_id=str(m["experiment_id"]),
                name=str(m["name"]),
                artifact_location=str(m.get("artifact_location") or ""),
                lifecycle_stage=str(m.get("lifecycle_stage") or "active"),
                creation_time=int(m.get("creation_time") or 0),
                last_update_time=int(m.get("last_update_time") or m.get("creation_time") or 0),
                tags=_key_files(folder / "tags"),
            )
            self._dirs[experiment.experiment_id] = folder
            found.append(experiment)
        return found

    def runs(self, experiment: SourceExperiment) -> list[SourceRun]:
        folder = self._dirs[experiment.experiment_id]
        out = []
        for run_dir in sorted(folder.iterdir()):
            if run_dir.name in self.RUN_SUBFOLDERS or not (run_dir / "meta.yaml").is_file():
                continue
            m = _read_yaml(run_dir / "meta.yaml")
            tags = _key_files(run_dir / "tags")
            metrics = run_dir / "metrics"
            keys = (
                sorted(p.relative_to(metrics).as_posix() for p in metrics.rglob("*") if p.is_file())
                if metrics.is_dir()
                else []
            )
            status = m.get("status", 1)
            out.append(
                SourceRun(
                    run_id=str(m.get("run_id") or m.get("run_uuid")),
                    experiment_id=experiment.experiment_id,
                    run_name=str(m.get("run_name") or tags.get("mlflow.runName") or ""),
                    user_id=str(m.get("user_id") or ""),
                    status=RUN_STATUS.get(status, str(status)),
                    start_time=int(m.get("start_time") or 0),
                    end_time=_int(m.get("end_time")),
                    lifecycle_stage=str(m.get("lifecycle_stage") or "active"),
                    artifact_uri=str(m.get("artifact_uri") or ""),
                    params=_key_files(run_dir / "params"),
                    tags=tags,
                    metric_keys=tuple(keys),
                    local_dir=str(run_dir),
                )
            )
        return out

    def metric_history(self, run: SourceRun, key: str) -> list[MetricPoint]:
        path = Path(str(run.local_dir), "metrics", key)
        points = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.strip().split(" ")
            if len(parts) not in (2, 3, 5):
                raise ModelpackError(
                    f"{path} line {n}: expected 2, 3 or 5 fields, got {len(parts)}; "
                    f"MLflow cannot read this metric either."
                )
            # MLflow's reader takes the step only from 3-field lines (5-field lines, with a
            # dataset, read as step 0); the import returns what MLflow returns.
            step = int(parts[2]) if len(parts) == 3 else 0
            points.append(MetricPoint(key, float(parts[1]), int(parts[0]), step))
        return points

    def download_run_artifacts(self, run: SourceRun, dest: Path) -> None:
        uri = run.artifact_uri
        moved = Path(str(run.local_dir), "artifacts")
        # A deleted experiment's folder moves to .trash; its runs' URIs still name the old place.
        if moved.is_dir() and not _exists_locally(local_uri(uri, self.artifacts_destination, "")):
            uri = str(moved)
        copy_tree(uri, dest, self.artifacts_destination, f"Run {run.run_id}'s artifacts")

    def registered_models(self) -> list[SourceModel]:
        top = self.root / "models"
        if not top.is_dir():
            return []
        out = []
        for folder in sorted(top.iterdir()):
            if not (folder / "meta.yaml").is_file():
                continue
            m = _read_yaml(folder / "meta.yaml")
            versions, deleted = [], []
            for vdir in folder.glob("version-*"):
                if not (vdir / "meta.yaml").is_file():
                    continue
                v = _read_yaml(vdir / "meta.yaml")
                if v.get("current_stage") == DELETED_VERSION:
                    deleted.append(int(v["version"]))
                    continue
                versions.append(version_from_dict(v, _key_files(vdir / "tags")))
            out.append(
                SourceModel(
                    name=str(m["name"]),
                    description=str(m.get("description") or ""),
                    creation_time=int(m.get("creation_timestamp") or 0),
                    last_updated_time=int(m.get("last_updated_timestamp") or 0),
                    tags=_key_files(folder / "tags"),
                    aliases={str(a): int(n) for a, n in (m.get("aliases") or {}).items()},
                    versions=tuple(sorted(versions, key=lambda v: v.version)),
                    deleted_versions=tuple(sorted(deleted)),
                )
            )
        return out

    def _logged_model_location(self, model_id: str) -> str | None:
        for meta in self.root.glob(f"*/models/{model_id}/meta.yaml"):
            return str(_read_yaml(meta).get("artifact_location") or "") or None
        return None

    def download_version(self, version: SourceVersion, dest: Path) -> None:
        uri = version.storage_location or resolve_source(version, self._logged_model_location)
        copy_tree(uri, dest, self.artifacts_destination, _what(version))


def _exists_locally(uri: str) -> bool:
    if uri.startswith("file:"):
        uri = urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    return "://" not in uri and os.path.exists(uri)


def _what(version: SourceVersion) -> str:
    return f"Version {version.version} of {version.name!r}"


def resolve_source(version: SourceVersion, logged_model: Any) -> str:
    """Where a version's files are, from its source: ``models:/m-...`` (a logged model),
    ``runs:/...`` is refused (MLflow resolves it at registration), else the URI itself."""
    from modelpack import uris

    source = version.source
    try:
        named = uris.registered_model(source)
    except InvalidArgument:  # models:/Name/3 and the like: not a logged model
        named = None
    if named is not None and re.fullmatch(r"m-[0-9a-f]+", named):
        location = logged_model(named)
        if not location:
            raise NotFound(f"{_what(version)}: its logged model {named} is not in the store.")
        return str(location)
    if source.startswith(("runs:", "models:")):
        raise InvalidArgument(
            f"{_what(version)} has source {source!r} and no storage location; re-register it "
            f"in MLflow from its artifact URI."
        )
    return source


def version_from_dict(v: Mapping[str, Any], tags: Mapping[str, str]) -> SourceVersion:
    """A version from a file store's meta.yaml or a REST reply (same field names)."""
    return SourceVersion(
        name=str(v["name"]),
        version=int(v["version"]),
        stage=str(v.get("current_stage") or "None"),
        description=str(v.get("description") or ""),
        source=str(v.get("source") or ""),
        run_id=v.get("run_id") or None,
        user_id=str(v.get("user_id") or ""),
        status=str(v.get("status") or "READY"),
        creation_time=int(v.get("creation_timestamp") or 0),
        last_updated_time=int(v.get("last_updated_timestamp") or 0),
        tags=dict(tags),
        storage_location=v.get("storage_location") or None,
    )
