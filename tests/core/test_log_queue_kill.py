"""The logging queue across processes: a SIGKILLed logger leaves whole batches only (no
duplicate, no gap: a prefix of what it logged), a normal exit writes everything queued and tells
on stderr what failed, and a forked child starts with an empty queue of its own."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

import modelpack
from modelpack import log_queue

WAIT = 60  # seconds any wait here may take at most (a loaded CI machine starts Python slowly)

LOGGER = textwrap.dedent("""
    import sys
    import modelpack

    client = modelpack.Client(sys.argv[1], artifact_root=sys.argv[2])
    run = client.create_run(client.create_experiment("killed")).info.run_id
    print(run, flush=True)
    for step in range(10_000_000):
        client.log_metric(run, "m", float(step), step=step)
        if step % 97 == 0:
            client.log_batch(run, metrics=[("n", float(step), None, step)],
                             tags={"at": str(step)})
""")

EXITING = textwrap.dedent("""
    import sys
    import modelpack

    modelpack.set_tracking_uri(sys.argv[1])
    for step in range(3000):
        modelpack.log_metric("m", float(step), step=step)  # starts a run, ended at exit
    run = modelpack.active_run().info.run_id
    client = modelpack.Client()
    client.store.log_batch(run, params={"lr": "0.1"})  # as another process would
    modelpack.log_param("lr", "0.2")  # refused by the store after the script ends
    print(run, flush=True)
""")


def _child_env(tmp_path) -> dict[str, str]:
    env = {**os.environ, "MODELPACK_ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    env.pop(log_queue.SYNC_VARIABLE, None)
    return env


def test_a_killed_logger_leaves_a_prefix_of_whole_batches(store_url, tmp_path):
    script = tmp_path / "logger.py"
    script.write_text(LOGGER)
    child = subprocess.Popen(
        [sys.executable, str(script), store_url, str(tmp_path / "artifacts")],
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(tmp_path),
    )
    try:
        run_id = child.stdout.readline().strip()
        assert len(run_id) == 32, run_id
        client = modelpack.Client(store_url, artifact_root=str(tmp_path / "artifacts"))
        deadline = time.monotonic() + WAIT
        while len(client.get_metric_history(run_id, "m")) < 3000:  # a few batches are in
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    client = modelpack.Client(store_url, artifact_root=str(tmp_path / "artifacts"))
    history = client.get_metric_history(run_id, "m")
    steps = [m.step for m in history]
    assert len(steps) >= 3000 and steps == list(range(len(steps)))  # unique, no gap
    assert all(m.value == float(m.step) for m in history)
    n = client.get_metric_history(run_id, "n")
    assert [m.step for m in n] == list(range(0, 97 * len(n), 97))
    run = client.get_run(run_id)
    assert run.data.metrics["m"] == float(steps[-1]) and run.info.status == "RUNNING"
    assert run.data.tags["at"] == str(n[-1].step)  # the tag came in the batch of its point


def test_exit_writes_what_is_queued_and_tells_what_failed(tmp_path):
    url = f"sqlite:///{tmp_path / 'store' / 'modelpack.db'}"
    script = tmp_path / "exiting.py"
    script.write_text(EXITING)
    done = subprocess.run(
        [sys.executable, str(script), url],
        capture_output=True,
        text=True,
        env=_child_env(tmp_path),
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert (
        f"modelpack: Logging in the background failed, run {run_id!r}: 1 logged item was not "
        f"stored (params 'lr'): Param 'lr' was already logged as '0.1'; it cannot change to '0.2'"
    ) in done.stderr
    client = modelpack.Client(url, artifact_root=str(tmp_path / "artifacts"))
    assert len(client.get_metric_history(run_id, "m")) == 3000
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}


class _HeldStore:
    """A store whose writes wait for ``gate``: the parent forks with items still queued."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[float]] = []

    def log_batch(self, run_id, *, metrics=(), params=None, tags=None, idempotency_key=None):
        self.entered.set()
        assert self.gate.wait(WAIT)
        self.batches.append([m.value for m in metrics])


def _in_child(held_uri: str, url: str, artifacts: str, results) -> None:
    try:
        inherited = log_queue.existing_queue(held_uri)
        client = modelpack.Client(url, artifact_root=artifacts)
        run_id = client.create_run(client.create_experiment("child")).info.run_id
        for step in range(500):
            client.log_metric(run_id, "m", float(step), step=step)
        client.set_terminated(run_id)  # drains through the child's own thread
        results.put((inherited is None, run_id))
    except BaseException as exc:  # the parent reports it
        results.put((False, repr(exc)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_starts_with_an_empty_queue_of_its_own(tmp_path):
    held = _HeldStore()
    held_uri = f"sqlite:///{tmp_path}/held-{uuid.uuid4().hex}.db"
    parent = modelpack.Client(held_uri, artifact_root=str(tmp_path / "artifacts"))
    parent.__dict__["store"] = held
    queue = log_queue.queue_for(held_uri, lambda: held)
    queue.running("r")
    for step in range(5):
        parent.log_metric("r", "m", float(step), step=step)
    assert held.entered.wait(WAIT)  # the parent's thread holds a batch; the rest is queued
    url = f"sqlite:///{tmp_path / 'child' / 'modelpack.db'}"
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(
        target=_in_child, args=(held_uri, url, str(tmp_path / "artifacts"), results)
    )
    child.start()
    try:
        empty, run_id = results.get(timeout=WAIT)
    finally:
        child.join(WAIT)
        held.gate.set()
    assert child.exitcode == 0
    assert empty is True, run_id
    stored = modelpack.Client(url, artifact_root=str(tmp_path / "artifacts"))
    assert [m.step for m in stored.get_metric_history(run_id, "m")] == list(range(500))
    parent.flush()
    assert sorted(v for batch in held.batches for v in batch) == [0.0, 1.0, 2.0, 3.0, 4.0]
