"""``RestStore``: the tracking store and registry of a ``modelpack server``, over HTTP.

The same calls as ``SqlStore`` (same signatures, same entities back, the same errors:
``NotFound``, ``AlreadyExists``, ``InvalidArgument``...), each one request to MLflow's REST
API (``/api/2.0/mlflow/...``) or, for what MLflow lacks, to ``/api/2.0/modelpack/...``. The
server does what the SQL store does; this class only speaks the wire (``rest_json``).

Two things differ by design:

- Artifact URIs come back as the server shows them, ``mlflow-artifacts:/<path>``; they are
  turned into the proxy's URL (``http://host:port/api/2.0/mlflow-artifacts/artifacts/<path>``),
  so ``artifact_store(run.info.artifact_uri)`` reaches the artifacts from any process.
- The registry's storage is the server's: ``create_model_version`` sends a source the server
  can read (``runs:/...`` or ``mlflow-artifacts:/uploads/...``) and the server copies and
  verifies the package; deleting a version deletes its files on the server, so the deletes
  return no locations for the caller to clean up.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from modelpack.entities import (
    DatasetInput,
    Experiment,
    HistoryRecord,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    ViewType,
)
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound
from modelpack.store import rest_json as wire
from modelpack.store import validation
from modelpack.store.defaults import PROXY_PATH
from modelpack.transport import shared as shared_transport
from modelpack.uris import redact

__all__ = ["PROXY_PATH", "PROXY_SCHEME", "RestStore"]

PROXY_SCHEME = "mlflow-artifacts:"
EXTENSIONS = "/api/2.0/modelpack"
# MLflow's log-batch limits (the server enforces them): items per request, and a body size
# kept under its 1 MB.
BATCH_ITEMS, BATCH_PARAMS, BATCH_TAGS, BATCH_BYTES = 1000, 100, 100, 900_000
MAX_IDEMPOTENCY_KEY = 64
HISTORY_PAGE = 25_000  # what MLflow's client asks for per page of a metric's history
EXPERIMENT_PAGE = 1000
MAX_PAGES = 1_000_000  # a bound on any paging loop (a server repeating a token is an error)


class RestStore:
    """The store behind ``modelpack server`` at ``url`` (``http://host:port``).

    Args:
        url: the server's URL (optionally with a path prefix).
        artifact_root: kept for ``Client``; the server decides where artifacts go.
        token: a bearer token; default: ``MODELPACK_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_TOKEN``
            (``Transport``).
    """

    remote = True  # the registry's storage is the server's (see registry_calls)
    PROXY_SCHEME = PROXY_SCHEME

    def __init__(self, url: str, artifact_root: str | None = None, token: str | None = None):
        self.transport = shared_transport(url, token)
        self.server_url = self.transport.url
        self.artifact_root = (artifact_root or self.proxy_root).rstrip("/")

    @property
    def url(self) -> str:
        return redact(self.server_url)

    @property
    def proxy_root(self) -> str:
        """The URL of the server's artifact proxy: the default artifact root of its clients."""
        return self.server_url + PROXY_PATH

    def __repr__(self) -> str:
        return f"<RestStore {self.url}>"

    # ------------------------------------------------------------------ plumbing

    def _api(self, method: str, route: str, **kwargs: Any) -> dict[str, Any]:
        return self.transport.api(method, route, **kwargs)

    def _ext(self, method: str, route: str, **kwargs: Any) -> dict[str, Any]:
        return self.transport.call(method, f"{EXTENSIONS}/{route}", **kwargs)

    def local_uri(self, uri: str | None) -> str | None:
        """An artifact URI the server sent, as this process opens it: ``mlflow-artifacts:/p``
        becomes the proxy's URL for ``p``; anything else (``s3://``, a path on a server that
        does not proxy) is left as it is."""
        if not uri or not uri.startswith(PROXY_SCHEME):
            return uri
        from modelpack.proxy_artifacts import proxy_uri

        rest = uri[len(PROXY_SCHEME) :]
        if rest.startswith("//"):  # mlflow-artifacts://host/p: MLflow's form for another host
            raise InvalidArgument(
                f"The {self.transport.description} sent the artifact URI {uri!r}, which names "
                f"another server; modelpack reaches artifacts through the server it talks to."
            )
        return proxy_uri(self.server_url, rest.lstrip("/"))

    def public_uri(self, uri: str) -> str:
        """The inverse of ``local_uri`` for this server's proxy URLs (what a request sends)."""
        prefix = self.proxy_root + "/"
        if uri.startswith(prefix):
            return f"{PROXY_SCHEME}/{urllib.parse.unquote(uri[len(prefix) :])}"
        if uri.rstrip("/") == self.proxy_root:
            return f"{PROXY_SCHEME}/"
        return uri

    def _pages(self, fetch: Any) -> Iterator[Any]:
        """Every item of a paged search: ``fetch(token) -> (items, next_token)``."""
        token, seen = None, set()
        for _ in range(MAX_PAGES):
            items, token = fetch(token)
            yield from items
            if not token:
                return
            if token in seen:
                raise InvalidArgument(
                    f"The {self.transport.description} sent the same page token twice; its "
                    f"paging is broken."
                )
            seen.add(token)
        raise InvalidArgument(f"More than {MAX_PAGES} pages from the {self.transport.description}.")

    # ------------------------------------------------------------------ experiments

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        validation.name(name, "Experiment name")
        body: dict[str, Any] = {"name": name, "tags": wire.tags_out(_texts(tags, "Tag"))}
        if artifact_location:
            body["artifact_location"] = self.public_uri(artifact_location)
        return str(self._api("POST", "experiments/create", body=body)["experiment_id"])

    def get_experiment(self, experiment_id: str) -> Experiment:
        found = self._api("GET", "experiments/get", params={"experiment_id": experiment_id})
        return wire.experiment(found["experiment"], self.local_uri)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            found = self._api("GET", "experiments/get-by-name", params={"experiment_name": name})
        except NotFound:
            return None
        return wire.experiment(found["experiment"], self.local_uri)

    def get_or_create_experiment(self, name: str) -> Experiment:
        found = self.get_experiment_by_name(name)
        if found is not None:
            return found
        try:
            return self.get_experiment(self.create_experiment(name))
        except AlreadyExists:  # another client created it first
            found = self.get_experiment_by_name(name)
            if found is None:
                raise
            return found

    def search_experiments(self) -> list[Experiment]:
        """Every active experiment, oldest first (as ``SqlStore.search_experiments``)."""

        def fetch(token: str | None) -> tuple[list[Experiment], str | None]:
            return self.search_experiments_page(
                ViewType.ACTIVE_ONLY, EXPERIMENT_PAGE, None, ["creation_time ASC"], token
            )

        return list(self._pages(fetch))

    def search_experiments_page(
        self,
        view_type: str | int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Experiment], str | None]:
        body: dict[str, Any] = {
            "view_type": ViewType.check(view_type),
            "max_results": max_results,
            "filter": filter_string or "",
            "order_by": list(order_by or ()),
        }
        if page_token:
            body["page_token"] = page_token
        found = self._api("POST", "experiments/search", body=body)
        experiments = [wire.experiment(e, self.local_uri) for e in found.get("experiments") or ()]
        return experiments, found.get("next_page_token") or None

    def set_experiment_lifecycle(self, experiment_id: str, stage: str) -> None:
        if stage not in ("active", "deleted"):
            raise InvalidArgument(f"An experiment is 'active' or 'deleted', not {stage!r}.")
        route = "experiments/delete" if stage == "deleted" else "experiments/restore"
        self._api("POST", route, body={"experiment_id": experiment_id})

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.name(new_name, "Experiment name")
        self._api(
            "POST",
            "experiments/update",
            body={"experiment_id": experiment_id, "new_name": new_name},
            idempotent=True,
        )

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        validation.name(key, "Tag key")
        text = validation.text(value, f"Tag {key!r}")
        self._api(
            "POST",
            "experiments/set-experiment-tag",
            body={"experiment_id": experiment_id, "key": key, "value": text},
            idempotent=True,
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self._api(
            "POST",
            "experiments/delete-experiment-tag",
            body={"experiment_id": experiment_id, "key": key},
        )

    # ------------------------------------------------------------------ runs

    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None,
        user_id: str,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
    ) -> Run:
        body: dict[str, Any] = {
            "experiment_id": str(experiment_id),
            "user_id": user_id,
            "tags": wire.tags_out(_texts(tags, "Tag")),
        }
        if run_name:
            body["run_name"] = validation.name(run_name, "Run name")
        if start_time is not None:
            body["start_time"] = start_time
        if parent_run_id is not None:
            body["parent_run_id"] = parent_run_id
        return wire.run(self._api("POST", "runs/create", body=body)["run"], self.local_uri)

    def get_run(self, run_id: str) -> Run:
        _check_run_id(run_id)
        found = self._api("GET", "runs/get", params={"run_id": run_id})
        return wire.run(found["run"], self.local_uri)

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> None:
        _check_run_id(run_id)
        body: dict[str, Any] = {"run_id": run_id}
        if status is not None:
            body["status"] = status
        if end_time is not None:
            body["end_time"] = end_time
        if run_name is not None:
            body["run_name"] = validation.name(run_name, "Run name")
        self._api("POST", "runs/update", body=body, idempotent=True)

    def resume_run(self, run_id: str, run_name: str | None = None) -> None:
        """Set an ended run RUNNING again (``start_run(run_id=...)``); its end time is cleared."""
        _check_run_id(run_id)
        body: dict[str, Any] = {"run_id": run_id}
        if run_name is not None:
            body["run_name"] = validation.name(run_name, "Run name")
        self._ext("POST", "runs/resume", body=body, idempotent=True)

    def delete_tag(self, run_id: str, key: str) -> None:
        _check_run_id(run_id)
        self._api("POST", "runs/delete-tag", body={"run_id": run_id, "key": key})

    def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        _check_run_id(run_id)
        if stage not in ("active", "deleted"):
            raise InvalidArgument(f"A run is 'active' or 'deleted', not {stage!r}.")
        route = "runs/delete" if stage == "deleted" else "runs/restore"
        self._api("POST", route, body={"run_id": run_id}, idempotent=True)

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Iterable[Metric] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Log metrics, params and tags to a running run: one ``log-batch`` request per
        MLflow's limits (1,000 items, 100 params, 100 tags), in order.

        Every request carries an idempotency key (``idempotency_key``, numbered per request
        when there are several; a new one when None), so a request retried after a dropped
        connection is stored once.
        """
        _check_run_id(run_id)
        param_items = list(_texts(params, "Param").items())
        tag_items = list(_texts(tags, "Tag").items())
        points = [wire.metric_out(m) for m in metrics]
        for point in points:
            validation.name(point["key"], "Metric key")
        for key, _ in param_items:
            validation.name(key, "Param key")
        for key, _ in tag_items:
            validation.name(key, "Tag key")
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str)
            or not idempotency_key
            or len(idempotency_key) > MAX_IDEMPOTENCY_KEY
        ):
            raise InvalidArgument(
                f"idempotency_key must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} "
                f"characters (a uuid4 hex is 32), got {idempotency_key!r:.80}."
            )
        batches = list(_batches(param_items, tag_items, points))
        base = idempotency_key or uuid.uuid4().hex
        for i, (p, t, m) in enumerate(batches):
            body = {
                "run_id": run_id,
                "metrics": m,
                "params": [{"key": k, "value": v} for k, v in p],
                "tags": [{"key": k, "value": v} for k, v in t],
                "idempotency_key": base if len(batches) == 1 else _nth_key(base, i),
            }
            self._api("POST", "runs/log-batch", body=body, idempotent=True)

    def log_inputs(self, run_id: str, dataset_inputs: Sequence[DatasetInput]) -> None:
        """Record the datasets a running run used."""
        _check_run_id(run_id)
        datasets = wire.dataset_inputs_out(dataset_inputs)
        self._api("POST", "runs/log-inputs", body={"run_id": run_id, "datasets": datasets})

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of the metric, in step then timestamp order (every page)."""
        _check_run_id(run_id)

        def fetch(token: str | None) -> tuple[list[Metric], str | None]:
            params = {"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE}
            if token:
                params["page_token"] = token
            found = self._api("GET", "metrics/get-history", params=params)
            points = [wire.metric(m) for m in found.get("metrics") or ()]
            return points, found.get("next_page_token") or None

        return list(self._pages(fetch))

    def record_logged_model(
        self, run_id: str, artifact_path: str, model_id: str, manifest_sha256: str, flavor: str
    ) -> None:
        self._ext(
            "POST",
            "runs/record-logged-model",
            body={
                "run_id": run_id,
                "artifact_path": artifact_path,
                "model_id": model_id,
                "manifest_sha256": manifest_sha256,
                "flavor": flavor,
            },
            idempotent=True,
        )

    def get_logged_model(self, run_id: str, artifact_path: str) -> wire.LoggedModelRecord | None:
        """What ``record_logged_model`` recorded for the run's ``artifact_path``, or None."""
        try:
            params = {"run_id": run_id, "artifact_path": artifact_path}
            found = self._ext("GET", "runs/logged-model", params=params)
        except NotFound:
            return None
        record = found.get("logged_model")
        return wire.logged_model_record(record) if record else None

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        run_view_type: str | int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Run], str | None]:
        """A page of runs; ``filter_string`` in modelpack's syntax (MLflow's, with OR and
        parentheses), which the server takes as it is."""
        body: dict[str, Any] = {
            "experiment_ids": [str(e) for e in experiment_ids],
            "filter": filter_string or "",
            "run_view_type": ViewType.check(run_view_type),
            "max_results": max_results,
            "order_by": list(order_by or ()),
        }
        if page_token:
            body["page_token"] = page_token
        found = self._api("POST", "runs/search", body=body)
        runs = [wire.run(r, self.local_uri) for r in found.get("runs") or ()]
        return runs, found.get("next_page_token") or None

    # ------------------------------------------------------------------ registered models

    def _model(self, found: Mapping[str, Any]) -> RegisteredModel:
        return wire.registered_model(found["registered_model"], self.local_uri)

    def _version(self, found: Mapping[str, Any]) -> ModelVersion:
        return wire.model_version(found["model_version"], self.local_uri)

    def create_registered_model(
        self, name: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        validation.name(name, "Registered model name")
        body: dict[str, Any] = {"name": name, "tags": wire.tags_out(_texts(tags, "Tag"))}
        if description:
            body["description"] = validation.text(description, "Description")
        return self._model(self._api("POST", "registered-models/create", body=body))

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._model(self._api("GET", "registered-models/get", params={"name": name}))

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[RegisteredModel], str | None]:
        params: dict[str, Any] = {
            "filter": filter_string or None,
            "max_results": max_results,
            "order_by": list(order_by or ()),
            "page_token": page_token or None,
        }
        found = self._api("GET", "registered-models/search", params=params)
        models = [
            wire.registered_model(m, self.local_uri) for m in found.get("registered_models") or ()
        ]
        return models, found.get("next_page_token") or None

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        description = validation.text(description, "Description")
        found = self._api(
            "PATCH",
            "registered-models/update",
            body={"name": name, "description": description},
            idempotent=True,
        )
        return self._model(found)

    def rename_registered_model(self, name: str, new_name: str, user_id: str) -> RegisteredModel:
        validation.name(new_name, "New registered model name")
        found = self._api(
            "POST",
            "registered-models/rename",
            body={"name": name, "new_name": new_name, "user_id": user_id},
        )
        return self._model(found)

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        validation.name(key, "Tag key")
        value = validation.text(value, f"Tag {key!r}")
        self._api(
            "POST",
            "registered-models/set-tag",
            body={"name": name, "key": key, "value": value},
            idempotent=True,
        )

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self._api(
            "DELETE",
            "registered-models/delete-tag",
            body={"name": name, "key": key},
            idempotent=True,
        )

    def delete_registered_model(self, name: str, user_id: str, force: bool = False) -> list[str]:
        """Delete the model and its versions; the server deletes their storage, so there is
        nothing left for the caller to clean up (an empty list)."""
        body: dict[str, Any] = {"name": name, "user_id": user_id}
        if force:
            body["force"] = True
        self._api("DELETE", "registered-models/delete", body=body)
        return []

    # ------------------------------------------------------------------ versions

    def create_model_version(
        self,
        name: str,
        *,
        source: str,
        run_id: str | None,
        user_id: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        model_id: str | None = None,
        manifest_sha256: str | None = None,
        storage_location: str | None = None,
    ) -> ModelVersion:
        """A new version of ``name`` from ``source``, which the server reads, copies into its
        registry storage and verifies: a ``runs:/`` URI of one of its runs, or an
        ``mlflow-artifacts:/`` path (a package ``registry_calls`` uploaded).

        ``model_id``, ``manifest_sha256`` and ``storage_location`` (``SqlStore``'s: what its
        caller copied and hashed) are the server's to find out here: accepted, not sent.
        """
        validation.name(name, "Registered model name")
        body: dict[str, Any] = {
            "name": name,
            "source": self.public_uri(source),
            "tags": wire.tags_out(_texts(tags, "Tag")),
            "user_id": user_id,
        }
        if run_id:
            body["run_id"] = run_id
        if description:
            body["description"] = validation.text(description, "Description")
        return self._version(self._api("POST", "model-versions/create", body=body))

    def get_model_version(self, name: str, version: Any) -> ModelVersion:
        return self._version(
            self._api("GET", "model-versions/get", params={"name": name, "version": str(version)})
        )

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[ModelVersion], str | None]:
        params: dict[str, Any] = {
            "filter": filter_string or None,
            "max_results": max_results,
            "order_by": list(order_by or ()),
            "page_token": page_token or None,
        }
        found = self._api("GET", "model-versions/search", params=params)
        versions = [
            wire.model_version(v, self.local_uri) for v in found.get("model_versions") or ()
        ]
        return versions, found.get("next_page_token") or None

    def get_latest_versions(
        self, name: str, stages: Sequence[str] | None = None
    ) -> list[ModelVersion]:
        found = self._api(
            "POST",
            "registered-models/get-latest-versions",
            body={"name": name, "stages": list(stages or ())},
            idempotent=True,
        )
        return [wire.model_version(v, self.local_uri) for v in found.get("model_versions") or ()]

    def get_version_in_stage(self, name: str, stage: str) -> ModelVersion:
        found = self._ext("GET", "model-versions/in-stage", params={"name": name, "stage": stage})
        return self._version(found)

    def get_newest_version(self, name: str) -> ModelVersion:
        return self._version(self._ext("GET", "model-versions/newest", params={"name": name}))

    def update_model_version(self, name: str, version: Any, description: str) -> ModelVersion:
        description = validation.text(description, "Description")
        found = self._api(
            "PATCH",
            "model-versions/update",
            body={"name": name, "version": str(version), "description": description},
            idempotent=True,
        )
        return self._version(found)

    def set_model_version_tag(self, name: str, version: Any, key: str, value: Any) -> None:
        validation.name(key, "Tag key")
        value = validation.text(value, f"Tag {key!r}")
        self._api(
            "POST",
            "model-versions/set-tag",
            body={"name": name, "version": str(version), "key": key, "value": value},
            idempotent=True,
        )

    def delete_model_version_tag(self, name: str, version: Any, key: str) -> None:
        self._api(
            "DELETE",
            "model-versions/delete-tag",
            body={"name": name, "version": str(version), "key": key},
            idempotent=True,
        )

    def transition_model_version_stage(
        self,
        name: str,
        version: Any,
        stage: str,
        *,
        archive_existing_versions: bool = False,
        comment: str | None = None,
        user_id: str,
    ) -> ModelVersion:
        body: dict[str, Any] = {
            "name": name,
            "version": str(version),
            "stage": stage,
            "archive_existing_versions": bool(archive_existing_versions),
            "user_id": user_id,
        }
        if comment is not None:
            body["comment"] = comment
        return self._version(self._api("POST", "model-versions/transition-stage", body=body))

    def set_registered_model_alias(
        self, name: str, alias: str, version: Any, user_id: str, comment: str | None = None
    ) -> None:
        body: dict[str, Any] = {
            "name": name,
            "alias": alias,
            "version": str(version),
            "user_id": user_id,
        }
        if comment is not None:
            body["comment"] = comment
        self._api("POST", "registered-models/alias", body=body, idempotent=True)

    def delete_registered_model_alias(self, name: str, alias: str, user_id: str) -> None:
        self._api(
            "DELETE",
            "registered-models/alias",
            body={"name": name, "alias": alias, "user_id": user_id},
        )

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self._version(
            self._api("GET", "registered-models/alias", params={"name": name, "alias": alias})
        )

    def delete_model_version(
        self, name: str, version: Any, user_id: str, force: bool = False
    ) -> None:
        """Delete one version; the server deletes its storage (nothing is returned to clean)."""
        body: dict[str, Any] = {"name": name, "version": str(version), "user_id": user_id}
        if force:
            body["force"] = True
        self._api("DELETE", "model-versions/delete", body=body)

    def get_model_history(self, name: str) -> list[HistoryRecord]:
        found = self._ext("GET", "registered-models/history", params={"name": name})
        return [wire.history_record(r) for r in found.get("history") or ()]


# ---------------------------------------------------------------------- helpers


def _check_run_id(run_id: Any) -> None:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidArgument(f"run_id must be a non-empty string, got {run_id!r}.")


def _texts(items: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    """Values as the SQL store keeps them (``str`` of anything not a string), checked."""
    return {k: validation.text(v, f"{what} {k!r}") for k, v in (items or {}).items()}


def _nth_key(base: str, i: int) -> str:
    """The idempotency key of request ``i`` of a batch sent as several: derived from the
    batch's, so a retry of the whole batch derives the same ones (and fits the server's 64)."""
    return hashlib.sha256(f"{base}/{i}".encode()).hexdigest()[:32]


def _size(item: Any) -> int:
    return len(json.dumps(item, default=str)) + 2


def _batches(
    params: list[tuple[str, str]], tags: list[tuple[str, str]], metrics: list[dict[str, Any]]
) -> Iterator[tuple[list[tuple[str, str]], list[tuple[str, str]], list[dict[str, Any]]]]:
    """The items cut into requests within MLflow's log-batch limits, in order: params, then
    tags, then metrics (what one SQL transaction writes in that order)."""
    if not (params or tags or metrics):
        return
    p: list[tuple[str, str]] = []
    t: list[tuple[str, str]] = []
    m: list[dict[str, Any]] = []
    size = 0
    items: list[tuple[str, Any]] = [
        *(("p", x) for x in params),
        *(("t", x) for x in tags),
        *(("m", x) for x in metrics),
    ]
    for kind, item in items:
        cost = _size(item)
        full = (
            len(p) + len(t) + len(m) >= BATCH_ITEMS
            or (kind == "p" and len(p) >= BATCH_PARAMS)
            or (kind == "t" and len(t) >= BATCH_TAGS)
            or (size + cost > BATCH_BYTES and (p or t or m))
        )
        if full:
            yield p, t, m
            p, t, m, size = [], [], [], 0
        if kind == "p":
            p.append(item)
        elif kind == "t":
            t.append(item)
        else:
            m.append(item)
        size += cost
    yield p, t, m
