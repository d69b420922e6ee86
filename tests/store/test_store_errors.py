"""Database errors reach the user as modelpack errors: conflicts are retried, then reported as
``Conflict``; a value the database cannot store and a database that went away are named."""

from __future__ import annotations

import re
import uuid

import pytest
import sqlalchemy as sa

import modelpack
from modelpack.errors import Conflict, InvalidArgument, ModelpackError

DEADLOCK = "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$"
SERIALIZATION = (
    "DO $$ BEGIN RAISE EXCEPTION 'could not serialize access due to concurrent update' "
    "USING ERRCODE = '40001'; END $$"
)


@pytest.fixture
def package(tmp_path, forest, xy):
    path = tmp_path / "pkg"
    modelpack.save(forest, path, input_example=xy[0][:2])
    return str(path)


class FailStageUpdates:
    """Make PostgreSQL itself fail the next ``times`` stage updates with ``statement``'s error,
    as it does for the loser of a deadlock or of a serialization check."""

    def __init__(self, engine: sa.Engine, statement: str, times: int) -> None:
        self.engine, self.statement, self.left, self.seen = engine, statement, times, 0

    def __enter__(self) -> FailStageUpdates:
        sa.event.listen(self.engine, "before_cursor_execute", self.rewrite, retval=True)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self.rewrite)

    def rewrite(self, conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE model_versions SET stage"):
            self.seen += 1
            if self.left > 0:
                self.left -= 1
                return self.statement, {}
        return statement, parameters


only_postgresql = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


@only_postgresql
def test_a_transition_that_loses_a_deadlock_is_run_again(client, package):
    for _ in range(2):
        client.register_model(package, "Churn")
    client.transition_model_version_stage("Churn", 1, "Production")
    with FailStageUpdates(client.store.engine, DEADLOCK, times=3) as failing:
        mv = client.transition_model_version_stage(
            "Churn", 2, "Production", archive_existing_versions=True, comment="ship it"
        )
    assert failing.seen == 3 + 2  # three failed attempts, then version 1 archived, 2 promoted
    assert (mv.version, mv.stage) == (2, "Production")
    assert client.get_model_version("Churn", 1).stage == "Archived"
    moves = [(h.version, h.from_value, h.to_value, h.comment)
             for h in client.get_model_history("Churn") if h.action == "stage"]  # fmt: skip
    assert moves == [
        (1, "None", "Production", None),
        (1, "Production", "Archived", "archived: version 2 moved to Production"),
        (2, "None", "Production", "ship it"),
    ]


@only_postgresql
def test_a_conflict_that_outlasts_the_retries_is_a_conflict_error(client, package):
    client.register_model(package, "Churn")
    with FailStageUpdates(client.store.engine, SERIALIZATION, times=100) as failing:
        with pytest.raises(
            Conflict,
            match=r"^The tracking store at postgresql\+psycopg://postgres@127\.0\.0\.1:5432/test\?"
            r"options=\S+ could not apply this write: concurrent writes to the same records got "
            r"in the way \(serialization failure\) on all 5 attempts; nothing was changed\. Try "
            r"again\.$",
        ) as caught:
            client.transition_model_version_stage("Churn", 1, "Staging")
    assert failing.seen == 5
    assert (caught.value.reason, caught.value.attempts) == ("serialization failure", 5)
    assert isinstance(caught.value, ModelpackError)
    assert client.get_model_version("Churn", 1).stage == "None"
    assert [h.action for h in client.get_model_history("Churn")] == ["create"]


@only_postgresql
def test_a_value_too_long_for_its_column_is_an_invalid_argument(client, monkeypatch):
    experiment = client.create_experiment("e")
    monkeypatch.setenv("MODELPACK_USER", "u" * 300)
    with pytest.raises(
        InvalidArgument,
        match=r"^The tracking store at postgresql\+psycopg://\S+ cannot store a value: value too "
        r"long for type character varying\(256\)\.$",
    ):
        client.create_run(experiment)
    assert client.search_runs([experiment]) == []


def test_an_alias_the_history_cannot_record_is_refused(client, package):
    client.register_model(package, "Churn")
    client.set_registered_model_alias("Churn", "a" * 245, 1)
    with pytest.raises(
        InvalidArgument, match=r"^Alias is 246 characters long; the limit is 245: 'a{40}'\.\.\.$"
    ):
        client.set_registered_model_alias("Churn", "a" * 246, 1)
    assert client.get_registered_model("Churn").aliases == {"a" * 245: 1}


@pytest.fixture
def doomed_database(postgres_server):
    """The URL of a new PostgreSQL database, and a function that drops it, connections and all."""
    import psycopg

    from modelpack.store import engines

    name = f"t_gone_{uuid.uuid4().hex[:8]}"
    conninfo = "host=127.0.0.1 port=5432 user=postgres dbname=test"

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    yield url, drop
    engines.dispose(url)
    drop()


def test_a_database_that_went_away_is_named(doomed_database, package, tmp_path):
    url, drop = doomed_database
    client = modelpack.Client(url, artifact_root=str(tmp_path / "artifacts"))
    experiment = client.create_experiment("e")
    run_id = client.create_run(experiment).info.run_id
    client.register_model(package, "Churn")
    drop()
    shown = re.escape(url.replace("postgresql://", "postgresql+psycopg://"))
    database = url.rsplit("/", 1)[1]
    gone = (
        rf"^The tracking store at {shown} failed: .*database \"{database}\" does not exist\. "
        rf"Check that the database is running and reachable\.$"
    )
    with pytest.raises(ModelpackError, match=gone):
        client.get_experiment(experiment)
    with pytest.raises(ModelpackError, match=gone):
        client.transition_model_version_stage("Churn", 1, "Production")
    with pytest.raises(ModelpackError, match=gone):
        client.log_metric(run_id, "loss", 1.0, synchronous=True)  # the metrics fast path
