"""``SqlStore.log_batch(idempotency_key=...)``: a retried batch whose first attempt landed is
acknowledged without storing its points again, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import math

import pytest

from modelpack.entities import Metric
from modelpack.errors import InvalidArgument, NotFound


@pytest.fixture
def store(client):
    return client.store


@pytest.fixture
def run_id(store):
    experiment = store.get_or_create_experiment("idem")
    return store.create_run(experiment.experiment_id, run_name="r", user_id="u").info.run_id


def _points(n: int, key: str = "loss") -> list[Metric]:
    return [Metric(key, float(i), 1_000 + i, i) for i in range(n)]


def test_metrics_only_batch_with_the_same_key_is_stored_once(store, run_id):
    store.log_batch(run_id, metrics=_points(3), idempotency_key="k-metrics")
    store.log_batch(run_id, metrics=_points(3), idempotency_key="k-metrics")  # the retry
    history = store.get_metric_history(run_id, "loss")
    assert [(m.value, m.step) for m in history] == [(0.0, 0), (1.0, 1), (2.0, 2)]


def test_mixed_batch_with_the_same_key_is_stored_once(store, run_id):
    for _ in range(2):
        store.log_batch(
            run_id,
            metrics=[Metric("acc", math.nan, 5, 0)],
            params={"depth": "3"},
            tags={"team": "ml"},
            idempotency_key="k-mixed",
        )
    run = store.get_run(run_id)
    assert run.data.params == {"depth": "3"}
    assert run.data.tags == {"team": "ml"}
    history = store.get_metric_history(run_id, "acc")
    assert len(history) == 1 and math.isnan(history[0].value)


def test_different_keys_and_no_key_store_every_batch(store, run_id):
    store.log_batch(run_id, metrics=_points(1), idempotency_key="a")
    store.log_batch(run_id, metrics=_points(1), idempotency_key="b")
    store.log_batch(run_id, metrics=_points(1))
    store.log_batch(run_id, metrics=_points(1))
    assert len(store.get_metric_history(run_id, "loss")) == 4


def test_a_retry_after_the_run_ended_is_acknowledged(store, run_id):
    store.log_batch(run_id, metrics=_points(2), idempotency_key="late")
    store.update_run(run_id, status="FINISHED", end_time=2_000)
    store.log_batch(run_id, metrics=_points(2), idempotency_key="late")  # no error, no points
    store.log_batch(run_id, tags={"x": "1"}, metrics=_points(1), idempotency_key="late")
    assert len(store.get_metric_history(run_id, "loss")) == 2
    with pytest.raises(InvalidArgument, match="has ended"):
        store.log_batch(run_id, metrics=_points(1), idempotency_key="new-after-end")


def test_a_failed_batch_keeps_no_key_so_its_retry_stores(store, run_id):
    store.log_batch(run_id, params={"p": "1"})
    with pytest.raises(InvalidArgument, match="already logged"):
        store.log_batch(run_id, params={"p": "2"}, metrics=_points(1), idempotency_key="f")
    store.log_batch(run_id, params={"p": "1"}, metrics=_points(1), idempotency_key="f")
    assert len(store.get_metric_history(run_id, "loss")) == 1


def test_a_key_of_another_run_is_refused(store, run_id):
    experiment_id = store.get_run(run_id).info.experiment_id
    other = store.create_run(experiment_id, run_name="o", user_id="u").info.run_id
    store.log_batch(run_id, metrics=_points(1), idempotency_key="shared")
    for kwargs in ({"metrics": _points(1)}, {"tags": {"t": "v"}}):
        with pytest.raises(InvalidArgument, match="was used by a batch of run"):
            store.log_batch(other, idempotency_key="shared", **kwargs)
    assert store.get_metric_history(other, "loss") == []


@pytest.mark.parametrize("key", ["", "x" * 65, 12])
def test_a_malformed_key_is_refused(store, run_id, key):
    with pytest.raises(InvalidArgument, match="idempotency_key must be a non-empty string"):
        store.log_batch(run_id, metrics=_points(1), idempotency_key=key)


def test_an_unknown_run_is_not_found_with_a_key(store):
    with pytest.raises(NotFound, match="No run with id"):
        store.log_batch("0" * 32, metrics=_points(1), idempotency_key="nobody")


def test_concurrent_retries_of_one_batch_store_it_once(store, run_id):
    import threading

    barrier = threading.Barrier(4, timeout=30)
    errors: list[BaseException] = []

    def send(with_tag: bool) -> None:
        try:
            barrier.wait()
            extra = {"tags": {"t": "v"}} if with_tag else {}
            store.log_batch(run_id, metrics=_points(5), idempotency_key="race", **extra)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(store.get_metric_history(run_id, "loss")) == 5
