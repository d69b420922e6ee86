"""The SQL store: experiments and runs here, the model registry in ``registry.py``.

Every write is one transaction. Constructors do no I/O: ``SqlStore(engine, artifact_root)``
holds the engine; ``SqlStore.open(url, artifact_root)`` builds one and upgrades the schema if
it is behind.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from modelpack.entities import (
    DatasetInput,
    Experiment,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunStatus,
    ViewType,
    at_ms,
    ended_message,
    from_ms,
    now_ms,
)
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound
from modelpack.store import engines, inputs, search, validation
from modelpack.store import schema as t
from modelpack.store.experiments import ExperimentsMixin
from modelpack.store.logged_models import LoggedModelsMixin
from modelpack.store.registry import RegistryMixin
from modelpack.uris import redact

__all__ = ["SqlStore", "ViewType"]

T = TypeVar("T")
ACTIVE, DELETED = "active", "deleted"


def _metric_sql(q: str) -> tuple[str, str]:
    columns = f"(run_id, key, value, timestamp, step) VALUES ({q}, {q}, {q}, {q}, {q})"
    return (
        f"INSERT INTO metrics {columns}",
        f"INSERT INTO latest_metrics {columns} ON CONFLICT (run_id, key) DO UPDATE SET "
        "value = excluded.value, timestamp = excluded.timestamp, step = excluded.step "
        "WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step "
        "AND excluded.timestamp >= latest_metrics.timestamp)",
    )


# Keyed by "the driver takes ? placeholders" (SQLite) rather than %s (psycopg).
_METRIC_SQL = {True: _metric_sql("?"), False: _metric_sql("%s")}
_RUN_STATE = {
    q == "?": f"SELECT status, lifecycle_stage FROM runs WHERE run_id = {q}" for q in ("?", "%s")
}


def _latest_by_key(rows: list[tuple]) -> list[tuple]:
    """Of a batch's metric rows, the one per key that the upsert would leave in latest_metrics
    (the highest (step, timestamp), the last of equals), in key order: the upsert then writes
    one row per key instead of one per point, and two writers of one run's latest_metrics lock
    its rows in the same order, so they cannot deadlock."""
    best: dict[str, tuple] = {}
    for row in rows:
        held = best.get(row[1])
        if held is None or (row[4], row[3]) >= (held[4], held[3]):
            best[row[1]] = row
    return [best[key] for key in sorted(best)]


COPY_FROM = 64  # points from which PostgreSQL's COPY beats an executemany of INSERTs
_COPY_METRICS = "COPY metrics (run_id, key, value, timestamp, step) FROM STDIN"


def _insert_points(cursor: Any, rows: list[tuple], qmark: bool) -> None:
    """Append ``rows`` to the history and bring latest_metrics up to them, on the driver's
    cursor (COPY for a large batch on PostgreSQL: several times faster than INSERTs)."""
    insert, upsert = _METRIC_SQL[qmark]
    if len(rows) == 1:
        cursor.execute(insert, rows[0])
        cursor.execute(upsert, rows[0])
        return
    if not qmark and len(rows) >= COPY_FROM:
        with cursor.copy(_COPY_METRICS) as copy:
            for row in rows:
                copy.write_row(row)
    else:
        cursor.executemany(insert, rows)
    latest = _latest_by_key(rows)
    if len(latest) == 1:
        cursor.execute(upsert, latest[0])
    else:
        cursor.executemany(upsert, latest)


MAX_IDEMPOTENCY_KEY = 64  # the idempotency_keys.key column


def _checked_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(
            f"idempotency_key must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} "
            f"characters (a uuid4 hex is 32), got {key!r:.80}."
        )
    return key


def _seen_key(execute: Callable[[str, tuple], Any], dialect: Any, key: str, run_id: str) -> bool:
    """Whether the batch with ``key`` was stored already (for this run; another run's key is
    a client's mistake, refused)."""
    q = "?" if dialect.paramstyle == "qmark" else "%s"
    row = execute(f"SELECT run_id FROM idempotency_keys WHERE key = {q}", (key,)).fetchone()
    if row is None:
        return False
    if row[0] != run_id:
        raise InvalidArgument(
            f"idempotency_key {key!r} was used by a batch of run {row[0]!r}, not {run_id!r}: "
            f"give each batch a key of its own (a new uuid4 hex), reused only by its retries."
        )
    return True


def _claim_key(execute: Callable[[str, tuple], Any], dialect: Any, key: str, run_id: str) -> bool:
    """Record ``key`` in the batch's transaction; False if a concurrent transaction holding the
    same key committed first (PostgreSQL waits for it on the primary key, then skips)."""
    q = "?" if dialect.paramstyle == "qmark" else "%s"
    cursor = execute(
        f"INSERT INTO idempotency_keys (key, run_id, creation_time) VALUES ({q}, {q}, {q}) "
        "ON CONFLICT (key) DO NOTHING",
        (key, run_id, now_ms()),
    )
    return cursor.rowcount == 1


class SqlStore(RegistryMixin, ExperimentsMixin, LoggedModelsMixin):
    """Experiments, runs and registered models in one SQL database."""

    def __init__(self, engine: sa.Engine, artifact_root: str) -> None:
        from modelpack.artifacts import absolute_root

        self.engine = engine
        # Stored in every run's artifact URI and version's location: absolute, so they resolve
        # from any folder (a relative root would be relative to whichever folder wrote it).
        self.artifact_root = absolute_root(artifact_root).rstrip("/")

    @classmethod
    def open(cls, url: str, artifact_root: str, create: bool = True) -> SqlStore:
        """The store at ``url`` on the process's shared engine, its schema upgraded if behind.

        Raises:
            NotFound: ``create`` is False and there is no store at ``url``.
        """
        return cls(engines.engine_for(url, create), artifact_root)

    @property
    def url(self) -> str:
        return redact(self.engine.url)

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A transaction; database errors come out as modelpack's (``engines.db_error``)."""
        with engines.translated(self.engine), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _begin_durable(self) -> Iterator[sa.Connection]:
        """A transaction whose commit survives a power loss, for the registry's records."""
        with engines.translated(self.engine), self._durable() as conn:
            yield conn

    @contextlib.contextmanager
    def _durable(self) -> Iterator[sa.Connection]:
        # SQLite runs WAL with synchronous=NORMAL, which is crash-safe for the process but may
        # lose the last commits to an OS crash; the registry is the system of record, so its
        # writes commit with synchronous=FULL. PostgreSQL commits durably already.
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            raw = conn.connection.driver_connection if sqlite else None
            if raw is not None:  # on the driver: a pragma through SQLAlchemy would autobegin
                raw.execute("PRAGMA synchronous=FULL")
            try:
                with conn.begin():
                    yield conn
            finally:
                if raw is not None:
                    raw.execute("PRAGMA synchronous=NORMAL")

    def _write(self, body: Callable[[sa.Connection], T]) -> T:
        """``body(conn)`` in one durable transaction, run again if it loses a deadlock or a
        serialization check (``engines.ATTEMPTS`` times in all, with a jittered backoff).

        ``body`` must do nothing but database work: it may run more than once. Errors that
        still escape are modelpack's (``Conflict`` for a conflict that outlasted the retries);
        an IntegrityError passes through for the caller to name.
        """
        attempt = 1
        while True:
            try:
                with self._durable() as conn:
                    return body(conn)
            except sa.exc.IntegrityError:
                raise
            except sa.exc.DBAPIError as exc:
                if engines.retryable(exc) is None or attempt >= engines.ATTEMPTS:
                    raise engines.db_error(self.engine, exc, attempt) from exc
            time.sleep(engines.backoff(attempt))
            attempt += 1

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        """A connection for reads; database errors come out as modelpack's."""
        with engines.translated(self.engine), self.engine.connect() as conn:
            yield conn

    # ------------------------------------------------------------------ experiments

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        validation.name(name, "Experiment name")
        experiment_id = uuid.uuid4().hex
        from modelpack.artifacts import absolute_root

        location = absolute_root(artifact_location or f"{self.artifact_root}/{experiment_id}")
        stamp = now_ms()
        try:
            with self._begin() as conn:
                conn.execute(
                    t.experiments.insert().values(
                        experiment_id=experiment_id,
                        name=name,
                        artifact_location=location,
                        lifecycle_stage=ACTIVE,
                        creation_time=stamp,
                        last_update_time=stamp,
                    )
                )
                for key, value in (tags or {}).items():
                    conn.execute(
                        t.experiment_tags.insert().values(
                            experiment_id=experiment_id,
                            key=validation.name(key, "Tag key"),
                            value=validation.text(value, f"Tag {key!r}"),
                        )
                    )
        except sa.exc.IntegrityError:
            raise AlreadyExists(f"Experiment {name!r} already exists.") from None
        return experiment_id

    def _experiment(self, conn: sa.Connection, row: Any) -> Experiment:
        tag_rows = conn.execute(
            sa.select(t.experiment_tags.c.key, t.experiment_tags.c.value).where(
                t.experiment_tags.c.experiment_id == row.experiment_id
            )
        )
        return Experiment(
            experiment_id=row.experiment_id,
            name=row.name,
            artifact_location=row.artifact_location,
            lifecycle_stage=row.lifecycle_stage,
            creation_time=at_ms(row.creation_time),
            tags=dict(tag_rows.all()),
            last_update_time=at_ms(row.last_update_time),
        )

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self._connect() as conn:
            row = conn.execute(
                sa.select(t.experiments).where(t.experiments.c.experiment_id == experiment_id)
            ).one_or_none()
            if row is None:
                raise NotFound(f"No experiment with id {experiment_id!r}.")
            return self._experiment(conn, row)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        with self._connect() as conn:
            row = conn.execute(
                sa.select(t.experiments).where(t.experiments.c.name == name)
            ).one_or_none()
            return None if row is None else self._experiment(conn, row)

    def get_or_create_experiment(self, name: str) -> Experiment:
        found = self.get_experiment_by_name(name)
        if found is not None:
            return found
        try:
            return self.get_experiment(self.create_experiment(name))
        except AlreadyExists:  # another process created it first
            found = self.get_experiment_by_name(name)
            assert found is not None
            return found

    def search_experiments(self) -> list[Experiment]:
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(t.experiments)
                .where(t.experiments.c.lifecycle_stage == ACTIVE)
                .order_by(t.experiments.c.creation_time)
            ).all()
            return [self._experiment(conn, row) for row in rows]

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
        run_id = uuid.uuid4().hex
        name = validation.name(run_name, "Run name") if run_name else f"run-{run_id[:8]}"
        checked = {
            validation.name(k, "Tag key"): validation.text(v, f"Tag {k!r}")
            for k, v in (tags or {}).items()
        }
        started = now_ms() if start_time is None else start_time
        # One round of statements (a sweep creates thousands of runs): the experiment's row,
        # the run, its tags in one executemany, and the Run built from what was written.
        with self._begin() as conn:
            experiment = conn.execute(
                sa.select(
                    t.experiments.c.name,
                    t.experiments.c.lifecycle_stage,
                    t.experiments.c.artifact_location,
                ).where(t.experiments.c.experiment_id == experiment_id)
            ).one_or_none()
            if experiment is None:
                raise NotFound(f"No experiment with id {experiment_id!r}.")
            if experiment.lifecycle_stage != ACTIVE:
                raise InvalidArgument(
                    f"Experiment {experiment.name!r} is deleted; restore it first."
                )
            artifact_uri = f"{experiment.artifact_location.rstrip('/')}/{run_id}/artifacts"
            conn.execute(
                t.runs.insert().values(
                    run_id=run_id,
                    experiment_id=experiment_id,
                    run_name=name,
                    user_id=user_id,
                    status=RunStatus.RUNNING,
                    start_time=started,
                    end_time=None,
                    lifecycle_stage=ACTIVE,
                    artifact_uri=artifact_uri,
                    parent_run_id=parent_run_id,
                )
            )
            if checked:  # a new run has no tags yet: plain inserts
                conn.execute(
                    t.tags.insert(),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in checked.items()],
                )
        return Run(
            info=RunInfo(
                run_id=run_id,
                experiment_id=experiment_id,
                run_name=name,
                user_id=user_id,
                status=RunStatus.RUNNING,
                start_time=at_ms(started),
                end_time=None,
                artifact_uri=artifact_uri,
                lifecycle_stage=ACTIVE,
                parent_run_id=parent_run_id,
            ),
            data=RunData(params={}, metrics={}, tags=dict(checked)),
            inputs=RunInputs(()),
        )

    def _run_row(self, conn: sa.Connection, run_id: str) -> Any:
        if not isinstance(run_id, str) or not run_id:
            raise InvalidArgument(f"run_id must be a non-empty string, got {run_id!r}.")
        row = conn.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).one_or_none()
        if row is None:
            raise NotFound(f"No run with id {run_id!r}.")
        return row

    def get_run(self, run_id: str) -> Run:
        with self._connect() as conn:
            row = self._run_row(conn, run_id)
            return self._runs(conn, [row])[0]

    def _runs(self, conn: sa.Connection, rows: Sequence[Any]) -> list[Run]:
        ids = [r.run_id for r in rows]
        data: dict[str, dict[str, dict[str, Any]]] = {
            i: {"params": {}, "metrics": {}, "tags": {}} for i in ids
        }
        if ids:
            for table, kind in (
                (t.params, "params"),
                (t.tags, "tags"),
                (t.latest_metrics, "metrics"),
            ):
                query = sa.select(table.c.run_id, table.c.key, table.c.value).where(
                    table.c.run_id.in_(ids)
                )
                for run_id, key, value in conn.execute(query):
                    data[run_id][kind][key] = float("nan") if value is None else value
        used = inputs.read_inputs(conn, ids)
        return [
            Run(
                info=RunInfo(
                    run_id=r.run_id,
                    experiment_id=r.experiment_id,
                    run_name=r.run_name,
                    user_id=r.user_id,
                    status=r.status,
                    start_time=at_ms(r.start_time),
                    end_time=from_ms(r.end_time),
                    artifact_uri=r.artifact_uri,
                    lifecycle_stage=r.lifecycle_stage,
                    parent_run_id=r.parent_run_id,
                ),
                data=RunData(**data[r.run_id]),
                inputs=RunInputs(tuple(used.get(r.run_id, ()))),
            )
            for r in rows
        ]

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if status is not None:
            if status not in (
                RunStatus.RUNNING,
                RunStatus.SCHEDULED,
                RunStatus.FINISHED,
                RunStatus.FAILED,
                RunStatus.KILLED,
            ):
                raise InvalidArgument(f"Unknown run status {status!r}.")
            values["status"] = status
        if end_time is not None:
            values["end_time"] = end_time
        if run_name is not None:
            values["run_name"] = validation.name(run_name, "Run name")
        with self._begin() as conn:
            if not values:
                self._run_row(conn, run_id)
                return
            changed = conn.execute(
                t.runs.update().where(t.runs.c.run_id == run_id).values(**values)
            ).rowcount
            if not changed:
                self._run_row(conn, run_id)  # names a missing run (or a malformed id)

    def resume_run(self, run_id: str, run_name: str | None = None) -> None:
        """Set an ended run RUNNING again (``start_run(run_id=...)``); its end time is cleared."""
        values: dict[str, Any] = {"status": RunStatus.RUNNING, "end_time": None}
        if run_name is not None:
            values["run_name"] = validation.name(run_name, "Run name")
        with self._begin() as conn:
            row = self._run_row(conn, run_id)
            if row.lifecycle_stage != ACTIVE:
                raise InvalidArgument(
                    f"Run {run_id!r} is deleted; restore it (Client().restore_run) to resume it."
                )
            conn.execute(t.runs.update().where(t.runs.c.run_id == run_id).values(**values))

    def delete_tag(self, run_id: str, key: str) -> None:
        with self._begin() as conn:
            self._writable_run(conn, run_id, lock=True)
            gone = conn.execute(
                t.tags.delete().where(t.tags.c.run_id == run_id, t.tags.c.key == key)
            ).rowcount
        if not gone:
            raise NotFound(f"Run {run_id!r} has no tag {key!r}.")

    def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        with self._begin() as conn:
            self._run_row(conn, run_id)
            conn.execute(
                t.runs.update().where(t.runs.c.run_id == run_id).values(lifecycle_stage=stage)
            )

    def _writable_run(self, conn: sa.Connection, run_id: str, lock: bool = False) -> Any:
        qmark = conn.dialect.paramstyle == "qmark"
        sql = _RUN_STATE[qmark]
        if lock and not qmark:
            # Writers of one run's params and tags take turns (SQLite's BEGIN IMMEDIATE already
            # serializes), so the second sees the first's value and gets a clear error.
            # NO KEY UPDATE does not block metric inserts into the run.
            sql += " FOR NO KEY UPDATE"
        row = conn.exec_driver_sql(sql, (run_id,)).first()
        if row is None:
            return self._run_row(conn, run_id)  # raises NotFound with the usual message
        if row.lifecycle_stage != ACTIVE:
            raise InvalidArgument(f"Run {run_id!r} is deleted; restore it before logging to it.")
        if row.status != RunStatus.RUNNING:
            raise InvalidArgument(ended_message(run_id, row.status))
        return row

    def _write_tags(self, conn: sa.Connection, run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            validation.name(key, "Tag key")
            value = validation.text(value, f"Tag {key!r}")
            updated = conn.execute(
                t.tags.update()
                .where(t.tags.c.run_id == run_id, t.tags.c.key == key)
                .values(value=value)
            ).rowcount
            if not updated:
                conn.execute(t.tags.insert().values(run_id=run_id, key=key, value=value))

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Iterable[Metric] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Log metrics, params and tags to a running run, all in one transaction.

        ``idempotency_key`` (at most 64 characters, unique per batch: a client's retry of a
        request whose answer was lost sends the same one) is stored in the same transaction;
        a batch whose key is stored already was logged before, and is acknowledged without
        storing anything again, even if the run ended since.
        """
        key = _checked_key(idempotency_key)
        params = {
            validation.name(k, "Param key"): validation.text(v, f"Param {k!r}")
            for k, v in (params or {}).items()
        }
        points = list(metrics)
        for m in points:
            validation.name(m.key, "Metric key")
        if points and not params and not tags:
            self._log_metrics_only(run_id, points, key)
            return
        with self._begin() as conn:
            if key is not None and _seen_key(conn.exec_driver_sql, conn.dialect, key, run_id):
                return
            self._writable_run(conn, run_id, lock=bool(params or tags))
            if key is not None and not _claim_key(conn.exec_driver_sql, conn.dialect, key, run_id):
                return  # a concurrent retry of this batch stored it first
            if params:
                existing = dict(
                    conn.execute(
                        sa.select(t.params.c.key, t.params.c.value).where(
                            t.params.c.run_id == run_id, t.params.c.key.in_(list(params))
                        )
                    ).all()
                )
                for key, value in params.items():
                    if key in existing and existing[key] != value:
                        raise InvalidArgument(
                            f"Param {key!r} was already logged as {existing[key]!r}; it cannot "
                            f"change to {value!r}. Params are immutable: use a new key or a "
                            f"new run."
                        )
                new = [
                    {"run_id": run_id, "key": k, "value": v}
                    for k, v in params.items()
                    if k not in existing
                ]
                if new:
                    conn.execute(t.params.insert(), new)
            if tags:
                self._write_tags(conn, run_id, tags)
            if points:
                self._write_metrics(conn, run_id, points)

    def _log_metrics_only(self, run_id: str, points: list[Metric], key: str | None = None) -> None:
        """``log_batch`` of metrics alone, on the driver's connection: a training loop calls this
        thousands of times, and SQLAlchemy's per-statement machinery would triple its cost."""
        qmark = self.engine.dialect.paramstyle == "qmark"
        rows = [
            (run_id, m.key, None if m.value != m.value else m.value, m.timestamp, m.step)
            for m in points
        ]
        with engines.translated(self.engine):
            raw = self.engine.raw_connection()
            self._insert_metrics(raw, run_id, rows, qmark, key)

    def _insert_metrics(
        self, raw: Any, run_id: str, rows: list[tuple], qmark: bool, key: str | None = None
    ) -> None:
        try:
            cursor = raw.cursor()
            if qmark:
                cursor.execute("BEGIN IMMEDIATE")
            dialect = self.engine.dialect

            def execute(sql: str, values: tuple) -> Any:
                cursor.execute(sql, values)
                return cursor

            if key is not None and _seen_key(execute, dialect, key, run_id):
                raw.rollback()
                return
            cursor.execute(_RUN_STATE[qmark], (run_id,))
            state = cursor.fetchone()
            if state is None or state[0] != RunStatus.RUNNING or state[1] != ACTIVE:
                raw.rollback()
                with self._connect() as conn:
                    self._writable_run(conn, run_id)  # raises the error that explains why
            if key is not None and not _claim_key(execute, dialect, key, run_id):
                raw.rollback()  # a concurrent retry of this batch stored it first
                return
            _insert_points(cursor, rows, qmark)
            raw.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # a lost connection cannot roll back either
                raw.rollback()
            raise
        finally:
            raw.close()

    def _write_metrics(self, conn: sa.Connection, run_id: str, points: list[Metric]) -> None:
        # The hot path of metric logging: plain SQL, no statement compilation. The upsert
        # keeps latest_metrics at the highest (step, timestamp) in the same transaction.
        rows = [
            (run_id, m.key, None if m.value != m.value else m.value, m.timestamp, m.step)
            for m in points
        ]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            _insert_points(cursor, rows, conn.dialect.paramstyle == "qmark")
        finally:
            cursor.close()

    def log_inputs(self, run_id: str, dataset_inputs: Sequence[DatasetInput]) -> None:
        """Record the datasets a running run used, in one transaction."""
        checked = inputs.check_inputs(dataset_inputs)
        with self._begin() as conn:
            self._writable_run(conn, run_id, lock=True)
            experiment_id = self._run_row(conn, run_id).experiment_id
            inputs.write_inputs(conn, experiment_id, run_id, checked)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        with self._connect() as conn:
            self._run_row(conn, run_id)
            rows = conn.execute(
                sa.select(
                    t.metrics.c.key, t.metrics.c.value, t.metrics.c.timestamp, t.metrics.c.step
                )
                .where(t.metrics.c.run_id == run_id, t.metrics.c.key == key)
                .order_by(t.metrics.c.step, t.metrics.c.timestamp, t.metrics.c.id)
            ).all()
        return [Metric(k, float("nan") if v is None else v, ts, s) for k, v, ts, s in rows]

    def get_metric_history_page(
        self, run_id: str, key: str, max_results: int, page_token: str | None = None
    ) -> tuple[list[Metric], str | None]:
        """One page of ``get_metric_history`` (the server's ``metrics/get-history``), in the
        same order, and the next page's token (None on the last)."""
        offset = search.decode_token(page_token)
        m = t.metrics
        with self._connect() as conn:
            self._run_row(conn, run_id)
            rows, token = search.page(
                conn.execute(
                    sa.select(m.c.key, m.c.value, m.c.timestamp, m.c.step)
                    .where(m.c.run_id == run_id, m.c.key == key)
                    .order_by(m.c.step, m.c.timestamp, m.c.id)
                    .limit(max_results + 1)
                    .offset(offset)
                ).all(),
                offset,
                max_results,
            )
        return [Metric(k, float("nan") if v is None else v, ts, s) for k, v, ts, s in rows], token

    def latest_metrics(self, run_ids: Sequence[str]) -> dict[str, list[Metric]]:
        """Each run's latest point of every metric, with its timestamp and step (what MLflow's
        ``Run.data.metrics`` holds), keys in order."""
        out: dict[str, list[Metric]] = {run_id: [] for run_id in run_ids}
        if not run_ids:
            return out
        lm = t.latest_metrics
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(lm.c.run_id, lm.c.key, lm.c.value, lm.c.timestamp, lm.c.step)
                .where(lm.c.run_id.in_(list(run_ids)))
                .order_by(lm.c.run_id, lm.c.key)
            ).all()
        for run_id, k, v, ts, step in rows:
            out[run_id].append(Metric(k, float("nan") if v is None else v, ts, step))
        return out

    def get_run_experiment_id(self, run_id: str) -> str:
        """The experiment of a run, in one small query (the server's permission checks).

        Raises:
            NotFound: no run with that id.
        """
        with self._connect() as conn:
            return self._run_row(conn, run_id).experiment_id

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove an experiment's tag (MLflow's ``delete_experiment_tag``).

        Raises:
            NotFound: no such experiment, or it has no tag ``key``.
        """
        et = t.experiment_tags
        with self._begin() as conn:
            row = conn.execute(
                sa.select(t.experiments.c.name).where(
                    t.experiments.c.experiment_id == experiment_id
                )
            ).one_or_none()
            if row is None:
                raise NotFound(f"No experiment with id {experiment_id!r}.")
            gone = conn.execute(
                et.delete().where(et.c.experiment_id == experiment_id, et.c.key == key)
            ).rowcount
        if not gone:
            raise NotFound(f"Experiment {row.name!r} has no tag {key!r}.")

    def record_logged_model(
        self, run_id: str, artifact_path: str, model_id: str, manifest_sha256: str, flavor: str
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                t.logged_models.delete().where(
                    t.logged_models.c.run_id == run_id,
                    t.logged_models.c.artifact_path == artifact_path,
                )
            )
            conn.execute(
                t.logged_models.insert().values(
                    run_id=run_id,
                    artifact_path=artifact_path,
                    model_id=model_id,
                    manifest_sha256=manifest_sha256,
                    flavor=flavor,
                    creation_time=now_ms(),
                )
            )

    def get_logged_model(self, run_id: str, artifact_path: str) -> Any:
        with self._connect() as conn:
            return conn.execute(
                sa.select(t.logged_models).where(
                    t.logged_models.c.run_id == run_id,
                    t.logged_models.c.artifact_path == artifact_path,
                )
            ).one_or_none()

    # ------------------------------------------------------------------ search

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        run_view_type: str | int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Run], str | None]:
        max_results = search.check_max_results(max_results)
        offset = search.decode_token(page_token)
        query = sa.select(t.runs).where(t.runs.c.experiment_id.in_(list(experiment_ids)))
        run_view_type = ViewType.check(run_view_type)
        if run_view_type == ViewType.ACTIVE_ONLY:
            query = query.where(t.runs.c.lifecycle_stage == ACTIVE)
        elif run_view_type == ViewType.DELETED_ONLY:
            query = query.where(t.runs.c.lifecycle_stage == DELETED)
        condition = search.run_condition(filter_string)
        if condition is not None:
            query = query.where(condition)
        query = search.order_runs(query, order_by)
        with self._connect() as conn:
            rows, token = search.page(
                conn.execute(query.limit(max_results + 1).offset(offset)).all(), offset, max_results
            )
            return self._runs(conn, rows), token
