"""Logging that never waits: metrics, params and tags queue in the process and one background
thread per store writes them in batches.

``Client.log_metric`` (and ``log_metrics``, ``log_param(s)``, ``set_tag(s)``, ``log_batch``, and
the fluent calls on top of them) validate their arguments, put the items here and return. The
store's thread takes up to 1,000 items of one run at a time (at most 1,000 metrics, 100 params
and 100 tags: MLflow's ``log-batch`` limits) and writes them with one ``store.log_batch`` call,
one transaction on a SQL store, under an idempotency key (a uuid4 hex per batch, sent again by
that batch's retries, so a retried batch is never stored twice). A run's items are written in
the order they were logged; runs take turns.

What waits:

- ``end_run``, ``modelpack.flush()`` and process exit (``atexit``) drain the queue; so do the
  reads of a ``Client`` (``get_run``, ``get_metric_history``, ``search_runs``, artifact and
  model logging, registering a model), which therefore see everything logged before them.
- The queue holds at most ``MAX_ITEMS`` (100,000) items per store; a logging call that finds it
  full blocks until the thread has written enough (backpressure, never unbounded memory).

What fails, and where it is told:

- Keys and values are checked at the call, and so is the run (once per run and process: it must
  exist and be RUNNING). A param logged again with another value is refused at the call when
  this process knows the first value; a conflict with a value another process logged can only
  be found by the store, and surfaces like any failed write.
- A failed write raises ``NotStored`` (naming the run, the keys, how many items and the store's
  message) at the next logging call for that run, at its ``end_run``, or at ``flush()``; those
  items are dropped. ``Unavailable`` and ``Conflict`` are retried first (``ATTEMPTS`` in all,
  with a growing pause). Errors left when the process exits are written to stderr.
- A process killed with SIGKILL loses what was still queued (at most the batch in flight and
  what followed it); a batch is one transaction, so the store holds whole batches only.

``synchronous=True`` on a call, or ``MODELPACK_SYNC_LOGGING=1``, writes before returning and
raises the store's own error, as before this queue existed. A forked child starts with an empty
queue of its own (``os.register_at_fork``): the parent's items are the parent's to write.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from modelpack.errors import Conflict, InvalidArgument, ModelpackError, Unavailable

__all__ = [
    "MAX_ITEMS",
    "SYNC_VARIABLE",
    "LogQueue",
    "NotStored",
    "existing_queue",
    "flush_all",
    "is_synchronous",
    "queue_for",
]

MAX_ITEMS = 100_000  # queued items per store; a logging call past it waits for room
MAX_BATCH = 1000  # items per batch (MLflow's log-batch: 1,000 metrics, 100 params, 100 tags)
MAX_PARAMS = 100
MAX_TAGS = 100
ATTEMPTS = 5  # writes of a batch that fails with Unavailable or Conflict, in all
IDLE_EXIT_S = 5.0  # the thread ends after this long with nothing to write (restarts on demand)
EXIT_FLUSH_S = 60.0  # how long process exit keeps writing what is queued
KNOWN_RUNS = 10_000  # runs whose state and params a queue remembers (the oldest are forgotten)
SYNC_VARIABLE = "MODELPACK_SYNC_LOGGING"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
_SHOWN_KEYS = 10  # keys a NotStored message names per kind


def is_synchronous(synchronous: bool | None) -> bool:
    """Whether a logging call writes before it returns: its ``synchronous`` argument, else
    ``MODELPACK_SYNC_LOGGING`` (``1``/``true``: yes; unset, ``0``/``false``: queue)."""
    if synchronous is not None:
        return bool(synchronous)
    value = os.environ.get(SYNC_VARIABLE, "").strip().lower()
    if value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise InvalidArgument(
        f"{SYNC_VARIABLE}={os.environ[SYNC_VARIABLE]!r}: expected 1 (write each logging call "
        f"before it returns) or 0 (queue them, the default)."
    )


def fits_one_batch(
    metrics: Sequence[Any], params: Mapping[str, Any], tags: Mapping[str, Any]
) -> bool:
    """Whether one call's items fit one batch; a larger call is written at once, whole."""
    return (
        len(metrics) + len(params) + len(tags) <= MAX_BATCH
        and len(params) <= MAX_PARAMS
        and len(tags) <= MAX_TAGS
    )


class Failure:
    """The items of one run that were not stored, and why (merged over failed batches)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.count = 0
        self.keys: dict[str, list[str]] = {"metric": [], "param": [], "tag": []}
        self.errors: list[BaseException] = []

    def add(self, records: Iterable[_Record], error: BaseException) -> None:
        for record in records:
            self.count += record.size
            for kind, keys in (
                ("metric", (m.key for m in record.metrics)),
                ("param", record.params),
                ("tag", record.tags),
            ):
                seen = self.keys[kind]
                for key in keys:
                    if key not in seen and len(seen) <= _SHOWN_KEYS:
                        seen.append(key)
        if len(self.errors) < 3 and not any(str(e) == str(error) for e in self.errors):
            self.errors.append(error)

    def describe(self) -> str:
        named = []
        for kind, keys in self.keys.items():
            if keys:
                shown = ", ".join(repr(k) for k in keys[:_SHOWN_KEYS])
                more = ", ..." if len(keys) > _SHOWN_KEYS else ""
                named.append(f"{kind}s {shown}{more}")
        why = " / ".join(_message(e) for e in self.errors)
        items = "item was" if self.count == 1 else "items were"
        what = "; ".join(named)
        return f"run {self.run_id!r}: {self.count} logged {items} not stored ({what}): {why}"


def _message(error: BaseException) -> str:
    if isinstance(error, ModelpackError):
        return error.message
    return f"{type(error).__name__}: {error}"


class NotStored(ModelpackError):
    """Items logged earlier (queued, then written in the background) were not stored; they are
    dropped. Log them again, with ``synchronous=True`` to see the store's error at once.

    Attributes:
        failures: one ``Failure`` per run: ``run_id``, ``count``, ``keys`` (``metric``,
            ``param`` and ``tag`` keys, the first few), ``errors`` (the store's exceptions).
    """

    def __init__(self, failures: Sequence[Failure]) -> None:
        self.failures = list(failures)
        body = "; ".join(f.describe().rstrip(".") for f in self.failures)
        super().__init__(
            f"Logging in the background failed, {body}. Those items were dropped: log them "
            f"again (synchronous=True, or {SYNC_VARIABLE}=1, raises the store's error at the call)."
        )

    @property
    def run_ids(self) -> list[str]:
        return [f.run_id for f in self.failures]

    @property
    def count(self) -> int:
        return sum(f.count for f in self.failures)


class _Record:
    """One logging call's items (validated, values as stored)."""

    __slots__ = ("metrics", "params", "seq", "size", "tags")

    def __init__(
        self, seq: int, metrics: list[Any], params: dict[str, str], tags: dict[str, str]
    ) -> None:
        self.seq = seq
        self.metrics = metrics
        self.params = params
        self.tags = tags
        self.size = len(metrics) + len(params) + len(tags)


class LogQueue:
    """The queue and writer thread of one store (see the module's docstring).

    Args:
        store: anything with ``log_batch(run_id, *, metrics, params, tags[, idempotency_key])``
            and ``get_run(run_id)``: the SQL store, the REST store.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._keyed = _takes_key(store)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer: there is work
        self._done = threading.Condition(self._lock)  # flushers and blocked loggers: progress
        self._pending: dict[str, deque[_Record]] = {}  # per run, in order; runs take turns
        self._busy: set[str] = set()  # runs with a batch being written (one at a time)
        self._items = 0
        self._seq = 0
        self._queued: dict[str, int] = {}  # run -> seq of its last queued record
        self._written: dict[str, int] = {}  # run -> seq of its last finished record
        self._failures: dict[str, Failure] = {}
        self._runs: OrderedDict[str, dict[str, str]] = OrderedDict()  # RUNNING runs -> params
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the runs it knows

    def running(self, run_id: str, params: Mapping[str, str] | None = None) -> None:
        """Remember ``run_id`` as RUNNING with these params (a run this process created)."""
        with self._lock:
            self._remember(run_id, dict(params or {}))

    def forget(self, run_id: str | None = None) -> None:
        """Forget what is known of ``run_id`` (all runs: None): its next log checks it again."""
        with self._lock:
            if run_id is None:
                self._runs.clear()
            else:
                self._runs.pop(run_id, None)

    def _remember(self, run_id: str, params: dict[str, str]) -> None:
        self._runs[run_id] = params
        while len(self._runs) > KNOWN_RUNS:
            self._runs.popitem(last=False)

    def _check_run(self, run_id: str) -> None:
        """Raise now if ``run_id`` cannot take logging (once per run: then it is known)."""
        if isinstance(run_id, str) and run_id in self._runs:
            return
        from modelpack.entities import RunStatus, ended_message

        if not isinstance(run_id, str) or not run_id:
            raise InvalidArgument(f"run_id must be a non-empty string, got {run_id!r}.")
        self.flush(run_id, raise_errors=False)
        run = self.store.get_run(run_id)
        if run.info.lifecycle_stage != "active":
            raise InvalidArgument(f"Run {run_id!r} is deleted; restore it before logging to it.")
        if run.info.status != RunStatus.RUNNING:
            raise InvalidArgument(ended_message(run_id, run.info.status))
        with self._lock:
            self._remember(run_id, dict(run.data.params))

    def _check_params(self, run_id: str, params: Mapping[str, str]) -> None:
        known = self._runs.get(run_id)
        if not known:
            return
        for key, value in params.items():
            old = known.get(key)
            if old is not None and old != value:
                raise InvalidArgument(
                    f"Param {key!r} was already logged as {old!r}; it cannot change to "
                    f"{value!r}. Params are immutable: use a new key or a new run."
                )

    # ------------------------------------------------------------------ logging

    def put(
        self,
        run_id: str,
        metrics: list[Any],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        """Queue one call's items (validated already) and return; waits only while the queue
        is full. Raises ``NotStored`` for earlier items of this run that failed."""
        self._check_run(run_id)
        with self._lock:
            self._check_params(run_id, params)
            record = _Record(self._seq + 1, metrics, params, tags)
            while self._items and self._items + record.size > MAX_ITEMS:
                self._start()
                self._done.wait(1.0)
            self._seq = record.seq
            self._enqueue(run_id, record)
            self._start()
            self._wake.notify()
            failure = self._failures.pop(run_id, None)
        if failure is not None:
            raise NotStored([failure])

    def write(
        self,
        run_id: str,
        metrics: list[Any],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        """Write one call's items now (after what is queued for the run), raising the store's
        own error; then ``NotStored`` for earlier items of this run that failed."""
        self.flush(run_id, raise_errors=False)
        self.store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        with self._lock:
            known = self._runs.get(run_id)
            if known is not None:
                known.update(params)
        self.raise_failures(run_id)

    def _enqueue(self, run_id: str, record: _Record) -> None:
        pending = self._pending.get(run_id)
        if pending is None:
            pending = self._pending[run_id] = deque()
        if run_id not in self._queued:
            self._written[run_id] = record.seq - 1  # everything before is written
        pending.append(record)
        self._queued[run_id] = record.seq
        self._items += record.size
        known = self._runs.get(run_id)
        if known is not None and record.params:
            known.update(record.params)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="modelpack-logging", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------------ writing

    def _take(self, runs: Any = None) -> tuple[str, list[_Record]] | None:
        """The next batch (under the lock): the oldest records of the first run that has some,
        is not being written, and is in ``runs`` (any, if None)."""
        for run_id, pending in self._pending.items():
            if run_id in self._busy or (runs is not None and run_id not in runs):
                continue
            records: list[_Record] = []
            size = n_params = n_tags = 0
            merged: dict[str, str] = {}
            while pending:
                record = pending[0]
                if records and (
                    size + record.size > MAX_BATCH
                    or n_params + len(record.params) > MAX_PARAMS
                    or n_tags + len(record.tags) > MAX_TAGS
                    or any(merged.get(k, v) != v for k, v in record.params.items())
                ):
                    break
                records.append(pending.popleft())
                size += record.size
                n_params += len(record.params)
                n_tags += len(record.tags)
                merged.update(record.params)
            del self._pending[run_id]
            if pending:  # to the back of the line: runs take turns
                self._pending[run_id] = pending
            self._busy.add(run_id)
            self._items -= size
            return run_id, records
        return None

    def _work(self) -> None:
        try:
            while True:
                with self._lock:
                    got = self._take()
                    while got is None:
                        if not self._wake.wait(IDLE_EXIT_S) and not self._pending:
                            self._thread = None
                            return
                        got = self._take()
                self._write_batch(*got)
        finally:  # ended by an error too: the next logging call starts another thread
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _write_batch(self, run_id: str, records: list[_Record]) -> None:
        failed: list[tuple[list[_Record], BaseException]] = []
        try:
            error = self._store(run_id, records)
            if error is not None:
                if len(records) > 1 and any(r.params for r in records):
                    # A param conflict belongs to one call: store the others, name that one.
                    for record in records:
                        one = self._store(run_id, [record])
                        if one is not None:
                            failed.append(([record], one))
                else:
                    failed.append((records, error))
        except BaseException as exc:  # interrupted (KeyboardInterrupt in a flush): told, re-raised
            failed.append((records, exc))
            raise
        finally:
            with self._lock:
                self._busy.discard(run_id)
                for lost, error in failed:
                    failure = self._failures.get(run_id)
                    if failure is None:
                        failure = self._failures[run_id] = Failure(run_id)
                    failure.add(lost, error)
                    known = self._runs.get(run_id)
                    for record in lost:
                        for key, value in record.params.items():
                            if known is not None and known.get(key) == value:
                                del known[key]
                last = records[-1].seq
                self._written[run_id] = last
                if self._queued.get(run_id) == last:  # nothing more of this run is queued
                    del self._queued[run_id], self._written[run_id]
                self._done.notify_all()
                if self._pending:
                    self._wake.notify()

    def _store(self, run_id: str, records: list[_Record]) -> BaseException | None:
        """Write ``records`` as one batch; the error that stopped it, or None."""
        metrics = [m for r in records for m in r.metrics]
        params: dict[str, str] = {}
        tags: dict[str, str] = {}
        for record in records:
            params.update(record.params)
            tags.update(record.tags)
        extra = {"idempotency_key": uuid.uuid4().hex} if self._keyed else {}
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.store.log_batch(run_id, metrics=metrics, params=params, tags=tags, **extra)
                return None
            except (Unavailable, Conflict) as exc:
                if attempt == ATTEMPTS:
                    return exc
            except Exception as exc:  # noqa: BLE001 - reported at the next call, never lost
                return exc
            time.sleep(random.uniform(0.5, 1.0) * min(2.0, 0.1 * 2 ** (attempt - 1)))
        return None  # pragma: no cover - the loop returns

    # ------------------------------------------------------------------ waiting

    def flush(
        self, run_id: str | None = None, raise_errors: bool = True, timeout: float | None = None
    ) -> None:
        """Wait until what was queued (for ``run_id``, or all) is written, writing it in this
        thread when the background thread is busy elsewhere; then raise ``NotStored`` for what
        failed (unless ``raise_errors`` is False: the failures stay for the next call).

        Raises:
            TimeoutError: ``timeout`` seconds passed with items still queued.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if run_id is None:
                targets = dict(self._queued)
            else:
                last = self._queued.get(run_id)
                targets = {} if last is None else {run_id: last}
            while targets:
                targets = {r: s for r, s in targets.items() if self._unwritten(r, s)}
                if not targets:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{sum(len(self._pending.get(r, ())) for r in targets)} logging calls "
                        f"are still queued after {timeout} s."
                    )
                got = self._take(targets)
                if got is None:
                    self._done.wait(0.5)
                    continue
                self._lock.release()
                try:
                    self._write_batch(*got)
                finally:
                    self._lock.acquire()
        if raise_errors:
            self.raise_failures(run_id)

    def _unwritten(self, run_id: str, seq: int) -> bool:
        return run_id in self._queued and self._written.get(run_id, -1) < seq

    def raise_failures(self, run_id: str | None = None) -> None:
        """Raise ``NotStored`` for the failed writes (of ``run_id``, or all) not told yet."""
        with self._lock:
            if run_id is None:
                failures = list(self._failures.values())
                self._failures.clear()
            else:
                one = self._failures.pop(run_id, None)
                failures = [] if one is None else [one]
        if failures:
            raise NotStored(failures)

    def pending_items(self) -> int:
        """Items queued and not taken for writing yet."""
        with self._lock:
            return self._items


def _takes_key(store: Any) -> bool:
    """Whether ``store.log_batch`` accepts ``idempotency_key`` (looked at once per class)."""
    cls = type(store)
    known = _KEYED.get(cls)
    if known is None:
        import inspect

        try:
            parameters = inspect.signature(store.log_batch).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        known = _KEYED[cls] = "idempotency_key" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
    return known


_KEYED: dict[type, bool] = {}

# ---------------------------------------------------------------------------- the process's queues

_queues: dict[str, LogQueue] = {}
_queues_lock = threading.Lock()
_hooks: list[bool] = []  # one entry once atexit and the fork hook are installed


def queue_for(key: str, store: Callable[[], Any]) -> LogQueue:
    """The queue of the store ``key`` names (its tracking URI), made with ``store()`` first."""
    queue = _queues.get(key)
    if queue is not None:
        return queue
    opened = store()
    with _queues_lock:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = LogQueue(opened)
            if not _hooks:
                import atexit

                atexit.register(_drain_at_exit)
                _hooks.append(True)
        return queue


def existing_queue(key: str) -> LogQueue | None:
    """The queue of the store ``key`` names, if this process has logged to it."""
    return _queues.get(key)


def flush_all(timeout: float | None = None) -> None:
    """Write everything queued for every store; raise ``NotStored`` for what failed."""
    failures: list[Failure] = []
    for queue in list(_queues.values()):
        try:
            queue.flush(timeout=timeout)
        except NotStored as exc:
            failures.extend(exc.failures)
    if failures:
        raise NotStored(failures)


def _drain_at_exit() -> None:
    """At exit: write what is queued (for up to ``EXIT_FLUSH_S``), tell what failed on stderr."""
    deadline = time.monotonic() + EXIT_FLUSH_S
    for queue in list(_queues.values()):
        try:
            queue.flush(timeout=max(0.0, deadline - time.monotonic()))
        except (NotStored, TimeoutError) as exc:
            sys.stderr.write(f"modelpack: {exc}\n")
        except Exception as exc:  # noqa: BLE001 - the process is exiting: tell, do not raise
            sys.stderr.write(f"modelpack: logging could not be written at exit: {exc}\n")


def _reset_in_child() -> None:
    """A forked child starts with no queue: the parent's items (and its thread, which the child
    does not have) are the parent's."""
    global _queues_lock
    _queues.clear()
    _queues_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_in_child)
