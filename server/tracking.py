"""The tracking half of MLflow's REST API: experiments, runs, metrics, params, tags, inputs,
outputs, artifact listings, and the calls modelpack's own client needs that MLflow lacks
(``/api/2.0/modelpack/runs/...``).

Each handler reads its fields with the wire readers (a wrong type is a 400 naming the field),
calls the SQL store, and answers MLflow's JSON (``tracking_json``). Experiment ids pass
``state.experiment_in``/``experiment_out`` (MLflow's "0" is our "Default"); a client never
chooses where the server writes: an ``artifact_location`` must lie under the server's root.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from modelpack.entities import Metric, now_ms
from modelpack.errors import FormatError, InvalidArgument, NotFound
from modelpack.paths import check_length, check_relative
from modelpack.server.endpoints import LOGIN, Call, Endpoint, on_experiment
from modelpack.server.state import DEFAULT_ID, PROXY_SCHEME
from modelpack.server.tracking_json import (
    INT64,
    MAX_BATCH_ITEMS,
    MAX_BATCH_METRICS,
    MAX_BATCH_PARAMS,
    MAX_BATCH_TAGS,
    OUTPUTS_TAG,
    PARENT_TAG,
    RUN_NAME_TAG,
    bad,
    check_batch_sizes,
    experiment_json,
    in_item,
    metric_json,
    read_artifact_path,
    read_dataset_input,
    read_hex,
    read_idempotency_key,
    read_int64,
    read_max_results,
    read_metric,
    read_status,
    read_value,
    read_view,
    run_info_json,
    runs_json,
    sampled_steps,
)
from modelpack.server.wire import (
    ApiError,
    integer,
    number,
    objects,
    optional_text,
    pairs,
    strings,
    text,
)

__all__ = ["ENDPOINTS", "LIMITS"]

MAX_SEARCH_RESULTS = 50_000  # MLflow's servers are "guaranteed to support" this many a page
MAX_HISTORY_RESULTS = 25_000  # what MLflow's client asks for a page of metric history
MAX_BULK_RUNS = 100  # get-history-bulk-interval
MAX_BULK_RESULTS = 2500  # points a run in get-history-bulk-interval (MLflow's)
LIST_PAGE = 10_000  # entries of an artifact listing a page (MLflow's has no pages)
LIMITS = {
    "log_batch_metrics": MAX_BATCH_METRICS,
    "log_batch_params": MAX_BATCH_PARAMS,
    "log_batch_tags": MAX_BATCH_TAGS,
    "log_batch_items": MAX_BATCH_ITEMS,
    "search_max_results": MAX_SEARCH_RESULTS,
    "history_max_results": MAX_HISTORY_RESULTS,
}
LOG_MODEL_TAG = "mlflow.log-model.history"  # where MLflow keeps runs/log-model's models
_LOG_MODEL_FIELDS = ("artifact_path", "flavors", "utc_time_created", "run_id")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Folders under the artifact root that the store owns; no experiment may be placed there.
# (server/artifacts.py's REGISTRY and UPLOADS, and room for more.)
_RESERVED_FOLDERS = frozenset({"registry", "uploads", "models", "tmp"})


# ---------------------------------------------------------------------- reading fields


def _run_id(call: Call) -> str:
    return text(call.params, "run_id", "run_uuid")


def _experiment_id(call: Call, key: str = "experiment_id") -> str:
    return call.state.experiment_in(text(call.params, key))


def _paged(out: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token:
        out["next_page_token"] = token
    return out


def _readable(call: Call) -> set[str] | None:
    """The store ids of the experiments the caller may read; None for all (the auth layer's
    hook, when it has one)."""
    hook = getattr(call.state.auth, "readable_experiments", None)
    if hook is None:
        return None
    found = hook(call)
    return None if found is None else set(found)


# ---------------------------------------------------------------------- locating (access)


def _locate_experiment(call: Call) -> str:
    return _experiment_id(call)


def _locate_by_name(call: Call) -> str:
    name = text(call.params, "experiment_name")
    experiment = call.state.store.get_experiment_by_name(name)
    if experiment is None:
        raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name '{name}'")
    return experiment.experiment_id


def _locate_new(call: Call) -> None:
    return None


def _locate_run(call: Call) -> str:
    return call.state.store.get_run_experiment_id(_run_id(call))


def _locate_run_target(call: Call) -> str:
    return call.state.experiment_in(optional_text(call.params, "experiment_id") or DEFAULT_ID)


# ---------------------------------------------------------------------- experiments


def _stored_location(call: Call, location: str) -> str:
    """A client's ``artifact_location``, where the server will write: only somewhere under
    its own artifact root (``mlflow-artifacts:/<path>`` or the root's own spelling)."""
    state = call.state
    root = state.artifact_root
    if location.startswith(PROXY_SCHEME):
        rest = location[len(PROXY_SCHEME) :].lstrip("/")
    elif location.startswith(root + "/"):
        rest = location[len(root) + 1 :]
    else:
        raise bad(
            f"Invalid artifact_location {location!r:.200}: this server keeps every experiment's "
            f"artifacts under its own artifact root. Omit artifact_location (the server picks "
            f"one), or give a path under it as mlflow-artifacts:/<path>."
        )
    rest = rest.rstrip("/")
    try:
        check_relative(rest, "artifact_location")
        check_length(rest, "artifact_location")
    except FormatError as exc:
        raise bad(f"Invalid artifact_location: {exc}") from None
    if rest.split("/", 1)[0] in _RESERVED_FOLDERS:
        raise bad(
            f"Invalid artifact_location {location!r:.200}: {rest.split('/', 1)[0]!r} under the "
            f"artifact root belongs to the server; choose another folder."
        )
    stored = f"{root}/{rest}"
    _check_apart(call, stored, location)
    return stored


def _check_apart(call: Call, stored: str, location: str) -> None:
    """Refuse a location that holds, or lies inside, another experiment's: the artifact proxy
    grants access to a path by the experiment whose location holds it, so a nested location
    would hand its creator another experiment's files."""
    import sqlalchemy as sa

    from modelpack.store import engines, schema

    root = call.state.artifact_root
    parts = stored[len(root) + 1 :].split("/")
    ancestors = [f"{root}/{'/'.join(parts[:i])}" for i in range(1, len(parts) + 1)]
    table = schema.experiments
    column = table.c.artifact_location
    below = stored.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
    engine = call.state.store.engine
    with engines.translated(engine), engine.connect() as conn:
        clash = conn.execute(
            sa.select(table.c.name)
            .where(sa.or_(column.in_(ancestors), column.like(below, escape="\\")))
            .limit(1)
        ).first()
    if clash is not None:
        raise bad(
            f"Invalid artifact_location {location!r:.200}: it overlaps the artifact location "
            f"of experiment {clash.name!r}. Choose a folder of its own, or omit "
            f"artifact_location."
        )


def create_experiment(call: Call) -> dict[str, Any]:
    name = text(call.params, "name")
    location = optional_text(call.params, "artifact_location")
    tags = dict(pairs(call.params, "tags"))
    stored = _stored_location(call, location) if location else None
    experiment_id = call.state.store.create_experiment(name, stored, tags)
    call.state.auth.record_creator(call, "experiment", experiment_id)  # MANAGE for its creator
    return {"experiment_id": call.state.experiment_out(experiment_id)}


def get_experiment(call: Call) -> dict[str, Any]:
    experiment = call.state.store.get_experiment(_experiment_id(call))
    return {"experiment": experiment_json(call.state, experiment)}


def get_experiment_by_name(call: Call) -> dict[str, Any]:
    name = text(call.params, "experiment_name")
    experiment = call.state.store.get_experiment_by_name(name)
    if experiment is None:
        raise ApiError("RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name '{name}'")
    return {"experiment": experiment_json(call.state, experiment)}


def search_experiments(call: Call) -> dict[str, Any]:
    params = call.params
    max_results = read_max_results(params, 1000, MAX_SEARCH_RESULTS)
    view = read_view(params, "view_type")
    filter_string = optional_text(params, "filter") or ""
    readable = _readable(call)
    if readable is not None:
        if not readable:
            return {"experiments": []}
        ids = ", ".join(f"'{i}'" for i in sorted(readable) if _HEX32.match(i))
        if not ids:
            return {"experiments": []}
        only = f"attributes.experiment_id IN ({ids})"
        filter_string = f"({filter_string}) AND {only}" if filter_string.strip() else only
    experiments, token = call.state.store.search_experiments_page(
        view_type=view,
        max_results=max_results,
        filter_string=filter_string,
        order_by=strings(params, "order_by"),
        page_token=optional_text(params, "page_token"),
    )
    found = [experiment_json(call.state, e) for e in experiments]
    return _paged({"experiments": found}, token)


def _not_default(call: Call, experiment_id: str, what: str) -> None:
    if experiment_id == call.state.default_experiment_id:
        raise bad(
            f"The experiment 'Default' (id \"0\") cannot be {what}: MLflow's clients log to it "
            f"when no experiment is set. Create an experiment of your own instead."
        )


def update_experiment(call: Call) -> dict[str, Any]:
    experiment_id = _experiment_id(call)
    new_name = optional_text(call.params, "new_name")
    if new_name is not None:
        _not_default(call, experiment_id, "renamed")
        call.state.store.rename_experiment(experiment_id, new_name)
    else:
        call.state.store.get_experiment(experiment_id)  # NotFound for an unknown id
    return {}


def delete_experiment(call: Call) -> dict[str, Any]:
    experiment_id = _experiment_id(call)
    _not_default(call, experiment_id, "deleted")
    call.state.store.set_experiment_lifecycle(experiment_id, "deleted")
    return {}


def restore_experiment(call: Call) -> dict[str, Any]:
    call.state.store.set_experiment_lifecycle(_experiment_id(call), "active")
    return {}


def set_experiment_tag(call: Call) -> dict[str, Any]:
    key = text(call.params, "key")
    call.state.store.set_experiment_tag(_experiment_id(call), key, read_value(call.params, "value"))
    return {}


def delete_experiment_tag(call: Call) -> dict[str, Any]:
    call.state.store.delete_experiment_tag(_experiment_id(call), text(call.params, "key"))
    return {}


# ---------------------------------------------------------------------- runs


def _run_payload(call: Call, run_id: str) -> dict[str, Any]:
    return runs_json(call.state, [call.state.store.get_run(run_id)])[0]


def create_run(call: Call) -> dict[str, Any]:
    params = call.params
    store = call.state.store
    experiment_id = call.state.experiment_in(optional_text(params, "experiment_id") or DEFAULT_ID)
    tags = dict(pairs(params, "tags"))
    # MLflow keeps the name as a tag too; here it is the run's name, shown as the tag.
    tag_name = tags.pop(RUN_NAME_TAG, None)
    run_name = optional_text(params, "run_name") or tag_name
    parent = (
        optional_text(params, "parent_run_id")
        or tags.get(PARENT_TAG)
        or tags.get("modelpack.parentRunId")
    )
    if parent is not None:
        try:
            store.get_run_experiment_id(parent)
        except (NotFound, InvalidArgument):
            raise bad(
                f"Invalid parent run {parent!r:.80} (tag {PARENT_TAG}): no run has that id."
            ) from None
    run = store.create_run(
        experiment_id,
        run_name=run_name,
        user_id=call.user,
        tags=tags,
        parent_run_id=parent,
        start_time=integer(params, "start_time", low=0, high=INT64[1]),
    )
    return {"run": runs_json(call.state, [run])[0]}


def get_run(call: Call) -> dict[str, Any]:
    return {"run": _run_payload(call, _run_id(call))}


def update_run(call: Call) -> dict[str, Any]:
    params = call.params
    run_id = _run_id(call)
    status = read_status(params)
    end_time = integer(params, "end_time", low=0, high=INT64[1])
    run_name = optional_text(params, "run_name")
    store = call.state.store
    if store.get_run(run_id).info.lifecycle_stage != "active":
        raise bad(f"Run {run_id!r} is deleted; restore it before updating it.")
    store.update_run(run_id, status=status, end_time=end_time, run_name=run_name)
    return {"run_info": run_info_json(call.state, store.get_run(run_id).info)}


def delete_run(call: Call) -> dict[str, Any]:
    call.state.store.set_run_lifecycle(_run_id(call), "deleted")
    return {}


def restore_run(call: Call) -> dict[str, Any]:
    call.state.store.set_run_lifecycle(_run_id(call), "active")
    return {}


def _new_points(call: Call, run_id: str, points: list[Metric], again: set[str]) -> list[Metric]:
    """``points`` less those of keys in ``again`` that the run holds already: MLflow 3's
    ``log_model`` logs a run's metrics a second time, tagged with the model's id, and MLflow's
    store keeps one row per identical point."""
    if not again:
        return points
    have: dict[str, set[tuple[Any, int, int]]] = {}
    for key in again:
        history = call.state.store.get_metric_history(run_id, key)
        have[key] = {(_same(m.value), m.timestamp, m.step) for m in history}
    return [
        m
        for m in points
        if m.key not in again or (_same(m.value), m.timestamp, m.step) not in have[m.key]
    ]


def _same(value: float) -> Any:
    return "NaN" if value != value else value


def log_metric(call: Call) -> dict[str, Any]:
    params = call.params
    run_id = _run_id(call)
    metric = Metric(
        text(params, "key"),
        number(params, "value"),
        read_int64(params, "timestamp", now_ms()),
        read_int64(params, "step", 0),
    )
    points = _new_points(call, run_id, [metric], {metric.key} if params.get("model_id") else set())
    if points or not params.get("model_id"):
        call.state.store.log_batch(run_id, metrics=points)
    return {}


def log_param(call: Call) -> dict[str, Any]:
    key = text(call.params, "key")
    call.state.store.log_batch(_run_id(call), params={key: read_value(call.params, "value")})
    return {}


def _rename_by_tag(call: Call, run_id: str, name: str) -> None:
    """MLflow's store takes the tag ``mlflow.runName`` as a rename of the run; so does this
    server (the tag is then shown from the name), on a run that takes writes."""
    from modelpack.entities import ended_message

    info = call.state.store.get_run(run_id).info
    if info.lifecycle_stage != "active":
        raise bad(f"Run {run_id!r} is deleted; restore it before logging to it.")
    if info.status != "RUNNING":
        raise bad(ended_message(run_id, info.status))
    call.state.store.update_run(run_id, run_name=name)


def set_tag(call: Call) -> dict[str, Any]:
    key = text(call.params, "key")
    run_id, value = _run_id(call), read_value(call.params, "value")
    if key == RUN_NAME_TAG:
        _rename_by_tag(call, run_id, value)
    else:
        call.state.store.log_batch(run_id, tags={key: value})
    return {}


def delete_tag(call: Call) -> dict[str, Any]:
    call.state.store.delete_tag(_run_id(call), text(call.params, "key"))
    return {}


def log_batch(call: Call) -> dict[str, Any]:
    params = call.params
    run_id = _run_id(call)
    raw_metrics = objects(params, "metrics")
    raw_params = objects(params, "params")
    raw_tags = objects(params, "tags")
    check_batch_sizes(raw_metrics, raw_params, raw_tags)
    key = read_idempotency_key(params)
    stamp = now_ms()
    points = [read_metric(item, "metrics", i, stamp) for i, item in enumerate(raw_metrics)]
    values: dict[str, str] = {}
    for name, value in pairs(params, "params"):
        if values.setdefault(name, value) != value:
            raise bad(
                f"Duplicate param key {name!r} in one batch, with the values {values[name]!r} "
                f"and {value!r}: send one value per param key."
            )
    tags = dict(pairs(params, "tags"))
    new_name = tags.pop(RUN_NAME_TAG, None)
    again = {item["key"] for item in raw_metrics if item.get("model_id")}
    if again:
        points = _new_points(call, run_id, points, again)
    if points or values or tags:
        call.state.store.log_batch(
            run_id, metrics=points, params=values, tags=tags, idempotency_key=key
        )
    elif new_name is None:
        call.state.store.get_run_experiment_id(run_id)  # NotFound for an unknown run
    if new_name is not None:
        _rename_by_tag(call, run_id, new_name)
    return {}


def search_runs(call: Call) -> dict[str, Any]:
    params = call.params
    state = call.state
    ids = [state.experiment_in(i) for i in strings(params, "experiment_ids")]
    readable = _readable(call)
    if readable is not None:
        ids = [i for i in ids if i in readable]
    max_results = read_max_results(params, 1000, MAX_SEARCH_RESULTS)
    view = read_view(params, "run_view_type")
    order_by = strings(params, "order_by")
    token = optional_text(params, "page_token")
    if not ids:
        return {"runs": []}
    runs, next_token = state.store.search_runs(
        ids,
        optional_text(params, "filter") or "",
        run_view_type=view,
        max_results=max_results,
        order_by=order_by,
        page_token=token,
    )
    return _paged({"runs": runs_json(state, runs)}, next_token)


def get_metric_history(call: Call) -> dict[str, Any]:
    params = call.params
    max_results = read_max_results(params, MAX_HISTORY_RESULTS, MAX_HISTORY_RESULTS)
    metrics, token = call.state.store.get_metric_history_page(
        _run_id(call),
        text(params, "metric_key"),
        max_results,
        optional_text(params, "page_token"),
    )
    return _paged({"metrics": [metric_json(m) for m in metrics]}, token)


def get_metric_history_bulk_interval(call: Call) -> dict[str, Any]:
    params = call.params
    run_ids = strings(params, "run_ids")
    if not run_ids:
        raise bad("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > MAX_BULK_RUNS:
        raise bad(
            f"Invalid value for parameter 'run_ids': {len(run_ids)} runs, the most one request "
            f"takes is {MAX_BULK_RUNS}."
        )
    key = text(params, "metric_key")
    start, end = read_int64(params, "start_step"), read_int64(params, "end_step")
    if (start is None) != (end is None):
        raise bad("If either start_step or end_step is given, both must be.")
    if start is not None and end is not None and start > end:
        raise bad(f"end_step must be at least start_step; got start_step={start}, end_step={end}.")
    max_results = read_max_results(params, MAX_BULK_RESULTS, MAX_BULK_RESULTS)
    store = call.state.store
    readable = _readable(call)
    histories = {}
    for run_id in dict.fromkeys(run_ids):
        experiment_id = store.get_run_experiment_id(run_id)
        if readable is not None and experiment_id not in readable:
            from modelpack.errors import PermissionDenied

            raise PermissionDenied(f"You may not read run {run_id!r}'s experiment.")
        histories[run_id] = store.get_metric_history(run_id, key)
    all_steps = sorted({m.step for h in histories.values() for m in h})
    if start is None or end is None:
        start, end = 0, (all_steps[-1] if all_steps else 0)
    edges = {s for h in histories.values() if h for s in (h[0].step, h[-1].step)}
    wanted = sampled_steps(start, end, max_results, all_steps) | {
        s for s in edges if start <= s <= end
    }
    out = []
    for run_id, history in histories.items():
        chosen = [m for m in history if m.step in wanted][:max_results]
        out.extend(metric_json(m, run_id) for m in chosen)
    return {"metrics": out}


def list_artifacts(call: Call) -> dict[str, Any]:
    from modelpack.artifacts import artifact_store
    from modelpack.store.search import decode_token, encode_token

    params = call.params
    run = call.state.store.get_run(_run_id(call))
    path = optional_text(params, "path")
    if path:
        try:
            check_relative(path, "path")
            check_length(path, "path")
        except FormatError as exc:
            raise bad(f"Invalid value for parameter 'path': {exc}") from None
    entries = artifact_store(run.info.artifact_uri).list(path or "")
    offset = decode_token(optional_text(params, "page_token"))
    page = entries[offset : offset + LIST_PAGE]
    files = []
    for entry in page:
        item: dict[str, Any] = {"path": entry.path, "is_dir": entry.is_dir}
        if not entry.is_dir:
            item["file_size"] = entry.size
        files.append(item)
    out = {"root_uri": call.state.public_uri(run.info.artifact_uri), "files": files}
    more = offset + LIST_PAGE < len(entries)
    return _paged(out, encode_token(offset + LIST_PAGE) if more else None)


def log_inputs(call: Call) -> dict[str, Any]:
    run_id = _run_id(call)
    datasets = [read_dataset_input(d, i) for i, d in enumerate(objects(call.params, "datasets"))]
    for i, model in enumerate(objects(call.params, "models")):  # accepted: nothing to store
        if not isinstance(model.get("model_id"), str) or not model["model_id"]:
            raise bad(f"Invalid models[{i}]: 'model_id' must be a non-empty string.")
    if datasets:
        call.state.store.log_inputs(run_id, datasets)
    else:
        call.state.store.get_run_experiment_id(run_id)
    return {}


def log_outputs(call: Call) -> dict[str, Any]:
    """MLflow 3's ``runs/outputs``: the LoggedModels a run produced, kept in the run's tag
    ``modelpack.outputs.models`` (a JSON list of ``{model_id, step}``) and shown as the run's
    ``outputs``."""
    run_id = _run_id(call)
    new = []
    for i, model in enumerate(objects(call.params, "models")):
        model_id = model.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise bad(f"Invalid models[{i}]: 'model_id' must be a non-empty string.")
        step = in_item("models", i, lambda m=model: read_int64(m, "step", 0))
        new.append({"model_id": model_id, "step": step})
    store = call.state.store
    run = store.get_run(run_id)
    if not new:
        return {}
    try:
        known = orjson.loads(run.data.tags.get(OUTPUTS_TAG) or "[]")
    except orjson.JSONDecodeError:
        known = []
    known = [e for e in known if isinstance(e, dict)] if isinstance(known, list) else []
    seen = {(e.get("model_id"), e.get("step")) for e in known}
    merged = known + [e for e in new if (e["model_id"], e["step"]) not in seen]
    store.log_batch(run_id, tags={OUTPUTS_TAG: orjson.dumps(merged).decode()})
    return {}


def log_model(call: Call) -> dict[str, Any]:
    """MLflow 2's ``runs/log-model``: the MLmodel of a model logged to the run, appended to the
    run's tag ``mlflow.log-model.history`` as MLflow's store does."""
    run_id = _run_id(call)
    raw = text(call.params, "model_json")
    try:
        model = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad(f"Invalid value for parameter 'model_json': not JSON ({exc}).") from None
    if not isinstance(model, dict):
        raise bad("Invalid value for parameter 'model_json': expected a JSON object.")
    missing = [f for f in _LOG_MODEL_FIELDS if f not in model]
    if missing:
        raise bad(f"Model json is missing mandatory fields: {', '.join(missing)}.")
    entry = {
        k: model[k]
        for k in ("run_id", "utc_time_created", "artifact_path", "model_uuid")
        if k in model
    }
    flavors = model.get("flavors")
    if not isinstance(flavors, dict):
        raise bad("Invalid value for parameter 'model_json': 'flavors' must be an object.")
    entry["flavors"] = {
        name: {k: v for k, v in conf.items() if k != "config"} if isinstance(conf, dict) else conf
        for name, conf in flavors.items()
    }
    store = call.state.store
    history_tag = store.get_run(run_id).data.tags.get(LOG_MODEL_TAG)
    try:
        history = orjson.loads(history_tag) if history_tag else []
    except orjson.JSONDecodeError:
        history = []
    if not isinstance(history, list):
        history = []
    store.log_batch(run_id, tags={LOG_MODEL_TAG: orjson.dumps([*history, entry]).decode()})
    return {}


# ---------------------------------------------------------------------- modelpack's own


def record_logged_model(call: Call) -> dict[str, Any]:
    params = call.params
    run_id = _run_id(call)
    artifact_path = read_artifact_path(params)
    model_id = read_hex(params, "model_id", _HEX32, 32)
    sha = read_hex(params, "manifest_sha256", _HEX64, 64)
    flavor = text(params, "flavor")
    if len(flavor) > 64:
        raise bad(f"Invalid value for parameter 'flavor': {len(flavor)} characters, limit 64.")
    store = call.state.store
    store.get_run_experiment_id(run_id)  # NotFound for an unknown run
    store.record_logged_model(run_id, artifact_path, model_id, sha, flavor)
    return {}


def get_logged_model(call: Call) -> dict[str, Any]:
    run_id = _run_id(call)
    artifact_path = read_artifact_path(call.params)
    store = call.state.store
    store.get_run_experiment_id(run_id)
    row = store.get_logged_model(run_id, artifact_path)
    if row is None:
        return {}
    return {
        "logged_model": {
            "run_id": row.run_id,
            "artifact_path": row.artifact_path,
            "model_id": row.model_id,
            "manifest_sha256": row.manifest_sha256,
            "flavor": row.flavor,
            "creation_time": row.creation_time,
        }
    }


def resume_run(call: Call) -> dict[str, Any]:
    run_id = _run_id(call)
    call.state.store.resume_run(run_id, optional_text(call.params, "run_name"))
    return {"run": _run_payload(call, run_id)}


# ---------------------------------------------------------------------- the routes


def _e(
    methods: tuple[str, ...],
    path: str,
    handler: Callable[[Call], Any],
    access: Any,
    summary: str,
    fields: str = "",
) -> Endpoint:
    return Endpoint(methods, path, handler, access, summary, request_fields=tuple(fields.split()))


_READ_EXP = on_experiment("READ", _locate_experiment)
_EDIT_EXP = on_experiment("EDIT", _locate_experiment)
_MANAGE_EXP = on_experiment("MANAGE", _locate_experiment)
_READ_RUN = on_experiment("READ", _locate_run)
_EDIT_RUN = on_experiment("EDIT", _locate_run)
_MANAGE_RUN = on_experiment("MANAGE", _locate_run)
_GET, _POST, _BOTH = ("GET",), ("POST",), ("GET", "POST")
_X = "/mlflow/experiments"
_R = "/mlflow/runs"
_M = "/modelpack/runs"

ENDPOINTS: list[Endpoint] = [
    _e(_GET, f"{_X}/get-by-name", get_experiment_by_name,
       on_experiment("READ", _locate_by_name), "An experiment by name.", "experiment_name"),
    _e(_POST, f"{_X}/create", create_experiment, on_experiment("EDIT", _locate_new),
       "Create an experiment.", "name artifact_location tags"),
    _e(_GET, f"{_X}/get", get_experiment, _READ_EXP, "An experiment by id.", "experiment_id"),
    _e(_BOTH, f"{_X}/search", search_experiments, LOGIN, "Search experiments.",
       "max_results page_token filter order_by view_type"),
    _e(_POST, f"{_X}/update", update_experiment, _MANAGE_EXP, "Rename an experiment.",
       "experiment_id new_name"),
    _e(_POST, f"{_X}/delete", delete_experiment, _MANAGE_EXP, "Delete an experiment.",
       "experiment_id"),
    _e(_POST, f"{_X}/restore", restore_experiment, _MANAGE_EXP, "Restore an experiment.",
       "experiment_id"),
    _e(_POST, f"{_X}/set-experiment-tag", set_experiment_tag, _EDIT_EXP,
       "Set an experiment's tag.", "experiment_id key value"),
    _e(_POST, f"{_X}/delete-experiment-tag", delete_experiment_tag, _EDIT_EXP,
       "Delete an experiment's tag.", "experiment_id key"),
    _e(_POST, f"{_R}/create", create_run, on_experiment("EDIT", _locate_run_target),
       "Start a run.", "experiment_id user_id run_name start_time tags"),
    _e(_GET, f"{_R}/get", get_run, _READ_RUN, "A run.", "run_id run_uuid"),
    _e(_POST, f"{_R}/update", update_run, _EDIT_RUN, "Update a run's status, end or name.",
       "run_id run_uuid status end_time run_name"),
    _e(_POST, f"{_R}/delete", delete_run, _MANAGE_RUN, "Delete a run.", "run_id"),
    _e(_POST, f"{_R}/restore", restore_run, _MANAGE_RUN, "Restore a run.", "run_id"),
    _e(_POST, f"{_R}/log-metric", log_metric, _EDIT_RUN, "Log a metric point.",
       "run_id run_uuid key value timestamp step model_id dataset_name dataset_digest"),
    _e(_POST, f"{_R}/log-parameter", log_param, _EDIT_RUN, "Log a param.",
       "run_id run_uuid key value"),
    _e(_POST, f"{_R}/log-batch", log_batch, _EDIT_RUN,
       "Log metrics, params and tags in one transaction.",
       "run_id metrics params tags idempotency_key"),
    _e(_POST, f"{_R}/set-tag", set_tag, _EDIT_RUN, "Set a run's tag.",
       "run_id run_uuid key value"),
    _e(_POST, f"{_R}/delete-tag", delete_tag, _EDIT_RUN, "Delete a run's tag.", "run_id key"),
    _e(_BOTH, f"{_R}/search", search_runs, LOGIN, "Search runs.",
       "experiment_ids filter run_view_type max_results order_by page_token"),
    _e(_POST, f"{_R}/log-inputs", log_inputs, _EDIT_RUN, "Record the datasets a run used.",
       "run_id datasets models"),
    _e(_POST, f"{_R}/outputs", log_outputs, _EDIT_RUN, "Record the models a run produced.",
       "run_id models"),
    _e(_POST, f"{_R}/log-model", log_model, _EDIT_RUN, "Record a model logged to a run (2.x).",
       "run_id model_json"),
    _e(_GET, "/mlflow/metrics/get-history", get_metric_history, _READ_RUN,
       "A metric's points, a page at a time.", "run_id run_uuid metric_key max_results page_token"),
    _e(_GET, "/mlflow/metrics/get-history-bulk-interval", get_metric_history_bulk_interval,
       LOGIN, "Sampled points of a metric over runs (charts).",
       "run_ids metric_key start_step end_step max_results"),
    _e(_GET, "/mlflow/artifacts/list", list_artifacts, _READ_RUN, "A run's artifacts.",
       "run_id run_uuid path page_token"),
    _e(_POST, f"{_M}/record-logged-model", record_logged_model, _EDIT_RUN,
       "Record the package a run logged (modelpack).",
       "run_id artifact_path model_id manifest_sha256 flavor"),
    _e(_GET, f"{_M}/logged-model", get_logged_model, _READ_RUN,
       "The package a run logged at a path (modelpack).", "run_id artifact_path"),
    _e(_POST, f"{_M}/resume", resume_run, _EDIT_RUN, "Set an ended run RUNNING again.",
       "run_id run_name"),
]  # fmt: skip
