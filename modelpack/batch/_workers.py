"""Worker processes for ``predict_file(..., workers=N)``: each loads the package once.

A worker is ``python -m modelpack.batch._worker``, started with an argument list (no shell).
It reads pickled batches from its stdin and writes pickled results to its stdout, in order;
anything the model prints goes to stderr. This module is the parent's side of the pipes.
Plain subprocesses rather than ``multiprocessing``: its spawn start method re-runs the caller's
``__main__`` script in every worker, which breaks scripts without an
``if __name__ == "__main__":`` guard, and fork copies the parent's threads. The pipes carry only
what this process's parent wrote: pickle is safe here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

# Thread pools of the frameworks a worker may load: N workers share the machine's cores.
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_STOP = object()


class WorkerDied(Exception):
    """A worker process exited before answering."""


class LoadFailed(Exception):
    """A worker could not load the package: ``kind`` and ``message`` of the error it got."""

    def __init__(self, kind: str, message: str, ours: bool) -> None:
        super().__init__(message)
        self.kind, self.message, self.ours = kind, message, ours


class Workers:
    """N worker processes; ``submit(x)`` returns a future of ``(ok, value)``."""

    def __init__(self, root: Path, flavor: str, prediction_column: str | None, n: int) -> None:
        env = dict(os.environ)
        threads = str(max(1, (os.cpu_count() or 1) // n))
        for var in _THREAD_VARS:
            env.setdefault(var, threads)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.outboxes: list[queue.Queue[Any]] = []
        self.waiting: list[deque[Future[Any]]] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.dead: list[tuple[Any, Exception | None] | None] = []
        self.turn = 0
        setup = (str(root), flavor, prediction_column)
        try:
            for i in range(n):
                proc = subprocess.Popen(
                    [sys.executable, "-m", "modelpack.batch._worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
                self.procs.append(proc)
                self.outboxes.append(queue.Queue())
                self.waiting.append(deque())
                self.dead.append(None)
                self.outboxes[i].put(setup)
                for target in (self._send, self._receive):
                    thread = threading.Thread(target=target, args=(i,), daemon=True)
                    thread.start()
                    self.threads.append(thread)
        except BaseException:
            self.close(kill=True)
            raise

    def submit(self, x: Any) -> Future[Any]:
        future: Future[Any] = Future()
        i = self.turn
        self.turn = (i + 1) % len(self.procs)
        with self.lock:
            dead = self.dead[i]
            if dead is None:
                self.waiting[i].append(future)
        if dead is not None:
            _settle(future, *dead)
        else:
            self.outboxes[i].put(x)
        return future

    def _send(self, i: int) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        try:
            while (item := self.outboxes[i].get()) is not _STOP:
                pickle.dump(item, stdin, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.flush()
        except (OSError, ValueError):  # the worker died, or close() killed it
            pass
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _receive(self, i: int) -> None:
        proc = self.procs[i]
        stdout = proc.stdout
        assert stdout is not None
        try:
            ok, value = pickle.load(stdout)  # the package loaded, or why not
            if not ok:
                self._bury(i, None, LoadFailed(*value))
                return
            while True:
                result = pickle.load(stdout)
                with self.lock:
                    future = self.waiting[i].popleft()
                future.set_result(result)
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            self._bury(i, None, WorkerDied(f"exit code {proc.wait()}"))

    def _bury(self, i: int, result: Any, error: Exception | None) -> None:
        """Worker ``i`` is gone: settle what it owed, and whatever is sent to it later."""
        with self.lock:
            self.dead[i] = (result, error)
            owed = list(self.waiting[i])
            self.waiting[i].clear()
        for future in owed:
            _settle(future, result, error)

    def close(self, kill: bool = False) -> None:
        """Stop the workers: at once with ``kill``, else once they finish what they hold."""
        for outbox in self.outboxes:
            outbox.put(_STOP)
        for proc in self.procs:
            if kill:
                proc.kill()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for thread in self.threads:
            thread.join(timeout=5)
        for proc in self.procs:
            if proc.stdout is not None:
                proc.stdout.close()


def _settle(future: Future[Any], result: Any, error: Exception | None) -> None:
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
