"""Reading an MLflow database (SQLite, PostgreSQL, ...): MLflow's own tables, reflected with
SQLAlchemy Core, on a read-only connection; MLflow's code is never imported."""

from __future__ import annotations

import re
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from modelpack.errors import ModelpackError, NotFound
from modelpack.mlflow_readers import (
    DELETED_VERSION,
    SourceExperiment,
    SourceModel,
    SourceRun,
    SourceVersion,
    copy_tree,
    resolve_source,
)
from modelpack.store.imports import MetricPoint
from modelpack.uris import redact

__all__ = ["SqlReader"]

TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "params",
    "tags",
    "metrics",
    "registered_models",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
)


class SqlReader:
    """MLflow's tracking and registry tables in one database."""

    def __init__(self, url: str, artifacts_destination: str | None = None) -> None:
        self.description = f"MLflow database {redact(url)}"
        self.artifacts_destination = artifacts_destination
        # MLflow's URIs name MLflow's driver (postgresql+psycopg2://); ours is psycopg 3.
        url = re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql+psycopg://", url)
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :].split("?", 1)[0])
            if not path.is_file():
                raise NotFound(f"No MLflow database at {redact(url)}: the file does not exist.")
            # Read-only at the driver: the import can never change the MLflow database.
            url = f"sqlite:///file:{urllib.parse.quote(str(path.absolute()))}?mode=ro&uri=true"
        try:
            self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            raise ModelpackError(
                f"Cannot open {self.description}: {_first(exc)}. Is its database driver "
                f"installed (psycopg for PostgreSQL: pip install 'modelpack[store]')?"
            ) from None
        self.meta = sa.MetaData()
        try:
            self.meta.reflect(self.engine, only=lambda name, _meta: name in TABLES + _OPTIONAL)
        except sa.exc.SQLAlchemyError as exc:
            raise ModelpackError(f"Cannot read {self.description}: {_first(exc)}") from None
        missing = [name for name in TABLES if name not in self.meta.tables]
        if missing:
            raise NotFound(
                f"{self.description} is not an MLflow store: it has no {', '.join(missing)} "
                f"table(s)."
            )
        self.t = self.meta.tables

    def _rows(self, query: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                return list(conn.execute(query).all())
        except sa.exc.SQLAlchemyError as exc:
            raise ModelpackError(f"Reading {self.description} failed: {_first(exc)}") from None

    def _tags(self, table: str, key_column: str) -> dict[str, dict[str, str]]:
        t = self.t[table]
        out: dict[str, dict[str, str]] = defaultdict(dict)
        for row in self._rows(sa.select(t.c[key_column], t.c.key, t.c.value)):
            out[str(row[0])][row.key] = row.value or ""
        return out

    def experiments(self) -> list[SourceExperiment]:
        e = self.t["experiments"]
        tags = self._tags("experiment_tags", "experiment_id")
        return [
            SourceExperiment(
                experiment_id=str(r.experiment_id),
                name=r.name,
                artifact_location=r.artifact_location or "",
                lifecycle_stage=r.lifecycle_stage or "active",
                creation_time=int(r.creation_time or 0),
                last_update_time=int(r.last_update_time or r.creation_time or 0),
                tags=tags.get(str(r.experiment_id), {}),
            )
            for r in self._rows(sa.select(e).order_by(e.c.experiment_id))
        ]

    def runs(self, experiment: SourceExperiment) -> list[SourceRun]:
        r, p, tg, m = self.t["runs"], self.t["params"], self.t["tags"], self.t["metrics"]
        rows = self._rows(
            sa.select(r)
            .where(sa.cast(r.c.experiment_id, sa.String) == experiment.experiment_id)
            .order_by(r.c.start_time, r.c.run_uuid)
        )
        ids = [row.run_uuid for row in rows]
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        keys: dict[str, set[str]] = defaultdict(set)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in self._rows(sa.select(p).where(p.c.run_uuid.in_(chunk))):
                params[row.run_uuid][row.key] = row.value or ""
            for row in self._rows(sa.select(tg).where(tg.c.run_uuid.in_(chunk))):
                tags[row.run_uuid][row.key] = row.value or ""
            query = sa.select(m.c.run_uuid, m.c.key).where(m.c.run_uuid.in_(chunk)).distinct()
            for row in self._rows(query):
                keys[row.run_uuid].add(row.key)
        return [
            SourceRun(
                run_id=row.run_uuid,
                experiment_id=experiment.experiment_id,
                run_name=row.name or "",
                user_id=row.user_id or "",
                status=row.status or "RUNNING",
                start_time=int(row.start_time or 0),
                end_time=None if row.end_time is None else int(row.end_time),
                lifecycle_stage=row.lifecycle_stage or "active",
                artifact_uri=row.artifact_uri or "",
                params=params[row.run_uuid],
                tags=tags[row.run_uuid],
                metric_keys=tuple(sorted(keys[row.run_uuid])),
            )
            for row in rows
        ]

    def metric_history(self, run: SourceRun, key: str) -> list[MetricPoint]:
        m = self.t["metrics"]
        # MLflow's SqlAlchemyStore.get_metric_history orders by timestamp, step, value, and
        # reads a NaN back from is_nan (the value column holds 0 for it).
        rows = self._rows(
            sa.select(m.c.value, m.c.timestamp, m.c.step, m.c.is_nan)
            .where(m.c.run_uuid == run.run_id, m.c.key == key)
            .order_by(m.c.timestamp, m.c.step, m.c.value)
        )
        return [
            MetricPoint(key, float("nan") if nan else float(v), int(ts), int(step or 0))
            for v, ts, step, nan in rows
        ]

    def download_run_artifacts(self, run: SourceRun, dest: Path) -> None:
        copy_tree(
            run.artifact_uri, dest, self.artifacts_destination, f"Run {run.run_id}'s artifacts"
        )

    def registered_models(self) -> list[SourceModel]:
        rm, mv = self.t["registered_models"], self.t["model_versions"]
        model_tags = self._tags("registered_model_tags", "name")
        version_tags: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
        vt = self.t["model_version_tags"]
        for row in self._rows(sa.select(vt)):
            version_tags[(row.name, int(row.version))][row.key] = row.value or ""
        aliases: dict[str, dict[str, int]] = defaultdict(dict)
        if "registered_model_aliases" in self.t:
            a = self.t["registered_model_aliases"]
            for row in self._rows(sa.select(a)):
                aliases[row.name][row.alias] = int(row.version)
        versions: dict[str, list[SourceVersion]] = defaultdict(list)
        deleted: dict[str, list[int]] = defaultdict(list)
        for row in self._rows(sa.select(mv).order_by(mv.c.name, mv.c.version)):
            if row.current_stage == DELETED_VERSION:
                deleted[row.name].append(int(row.version))
                continue
            versions[row.name].append(
                SourceVersion(
                    name=row.name,
                    version=int(row.version),
                    stage=row.current_stage or "None",
                    description=row.description or "",
                    source=row.source or "",
                    run_id=row.run_id or None,
                    user_id=row.user_id or "",
                    status=row.status or "READY",
                    creation_time=int(row.creation_time or 0),
                    last_updated_time=int(row.last_updated_time or 0),
                    tags=version_tags[(row.name, int(row.version))],
                    storage_location=getattr(row, "storage_location", None) or None,
                )
            )
        return [
            SourceModel(
                name=row.name,
                description=row.description or "",
                creation_time=int(row.creation_time or 0),
                last_updated_time=int(row.last_updated_time or 0),
                tags=model_tags.get(row.name, {}),
                aliases=aliases[row.name],
                versions=tuple(versions[row.name]),
                deleted_versions=tuple(deleted[row.name]),
            )
            for row in self._rows(sa.select(rm).order_by(rm.c.name))
        ]

    def _logged_model_location(self, model_id: str) -> str | None:
        if "logged_models" not in self.t:
            return None
        lm = self.t["logged_models"]
        rows = self._rows(sa.select(lm.c.artifact_location).where(lm.c.model_id == model_id))
        return rows[0][0] if rows else None

    def download_version(self, version: SourceVersion, dest: Path) -> None:
        uri = version.storage_location or resolve_source(version, self._logged_model_location)
        what = f"Version {version.version} of {version.name!r}"
        copy_tree(uri, dest, self.artifacts_destination, what)


_OPTIONAL = ("registered_model_aliases", "logged_models")


def _first(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(re.sub(r"\s+", " ", text[0])) if text else type(exc).__name__
