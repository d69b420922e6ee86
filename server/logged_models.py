"""MLflow 3's LoggedModels over REST (``/mlflow/logged-models...``): what an MLflow 3 client
creates for every ``log_model`` before it uploads the model's files, finalizes once they are
up, and registers as ``models:/m-<id>``.

Every model id is checked (``m-`` and 32 hex digits) before it reaches the store or names a
folder; a model's files are those under its ``artifact_location``, listed like run artifacts.
Access is that of the model's experiment.

Search filters: modelpack's syntax (MLflow's, plus OR and parentheses) over ``name``,
``model_id``, ``status``, ``model_type``, ``source_run_id``, ``creation_timestamp``,
``last_updated_timestamp``, ``tags.<key>`` and ``params.<key>``; ordering by those attributes
(not by metrics; ``datasets`` is not supported).
"""

from __future__ import annotations

from typing import Any

from modelpack.errors import InvalidArgument
from modelpack.server.endpoints import LOGIN, Call, Endpoint, on_experiment
from modelpack.server.state import ServerState
from modelpack.server.wire import (
    ApiError,
    boolean,
    integer,
    optional_text,
    pairs,
    strings,
    text,
)
from modelpack.store.logged_models import (
    LOGGED_MODEL_STATUSES,
    MlflowLoggedModel,
    check_logged_model_id,
)

__all__ = ["ENDPOINTS", "logged_model_json", "model_id_of"]

BASE = "/mlflow/logged-models"
# LoggedModelStatus's numbers, for a client that sends the enum as a number.
_STATUS_NUMBERS = {str(i): name for i, name in enumerate(LOGGED_MODEL_STATUSES, start=1)}
_MAX_SEARCH = 1000
SEARCH_FIELDS = "experiment_ids filter datasets max_results order_by page_token"


def model_id_of(call: Call) -> str:
    """The path's (or body's) model id, checked before anything uses it."""
    value = call.params.get("model_id")
    try:
        return check_logged_model_id(value)
    except InvalidArgument as exc:
        raise ApiError("INVALID_PARAMETER_VALUE", exc.message) from None


def _experiment_of_model(call: Call) -> str:
    return call.state.store.get_mlflow_logged_model(
        model_id_of(call), allow_deleted=True
    ).experiment_id


def _experiment_of_create(call: Call) -> str:
    return call.state.experiment_in(text(call.params, "experiment_id"))


def logged_model_json(state: ServerState, model: MlflowLoggedModel) -> dict[str, Any]:
    """MLflow's ``LoggedModel`` message: ``{"info": ..., "data": ...}``.

    ``creator_id`` is an int64 in MLflow's message, so a user name is not sent in it (the
    client would refuse the answer).
    """
    info: dict[str, Any] = {
        "model_id": model.model_id,
        "experiment_id": state.experiment_out(model.experiment_id),
        "name": model.name,
        "creation_timestamp_ms": model.creation_time,
        "last_updated_timestamp_ms": model.last_update_time,
        "artifact_uri": state.public_uri(model.artifact_location),
        "status": model.status,
        "tags": [{"key": k, "value": v} for k, v in model.tags.items()],
        "registrations": [
            {"name": name, "version": str(version)}
            for name, version in state.store.mlflow_logged_model_registrations(model.model_id)
        ],
    }
    for key in ("model_type", "source_run_id", "status_message"):
        value = getattr(model, key)
        if value is not None:
            info[key] = value
    return {
        "info": info,
        "data": {
            "params": [{"key": k, "value": v} for k, v in model.params.items()],
            "metrics": [],
        },
    }


# ---------------------------------------------------------------------- handlers


def create(call: Call) -> dict[str, Any]:
    store = call.state.store
    model = store.create_mlflow_logged_model(
        _experiment_of_create(call),
        optional_text(call.params, "name"),
        model_type=optional_text(call.params, "model_type"),
        source_run_id=optional_text(call.params, "source_run_id"),
        params=dict(pairs(call.params, "params")),
        tags=dict(pairs(call.params, "tags")),
        creator_id=call.user,
    )
    return {"model": logged_model_json(call.state, model)}


def get(call: Call) -> dict[str, Any]:
    model = call.state.store.get_mlflow_logged_model(
        model_id_of(call), allow_deleted=boolean(call.params, "allow_deleted")
    )
    return {"model": logged_model_json(call.state, model)}


def finalize(call: Call) -> dict[str, Any]:
    status = text(call.params, "status")
    status = _STATUS_NUMBERS.get(status, status)
    model = call.state.store.finalize_mlflow_logged_model(
        model_id_of(call), status, optional_text(call.params, "status_message")
    )
    return {"model": logged_model_json(call.state, model)}


def delete(call: Call) -> dict[str, Any]:
    call.state.store.delete_mlflow_logged_model(model_id_of(call))
    return {}


def set_tags(call: Call) -> dict[str, Any]:
    call.state.store.set_mlflow_logged_model_tags(
        model_id_of(call), dict(pairs(call.params, "tags"))
    )
    return {}


def delete_tag(call: Call) -> dict[str, Any]:
    call.state.store.delete_mlflow_logged_model_tag(model_id_of(call), text(call.params, "tag_key"))
    return {}


def log_params(call: Call) -> dict[str, Any]:
    call.state.store.log_mlflow_logged_model_params(
        model_id_of(call), dict(pairs(call.params, "params"))
    )
    return {}


def _order_by(call: Call) -> list[tuple[str, bool]]:
    raw = call.params.get("order_by")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, str):  # "name ASC" from a query string
            field_name, _, direction = item.strip().partition(" ")
            out.append((field_name, direction.strip().upper() != "DESC"))
        elif isinstance(item, dict) and isinstance(item.get("field_name"), str):
            if item.get("dataset_name") or item.get("dataset_digest"):
                raise ApiError(
                    "INVALID_PARAMETER_VALUE",
                    "Ordering logged models by a dataset's metric is not supported by this "
                    "server; order by name, status, creation_timestamp or "
                    "last_updated_timestamp.",
                )
            out.append((item["field_name"], item.get("ascending", True) is not False))
        else:
            raise ApiError(
                "INVALID_PARAMETER_VALUE",
                f"Invalid order_by entry {item!r:.80}: expected "
                f'{{"field_name": ..., "ascending": true|false}}.',
            )
    return out


def search(call: Call) -> dict[str, Any]:
    if call.params.get("datasets"):
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            "Searching logged models by datasets is not supported by this server; filter by "
            "name, status, tags.<key> or params.<key>.",
        )
    wanted = strings(call.params, "experiment_ids")
    if not wanted:
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'experiment_ids': name the experiments to "
            "search.",
        )
    ids = [call.state.experiment_in(i) for i in wanted]
    from modelpack.server import auth

    allowed = auth.readable_experiments(call)
    if allowed is not None:
        ids = [i for i in ids if i in allowed]
    models, token = call.state.store.search_mlflow_logged_models(
        ids,
        optional_text(call.params, "filter"),
        integer(call.params, "max_results", 50, low=1, high=_MAX_SEARCH) or 50,
        _order_by(call),
        optional_text(call.params, "page_token"),
    )
    out: dict[str, Any] = {"models": [logged_model_json(call.state, m) for m in models]}
    if token:
        out["next_page_token"] = token
    return out


def list_artifacts(call: Call) -> dict[str, Any]:
    from modelpack.artifacts import artifact_store

    model = call.state.store.get_mlflow_logged_model(model_id_of(call))
    path = optional_text(call.params, "artifact_directory_path", "path") or ""
    path = path.strip("/") if path not in ("", "/") else ""
    files = artifact_store(model.artifact_location).list(path)
    out: dict[str, Any] = {
        "root_uri": call.state.public_uri(model.artifact_location),
        "files": [
            {"path": f.path, "is_dir": f.is_dir} | ({} if f.size is None else {"file_size": f.size})
            for f in files
        ],
    }
    return out


def _read(call: Call) -> str:
    return _experiment_of_model(call)


ENDPOINTS = [
    Endpoint(
        ("POST",),
        BASE,
        create,
        on_experiment("EDIT", _experiment_of_create),
        "Create a LoggedModel (MLflow 3's log_model), PENDING until finalized.",
        request_fields=tuple("experiment_id name model_type source_run_id params tags".split()),
    ),
    Endpoint(
        ("POST",),
        f"{BASE}/search",
        search,
        LOGIN,
        "Search the LoggedModels of experiments.",
        request_fields=tuple(SEARCH_FIELDS.split()),
    ),
    Endpoint(
        ("GET",),
        f"{BASE}/{{model_id}}",
        get,
        on_experiment("READ", _read),
        "Get a LoggedModel.",
        request_fields=tuple("allow_deleted".split()),
    ),
    Endpoint(
        ("PATCH",),
        f"{BASE}/{{model_id}}",
        finalize,
        on_experiment("EDIT", _read),
        "Finalize a LoggedModel: LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED.",
        request_fields=tuple("status status_message".split()),
    ),
    Endpoint(
        ("DELETE",),
        f"{BASE}/{{model_id}}",
        delete,
        on_experiment("EDIT", _read),
        "Delete a LoggedModel (its files stay).",
        request_fields=tuple("".split()),
    ),
    Endpoint(
        ("PATCH",),
        f"{BASE}/{{model_id}}/tags",
        set_tags,
        on_experiment("EDIT", _read),
        "Set tags on a LoggedModel.",
        request_fields=tuple("tags".split()),
    ),
    Endpoint(
        ("DELETE",),
        f"{BASE}/{{model_id}}/tags/{{tag_key:path}}",
        delete_tag,
        on_experiment("EDIT", _read),
        "Delete a tag of a LoggedModel.",
        request_fields=tuple("".split()),
    ),
    Endpoint(
        ("POST",),
        f"{BASE}/{{model_id}}/params",
        log_params,
        on_experiment("EDIT", _read),
        "Log params of a LoggedModel (immutable once set).",
        request_fields=tuple("params".split()),
    ),
    Endpoint(
        ("GET",),
        f"{BASE}/{{model_id}}/artifacts/directories",
        list_artifacts,
        on_experiment("READ", _read),
        "List the files of a LoggedModel.",
        request_fields=tuple("artifact_directory_path page_token".split()),
    ),
]
