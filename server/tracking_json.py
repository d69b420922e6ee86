"""The tracking entities as MLflow's REST API writes them: snake_case keys, enums as names,
int64 times as JSON numbers (epoch milliseconds), NaN and the infinities as MLflow's strings,
experiment ids through experiment "0", artifact locations as clients see them.

Every experiment id that leaves the server passes ``state.experiment_out`` and every artifact
location ``state.public_uri``, here and only here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelpack.entities import DatasetInput, Experiment, Metric, Run, RunInfo
from modelpack.server.wire import wire_float

if TYPE_CHECKING:
    from modelpack.server.state import ServerState

__all__ = [
    "OUTPUTS_TAG",
    "PARENT_TAG",
    "RUN_NAME_TAG",
    "dataset_input_json",
    "experiment_json",
    "metric_json",
    "ms",
    "run_info_json",
    "run_json",
    "runs_json",
    "tags_json",
]

RUN_NAME_TAG = "mlflow.runName"  # MLflow keeps a run's name as this tag too
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests runs
OUTPUTS_TAG = "modelpack.outputs.models"  # runs/outputs: the LoggedModels a run produced

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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
