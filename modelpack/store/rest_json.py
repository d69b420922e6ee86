"""MLflow's REST JSON (as ``modelpack server`` writes it) turned into modelpack's entities, and
the few values that go the other way (metrics, tags, datasets).

MLflow's JSON leaves out empty fields (proto3), writes int64 as numbers, enums as names, a
version as a string and NaN or the infinities as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"``; every reader here takes a missing field as its empty value. Artifact URIs come
back as the server shows them (``mlflow-artifacts:/<path>``); ``Uri`` turns them into ones this
process can open (the proxy's ``http://host:port/api/2.0/mlflow-artifacts/artifacts/<path>``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelpack.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    HistoryRecord,
    InputTag,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    at_ms,
    from_ms,
)
from modelpack.errors import InvalidArgument, ModelpackError

__all__ = [
    "LoggedModelRecord",
    "Uri",
    "dataset_inputs_out",
    "experiment",
    "history_record",
    "logged_model_record",
    "metric",
    "metric_out",
    "model_version",
    "registered_model",
    "run",
    "tags_in",
    "tags_out",
    "wire_float",
]

Uri = Callable[[str | None], str | None]
PARENT_TAGS = ("modelpack.parentRunId", "mlflow.parentRunId")
# Tags the server derives from a run's attributes for MLflow's clients (``mlflow.runName``,
# ``mlflow.parentRunId``) and does not store: left out again, so a run reads as the SQL store
# returns it.
RUN_NAME_TAG, PARENT_TAG = "mlflow.runName", "mlflow.parentRunId"


@dataclass(frozen=True)
class LoggedModelRecord:
    """What the store recorded of a model logged in a run (``SqlStore.get_logged_model``'s
    row): the package's ``model_id`` and the sha256 of its manifest, which every load of
    ``runs:/<run_id>/<artifact_path>`` must match."""

    run_id: str
    artifact_path: str
    model_id: str
    manifest_sha256: str
    flavor: str
    creation_time: int | None = None


# ---------------------------------------------------------------------- small values


def wire_float(value: float) -> float | str:
    """A double as MLflow's JSON writes it: NaN and the infinities as strings (JSON has none)."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _float(value: Any, what: str) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)  # also "NaN", "Infinity", "-Infinity"
    except (TypeError, ValueError):
        raise ModelpackError(
            f"The server sent {value!r} as {what}, which is not a number."
        ) from None


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ModelpackError(
            f"The server sent {value!r} as {what}, which is not an integer."
        ) from None


def _ms(value: Any, what: str) -> int:
    return 0 if value is None or value == "" else _int(value, what)


def _optional_ms(value: Any, what: str) -> int | None:
    return None if value is None or value == "" else _int(value, what)


def tags_in(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """MLflow's ``[{"key", "value"}]`` as a dict."""
    return {str(t["key"]): str(t.get("value", "")) for t in items or ()}


def tags_out(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    """A dict of (already checked, string) tags as MLflow's ``[{"key", "value"}]``."""
    return [{"key": k, "value": v} for k, v in (tags or {}).items()]


def metric(d: Mapping[str, Any]) -> Metric:
    key = str(d["key"])
    return Metric(
        key,
        _float(d.get("value"), f"the value of metric {key!r}"),
        _ms(d.get("timestamp"), f"the timestamp of metric {key!r}"),
        _int(d.get("step", 0), f"the step of metric {key!r}"),
    )


def metric_out(m: Metric) -> dict[str, Any]:
    return {"key": m.key, "value": wire_float(m.value), "timestamp": m.timestamp, "step": m.step}


# ---------------------------------------------------------------------- tracking


def experiment(d: Mapping[str, Any], uri: Uri) -> Experiment:
    return Experiment(
        experiment_id=str(d["experiment_id"]),
        name=str(d.get("name", "")),
        artifact_location=uri(d.get("artifact_location")) or "",
        lifecycle_stage=str(d.get("lifecycle_stage", "active")),
        creation_time=at_ms(_ms(d.get("creation_time"), "an experiment's creation_time")),
        tags=tags_in(d.get("tags")),
        last_update_time=from_ms(
            _optional_ms(d.get("last_update_time"), "an experiment's last_update_time")
        ),
    )


def _dataset_input(d: Mapping[str, Any]) -> DatasetInput:
    ds = d.get("dataset") or {}
    return DatasetInput(
        dataset=Dataset(
            name=str(ds.get("name", "")),
            digest=str(ds.get("digest", "")),
            source_type=str(ds.get("source_type", "")),
            source=str(ds.get("source", "")),
            schema=ds.get("schema") or None,
            profile=ds.get("profile") or None,
        ),
        tags=tuple(InputTag(str(t["key"]), str(t.get("value", ""))) for t in d.get("tags") or ()),
    )


def dataset_inputs_out(items: Iterable[Any]) -> list[dict[str, Any]]:
    """``DatasetInput`` s as MLflow's ``datasets`` of ``runs/log-inputs``."""
    out = []
    for item in items:
        if not isinstance(item, DatasetInput):
            raise InvalidArgument(
                f"Expected a DatasetInput, got {type(item).__name__}. Log a dataset with "
                f"modelpack.log_input(modelpack.data.from_pandas(df), context='training')."
            )
        ds = item.dataset
        dataset = {
            "name": ds.name,
            "digest": ds.digest,
            "source_type": ds.source_type,
            "source": ds.source,
        }
        if ds.schema is not None:
            dataset["schema"] = ds.schema
        if ds.profile is not None:
            dataset["profile"] = ds.profile
        out.append(
            {
                "tags": [{"key": t.key, "value": t.value} for t in item.tags],
                "dataset": dataset,
            }
        )
    return out


def run(d: Mapping[str, Any], uri: Uri) -> Run:
    info = d.get("info") or {}
    data = d.get("data") or {}
    run_id = str(info.get("run_id") or info.get("run_uuid") or "")
    tags = tags_in(data.get("tags"))
    parent = info.get("parent_run_id") or next(
        (tags[name] for name in PARENT_TAGS if tags.get(name)), None
    )
    run_name = str(info.get("run_name", ""))
    if tags.get(RUN_NAME_TAG) == run_name:
        del tags[RUN_NAME_TAG]
    if info.get("parent_run_id") and tags.get(PARENT_TAG) == info["parent_run_id"]:
        del tags[PARENT_TAG]
    return Run(
        info=RunInfo(
            run_id=run_id,
            experiment_id=str(info.get("experiment_id", "")),
            run_name=run_name,
            user_id=str(info.get("user_id", "")),
            status=str(info.get("status", "RUNNING")),
            start_time=at_ms(_ms(info.get("start_time"), f"run {run_id!r}'s start_time")),
            end_time=from_ms(_optional_ms(info.get("end_time"), f"run {run_id!r}'s end_time")),
            artifact_uri=uri(info.get("artifact_uri")) or "",
            lifecycle_stage=str(info.get("lifecycle_stage", "active")),
            parent_run_id=str(parent) if parent else None,
        ),
        data=RunData(
            params=tags_in(data.get("params")),
            metrics={m.key: m.value for m in map(metric, data.get("metrics") or ())},
            tags=tags,
        ),
        inputs=RunInputs(
            tuple(_dataset_input(i) for i in (d.get("inputs") or {}).get("dataset_inputs") or ())
        ),
    )


def logged_model_record(d: Mapping[str, Any]) -> LoggedModelRecord:
    return LoggedModelRecord(
        run_id=str(d.get("run_id", "")),
        artifact_path=str(d.get("artifact_path", "")),
        model_id=str(d.get("model_id", "")),
        manifest_sha256=str(d.get("manifest_sha256", "")),
        flavor=str(d.get("flavor", "")),
        creation_time=_optional_ms(d.get("creation_time"), "a logged model's creation_time"),
    )


# ---------------------------------------------------------------------- registry


def _package_model_id(d: Mapping[str, Any]) -> str:
    """The package's model_id (32 hex): ``modelpack_model_id``, or ``model_id`` when it is one
    (MLflow's ``model_id`` is otherwise a LoggedModel's ``m-...`` id)."""
    ours = d.get("modelpack_model_id")
    if ours:
        return str(ours)
    theirs = str(d.get("model_id") or "")
    return theirs if re.fullmatch(r"[0-9a-f]{32}", theirs) else ""


def model_version(d: Mapping[str, Any], uri: Uri) -> ModelVersion:
    name = str(d.get("name", ""))
    what = f"a version of {name!r}"
    return ModelVersion(
        name=name,
        version=_int(d.get("version"), f"the number of {what}"),
        stage=str(d.get("current_stage") or "None"),
        aliases=tuple(str(a) for a in d.get("aliases") or ()),
        source=str(d.get("source", "")),
        run_id=str(d["run_id"]) if d.get("run_id") else None,
        model_id=_package_model_id(d),
        description=str(d.get("description") or ""),
        tags=tags_in(d.get("tags")),
        created_at=at_ms(_ms(d.get("creation_timestamp"), f"{what}'s creation_timestamp")),
        updated_at=at_ms(_ms(d.get("last_updated_timestamp"), f"{what}'s last_updated_timestamp")),
        user_id=str(d.get("user_id") or ""),
        storage_location=uri(d.get("storage_location")) or "",
        status=str(d.get("status") or "READY"),
        manifest_sha256=str(d.get("manifest_sha256") or ""),
    )


def registered_model(d: Mapping[str, Any], uri: Uri) -> RegisteredModel:
    name = str(d.get("name", ""))
    return RegisteredModel(
        name=name,
        description=str(d.get("description") or ""),
        tags=tags_in(d.get("tags")),
        aliases={
            str(a["alias"]): _int(a.get("version"), f"the version of alias {a['alias']!r}")
            for a in d.get("aliases") or ()
        },
        created_at=at_ms(_ms(d.get("creation_timestamp"), f"{name!r}'s creation_timestamp")),
        updated_at=at_ms(
            _ms(d.get("last_updated_timestamp"), f"{name!r}'s last_updated_timestamp")
        ),
        latest_versions=tuple(model_version(v, uri) for v in d.get("latest_versions") or ()),
    )


def history_record(d: Mapping[str, Any]) -> HistoryRecord:
    version = d.get("version")
    return HistoryRecord(
        name=str(d.get("name", "")),
        version=None if version is None or version == "" else _int(version, "a history version"),
        action=str(d.get("action", "")),
        from_value=d.get("from_value"),
        to_value=d.get("to_value"),
        user_id=str(d.get("user_id") or ""),
        timestamp=at_ms(_ms(d.get("timestamp"), "a history record's timestamp")),
        comment=d.get("comment"),
    )
