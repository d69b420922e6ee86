"""Writes that copy records from another store as they were: given ids, version numbers and
times, the full metric history row by row.

The store's own methods make ids and stamp times themselves; an import keeps the source's. Each
function here is one transaction on the store's engine over the tables of ``schema.py``, so a
process killed midway leaves an object either whole or absent, never half there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from modelpack.store import engines, registry
from modelpack.store import schema as t

__all__ = [
    "ExperimentRecord",
    "MetricPoint",
    "RunRecord",
    "VersionRecord",
    "experiment_by_name",
    "experiment_id_taken",
    "existing_run_ids",
    "insert_alias",
    "insert_experiment",
    "insert_registered_model",
    "insert_run",
    "insert_version",
    "latest_points",
    "model_aliases",
    "registered_model_id",
    "version_sources",
]

IMPORT_COMMENT = "imported"


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class ExperimentRecord:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    parent_run_id: str | None
    params: Mapping[str, str]
    tags: Mapping[str, str]
    metrics: Sequence[MetricPoint]


@dataclass(frozen=True)
class VersionRecord:
    version: int
    stage: str
    source: str
    run_id: str | None
    model_id: str
    manifest_sha256: str
    storage_location: str
    description: str
    user_id: str
    status: str
    creation_time: int
    last_updated_time: int
    tags: Mapping[str, str] = field(default_factory=dict)


def _nan_as_null(value: float) -> float | None:
    return None if value != value else value


def latest_points(points: Iterable[MetricPoint]) -> dict[str, MetricPoint]:
    """Each key's latest point as MLflow picks it: the highest (step, timestamp, value), a NaN
    below any number; of equal ones, the last logged."""
    latest: dict[str, tuple[tuple[int, int, float], MetricPoint]] = {}
    for p in points:
        rank = (p.step, p.timestamp, float("-inf") if p.value != p.value else p.value)
        old = latest.get(p.key)
        if old is None or rank >= old[0]:
            latest[p.key] = (rank, p)
    return {key: point for key, (_, point) in latest.items()}


# ---------------------------------------------------------------------------- experiments


def experiment_by_name(engine: sa.Engine, name: str) -> str | None:
    """The id of the experiment called ``name``, or None."""
    with engines.translated(engine), engine.connect() as conn:
        return conn.execute(
            sa.select(t.experiments.c.experiment_id).where(t.experiments.c.name == name)
        ).scalar()


def experiment_id_taken(engine: sa.Engine, experiment_id: str) -> bool:
    with engines.translated(engine), engine.connect() as conn:
        found = conn.execute(
            sa.select(t.experiments.c.experiment_id).where(
                t.experiments.c.experiment_id == experiment_id
            )
        ).scalar()
    return found is not None


def insert_experiment(engine: sa.Engine, record: ExperimentRecord) -> None:
    """The experiment and its tags, in one transaction."""
    with engines.translated(engine), engine.begin() as conn:
        conn.execute(
            t.experiments.insert().values(
                experiment_id=record.experiment_id,
                name=record.name,
                artifact_location=record.artifact_location,
                lifecycle_stage=record.lifecycle_stage,
                creation_time=record.creation_time,
                last_update_time=record.last_update_time,
            )
        )
        rows = [
            {"experiment_id": record.experiment_id, "key": k, "value": v}
            for k, v in record.tags.items()
        ]
        if rows:
            conn.execute(t.experiment_tags.insert(), rows)


# ---------------------------------------------------------------------------- runs


def existing_run_ids(engine: sa.Engine, run_ids: Sequence[str]) -> set[str]:
    """Those of ``run_ids`` the store holds."""
    found: set[str] = set()
    with engines.translated(engine), engine.connect() as conn:
        for start in range(0, len(run_ids), 500):
            chunk = list(run_ids[start : start + 500])
            found.update(
                conn.execute(sa.select(t.runs.c.run_id).where(t.runs.c.run_id.in_(chunk))).scalars()
            )
    return found


def insert_run(engine: sa.Engine, record: RunRecord) -> None:
    """The run with its params, tags, every metric point (in the order given) and the latest
    point of each metric, in one transaction."""
    with engines.translated(engine), engine.begin() as conn:
        conn.execute(
            t.runs.insert().values(
                run_id=record.run_id,
                experiment_id=record.experiment_id,
                run_name=record.run_name,
                user_id=record.user_id,
                status=record.status,
                start_time=record.start_time,
                end_time=record.end_time,
                lifecycle_stage=record.lifecycle_stage,
                artifact_uri=record.artifact_uri,
                parent_run_id=record.parent_run_id,
            )
        )
        for table, values in ((t.params, record.params), (t.tags, record.tags)):
            rows = [{"run_id": record.run_id, "key": k, "value": v} for k, v in values.items()]
            if rows:
                conn.execute(table.insert(), rows)
        points = [
            {
                "run_id": record.run_id,
                "key": p.key,
                "value": _nan_as_null(p.value),
                "timestamp": p.timestamp,
                "step": p.step,
            }
            for p in record.metrics
        ]
        if points:
            conn.execute(t.metrics.insert(), points)
            latest = [
                {
                    "run_id": record.run_id,
                    "key": p.key,
                    "value": _nan_as_null(p.value),
                    "timestamp": p.timestamp,
                    "step": p.step,
                }
                for p in latest_points(record.metrics).values()
            ]
            conn.execute(t.latest_metrics.insert(), latest)


# ---------------------------------------------------------------------------- registry


def registered_model_id(engine: sa.Engine, name: str) -> str | None:
    with engines.translated(engine), engine.connect() as conn:
        return conn.execute(
            sa.select(t.registered_models.c.id).where(t.registered_models.c.name == name)
        ).scalar()


def insert_registered_model(
    engine: sa.Engine,
    name: str,
    *,
    description: str,
    creation_time: int,
    last_updated_time: int,
    tags: Mapping[str, str],
) -> str:
    """The registered model and its tags, in one transaction; returns its id."""
    model = uuid.uuid4().hex
    with engines.translated(engine), engine.begin() as conn:
        conn.execute(
            t.registered_models.insert().values(
                id=model,
                name=name,
                description=description,
                creation_time=creation_time,
                last_updated_time=last_updated_time,
            )
        )
        rows = [{"model": model, "key": k, "value": v} for k, v in tags.items()]
        if rows:
            conn.execute(t.registered_model_tags.insert(), rows)
    return model


def version_sources(engine: sa.Engine, model: str) -> dict[int, str]:
    """``{version: source}`` of the registered model's versions."""
    mv = t.model_versions
    with engines.translated(engine), engine.connect() as conn:
        rows = conn.execute(sa.select(mv.c.version, mv.c.source).where(mv.c.model == model))
        return {int(v): str(s) for v, s in rows}


def _history(
    conn: sa.Connection,
    model: str,
    name: str,
    version: int | None,
    action: str,
    before: str | None,
    after: str | None,
    user_id: str,
) -> None:
    registry.write_history(
        conn, model, name, version, action, before, after, user_id, IMPORT_COMMENT
    )


def insert_version(
    engine: sa.Engine,
    model: str,
    name: str,
    record: VersionRecord,
    *,
    user_id: str,
    reserved: Sequence[int] = (),
) -> None:
    """The version under its own number, its tags and history, in one transaction.

    ``reserved`` are numbers the source had used for versions deleted since: each gets a
    ``delete`` history record, so the store never hands those numbers out again.
    """
    mv = t.model_versions
    with engines.translated(engine), engine.begin() as conn:
        conn.execute(
            mv.insert().values(
                model=model,
                version=record.version,
                stage=record.stage,
                source=record.source,
                run_id=record.run_id,
                model_id=record.model_id,
                manifest_sha256=record.manifest_sha256,
                storage_location=record.storage_location,
                description=record.description,
                user_id=record.user_id,
                status=record.status,
                creation_time=record.creation_time,
                last_updated_time=record.last_updated_time,
            )
        )
        rows = [
            {"model": model, "version": record.version, "key": k, "value": v}
            for k, v in record.tags.items()
        ]
        if rows:
            conn.execute(t.model_version_tags.insert(), rows)
        _history(conn, model, name, record.version, "create", None, "None", user_id)
        if record.stage != "None":
            _history(conn, model, name, record.version, "stage", "None", record.stage, user_id)
        h = t.model_history
        recorded = set(
            conn.execute(
                sa.select(h.c.version).where(h.c.model == model, h.c.action == "delete")
            ).scalars()
        )
        for number in sorted(set(reserved) - recorded):
            _history(conn, model, name, number, "delete", None, None, user_id)


def model_aliases(engine: sa.Engine, model: str) -> dict[str, int]:
    with engines.translated(engine), engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.aliases.c.alias, t.aliases.c.version).where(t.aliases.c.model == model)
        )
        return {str(a): int(v) for a, v in rows}


def insert_alias(
    engine: sa.Engine, model: str, name: str, alias: str, version: int, *, user_id: str
) -> None:
    with engines.translated(engine), engine.begin() as conn:
        conn.execute(t.aliases.insert().values(model=model, alias=alias, version=version))
        _history(conn, model, name, version, "alias", None, f"{alias}@{version}", user_id)
