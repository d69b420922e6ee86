"""The logging queue's own logic, against a store whose writes a test can hold back: calls return
before the write, batches keep MLflow's limits and each run's order, failures surface at the next
call and at end_run/flush naming what was lost, the queue is bounded, synchronous mode writes at
once. (End to end on SQLite and PostgreSQL: tests/store/test_log_queue_stores.py.)"""

from __future__ import annotations

import threading
import types
import uuid

import pytest

import modelpack
from modelpack import log_queue
from modelpack.entities import Metric
from modelpack.errors import Conflict, InvalidArgument, NotFound, Unavailable
from modelpack.log_queue import NotStored

WAIT = 10  # seconds any wait in these tests may take at most


class GatedStore:
    """A store that records batches, and whose ``log_batch`` waits while ``gate`` is clear."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[Metric], dict, dict, str | None]] = []
        self.attempts: list[str | None] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.errors: list[BaseException] = []  # raised by the next writes, in turn
        self.refuse: dict[str, BaseException] = {}  # param key -> raised by a batch holding it
        self.down: dict[str, BaseException] = {}  # run -> raised by every batch of that run
        self.runs: dict[str, tuple[str, str]] = {}  # run -> (status, lifecycle)
        self.threads: set[str] = set()

    def log_batch(self, run_id, *, metrics=(), params=None, tags=None, idempotency_key=None):
        self.entered.set()
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(WAIT), "the test never opened the gate"
        self.attempts.append(idempotency_key)
        if self.errors:
            raise self.errors.pop(0)
        if run_id in self.down:
            raise self.down[run_id]
        for key in params or {}:
            if key in self.refuse:
                raise self.refuse[key]
        self.batches.append((run_id, list(metrics), dict(params or {}), dict(tags or {}),
                             idempotency_key))  # fmt: skip

    def get_run(self, run_id):
        if run_id not in self.runs:
            raise NotFound(f"No run with id {run_id!r}.")
        status, stage = self.runs[run_id]
        return types.SimpleNamespace(
            info=types.SimpleNamespace(status=status, lifecycle_stage=stage),
            data=types.SimpleNamespace(params={}),
        )

    # what the tests read
    def metrics(self, run_id: str) -> list[tuple[str, float, int]]:
        return [(m.key, m.value, m.step) for r, ms, *_ in self.batches if r == run_id for m in ms]


@pytest.fixture
def store():
    store = GatedStore()
    store.runs.update({"r1": ("RUNNING", "active"), "r2": ("RUNNING", "active")})
    yield store
    store.gate.set()


@pytest.fixture
def client(store, tmp_path, monkeypatch):
    """A Client whose store is the gated one, under a tracking URI no other test uses."""
    monkeypatch.delenv(log_queue.SYNC_VARIABLE, raising=False)
    client = modelpack.Client(
        f"sqlite:///{tmp_path}/never-opened-{uuid.uuid4().hex}.db",
        artifact_root=str(tmp_path / "artifacts"),
    )
    client.__dict__["store"] = store
    yield client
    store.gate.set()
    queue = log_queue.existing_queue(client.tracking_uri)
    if queue is not None:
        queue.flush(raise_errors=False, timeout=WAIT)


def test_calls_return_before_the_write_and_flush_waits_for_it(client, store):
    store.gate.clear()
    client.log_metric("r1", "loss", 0.5, step=1)
    client.log_param("r1", "lr", 0.1)
    client.set_tag("r1", "team", "risk")
    assert store.entered.wait(WAIT)  # the background thread is inside log_batch, held there
    assert store.batches == []  # ... and all three calls returned before anything was stored
    store.gate.set()
    client.flush()
    assert store.metrics("r1") == [("loss", 0.5, 1)]
    params = {k: v for r, _, p, _, _ in store.batches for k, v in p.items()}
    tags = {k: v for r, _, _, t, _ in store.batches for k, v in t.items()}
    assert params == {"lr": "0.1"} and tags == {"team": "risk"}
    assert store.threads == {"modelpack-logging"}


def test_batches_keep_mlflows_limits_and_each_runs_order(client, store):
    store.gate.clear()
    for step in range(2500):
        client.log_metric("r1", "m", float(step), step=step)
        if step % 10 == 0:
            client.log_metric("r2", "m", float(step), step=step)
    for i in range(250):
        client.log_param("r1", f"p{i}", i)
        client.set_tag("r1", "last", str(i))  # overwritten 250 times: the last value wins
    store.gate.set()
    client.flush()
    for _, metrics, params, tags, key in store.batches:
        assert len(metrics) + len(params) + len(tags) <= 1000
        assert len(metrics) <= 1000 and len(params) <= 100 and len(tags) <= 100
        assert key is not None and len(key) == 32 and int(key, 16) >= 0
    keys = [b[4] for b in store.batches]
    assert len(set(keys)) == len(keys)  # a key per batch
    assert store.metrics("r1") == [("m", float(s), s) for s in range(2500)]
    assert store.metrics("r2") == [("m", float(s), s) for s in range(0, 2500, 10)]
    r1 = [b for b in store.batches if b[0] == "r1"]
    assert sum(len(b[2]) for b in r1) == 250
    assert [b[3]["last"] for b in r1 if "last" in b[3]][-1] == "249"
    assert len(r1) < 100  # batched, not one write per call


def test_a_failed_write_raises_at_the_next_call_for_the_run_naming_what_was_lost(client, store):
    store.down["r1"] = InvalidArgument("Run 'r1' has ended (FINISHED); start a new run.")
    store.gate.clear()
    client.log_metric("r2", "loss", 1.0)  # the writer holds this batch...
    assert store.entered.wait(WAIT)
    client.log_metric("r1", "loss", 1.0)  # ... so these two wait, and go in one batch
    client.log_metric("r1", "acc", 0.5)
    store.gate.set()
    log_queue.existing_queue(client.tracking_uri).flush("r1", raise_errors=False)  # written
    del store.down["r1"]
    client.log_metric("r2", "loss", 1.0)  # another run's call does not see r1's failure
    with pytest.raises(NotStored) as raised:
        client.log_metric("r1", "loss", 2.0)
    message = str(raised.value)
    assert "run 'r1': 2 logged items were not stored (metrics 'loss', 'acc')" in message
    assert "Run 'r1' has ended (FINISHED); start a new run." in message
    assert "Those items were dropped: log them again" in message
    assert raised.value.run_ids == ["r1"] and raised.value.count == 2
    assert isinstance(raised.value.failures[0].errors[0], InvalidArgument)
    client.flush()  # told once, then dropped: nothing more to raise
    assert store.metrics("r1") == [("loss", 2.0, 0)]


def test_a_failed_write_raises_at_end_run_and_at_flush(client, store, monkeypatch):
    store.errors.append(RuntimeError("disk full"))
    client.log_param("r1", "lr", "0.1")
    with pytest.raises(NotStored, match=r"run 'r1': 1 logged item was not stored \(params "
                       r"'lr'\): RuntimeError: disk full"):  # fmt: skip
        client.flush()
    ended = []
    monkeypatch.setattr(
        store, "update_run", lambda run_id, **values: ended.append((run_id, values)),
        raising=False,
    )  # fmt: skip
    store.errors.append(RuntimeError("disk full"))
    client.log_metric("r2", "loss", 1.0)
    with pytest.raises(NotStored, match=r"run 'r2': 1 logged item was not stored \(metrics 'loss'"):
        client.set_terminated("r2")
    assert ended and ended[0][0] == "r2" and ended[0][1]["status"] == "FINISHED"  # ended anyway


def test_a_param_conflict_drops_only_its_own_call(client, store):
    """The store refuses the batch holding the param; the calls merged with it are stored."""
    store.gate.clear()
    store.refuse["lr"] = InvalidArgument(
        "Param 'lr' was already logged as '0.1'; it cannot change to '0.2'."
    )
    client.log_metric("r1", "loss", 1.0)
    client.log_param("r1", "lr", "0.2")
    client.log_metric("r1", "loss", 2.0, step=1)
    store.gate.set()
    with pytest.raises(NotStored, match=r"\(params 'lr'\): Param 'lr' was already logged as "
                       r"'0\.1'; it cannot change to '0\.2'\."):  # fmt: skip
        client.flush()
    assert store.metrics("r1") == [("loss", 1.0, 0), ("loss", 2.0, 1)]


def test_a_param_logged_again_with_another_value_is_refused_at_the_call(client, store):
    client.log_param("r1", "depth", 5)
    client.log_param("r1", "depth", "5")
    with pytest.raises(InvalidArgument, match=r"Param 'depth' was already logged as '5'; it "
                       r"cannot change to '6'\. Params are immutable"):  # fmt: skip
        client.log_batch("r1", metrics=[("m", 1.0, None, 0)], params={"depth": 6})
    client.flush()
    assert store.metrics("r1") == []  # the refused call logged nothing


def test_transient_failures_are_retried_with_the_same_key(client, store, monkeypatch):
    monkeypatch.setattr(log_queue.time, "sleep", lambda s: None)
    store.errors += [Unavailable("server restarting"), Conflict("deadlock", "deadlock", 5)]
    client.log_metric("r1", "loss", 1.0)
    client.flush()
    assert store.metrics("r1") == [("loss", 1.0, 0)]
    assert len(store.attempts) == 3 and len(set(store.attempts)) == 1  # one key, three tries
    store.errors += [Unavailable("server down")] * log_queue.ATTEMPTS
    client.log_metric("r1", "loss", 2.0)
    with pytest.raises(NotStored, match=r"1 logged item was not stored \(metrics 'loss'\): "
                       r"server down"):  # fmt: skip
        client.flush()
    assert store.metrics("r1") == [("loss", 1.0, 0)]  # given up after ATTEMPTS, not forever


def test_a_full_queue_blocks_the_logging_call_until_there_is_room(client, store, monkeypatch):
    monkeypatch.setattr(log_queue, "MAX_ITEMS", 10)
    store.gate.clear()
    done = threading.Event()

    def log() -> None:
        for step in range(25):
            client.log_metric("r1", "m", float(step), step=step)
        done.set()

    thread = threading.Thread(target=log)
    thread.start()
    queue = None
    for _ in range(WAIT * 100):
        queue = log_queue.existing_queue(client.tracking_uri)
        if queue is not None:
            break
        threading.Event().wait(0.01)
    assert store.entered.wait(WAIT)
    for _ in range(WAIT * 100):  # the logger fills the queue to its bound, then waits
        if queue.pending_items() == 10:
            break
        threading.Event().wait(0.01)
    assert queue.pending_items() == 10 and not done.is_set()
    store.gate.set()
    assert done.wait(WAIT)
    thread.join(WAIT)
    client.flush()
    assert store.metrics("r1") == [("m", float(s), s) for s in range(25)]


def test_synchronous_writes_before_returning_raising_the_stores_error(client, store, monkeypatch):
    store.gate.clear()
    client.log_metric("r1", "queued", 1.0)  # queued first: a synchronous call comes after it
    opener = threading.Timer(0.2, store.gate.set)
    opener.start()
    client.log_metric("r1", "now", 2.0, synchronous=True)
    assert store.metrics("r1") == [("queued", 1.0, 0), ("now", 2.0, 0)]  # in order, no flush
    store.errors.append(InvalidArgument("Run 'r1' has ended (FINISHED)."))
    with pytest.raises(InvalidArgument, match=r"Run 'r1' has ended \(FINISHED\)\."):
        client.set_tag("r1", "k", "v", synchronous=True)
    monkeypatch.setenv(log_queue.SYNC_VARIABLE, "1")
    client.log_param("r1", "lr", "0.1")
    assert store.batches[-1][2] == {"lr": "0.1"}
    sync_client = modelpack.Client(client.tracking_uri, artifact_root=client.artifact_root,
                                   synchronous=True)  # fmt: skip
    sync_client.__dict__["store"] = store
    monkeypatch.setenv(log_queue.SYNC_VARIABLE, "0")
    sync_client.log_metric("r1", "client-wide", 3.0)
    assert store.metrics("r1")[-1] == ("client-wide", 3.0, 0)
    monkeypatch.setenv(log_queue.SYNC_VARIABLE, "sometimes")
    with pytest.raises(InvalidArgument, match=r"MODELPACK_SYNC_LOGGING='sometimes': expected 1"):
        client.log_metric("r1", "x", 1.0)


def test_the_run_is_checked_at_the_first_call(client, store):
    with pytest.raises(NotFound, match="No run with id 'nope'"):
        client.log_metric("nope", "loss", 1.0)
    store.runs["done"] = ("FINISHED", "active")
    with pytest.raises(InvalidArgument, match=r"Run 'done' has ended \(FINISHED\)"):
        client.log_param("done", "lr", 1)
    store.runs["gone"] = ("RUNNING", "deleted")
    with pytest.raises(InvalidArgument, match="Run 'gone' is deleted; restore it"):
        client.set_tag("gone", "k", "v")
    with pytest.raises(InvalidArgument, match="Metric key must not be empty"):
        client.log_metric("r1", "", 1.0)
    client.flush()
    assert store.batches == []


def test_reads_see_what_was_logged_before_them(client, store):
    store.gate.clear()
    client.log_metric("r1", "loss", 1.0)
    threading.Timer(0.2, store.gate.set).start()
    reads = []
    store.get_metric_history = lambda run_id, key: reads.append(list(store.batches)) or []
    client.get_metric_history("r1", "loss")
    assert [b[0] for b in reads[0]] == ["r1"]  # written before the read ran
