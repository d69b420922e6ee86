"""Real servers for the live tests: `modelpack serve` in a subprocess on a free 127.0.0.1 port.

A server's output goes to a log file beside its package; every failure message that depends on
the server quotes the end of that log. Teardown sends SIGTERM, then SIGKILL after a deadline, to
the server's own process group (it is started in a session of its own), so worker processes
never outlive a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2

HOST = "127.0.0.1"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
_PORT_ATTEMPTS = 3

# Launches `modelpack.serving.serve` with options the CLI has no flag for (max_rows...).
_LAUNCHER = (
    "import json, sys; from modelpack.serving import serve; "
    "serve(sys.argv[1], **json.loads(sys.argv[2]))"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class LiveServer:
    """One `modelpack serve` process. ``launch()`` starts it, ``wait_ready()`` waits for /ready."""

    def __init__(
        self,
        uri: str,
        workdir: Path,
        *,
        args: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        label: str = "server",
    ) -> None:
        self.uri = uri
        self.workdir = Path(workdir)
        self.args = list(args)
        self.options = dict(options) if options is not None else None
        self.env = dict(env) if env is not None else None
        self.label = label
        self.log_path = self.workdir / f"{label}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._attempts = 0
        self.pack: Any = None  # the package a test compares this server's answers with

    # ------------------------------------------------------------------ lifecycle

    def command(self) -> list[str]:
        if self.options is not None:
            opts = {"host": HOST, "port": self.port, **self.options}
            return [sys.executable, "-c", _LAUNCHER, self.uri, json.dumps(opts)]
        return [
            sys.executable,
            "-m",
            "modelpack.cli",
            "serve",
            self.uri,
            "--host",
            HOST,
            "--port",
            str(self.port),
            *self.args,
        ]

    def launch(self) -> LiveServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._attempts += 1
        self.port = free_port()
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as log:
            log.write(f"--- launch {self._attempts}: port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def logs(self, tail: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-tail:]

    def wait_ready(self, deadline: float) -> LiveServer:
        """Poll /ready until 200 (relaunching on a lost port race) or fail with the log."""
        assert self.proc is not None, "launch() first"
        with httpx2.Client(timeout=2.0) as http:
            while True:
                code = self.proc.poll()
                if code is not None:
                    if "address already in use" in self.logs().lower() and (
                        self._attempts < _PORT_ATTEMPTS
                    ):
                        self.launch()
                        continue
                    raise AssertionError(
                        f"{self.label} exited with {code} before it was ready:\n{self.logs()}"
                    )
                try:
                    if http.get(f"{self.url}/ready").status_code == 200:
                        return self
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.label} not ready in time:\n{self.logs()}")
                time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM the server's process group, SIGKILL it after STOP_DEADLINE_S."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_DEADLINE_S)
        # Workers of a multi-worker server are in the same group; make sure none is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    # ------------------------------------------------------------------ queries

    def connections(self) -> dict[int, int]:
        """``{pid: connections open now}`` over the server's worker processes, for connections
        accepted on its port (Linux, from /proc): which worker took which clients."""
        assert self.proc is not None
        sockets = set()
        with open("/proc/net/tcp") as table:
            for line in table.readlines()[1:]:
                local, _, state, *_, inode = line.split()[1:10]
                if state == "01" and int(local.rpartition(":")[2], 16) == self.port:
                    sockets.add(f"socket:[{inode}]")  # ESTABLISHED, on the server's side
        held: dict[int, int] = {}
        for pid in _children(self.proc.pid):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue  # it has just exited
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target in sockets:
                    held[pid] = held.get(pid, 0) + 1
        return held

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """/metrics as ``{(sample name, sorted labels): value}``."""
        from prometheus_client.parser import text_string_to_metric_families

        response = httpx2.get(f"{self.url}/metrics", timeout=5.0)
        assert response.status_code == 200, response.text
        out = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux, from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # "pid (command) state ppid ...": the command may hold spaces and parentheses.
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry))
    return out


def batch_histogram(metrics: Mapping[tuple[str, Any], float]) -> dict[str, float]:
    """The batch-size histogram: ``{"count", "sum", "le=1.0", "le=2.0", ...}``."""
    out: dict[str, float] = {}
    for (name, labels), value in metrics.items():
        if name == "modelpack_batch_rows_count":
            out["count"] = value
        elif name == "modelpack_batch_rows_sum":
            out["sum"] = value
        elif name == "modelpack_batch_rows_bucket":
            out[f"le={dict(labels)['le']}"] = value
    return out


def start(*servers: LiveServer, timeout: float = START_DEADLINE_S) -> None:
    """Launch every server at once (they load in parallel), then wait for all to be ready."""
    for server in servers:
        server.launch()
    deadline = time.monotonic() + timeout
    try:
        for server in servers:
            server.wait_ready(deadline)
    except BaseException:
        for server in servers:
            server.stop()
        raise


@contextlib.contextmanager
def running(*servers: LiveServer, timeout: float = START_DEADLINE_S) -> Iterator[None]:
    start(*servers, timeout=timeout)
    try:
        yield
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------------------- models

# Python-flavor models are built by these factories so that cloudpickle stores them by value:
# the server processes cannot import this test module.


def sleepy_model() -> Any:
    """A function model over rows of two numbers: it sleeps as many seconds as the largest first
    number of its rows (at most 2), then answers each row's sum."""

    def predict(data):
        import time as _time

        import numpy as _np

        data = _np.asarray(data, dtype=float)
        _time.sleep(min(max(float(data[:, 0].max()), 0.0), 2.0))
        return data.sum(axis=1)

    return predict


def constant_model(value: float, fail_env: str | None = None, seconds: float = 0.0) -> Any:
    """A PythonModel answering ``value`` per row after ``seconds``; it raises when ``fail_env``
    is set in the environment of the process that runs it (so it saves fine, and fails its
    smoke test in a server started with that variable)."""
    import modelpack

    class Constant(modelpack.PythonModel):
        def predict(self, data, params=None):
            import os as _os
            import time as _time

            import numpy as _np

            _time.sleep(seconds)
            if fail_env and _os.environ.get(fail_env):
                raise RuntimeError(f"{fail_env} is set: this version is broken on purpose")
            return _np.full(len(data), value)

    return Constant()


def raw_http(
    port: int,
    head: bytes,
    body_parts: Sequence[bytes] = (),
    *,
    timeout: float = 10.0,
    pause: float = 0.0,
) -> bytes:
    """Send a hand-written request (``head`` ends with the blank line) and read the whole answer
    (the request should carry ``Connection: close``)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(head)
        for part in body_parts:
            if pause:
                time.sleep(pause)
            s.sendall(part)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)
