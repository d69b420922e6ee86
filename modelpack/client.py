"""``Client``: explicit access to runs, artifacts and the model registry (MLflow's names).

A ``Client`` holds a tracking URI and an artifact root; it opens the store on first use.
Its logging calls (``log_metric``, ``log_param``, ``set_tag``, ``log_batch``...) queue in the
process and return; ``modelpack.log_queue`` writes them in the background, and the reads here
(``get_run``, ``get_metric_history``, ``search_runs``, artifacts, ``log_model``,
``register_model``) first write what this process logged before them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack import log_queue, resolution, uris
from modelpack.entities import (
    Experiment,
    Metric,
    ModelInfo,
    ModelVersion,
    PagedList,
    Run,
    RunStatus,
    ViewType,
    ended_message,
)
from modelpack.errors import InvalidArgument, NotFound
from modelpack.package import save
from modelpack.registry_calls import RegistryCalls
from modelpack.run_context import current_user
from modelpack.store import default_artifact_root, default_tracking_uri, open_store
from modelpack.store.validation import metric_value
from modelpack.store.validation import name as check_name
from modelpack.store.validation import text as check_text

if TYPE_CHECKING:
    from modelpack.store.rest import RestStore
    from modelpack.store.sql import SqlStore

__all__ = ["Client", "MlflowClient", "default_artifact_root", "default_tracking_uri"]


def manifest_sha256(package: Path) -> str:
    from modelpack.manifest import read_manifest_bytes

    return hashlib.sha256(read_manifest_bytes(package)).hexdigest()


class Client(RegistryCalls):
    """Runs, artifacts and registered models in one tracking store.

    Args:
        tracking_uri: ``sqlite:///path``, ``postgresql://...``; default: ``MODELPACK_TRACKING_URI``
            or ``./modelpack-store/modelpack.db``.
        artifact_root: a directory or ``s3://bucket/prefix``; default: ``MODELPACK_ARTIFACT_ROOT``
            or ``artifacts/`` beside the SQLite file.
        create: make the store on first use if there is none. Readers pass False, so a
            mistyped URI raises ``NotFound`` naming it instead of answering from a new, empty
            store.
        registry_uri: MLflow's argument; modelpack's registry lives in the tracking store, so
            only None or the tracking URI itself is accepted.
        synchronous: the default of this client's logging calls: True writes each before it
            returns (raising the store's error there); None (the default) follows
            ``MODELPACK_SYNC_LOGGING``, which unset means queue and write in the background.

    ``modelpack.MlflowClient`` is this class with MLflow's positional order
    ``(tracking_uri, registry_uri)``.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        artifact_root: str | None = None,
        create: bool = True,
        *,
        registry_uri: str | None = None,
        synchronous: bool | None = None,
    ) -> None:
        from modelpack.artifacts import absolute_root

        check_synchronous(synchronous)
        self.synchronous = synchronous

        self.tracking_uri = tracking_uri or default_tracking_uri()
        if registry_uri is not None and registry_uri != self.tracking_uri:
            raise InvalidArgument(
                f"registry_uri {uris.redact(registry_uri)!r} differs from the tracking URI "
                f"{uris.redact(self.tracking_uri)!r}: modelpack keeps the model registry in the "
                f"tracking store (MLflow can keep it in a store of its own). Pass the store's URI "
                f"as tracking_uri, or leave registry_uri out."
            )
        # Absolute: runs and versions store paths under it, which must resolve from anywhere.
        self.artifact_root = absolute_root(
            artifact_root or default_artifact_root(self.tracking_uri)
        )
        self.create = create

    @cached_property
    def store(self) -> SqlStore | RestStore:
        return open_store(self.tracking_uri, self.artifact_root, self.create)

    # ------------------------------------------------------------------ the logging queue

    def _queue(self) -> log_queue.LogQueue:
        """This store's queue (one per tracking URI and process, shared by its clients)."""
        return log_queue.queue_for(self.tracking_uri, lambda: self.store)

    def flush(self, run_id: str | None = None) -> None:
        """Write what this process logged to this store (for ``run_id``, or all runs) and wait
        for it.

        Raises:
            NotStored: items logged earlier failed to be stored (they were dropped).
        """
        queue = log_queue.existing_queue(self.tracking_uri)
        if queue is not None:
            queue.flush(run_id)

    def _written(self, run_id: str | None = None) -> None:
        """Read-your-writes: what this process queued (for ``run_id``, or all) is written
        first; failures stay for the next logging call, ``end_run`` or ``flush``."""
        queue = log_queue.existing_queue(self.tracking_uri)
        if queue is not None:
            queue.flush(run_id, raise_errors=False)

    def _log(
        self,
        run_id: str,
        synchronous: bool | None,
        metrics: list[Metric],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        queue = self._queue()
        sync = self.synchronous if synchronous is None else synchronous
        if log_queue.is_synchronous(sync) or not log_queue.fits_one_batch(metrics, params, tags):
            queue.write(run_id, metrics, params, tags)
        else:
            queue.put(run_id, metrics, params, tags)

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

    def search_experiments(
        self,
        view_type: str | int = ViewType.ACTIVE_ONLY,
        max_results: int | None = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Any:
        """A page of experiments (a list; ``token`` is the next page's), newest first.

        ``filter_string`` compares ``name``, ``creation_time``, ``last_update_time`` and
        ``tags.<key>``, e.g. ``"name LIKE 'churn%' AND tags.team = 'risk'"``.
        """
        found, token = self.store.search_experiments_page(
            view_type, 1000 if max_results is None else max_results, filter_string, order_by,
            page_token,
        )  # fmt: skip
        return PagedList(found, token)

    def delete_experiment(self, experiment_id: str) -> None:
        """Mark the experiment and its runs deleted (``restore_experiment`` brings them back)."""
        self._written()
        self.store.set_experiment_lifecycle(experiment_id, "deleted")
        self._forget(None)

    def restore_experiment(self, experiment_id: str) -> None:
        self.store.set_experiment_lifecycle(experiment_id, "active")
        self._forget(None)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.store.rename_experiment(experiment_id, new_name)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self.store.set_experiment_tag(experiment_id, key, value)

    # ------------------------------------------------------------------ runs

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
        *,
        parent_run_id: str | None = None,
    ) -> Run:
        """A new RUNNING run (MLflow's argument order; ``start_time`` in epoch ms)."""
        if start_time is not None and (
            isinstance(start_time, bool) or not isinstance(start_time, int)
        ):
            raise InvalidArgument(
                f"start_time is milliseconds since the epoch (an int), got {start_time!r}."
            )
        run = self.store.create_run(
            experiment_id,
            run_name=run_name,
            user_id=current_user(),
            tags=tags,
            parent_run_id=parent_run_id,
            start_time=start_time,
        )
        self._queue().running(run.info.run_id)  # its first log needs no look at the store
        return run

    def resume_run(self, run_id: str, run_name: str | None = None) -> Run:
        """Set an ended run RUNNING again (what ``start_run(run_id=...)`` does); its end time
        is cleared. Returns the run as it is now."""
        self._written(run_id)
        self.store.resume_run(run_id, run_name)
        run = self.store.get_run(run_id)
        self._queue().running(run_id, run.data.params)
        return run

    def get_run(self, run_id: str) -> Run:
        self._written(run_id)
        return self.store.get_run(run_id)

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        """End the run: ``status`` FINISHED (the default), FAILED or KILLED. What was logged to
        it is written first.

        Raises:
            NotStored: items logged to the run earlier were not stored (the run ends anyway).
        """
        status = RunStatus.FINISHED if status is None else status
        if status not in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED):
            raise InvalidArgument(f"A run ends FINISHED, FAILED or KILLED, got {status!r}.")
        queue = log_queue.existing_queue(self.tracking_uri)
        failed: log_queue.NotStored | None = None
        if queue is not None:
            try:
                queue.flush(run_id)
            except log_queue.NotStored as exc:
                failed = exc
            queue.forget(run_id)
        self.store.update_run(run_id, status=status, end_time=end_time or int(time.time() * 1000))
        if failed is not None:
            raise failed

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        self._written(run_id)
        self.store.update_run(run_id, status=status, run_name=name)
        self._forget(run_id)

    def _forget(self, run_id: str | None) -> None:
        queue = log_queue.existing_queue(self.tracking_uri)
        if queue is not None:
            queue.forget(run_id)

    def delete_run(self, run_id: str) -> None:
        """Mark the run deleted: searches leave it out unless asked; its artifacts stay."""
        self._written(run_id)
        self.store.set_run_lifecycle(run_id, "deleted")
        self._forget(run_id)

    def restore_run(self, run_id: str) -> None:
        self.store.set_run_lifecycle(run_id, "active")
        self._forget(run_id)

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        """Log one param; returns ``value`` (as MLflow does). Params never change once logged:
        a new value is refused at the call when this process knows the old one, else when the
        store finds it (``NotStored`` at the next call for the run, or at its ``end_run``)."""
        check_synchronous(synchronous)
        params = {check_name(key, "Param key"): check_text(value, f"Param {key!r}")}
        self._log(run_id, synchronous, [], params, {})
        return value

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
    ) -> None:
        """Log one point of a metric (queued: see the module's docstring); ``step`` defaults
        to 0 and ``timestamp`` (epoch ms) to now."""
        check_synchronous(synchronous)
        step = step or 0
        if isinstance(step, bool) or not isinstance(step, int):
            raise InvalidArgument(f"Metric {key!r}: step must be an integer, got {step!r}.")
        point = Metric(
            check_name(key, "Metric key"),
            metric_value(key, value),
            timestamp or int(time.time() * 1000),
            step,
        )
        self._log(run_id, synchronous, [point], {}, {})

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        check_synchronous(synchronous)
        tags = {check_name(key, "Tag key"): check_text(value, f"Tag {key!r}")}
        self._log(run_id, synchronous, [], {}, tags)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._written(run_id)
        self.store.delete_tag(run_id, key)

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Mapping[str, Any] | Iterable[Any] | None = None,
        tags: Mapping[str, Any] | Iterable[Any] | None = None,
        synchronous: bool | None = None,
    ) -> None:
        """Log many metrics, params and tags, stored together (one transaction).

        ``metrics`` holds ``Metric`` objects or ``(key, value, timestamp_ms, step)`` tuples
        (timestamp ``None`` for now); ``params`` and ``tags`` are mappings, or sequences of
        ``Param``/``RunTag`` objects (anything with ``key`` and ``value``) as in MLflow.
        Queued like ``log_metric``; a call above one batch (1,000 items, 100 params, 100 tags)
        is written at once instead, so that it stays one transaction.
        """
        check_synchronous(synchronous)
        params = {
            check_name(k, "Param key"): check_text(v, f"Param {k!r}")
            for k, v in key_values(params, "params").items()
        }
        tags = {
            check_name(k, "Tag key"): check_text(v, f"Tag {k!r}")
            for k, v in key_values(tags, "tags").items()
        }
        stamp = int(time.time() * 1000)
        points = []
        for m in metrics:
            key, value, ts, step = (
                (m.key, m.value, m.timestamp, m.step) if isinstance(m, Metric) else m
            )
            if isinstance(step, bool) or not isinstance(step, int):
                raise InvalidArgument(f"Metric {key!r}: step must be an integer, got {step!r}.")
            check_name(key, "Metric key")
            points.append(Metric(key, metric_value(key, value), ts or stamp, step))
        self._log(run_id, synchronous, points, params, tags)

    def log_inputs(self, run_id: str, datasets: Sequence[Any] | None = None) -> None:
        """Record the ``DatasetInput`` s a running run used (MLflow's ``log_inputs``)."""
        self._written(run_id)
        self.store.log_inputs(run_id, list(datasets or ()))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        self._written(run_id)
        return self.store.get_metric_history(run_id, key)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str | None = "",
        run_view_type: str | int = ViewType.ACTIVE_ONLY,
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
        self._written()
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
            return runs_frame(runs)
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
            raise InvalidArgument(ended_message(run_id, info.status))

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]:
        return self._artifacts(run_id).list(path or "")

    def download_artifacts(
        self, run_id: str, path: str = "", dst_path: str | os.PathLike[str] | None = None
    ) -> Path:
        """Download a file or folder of the run's artifacts (all of them for ``path=""``);
        returns the local path."""
        from modelpack.artifacts import fetch

        return fetch(self._artifacts(run_id), path, dst_path, f"Run {run_id!r}")

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

    def register_model(
        self,
        model_uri: str,
        name: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        *,
        run_id: str | None = None,
    ) -> ModelVersion:
        """Copy the package at ``model_uri`` into registry storage and make it a new version
        (of the run ``run_id``; default: the run the URI or the package names). What this
        process logged is written first."""
        self._written()
        return super().register_model(model_uri, name, tags, description, run_id=run_id)

    def resolve(self, uri: str) -> Path:
        """The local directory of the package ``uri`` names (remote ones via the cache)."""
        return resolution.resolve(uri, self)


class MlflowClient(Client):
    """``Client`` with MLflow's positional arguments ``(tracking_uri, registry_uri)``, for
    ported code: ``MlflowClient()`` and ``MlflowClient("sqlite:///...")`` work as in MLflow."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        *,
        artifact_root: str | None = None,
        create: bool = True,
        synchronous: bool | None = None,
    ) -> None:
        super().__init__(
            tracking_uri, artifact_root, create, registry_uri=registry_uri, synchronous=synchronous
        )


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


def check_synchronous(synchronous: Any) -> None:
    """MLflow's ``synchronous`` flag: None (``MODELPACK_SYNC_LOGGING``, unset: queue), True
    (write before returning) or False (queue). Anything else is most likely a timestamp given
    by position, which MLflow's order puts after ``synchronous``."""
    if synchronous is not None and not isinstance(synchronous, bool):
        raise InvalidArgument(
            f"synchronous must be True, False or None, got {synchronous!r}. In MLflow's order "
            f"log_metric(key, value, step, synchronous, timestamp): pass timestamp= by keyword."
        )


def key_values(items: Any, what: str) -> dict[str, Any]:
    """``params``/``tags`` of ``log_batch``: a mapping, or MLflow's ``Param``/``RunTag``
    objects (or ``(key, value)`` pairs)."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    if isinstance(items, str | bytes):
        raise InvalidArgument(f"{what} must be a mapping or a list of (key, value), got {items!r}.")
    out: dict[str, Any] = {}
    for item in items:
        if hasattr(item, "key") and hasattr(item, "value"):
            out[item.key] = item.value
        elif isinstance(item, tuple | list) and len(item) == 2:
            out[item[0]] = item[1]
        else:
            raise InvalidArgument(
                f"{what}: expected Param/RunTag objects or (key, value) pairs, got {item!r}."
            )
    return out


_INFO_COLUMNS = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")


def runs_frame(runs: Sequence[Run], extra: Sequence[str] = ("run_name", "user_id")) -> Any:
    """Runs as MLflow's ``search_runs`` DataFrame: ``run_id``, ``experiment_id``, ``status``,
    ``artifact_uri``, ``start_time`` and ``end_time`` (pandas UTC datetimes), then the
    ``extra`` attributes, ``metrics.*`` (NaN where a run lacks one), ``params.*`` and
    ``tags.*`` (None where a run lacks one)."""
    import numpy as np
    import pandas as pd

    info: dict[str, list[Any]] = {name: [] for name in (*_INFO_COLUMNS, *extra)}
    for run in runs:
        for name in info:
            value = getattr(run.info, name)
            if name in ("start_time", "end_time"):
                value = pd.NaT if value is None else pd.Timestamp(value)
            info[name].append(value)
    for name in ("start_time", "end_time"):
        info[name] = pd.to_datetime(pd.Series(info[name], dtype=object), utc=True)
    columns: dict[str, Any] = dict(info)
    for kind, missing in (("metrics", np.nan), ("params", None), ("tags", None)):
        keys = sorted({k for run in runs for k in getattr(run.data, kind)})
        for key in keys:
            columns[f"{kind}.{key}"] = [getattr(run.data, kind).get(key, missing) for run in runs]
    return pd.DataFrame(columns)
