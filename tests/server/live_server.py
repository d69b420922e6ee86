"""Real ``modelpack server`` instances for tests: uvicorn on a free 127.0.0.1 port, serving
``create_app(**options)`` on a SQLite store and an artifact root in a test's folder.

``start_server(folder, **options)`` starts one in a thread of the test process (fast: nothing
to import again) or, with ``process=True``, in a subprocess of its own (for what needs a
separate process: its memory, a kill). It returns a ``LiveServer``, which unpacks as
``url, stop = start_server(...)``; ``stop()`` is idempotent. The listening socket is bound
here and handed to uvicorn, so no other process can take the port in between.

A helper module, not a test file: other test files import it (``from live_server import
start_server`` with tests/server on the path, as pytest's rootdir-relative imports give).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0

# The subprocess: create_app with the options given as JSON, served on the inherited socket.
_LAUNCHER = (
    "import json, sys, uvicorn; from modelpack.server import create_app; "
    "app = create_app(**json.loads(sys.argv[1])); "
    "uvicorn.run(app, fd=int(sys.argv[2]), log_level='warning', ws='none', access_log=False)"
)


@dataclass
class LiveServer:
    """A started server: ``url`` (``http://127.0.0.1:<port>``), ``stop()``, and for a
    subprocess its ``pid`` and ``log_path``."""

    url: str
    stop: Callable[[], None]
    pid: int = field(default_factory=os.getpid)
    log_path: Path | None = None

    def __iter__(self) -> Iterator[Any]:
        yield self.url
        yield self.stop

    def logs(self, tail: int = 4000) -> str:
        if self.log_path is None:
            return "(in-process server: its log is the test's)"
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no log)"


def _defaults(folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options.setdefault("backend_store_uri", f"sqlite:///{folder}/db.sqlite")
    options.setdefault("artifact_root", str(folder / "artifacts"))
    return options


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    return sock


def _answers(port: int) -> bool:
    """Whether anything answers HTTP on ``port`` (any status: the app is started)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def start_server(folder: Path, *, process: bool = False, **options: Any) -> LiveServer:
    """A server on ``folder``'s SQLite store and artifact root (unless ``options`` name
    others), started and answering. ``options`` are ``create_app``'s keywords."""
    options = _defaults(folder, dict(options))
    if process:
        return _start_process(Path(folder), options)
    return _start_thread(options)


def _start_thread(options: dict[str, Any]) -> LiveServer:
    import uvicorn

    from modelpack.server import create_app
    from modelpack.store import engines

    app = create_app(**options)
    sock = _listening()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"server:{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_DEADLINE_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            pytest.fail(f"the in-process server on port {port} did not start")
        time.sleep(0.02)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        server.should_exit = True
        thread.join(STOP_DEADLINE_S)
        sock.close()
        engines.dispose(options["backend_store_uri"])
        if thread.is_alive():
            pytest.fail(f"the in-process server on port {port} did not stop")

    return LiveServer(f"http://{HOST}:{port}", stop)


def _start_process(folder: Path, options: dict[str, Any]) -> LiveServer:
    sock = _listening()
    port = sock.getsockname()[1]
    log_path = folder / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, json.dumps(options), str(sock.fileno())],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
            start_new_session=True,
        )
    sock.close()  # the child holds its own copy
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_DEADLINE_S)

    live = LiveServer(f"http://{HOST}:{port}", stop, proc.pid, log_path)
    deadline = time.monotonic() + START_DEADLINE_S
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            pytest.fail(f"the server subprocess did not start; its log:\n{live.logs()}")
        time.sleep(0.05)
    return live
