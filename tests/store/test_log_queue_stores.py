"""Queued logging end to end on the real stores (SQLite and PostgreSQL): the values stored, the
order, read-your-writes, the idempotency keys sent, and a conflict only the store can see."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa

import modelpack
from modelpack import log_queue
from modelpack.errors import InvalidArgument
from modelpack.log_queue import NotStored


@pytest.fixture
def run_id(client):
    return client.create_run(client.create_experiment("queued")).info.run_id


def test_fluent_logging_is_stored_whole_and_in_order(tracking_env):
    with modelpack.start_run(experiment="queued") as run:
        for step in range(2500):
            modelpack.log_metric("loss", 1.0 / (step + 1), step=step)
            if step % 500 == 0:
                modelpack.log_metrics({"acc": step / 2500, "nan": float("nan")}, step=step)
        modelpack.log_params({f"p{i}": i for i in range(150)})  # above one batch: written whole
        modelpack.log_param("lr", 0.1)
        for i in range(5):
            modelpack.set_tag("stage", f"s{i}")  # the last one wins
        modelpack.set_tags({"team": "risk"})
    client = modelpack.Client()
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(2500)]
    data = client.get_run(run.info.run_id).data
    assert data.metrics["loss"] == 1.0 / 2500 and data.metrics["acc"] == 2000 / 2500
    assert math.isnan(data.metrics["nan"])
    assert data.params == {**{f"p{i}": str(i) for i in range(150)}, "lr": "0.1"}
    assert data.tags["stage"] == "s4" and data.tags["team"] == "risk"
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_reads_of_the_same_process_see_what_was_logged(client, run_id):
    for step in range(300):
        client.log_metric(run_id, "loss", float(step), step=step)
    client.log_param(run_id, "lr", "0.1")
    client.set_tag(run_id, "team", "risk")
    assert len(client.get_metric_history(run_id, "loss")) == 300  # no flush: the read waits
    client.log_metric(run_id, "acc", 0.9)
    experiment = client.get_run(run_id).info.experiment_id
    found = client.search_runs([experiment], "metrics.acc > 0.5 and params.lr = '0.1'")
    assert [r.info.run_id for r in found] == [run_id]
    client.set_tag(run_id, "gone", "x")
    client.delete_tag(run_id, "gone")  # the queued tag is written before it is deleted
    assert "gone" not in client.get_run(run_id).data.tags
    other = modelpack.Client(client.tracking_uri, artifact_root=client.artifact_root)
    client.log_metric(run_id, "late", 1.0)
    assert other.get_run(run_id).data.metrics["late"] == 1.0  # one queue per store


def test_every_batch_carries_an_idempotency_key(client, run_id):
    for step in range(2100):
        client.log_metric(run_id, "m", float(step), step=step)
    client.set_terminated(run_id)
    keys = sa.Table("idempotency_keys", sa.MetaData(), autoload_with=client.store.engine)
    with client.store.engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count()).select_from(keys).where(keys.c.run_id == run_id)
        ).scalar()
    assert 3 <= stored <= 2100  # at least three batches of at most 1,000
    assert len(client.get_metric_history(run_id, "m")) == 2100


def test_a_conflict_only_the_store_sees_is_raised_at_end_run(client, run_id):
    client.store.log_batch(run_id, params={"lr": "0.1"})  # as another process would
    client.log_metric(run_id, "loss", 1.0)
    client.log_param(run_id, "lr", "0.2")
    client.log_metric(run_id, "loss", 2.0, step=1)
    with pytest.raises(NotStored) as raised:
        client.set_terminated(run_id)
    message = str(raised.value)
    assert f"run {run_id!r}: 1 logged item was not stored (params 'lr'): Param 'lr' was " in message
    assert "already logged as '0.1'; it cannot change to '0.2'" in message
    assert isinstance(raised.value.failures[0].errors[0], InvalidArgument)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"  # ended all the same
    assert run.data.params == {"lr": "0.1"}
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0, 2.0]


def test_the_same_process_refuses_a_changed_param_at_the_call(client, run_id):
    client.log_param(run_id, "depth", 5)
    with pytest.raises(InvalidArgument, match=r"Param 'depth' was already logged as '5'"):
        client.log_param(run_id, "depth", 6)
    resumed = modelpack.Client(client.tracking_uri, artifact_root=client.artifact_root)
    client.set_terminated(run_id)
    resumed.resume_run(run_id)
    with pytest.raises(InvalidArgument, match=r"Param 'depth' was already logged as '5'"):
        resumed.log_param(run_id, "depth", 7)  # known from the store when it was resumed


def test_synchronous_logging_raises_the_stores_error_at_the_call(client, run_id, monkeypatch):
    client.store.log_batch(run_id, params={"lr": "0.1"})
    with pytest.raises(InvalidArgument, match=r"Param 'lr' was already logged as '0\.1'"):
        client.log_param(run_id, "lr", "0.2", synchronous=True)
    monkeypatch.setenv(log_queue.SYNC_VARIABLE, "1")
    client.log_metric(run_id, "loss", 1.0)
    with client.store.engine.connect() as conn:  # stored before the call returned
        rows = conn.exec_driver_sql("SELECT count(*) FROM metrics").scalar()
    assert rows == 1


def test_the_with_block_raises_what_was_lost_and_the_run_still_ends(tracking_env):
    with pytest.raises(NotStored, match=r"\(params 'lr'\): Param 'lr' was already logged"):
        with modelpack.start_run() as run:
            modelpack.Client().store.log_batch(run.info.run_id, params={"lr": "0.1"})
            modelpack.log_param("lr", "0.2")
    assert modelpack.active_run() is None
    assert modelpack.get_run(run.info.run_id).info.status == "FINISHED"
    with pytest.raises(ZeroDivisionError) as raised:  # the block's own error stays the one seen
        with modelpack.start_run() as run:
            modelpack.Client().store.log_batch(run.info.run_id, params={"lr": "0.1"})
            modelpack.log_param("lr", "0.2")
            raise ZeroDivisionError("the training failed")
    assert any("Param 'lr' was already logged" in note for note in raised.value.__notes__)
    assert modelpack.get_run(run.info.run_id).info.status == "FAILED"
    assert modelpack.active_run() is None
    modelpack.log_metric("after", 1.0)  # a new run, started on its own, takes logging again
    modelpack.flush()
    assert modelpack.active_run().data.metrics == {"after": 1.0}
