"""``Client``: explicit access to runs, artifacts and the model registry (MLflow's names).

A ``Client`` holds a tracking URI and an artifact root; it opens the store on first use.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack import resolution, uris
from modelpack.entities import (
    Experiment,
    HistoryRecord,
    Metric,
    ModelInfo,
    ModelVersion,
    RegisteredModel,
    Run,
    RunStatus,
)
from modelpack.errors import InvalidArgument, NotFound
from modelpack.package import save
from modelpack.run_context import current_user
from modelpack.store import default_artifact_root, default_tracking_uri, open_store

if TYPE_CHECKING:
    from modelpack.store.sql import SqlStore

__all__ = ["Client", "default_artifact_root", "default_tracking_uri"]


def manifest_sha256(package: Path) -> str:
    from modelpack.manifest import read_manifest_bytes

    return hashlib.sha256(read_manifest_bytes(package)).hexdigest()


class Client:
    """Runs, artifacts and registered models in one tracking store.

    Args:
        tracking_uri: ``sqlite:///path``, ``postgresql://...``; default: ``MODELPACK_TRACKING_URI``
            or ``./modelpack-store/modelpack.db``.
        artifact_root: a directory or ``s3://bucket/prefix``; default: ``MODELPACK_ARTIFACT_ROOT``
            or ``artifacts/`` beside the SQLite file.
        create: make the store on first use if there is none. Readers pass False, so a
            mistyped URI raises ``NotFound`` naming it instead of answering from a new, empty
            store.
    """

    def __init__(
        self, tracking_uri: str | None = None, artifact_root: str | None = None, create: bool = True
    ) -> None:
        from modelpack.artifacts import absolute_root

        self.tracking_uri = tracking_uri or default_tracking_uri()
        # Absolute: runs and versions store paths under it, which must resolve from anywhere.
        self.artifact_root = absolute_root(
            artifact_root or default_artifact_root(self.tracking_uri)
        )
        self.create = create

    @cached_property
    def store(self) -> SqlStore:
        return open_store(self.tracking_uri, self.artifact_root, self.create)

    def __repr__(self) -> str:
        tracking, artifacts = uris.redact(self.tracking_uri), uris.redact(self.artifact_root)
        return f"<Client {tracking} artifacts={artifacts}>"

    # ------------------------------------------------------------------ experiments

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        return str(self.store.create_experiment(name, artifact_location, tags))

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.store.get_experiment_by_name(name)

    def search_experiments(self) -> list[Experiment]:
        return self.store.search_experiments()

    # ------------------------------------------------------------------ runs

    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> Run:
        return self.store.create_run(
            experiment_id,
            run_name=run_name,
            user_id=current_user(),
            tags=tags,
            parent_run_id=parent_run_id,
        )

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(run_id)

    def set_terminated(
        self, run_id: str, status: str = RunStatus.FINISHED, end_time: int | None = None
    ) -> None:
        self.store.update_run(run_id, status=status, end_time=end_time or int(time.time() * 1000))

    def delete_run(self, run_id: str) -> None:
        """Mark the run deleted: searches leave it out unless asked; its artifacts stay."""
        self.store.set_run_lifecycle(run_id, "deleted")

    def restore_run(self, run_id: str) -> None:
        self.store.set_run_lifecycle(run_id, "active")

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.store.log_batch(run_id, params={key: value})

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int = 0
    ) -> None:
        self.log_batch(run_id, metrics=[(key, value, timestamp, step)])

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.store.log_batch(run_id, tags={key: value})

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log many metrics, params and tags in one transaction.

        ``metrics`` holds ``Metric`` objects or ``(key, value, timestamp_ms, step)`` tuples
        (timestamp ``None`` for now).
        """
        from modelpack.store.validation import metric_value

        stamp = int(time.time() * 1000)
        points = []
        for m in metrics:
            key, value, ts, step = (
                (m.key, m.value, m.timestamp, m.step) if isinstance(m, Metric) else m
            )
            if isinstance(step, bool) or not isinstance(step, int):
                raise InvalidArgument(f"Metric {key!r}: step must be an integer, got {step!r}.")
            points.append(Metric(key, metric_value(key, value), ts or stamp, step))
        self.store.log_batch(run_id, metrics=points, params=params, tags=tags)

    def log_inputs(self, run_id: str, datasets: Sequence[Any] | None = None) -> None:
        """Record the ``DatasetInput`` s a running run used (MLflow's ``log_inputs``)."""
        self.store.log_inputs(run_id, list(datasets or ()))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self.store.get_metric_history(run_id, key)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str | None = None,
        run_view_type: str = "ACTIVE_ONLY",
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        *,
        experiment_names: Sequence[str] | None = None,
        output_format: str = "list",
    ) -> Any:
        """Runs matching an MLflow-style filter (with OR and parentheses too).

        Returns a list of ``Run`` (its ``token`` attribute is the next page's token, or None),
        or a pandas DataFrame with ``output_format="pandas"``.
        """
        ids = list(experiment_ids or [])
        for name in experiment_names or ():
            experiment = self.store.get_experiment_by_name(name)
            if experiment is None:
                raise NotFound(f"No experiment named {name!r}.")
            ids.append(experiment.experiment_id)
        if experiment_ids is None and experiment_names is None:
            ids = [e.experiment_id for e in self.store.search_experiments()]
        runs, token = self.store.search_runs(
            ids, filter_string, run_view_type, max_results, order_by, page_token
        )
        if output_format == "pandas":
            return _runs_frame(runs)
        if output_format != "list":
            raise InvalidArgument(
                f"output_format must be 'list' or 'pandas', got {output_format!r}."
            )
        return PagedList(runs, token)

    # ------------------------------------------------------------------ artifacts

    def _artifacts(self, run_id: str) -> Any:
        from modelpack.artifacts import artifact_store

        return artifact_store(self.get_run(run_id).info.artifact_uri)

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Copy the file ``local_path`` into the run's artifacts, in the folder
        ``artifact_path`` (relative to the run's artifacts; default: at the top)."""
        from modelpack.artifacts import file_errors

        src = Path(local_path)
        with file_errors("log_artifact"):
            is_file = src.is_file()
        if not is_file:
            raise NotFound(f"log_artifact: {str(src)!r} is not a file.")
        folder = _artifact_folder(artifact_path)
        dest = f"{folder}/{src.name}" if folder else src.name
        self._writable(run_id)
        self._artifacts(run_id).put_file(src, dest)

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Copy the tree ``local_dir`` into the run's artifacts, under ``artifact_path``."""
        from modelpack.artifacts import file_errors

        src = Path(local_dir)
        with file_errors("log_artifacts"):
            is_dir = src.is_dir()
        if not is_dir:
            raise NotFound(f"log_artifacts: {str(src)!r} is not a directory.")
        folder = _artifact_folder(artifact_path)
        self._writable(run_id)
        self._artifacts(run_id).put_dir(src, folder)

    def _writable(self, run_id: str) -> None:
        info = self.get_run(run_id).info
        if info.status != RunStatus.RUNNING or info.lifecycle_stage != "active":
            raise InvalidArgument(
                f"Run {run_id!r} has ended ({info.status}); start a new run to log more."
            )

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]:
        return self._artifacts(run_id).list(path or "")

    def download_artifacts(
        self, run_id: str, path: str = "", dst_path: str | os.PathLike[str] | None = None
    ) -> Path:
        """Download a file or folder of the run's artifacts (all of them for ``path=""``);
        returns the local path."""
        from modelpack.artifacts import file_errors, makedirs

        store = self._artifacts(run_id)
        # What to fetch is checked before anything is made on the local side.
        files = store.list_files(path) if path else []
        single = bool(path) and not files and store.exists(path)
        if path and not files and not single:
            raise NotFound(f"Run {run_id!r} has no artifact {path!r}.")
        if not path and not store.list(""):
            raise NotFound(f"Run {run_id!r} has no artifacts.")
        dest = Path(dst_path) if dst_path else Path(tempfile.mkdtemp(prefix="modelpack-"))
        with file_errors(f"Cannot download the artifacts of run {run_id!r}"):
            makedirs(dest)
        if not path:
            store.get_dir("", dest)
            return dest
        target = dest / path.rstrip("/").rsplit("/", 1)[-1]
        (store.get_file if single else store.get_dir)(path, target)
        return target

    # ------------------------------------------------------------------ models

    def log_model(
        self,
        run_id: str,
        model: Any,
        name: str,
        *,
        registered_model_name: str | None = None,
        **save_kwargs: Any,
    ) -> ModelInfo:
        """Save ``model`` as a package into the run's artifacts at ``name``."""
        from modelpack.paths import check_relative

        check_relative(name, "Model artifact path")
        self._writable(run_id)
        self._check_unused(run_id, name)
        with tempfile.TemporaryDirectory(prefix="modelpack-log-") as tmp:
            local = Path(tmp) / "model"
            manifest = save(model, local, **save_kwargs)
            self._artifacts(run_id).put_dir(local, name)
            self.store.record_logged_model(
                run_id, name, manifest.model_id, manifest_sha256(local), manifest.flavor
            )
        uri = uris.run_uri(run_id, name)
        version = self.register_model(uri, registered_model_name) if registered_model_name else None
        return ModelInfo(
            model_uri=uri,
            run_id=run_id,
            artifact_path=name,
            manifest=manifest,
            registered_model_version=version,
        )

    def _check_unused(self, run_id: str, name: str) -> None:
        """A run's model is never replaced under its runs:/ URI, nor logged inside another."""
        from modelpack.errors import AlreadyExists
        from modelpack.manifest import MANIFEST_NAME

        store, parts = self._artifacts(run_id), name.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        inside = [p for p in parents if store.exists(f"{p}/{MANIFEST_NAME}")]
        if inside:
            raise AlreadyExists(
                f"Run {run_id!r} has a model at {inside[0]!r}; {name!r} would be logged inside "
                f"it. Log the model beside it (e.g. name={name.replace('/', '_')!r})."
            )
        if store.exists(name):
            raise AlreadyExists(
                f"Run {run_id!r} already has a model (or artifacts) at {name!r}. MLflow would "
                f"have silently overwritten them; modelpack never replaces what "
                f"runs:/{run_id}/{name} names. Log this model under a new name (e.g. "
                f"name={name + '_2'!r}), or in a new run."
            )

    def resolve(self, uri: str) -> Path:
        """The local directory of the package ``uri`` names (remote ones via the cache)."""
        return resolution.resolve(uri, self)

    # ------------------------------------------------------------------ registry

    def register_model(
        self,
        model_uri: str,
        name: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Copy the package at ``model_uri`` into registry storage and make it a new version."""
        from modelpack.artifacts import artifact_store
        from modelpack.integrity import verify_files
        from modelpack.manifest import (
            MANIFEST_NAME,
            check_recorded,
            parse_manifest,
            read_manifest_bytes,
        )
        from modelpack.store.validation import name as check_name

        check_name(name, "Registered model name")
        source, recorded = resolution.resolve_recorded(model_uri, self)
        # The hash recorded is that of the very bytes checked and parsed here: a manifest
        # swapped in after this check hashes differently, and no load of the version accepts it.
        data = read_manifest_bytes(source)
        if recorded is not None:
            sha = check_recorded(source, data, recorded.sha256, recorded.what, recorded.by)
        else:
            sha = hashlib.sha256(data).hexdigest()
        manifest = parse_manifest(data, source / MANIFEST_NAME)
        verify_files(source, manifest.files)
        relative = f"registry/{uuid.uuid4().hex}"
        root = artifact_store(self.artifact_root)
        parsed = uris.parse(model_uri)
        run_id = (
            parsed.run_id
            if isinstance(parsed, uris.RunURI)
            else (manifest.source or {}).get("run_id")
        )
        from modelpack import gc

        gc.collect_registrations(self)  # copies killed registrations left behind
        marker = gc.mark_registration(self, relative)
        try:
            root.put_dir(source, relative)
            return self.store.create_model_version(
                name,
                source=model_uri,
                run_id=run_id,
                model_id=manifest.model_id,
                manifest_sha256=sha,
                storage_location=f"{self.artifact_root}/{relative}",
                user_id=current_user(),
                tags=tags,
                description=description,
            )
        except BaseException:
            root.delete(relative)
            raise
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)

    def create_registered_model(
        self, name: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        return self.store.create_registered_model(name, tags, description)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.store.get_registered_model(name)

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Any:
        models, token = self.store.search_registered_models(
            filter_string, max_results, order_by, page_token
        )
        return PagedList(models, token)

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        return self.store.update_registered_model(name, description)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        return self.store.rename_registered_model(name, new_name, current_user())

    def delete_registered_model(self, name: str, force: bool = False) -> None:
        for location in self.store.delete_registered_model(name, current_user(), force=force):
            self._remove_storage(location)

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        self.store.set_registered_model_tag(name, key, value)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self.store.delete_registered_model_tag(name, key)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self.store.get_model_version(name, version)

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Any:
        versions, token = self.store.search_model_versions(
            filter_string, max_results, order_by, page_token
        )
        return PagedList(versions, token)

    def get_latest_versions(
        self, name: str, stages: Sequence[str] | None = None
    ) -> list[ModelVersion]:
        return self.store.get_latest_versions(name, stages)

    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        return self.store.update_model_version(name, version, description)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: Any) -> None:
        self.store.set_model_version_tag(name, version, key, value)

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        self.store.delete_model_version_tag(name, version, key)

    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: str,
        archive_existing_versions: bool = False,
        comment: str | None = None,
    ) -> ModelVersion:
        return self.store.transition_model_version_stage(
            name,
            version,
            stage,
            archive_existing_versions=archive_existing_versions,
            comment=comment,
            user_id=current_user(),
        )

    def set_registered_model_alias(
        self, name: str, alias: str, version: int | str, comment: str | None = None
    ) -> None:
        self.store.set_registered_model_alias(name, alias, version, current_user(), comment)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.store.delete_registered_model_alias(name, alias, current_user())

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.store.get_model_version_by_alias(name, alias)

    def delete_model_version(self, name: str, version: int | str, force: bool = False) -> None:
        """Delete a version; refused for one in Production or holding an alias, unless forced."""
        self._remove_storage(self.store.delete_model_version(name, version, current_user(), force))

    def get_model_history(self, name: str) -> list[HistoryRecord]:
        return self.store.get_model_history(name)

    def _remove_storage(self, location: str) -> None:
        from modelpack.artifacts import artifact_store, registry_folder

        # The store refused a foreign location before it deleted the row; checked again here,
        # where the files are removed (a link may have been swapped in meanwhile).
        folder = registry_folder(self.artifact_root, location)
        if folder is None:
            raise InvalidArgument(
                f"Not removing {location!r}: it is not a folder of the registry's storage "
                f"({self.artifact_root.rstrip('/')}/registry/<id>)."
            )
        artifact_store(self.artifact_root).delete(folder)


def _artifact_folder(artifact_path: str | None) -> str:
    """``artifact_path`` as the folder to log into ("" for the top); a trailing "/" is fine, a
    leading one is refused: it would be an absolute path, not a folder of the run's."""
    if not artifact_path:
        return ""
    if artifact_path.startswith("/"):
        raise InvalidArgument(
            f"Artifact path {artifact_path!r} is absolute; artifact paths are relative to the "
            f"run's artifacts (e.g. {artifact_path.strip('/')!r})."
        )
    return artifact_path.rstrip("/")


class PagedList(list):
    """A page of results; ``token`` fetches the next page (``None`` on the last)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


def _runs_frame(runs: Sequence[Run]) -> Any:
    import pandas as pd

    rows = []
    for run in runs:
        info = run.info
        row: dict[str, Any] = {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "run_name": info.run_name,
            "status": info.status,
            "user_id": info.user_id,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "artifact_uri": info.artifact_uri,
        }
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)
