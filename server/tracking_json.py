"""The tracking entities as MLflow's REST API writes them: snake_case keys, enums as names,
int64 times as JSON numbers (epoch milliseconds), NaN and the infinities as MLflow's strings,
experiment ids through experiment "0", artifact locations as clients see them.

Every experiment id that leaves the server passes ``state.experiment_out`` and every artifact
location ``state.public_uri``, here and only here. The other way, the ``read_*`` functions read
a request's fields: a wrong type or a value out of range is an ``ApiError``
(INVALID_PARAMETER_VALUE) that names the field, never a 500.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelpack.entities import Dataset, DatasetInput, Experiment, InputTag, Metric, Run, RunInfo
from modelpack.errors import FormatError
from modelpack.paths import check_length, check_relative
from modelpack.server.wire import (
    ApiError,
    integer,
    number,
    optional_text,
    pairs,
    text,
    wire_float,
)

if TYPE_CHECKING:
    from modelpack.server.state import ServerState

__all__ = [
    "INT64",
    "INVALID",
    "MAX_BATCH_ITEMS",
    "MAX_BATCH_METRICS",
    "MAX_BATCH_PARAMS",
    "MAX_BATCH_TAGS",
    "MAX_IDEMPOTENCY_KEY",
    "OUTPUTS_TAG",
    "PARENT_TAG",
    "RUN_NAME_TAG",
    "bad",
    "check_batch_sizes",
    "dataset_input_json",
    "experiment_json",
    "in_item",
    "metric_json",
    "ms",
    "read_artifact_path",
    "read_dataset_input",
    "read_hex",
    "read_idempotency_key",
    "read_int64",
    "read_max_results",
    "read_metric",
    "read_status",
    "read_value",
    "read_view",
    "run_info_json",
    "run_json",
    "runs_json",
    "sampled_steps",
    "tags_json",
]

RUN_NAME_TAG = "mlflow.runName"  # MLflow keeps a run's name as this tag too
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests runs
OUTPUTS_TAG = "modelpack.outputs.models"  # runs/outputs: the LoggedModels a run produced

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

INVALID = "INVALID_PARAMETER_VALUE"
INT64 = (-(2**63), 2**63 - 1)
# MLflow's limits (mlflow/utils/validation.py): a client that splits batches by them works.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_ITEMS = 1000
MAX_IDEMPOTENCY_KEY = 64
_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")  # MLflow's 1..5
_VIEWS = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}


def ms(when: dt.datetime | None) -> int | None:
    """An aware datetime as epoch milliseconds, in integer arithmetic (exact)."""
    return None if when is None else (when - _EPOCH) // dt.timedelta(milliseconds=1)


def tags_json(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def experiment_json(state: ServerState, experiment: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": state.experiment_out(experiment.experiment_id),
        "name": experiment.name,
        "artifact_location": state.public_uri(experiment.artifact_location),
        "lifecycle_stage": experiment.lifecycle_stage,
        "creation_time": experiment.creation_time_ms,
        "last_update_time": ms(experiment.last_update_time) or experiment.creation_time_ms,
        "tags": tags_json(experiment.tags),
    }


def run_info_json(state: ServerState, info: RunInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": info.run_id,
        "run_uuid": info.run_id,
        "run_name": info.run_name,
        "experiment_id": state.experiment_out(info.experiment_id),
        "user_id": info.user_id,
        "status": info.status,
        "start_time": info.start_time_ms,
        "artifact_uri": state.public_uri(info.artifact_uri),
        "lifecycle_stage": info.lifecycle_stage,
    }
    if info.end_time is not None:
        out["end_time"] = info.end_time_ms
    if info.parent_run_id:  # not in MLflow's RunInfo: its clients ignore it, ours read it
        out["parent_run_id"] = info.parent_run_id
    return out


def metric_json(metric: Metric, run_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": metric.key,
        "value": wire_float(metric.value),
        "timestamp": metric.timestamp,
        "step": metric.step,
    }
    if run_id is not None:
        out["run_id"] = run_id
    return out


def dataset_input_json(item: DatasetInput) -> dict[str, Any]:
    ds = item.dataset
    dataset: dict[str, Any] = {
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type,
        "source": ds.source,
    }
    if ds.schema is not None:
        dataset["schema"] = ds.schema
    if ds.profile is not None:
        dataset["profile"] = ds.profile
    return {"tags": [{"key": t.key, "value": t.value} for t in item.tags], "dataset": dataset}


def _model_outputs(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    raw = tags.get(OUTPUTS_TAG)
    if not raw:
        return []
    try:
        entries = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []  # a tag someone set by hand: shown as a tag, not as outputs
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("model_id"), str)]


def run_json(state: ServerState, run: Run, metrics: Sequence[Metric] | None) -> dict[str, Any]:
    """A run as MLflow's ``Run`` message. ``metrics``: the run's latest points (with their
    timestamps and steps, from ``SqlStore.latest_metrics``); None uses the values alone."""
    info = run.info
    if metrics is None:
        metrics = [Metric(k, v, 0, 0) for k, v in sorted(run.data.metrics.items())]
    tags = dict(run.data.tags)
    # What MLflow's store keeps as tags, derived here rather than stored twice; listed in
    # ``derived_tags`` (MLflow's clients ignore the field) so modelpack's client can drop them.
    derived = []
    if RUN_NAME_TAG not in tags:
        tags[RUN_NAME_TAG] = info.run_name
        derived.append(RUN_NAME_TAG)
    if info.parent_run_id and PARENT_TAG not in tags:
        tags[PARENT_TAG] = info.parent_run_id
        derived.append(PARENT_TAG)
    out: dict[str, Any] = {
        "info": run_info_json(state, info),
        "data": {
            "metrics": [metric_json(m) for m in metrics],
            "params": tags_json(run.data.params),
            "tags": tags_json(tags),
            "derived_tags": derived,
        },
        "inputs": {"dataset_inputs": [dataset_input_json(d) for d in run.inputs.dataset_inputs]},
    }
    outputs = _model_outputs(run.data.tags)
    if outputs:
        out["outputs"] = {"model_outputs": outputs}
    return out


def runs_json(state: ServerState, runs: Iterable[Run]) -> list[dict[str, Any]]:
    """Runs, with their latest metrics fetched in one query."""
    runs = list(runs)
    latest = state.store.latest_metrics([r.info.run_id for r in runs]) if runs else {}
    return [run_json(state, r, latest.get(r.info.run_id, [])) for r in runs]


# ---------------------------------------------------------------------- reading requests


def bad(message: str) -> ApiError:
    return ApiError(INVALID, message)


def read_int64(params: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    return integer(params, key, default, low=INT64[0], high=INT64[1])


def read_value(params: Mapping[str, Any], key: str) -> str:
    """A required string that may be empty (a param's or tag's value)."""
    if key not in params or params[key] is None:
        raise bad(f"Missing value for required parameter '{key}'.")
    return optional_text(params, key) or ""


def in_item(field: str, i: int, read: Callable[[], Any]) -> Any:
    """``read()``, its error naming the item (``metrics[3]: ...``)."""
    try:
        return read()
    except ApiError as exc:
        raise ApiError(exc.code, f"Invalid {field}[{i}]: {exc.message}") from None


def read_metric(item: Mapping[str, Any], field: str, i: int, stamp: int) -> Metric:
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise bad(f"Invalid {field}[{i}]: 'key' must be a non-empty string, got {key!r:.60}.")
    value = in_item(field, i, lambda: number(item, "value"))
    timestamp = in_item(field, i, lambda: read_int64(item, "timestamp", stamp))
    step = in_item(field, i, lambda: read_int64(item, "step", 0))
    return Metric(key, value, timestamp, step)


def read_idempotency_key(params: Mapping[str, Any]) -> str | None:
    key = optional_text(params, "idempotency_key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise bad(
            f"Invalid value for parameter 'idempotency_key': {len(key)} characters, the limit "
            f"is {MAX_IDEMPOTENCY_KEY} (a uuid4 hex is 32)."
        )
    return key


def read_max_results(params: Mapping[str, Any], default: int, cap: int) -> int:
    value = integer(params, "max_results", default, low=1)
    assert value is not None
    if value > cap:
        raise bad(
            f"Invalid value {value} for parameter 'max_results': this server returns at most "
            f"{cap} a page; pass a smaller max_results and follow next_page_token."
        )
    return value


def read_view(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None or value == "":
        return "ACTIVE_ONLY"
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        name = _VIEWS.get(value, value.upper())
        if name in _VIEWS.values():
            return name
    raise bad(
        f"Invalid value {value!r:.60} for parameter '{key}': expected ACTIVE_ONLY, "
        f"DELETED_ONLY or ALL."
    )


def read_status(params: Mapping[str, Any]) -> str | None:
    value = params.get("status")
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(_STATUSES):
        return _STATUSES[value - 1]
    if isinstance(value, str) and value.upper() in _STATUSES:
        return value.upper()
    raise bad(
        f"Invalid value {value!r:.60} for parameter 'status': expected one of "
        f"{', '.join(_STATUSES)}."
    )


def check_batch_sizes(metrics: list, params: list, tags: list) -> None:
    for items, limit, what in (
        (metrics, MAX_BATCH_METRICS, "metrics"),
        (params, MAX_BATCH_PARAMS, "params"),
        (tags, MAX_BATCH_TAGS, "tags"),
    ):
        if len(items) > limit:
            raise bad(
                f"A batch logging request can contain at most {limit} {what}. Got "
                f"{len(items)} {what}. Split the {what} across several requests."
            )
    total = len(metrics) + len(params) + len(tags)
    if total > MAX_BATCH_ITEMS:
        raise bad(
            f"A batch logging request can contain at most {MAX_BATCH_ITEMS} metrics, params "
            f"and tags in total. Got {total} in total. Split them across several requests."
        )


def sampled_steps(start: int, end: int, max_results: int, steps: list[int]) -> set[int]:
    """MLflow's sampling of the logged steps in [start, end]: ``max_results`` of them evenly
    spread, and the last one (``steps`` sorted)."""
    import bisect

    lo, hi = bisect.bisect_left(steps, start), bisect.bisect_right(steps, end)
    if hi - lo <= max_results:
        return set(steps[lo:hi])
    interval = (hi - lo) / max_results
    picked = {steps[lo + int(i * interval)] for i in range(max_results)}
    picked.add(steps[hi - 1])
    return picked


def read_dataset_input(item: Mapping[str, Any], i: int) -> DatasetInput:
    dataset = item.get("dataset")
    if not isinstance(dataset, dict):
        raise bad(f"Invalid datasets[{i}]: 'dataset' must be an object.")
    fields: dict[str, str | None] = {}
    for name in ("name", "digest", "source_type", "source", "schema", "profile"):
        value = dataset.get(name)
        required = name in ("name", "digest", "source_type", "source")
        if value is None and not required:
            fields[name] = None
            continue
        if not isinstance(value, str) or (required and not value):
            raise bad(
                f"Invalid datasets[{i}].dataset: '{name}' must be a "
                f"{'non-empty ' if required else ''}string, got {value!r:.60}."
            )
        fields[name] = value
    tags = tuple(InputTag(k, v) for k, v in in_item("datasets", i, lambda: pairs(item, "tags")))
    return DatasetInput(Dataset(**fields), tags)  # type: ignore[arg-type]


def read_artifact_path(params: Mapping[str, Any]) -> str:
    path = text(params, "artifact_path")
    try:
        check_relative(path, "artifact_path")
        check_length(path, "artifact_path")
    except FormatError as exc:
        raise bad(f"Invalid value for parameter 'artifact_path': {exc}") from None
    return path


def read_hex(params: Mapping[str, Any], key: str, pattern: re.Pattern[str], size: int) -> str:
    value = text(params, key)
    if not pattern.match(value):
        raise bad(
            f"Invalid value {value!r:.80} for parameter '{key}': expected {size} lowercase "
            f"hexadecimal characters."
        )
    return value
