"""Tracking contract: experiments, runs, params, metrics, tags, artifacts, search — on SQLite
and PostgreSQL (the ``client`` fixture runs each test on both)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import modelpack
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound


@pytest.fixture
def exp(client):
    return client.create_experiment("churn")


@pytest.fixture
def run_id(client, exp):
    return client.create_run(exp, run_name="first").info.run_id


def test_experiments(client):
    eid = client.create_experiment("churn", tags={"team": "risk"})
    exp = client.get_experiment(eid)
    assert exp.name == "churn" and exp.tags == {"team": "risk"} and exp.lifecycle_stage == "active"
    assert client.get_experiment_by_name("churn").experiment_id == eid
    assert client.get_experiment_by_name("nope") is None
    with pytest.raises(AlreadyExists, match="Experiment 'churn' already exists"):
        client.create_experiment("churn")
    with pytest.raises(NotFound, match="No experiment with id 'x'"):
        client.get_experiment("x")
    assert [e.name for e in client.search_experiments()] == ["churn"]


def test_run_lifecycle(client, exp):
    run = client.create_run(exp, run_name="r1", tags={"k": "v"})
    info = run.info
    assert info.status == "RUNNING" and info.end_time is None and info.run_name == "r1"
    assert info.start_time.tzinfo is not None and run.data.tags == {"k": "v"}
    assert info.artifact_uri.endswith(f"/{exp}/{info.run_id}/artifacts")
    client.set_terminated(info.run_id, "FAILED")
    ended = client.get_run(info.run_id).info
    assert ended.status == "FAILED" and ended.end_time >= ended.start_time
    with pytest.raises(NotFound, match="No run with id 'missing'"):
        client.get_run("missing")


def test_params_are_immutable(client, run_id):
    client.log_param(run_id, "depth", 5)
    client.log_param(run_id, "depth", "5")  # the same value again is fine
    with pytest.raises(InvalidArgument, match=r"Param 'depth' was already logged as '5'; it cannot "
                       r"change to '6'\. Params are immutable"):  # fmt: skip
        client.log_param(run_id, "depth", 6)
    assert client.get_run(run_id).data.params == {"depth": "5"}


def test_metric_history_and_latest(client, run_id):
    for step, value in [(0, 0.5), (2, 0.9), (1, 0.7)]:
        client.log_metric(run_id, "acc", value, step=step, timestamp=1000 + step)
    client.log_metric(run_id, "loss", float("nan"))
    history = client.get_metric_history(run_id, "acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.7), (2, 0.9)]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["acc"] == 0.9 and math.isnan(metrics["loss"])


def test_log_batch_is_one_transaction(client, run_id):
    client.log_param(run_id, "lr", "0.1")
    with pytest.raises(InvalidArgument, match="Param 'lr' was already logged"):
        client.log_batch(run_id, metrics=[("m", 1.0, None, 0)], params={"lr": "0.2"},
                         tags={"t": "x"})  # fmt: skip
    data = client.get_run(run_id).data
    assert "m" not in data.metrics and "t" not in data.tags


def test_bad_metric_values_and_names(client, run_id):
    with pytest.raises(InvalidArgument, match=r"Metric 'acc': expected a number, got 'high'"):
        client.log_metric(run_id, "acc", "high")
    with pytest.raises(InvalidArgument, match=r"Metric 'acc': step must be an integer"):
        client.log_metric(run_id, "acc", 1.0, step=1.5)
    with pytest.raises(InvalidArgument, match="Metric key must not be empty"):
        client.log_metric(run_id, "", 1.0)
    with pytest.raises(InvalidArgument, match=r"Tag key 'a\\nb' contains a control character"):
        client.set_tag(run_id, "a\nb", "x")
    with pytest.raises(InvalidArgument, match="is 300 characters long; the limit is 256"):
        client.log_param(run_id, "p" * 300, 1)


def test_names_that_look_like_sql_or_paths_are_data(client):
    for name in ("x'; DROP TABLE runs; --", "../../etc/passwd", "Robert'); --"):
        eid = client.create_experiment(name)
        assert client.get_experiment(eid).name == name
        run = client.create_run(eid, run_name=name)
        client.set_tag(run.info.run_id, name, name)
        assert client.get_run(run.info.run_id).data.tags[name] == name
        assert ".." not in run.info.artifact_uri.split("artifacts")[-1]


def test_logging_to_an_ended_run_is_refused(client, run_id, tmp_path):
    client.set_terminated(run_id)
    with pytest.raises(InvalidArgument, match=r"has ended \(FINISHED\); start a new run"):
        client.log_metric(run_id, "acc", 1.0)
    with pytest.raises(InvalidArgument, match=r"has ended \(FINISHED\)"):
        client.log_param(run_id, "x", 1)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InvalidArgument, match=r"has ended"):
        client.log_artifact(run_id, tmp_path / "f.txt")


def test_artifacts(client, run_id, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"\x89PNG")
    (folder / "sub" / "b.csv").write_text("1,2")
    client.log_artifact(run_id, tmp_path / "notes.txt")
    client.log_artifact(run_id, tmp_path / "notes.txt", artifact_path="docs")
    client.log_artifacts(run_id, folder, artifact_path="plots")
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [
        ("docs", True), ("notes.txt", False), ("plots", True)]  # fmt: skip
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == ["plots/a.png", "plots/sub"]
    got = client.download_artifacts(run_id, "plots", tmp_path / "down")
    assert (got / "sub" / "b.csv").read_text() == "1,2"
    assert client.download_artifacts(run_id, "docs/notes.txt", tmp_path / "d2").read_text() == (
        "hello"
    )
    with pytest.raises(InvalidArgument, match=r"'\.\.' or '\.' segments"):
        client.log_artifact(run_id, tmp_path / "notes.txt", artifact_path="../escape")
    with pytest.raises(NotFound, match="has no artifact 'nothing'"):
        client.download_artifacts(run_id, "nothing", tmp_path / "d3")


def test_delete_and_restore_run(client, exp, run_id):
    client.delete_run(run_id)
    assert client.search_runs([exp]) == []
    assert [r.info.run_id for r in client.search_runs([exp], run_view_type="DELETED_ONLY")] == [
        run_id]  # fmt: skip
    assert len(client.search_runs([exp], run_view_type="ALL")) == 1
    client.restore_run(run_id)
    assert [r.info.run_id for r in client.search_runs([exp])] == [run_id]


@pytest.fixture
def populated(client, exp):
    ids = {}
    for i, (acc, depth, team, status) in enumerate([
        (0.95, "5", "ml-core", "FINISHED"), (0.80, "3", "ml-ops", "FINISHED"),
        (0.91, "5", "data", "FAILED"), (None, "8", "ml-core", "FINISHED"),
    ]):  # fmt: skip
        run = client.create_run(exp, run_name=f"r{i}")
        rid = run.info.run_id
        if acc is not None:
            client.log_metric(rid, "acc", acc)
        client.log_param(rid, "depth", depth)
        client.set_tag(rid, "team", team)
        client.set_terminated(rid, status)
        ids[f"r{i}"] = rid
    return ids


def _names(runs):
    return sorted(r.info.run_name for r in runs)


@pytest.mark.parametrize(("flt", "expected"), [
    ("metrics.acc > 0.9", ["r0", "r2"]),
    ("metrics.acc > 0.9 and params.depth = '5' and tags.team LIKE 'ml%'", ["r0"]),
    ("attributes.status = 'FINISHED' AND metrics.acc >= 0.8", ["r0", "r1"]),
    ("attributes.status IN ('FAILED', 'KILLED')", ["r2"]),
    ("params.depth != '5'", ["r1", "r3"]),
    ("tags.team ILIKE 'ML-%'", ["r0", "r1", "r3"]),
    ("tags.team LIKE 'ML-%'", []),
    ("metrics.acc < 0.9 OR tags.team = 'data'", ["r1", "r2"]),
    ("(metrics.acc > 0.9 OR params.depth = '8') and tags.team = 'ml-core'", ["r0", "r3"]),
    ("metrics.acc IS NULL", ["r3"]),
    ("params.depth NOT IN ('5', '8')", ["r1"]),
    ("run_name = 'r2'", ["r2"]),
    ("", ["r0", "r1", "r2", "r3"]),
])  # fmt: skip
def test_search_filters(client, exp, populated, flt, expected):
    assert _names(client.search_runs([exp], filter_string=flt)) == expected


def test_search_order_and_pages(client, exp, populated):
    runs = client.search_runs([exp], order_by=["metrics.acc DESC"])
    assert [r.info.run_name for r in runs] == ["r0", "r2", "r1", "r3"]  # missing metric last
    runs = client.search_runs([exp], order_by=["params.depth ASC", "attributes.run_name DESC"])
    assert [r.info.run_name for r in runs] == ["r1", "r2", "r0", "r3"]
    first = client.search_runs([exp], max_results=3, order_by=["run_name"])
    assert [r.info.run_name for r in first] == ["r0", "r1", "r2"] and first.token
    second = client.search_runs([exp], max_results=3, order_by=["run_name"],
                                page_token=first.token)  # fmt: skip
    assert [r.info.run_name for r in second] == ["r3"] and second.token is None
    with pytest.raises(InvalidArgument, match="Invalid page_token"):
        client.search_runs([exp], page_token="garbage")
    with pytest.raises(InvalidArgument, match="unknown attribute 'colour'"):
        client.search_runs([exp], order_by=["colour"])


def test_search_by_experiment_name_and_pandas(client, populated):
    df = client.search_runs(experiment_names=["churn"], output_format="pandas",
                            order_by=["run_name"])  # fmt: skip
    assert isinstance(df, pd.DataFrame) and df["run_name"].tolist() == ["r0", "r1", "r2", "r3"]
    assert df["params.depth"].tolist() == ["5", "3", "5", "8"]
    assert np.isnan(df["metrics.acc"].iloc[3]) and df["tags.team"].iloc[0] == "ml-core"
    with pytest.raises(NotFound, match="No experiment named 'nope'"):
        client.search_runs(experiment_names=["nope"])


def test_malformed_filter_points_at_the_position(client, exp):
    with pytest.raises(InvalidArgument, match=r"Malformed filter at position 16") as e:
        client.search_runs([exp], filter_string="metrics.acc > 1 garbage")
    assert e.value.position == 16 and "^" in str(e.value)


def test_unreachable_postgres_names_the_uri_without_password(tmp_path):
    client = modelpack.Client("postgresql://alice:s3cret@127.0.0.1:1/db", str(tmp_path))
    with pytest.raises(modelpack.ModelpackError, match=r"Cannot open the tracking store at "
                       r"postgresql\+psycopg://alice:\*\*\*@127\.0\.0\.1:1/db") as e:  # fmt: skip
        client.search_experiments()
    assert "s3cret" not in str(e.value)


def test_schema_upgrade_is_explicit_and_idempotent(store_url):
    from modelpack.store import engines

    engine = engines.make_engine(store_url)
    try:
        assert engines.upgrade(engine) == engines.head_revision()
        assert engines.upgrade(engine) == engines.head_revision()
        assert engines.current_revision(engine) == engines.head_revision()
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_table_definitions(store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from modelpack.store import engines
    from modelpack.store.schema import metadata

    engine = engines.make_engine(store_url)
    try:
        engines.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_concurrent_first_opens_migrate_once(store_url):
    import subprocess
    import sys

    import sqlalchemy as sa

    code = (
        "import sys, modelpack\n"
        "print(len(modelpack.Client(sys.argv[1], '/tmp').search_experiments()))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    assert [out.strip() for out, _ in results] == ["0"] * 4
    from modelpack.store import engines

    engine = engines.make_engine(store_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert [v[0] for v in versions] == [engines.head_revision()]
    finally:
        engine.dispose()
