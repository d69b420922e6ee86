"""The real MLflow clients, each in a virtualenv of its own, for the contract tests against them.

MLflow 3.17.2 pins versions of pandas, pyarrow, SQLAlchemy... that are not ours, so it never
enters the test environment: it lives in a virtualenv built once per machine (under
``~/.cache/modelpack-tests``, or ``$MODELPACK_TEST_MLFLOW_VENV``) with the *same* versions of the
frameworks whose files both sides read (scikit-learn, numpy, cloudpickle, torch, onnx,
onnxruntime, skops), so a pickle written on one side loads on the other without a version
warning. Scripts run there in a subprocess and answer in JSON.

A 2.x client (``mlflow-skinny==2.22.5``, :data:`MLFLOW2`) lives in a second virtualenv beside
it (``$MODELPACK_TEST_MLFLOW2_VENV`` to place it elsewhere), built the same way: the skinny
client, because the full ``mlflow`` 2.22 pins ``pandas<3`` and ``pyarrow<20`` while the tests
share this environment's pandas; the client side of tracking, the registry and the sklearn and
pytorch flavors needs no more.

:func:`modelpack_server` starts the other side of a contract test: a real ``modelpack
server`` in a subprocess on a free loopback port.

A test that needs one takes the ``mlflow_env`` (3.17.2) or ``mlflow2_env`` (2.22.5) fixture
(tests/conftest.py), both made by :func:`fixture_env`. Without a network to PyPI the build
fails; locally that skips, in CI (``CI=true``) it fails the test.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

MLFLOW = "mlflow==3.17.2"
# What MLflow needs beside itself here: its PostgreSQL driver (an MLflow store on PostgreSQL).
EXTRAS = ("psycopg2-binary>=2.9",)
# Frameworks whose files cross between the two environments: pinned to this environment's.
SHARED = ("scikit-learn", "numpy", "scipy", "cloudpickle", "onnx", "onnxruntime", "skops")

# The 2.x client: skinny (no server, no pandas/pyarrow caps) plus what its flavors import, all
# at this environment's versions (pandas for pyfunc and search_runs).
MLFLOW2 = "mlflow-skinny==2.22.5"
SHARED2 = ("scikit-learn", "numpy", "scipy", "cloudpickle", "pandas")

QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "PYTHONWARNINGS": "ignore",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_ROOT_USER_ACTION": "ignore",
}
REPO = Path(__file__).resolve().parent.parent


class MlflowUnavailable(RuntimeError):
    """The MLflow virtualenv could not be built (no registry, a resolver conflict)."""


@dataclass(frozen=True)
class Client:
    """One MLflow release to build a virtualenv for: what to install and where it lives."""

    version: str
    requirement: str
    extras: tuple[str, ...]
    shared: tuple[str, ...]
    # The variable that points the tests at a ready virtualenv instead of the cached one.
    venv_variable: str


CLIENTS = {
    "3.17.2": Client("3.17.2", MLFLOW, EXTRAS, SHARED, "MODELPACK_TEST_MLFLOW_VENV"),
    "2.22.5": Client("2.22.5", MLFLOW2, (), SHARED2, "MODELPACK_TEST_MLFLOW2_VENV"),
}
DEFAULT = "3.17.2"


def _client(version: str) -> Client:
    try:
        return CLIENTS[version]
    except KeyError:
        raise ValueError(
            f"no MLflow virtualenv is defined for version {version!r}; "
            f"tests/mlflow_env.py knows {sorted(CLIENTS)} (add one to CLIENTS)"
        ) from None


def requirements(version: str = DEFAULT) -> list[str]:
    client = _client(version)
    pins = [f"{name}=={metadata.version(name)}" for name in client.shared]
    return [client.requirement, *client.extras, *pins]


def _torch_pin() -> str:
    return f"torch=={metadata.version('torch').split('+')[0]}"


def venv_dir(version: str = DEFAULT) -> Path:
    client = _client(version)
    given = os.environ.get(client.venv_variable)
    if given:
        return Path(given)
    spec = "\n".join([sys.version, _torch_pin(), *requirements(version)])
    key = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "modelpack-tests" / f"mlflow-{client.version}-{key}"


def _pip(python: Path, *args: str, log: Path) -> None:
    env = {**os.environ, **QUIET}
    with log.open("a") as out:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=1200,
        )
    if done.returncode != 0:
        raise MlflowUnavailable(
            f"pip install {' '.join(args)} failed in {python.parent.parent}; see {log}:\n"
            + log.read_text()[-3000:]
        )


def build(version: str = DEFAULT) -> Path:
    """The virtualenv's python for MLflow ``version`` (a key of :data:`CLIENTS`), built if
    missing (once per machine; a lock serialises builds)."""
    root = venv_dir(version)
    python = root / "bin" / "python"
    marker = root / ".modelpack-complete"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return python
        shutil.rmtree(root, ignore_errors=True)
        log = root.parent / f"{root.name}.log"
        log.write_text("")
        # A venv is not relocatable, so it is built in place; the marker says it is whole.
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
        # pip, not uv: torch==2.13.0 comes from the wheel on this disk, which only pip sees.
        _pip(python, _torch_pin(), log=log)
        _pip(python, *requirements(version), log=log)
        marker.write_text("\n".join([_torch_pin(), *requirements(version)]) + "\n")
        return python


def modelpack_path(tmp: Path) -> Path:
    """A folder that makes this checkout's ``modelpack`` importable in the MLflow venv (for
    ``PYTHONPATH``): ``modelpack/`` with ``flavors/`` and ``serving/`` mapped in, as the
    installed distribution lays them out. Symlinks, so nothing is copied."""
    site = tmp / "modelpack-site"
    pkg = site / "modelpack"
    if pkg.exists():
        return site
    pkg.mkdir(parents=True)
    for entry in (REPO / "modelpack").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for sub in ("flavors", "serving", "server"):
        if (REPO / sub).is_dir():
            (pkg / sub).symlink_to(REPO / sub)
    return site


@dataclass(frozen=True)
class MlflowEnv:
    """Runs Python in an MLflow virtualenv (``version`` names which client it holds)."""

    python: Path
    version: str = DEFAULT

    @property
    def bin(self) -> Path:
        return self.python.parent

    def env(self, *, with_modelpack: Path | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
        env.pop("PYTHONPATH", None)
        env.update(QUIET)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        if with_modelpack is not None:
            env["PYTHONPATH"] = str(modelpack_path(with_modelpack))
        env.update(extra)
        return env

    def run(
        self,
        code: str,
        *args: str,
        cwd: Path,
        with_modelpack: Path | None = None,
        timeout: float = 300,
        check: bool = True,
        **extra_env: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` (dedented) with ``args`` in argv; ``check`` raises with its output."""
        done = subprocess.run(
            [str(self.python), "-c", textwrap.dedent(code), *args],
            cwd=cwd,
            env=self.env(with_modelpack=with_modelpack, **extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"the MLflow {self.version} script failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
            )
        return done

    def json(self, code: str, *args: str, cwd: Path, **kwargs: Any) -> Any:
        """Run ``code``; it prints one JSON document as its last line of output."""
        done = self.run(code, *args, cwd=cwd, **kwargs)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if not lines:
            raise AssertionError(f"the MLflow script printed nothing; stderr:\n{done.stderr}")
        return json.loads(lines[-1])


def fixture_env(version: str = DEFAULT) -> MlflowEnv:
    """What a session fixture returns for MLflow ``version``: its virtualenv, built once.

    A build that fails skips the test here, and fails it in CI (``CI=true``), where a
    contract test that silently stopped running would hide a regression."""
    import pytest

    try:
        return MlflowEnv(build(version), version)
    except MlflowUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"the MLflow {version} virtualenv could not be built: {exc}")


# ------------------------------------------------------------------ the server the clients call

HOST = "127.0.0.1"
SERVER_START_S = 60.0
SERVER_STOP_S = 15.0
_PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """A ``modelpack server`` process: its URL, its folder, the end of its log."""

    url: str
    root: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self, size: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no server log)"


def _server_command(root: Path, port: int) -> list[str]:
    """``modelpack server`` as a team starts it: SQLite and a local artifact root (proxied)."""
    return [
        sys.executable, "-m", "modelpack.cli", "server",
        "--backend-store-uri", f"sqlite:///{root / 'store.db'}",
        "--artifact-root", str(root / "artifacts"),
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip


def _launch(root: Path, log_path: Path) -> RunningServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    with log_path.open("ab") as log:
        log.write(f"--- modelpack server on port {port}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            _server_command(root, port),
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer(f"http://{HOST}:{port}", root, log_path, proc)


def _wait_healthy(server: RunningServer) -> bool:
    """True once ``/health`` answers 200; False if the server lost the race for its port; an
    AssertionError with the log if it died otherwise or never answered."""
    import httpx2

    deadline = time.monotonic() + SERVER_START_S
    with httpx2.Client(timeout=2.0) as http:
        while True:
            if server.proc.poll() is not None:
                if "address already in use" in server.log_tail().lower():
                    return False
                raise AssertionError(
                    f"modelpack server exited with {server.proc.returncode} before it "
                    f"answered /health:\n{server.log_tail()}"
                )
            try:
                if http.get(f"{server.url}/health").status_code == 200:
                    return True
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"modelpack server did not answer /health in {SERVER_START_S:.0f} s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(SERVER_STOP_S)
    # Workers are in the server's process group; none may outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def modelpack_server(root: Path) -> Iterator[RunningServer]:
    """A real ``modelpack server`` on a fresh SQLite store and artifact root in ``root``, ready
    (``/health`` answers 200) when this yields; stopped (SIGTERM, then SIGKILL, to its own
    process group) after. A server that does not come up fails with its log; one that lost
    its free port to another process is started again on another (3 tries)."""
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "server.log"
    for _attempt in range(_PORT_ATTEMPTS):
        server = _launch(root, log_path)
        try:
            if _wait_healthy(server):
                break
        except BaseException:
            _stop(server.proc)
            raise
        _stop(server.proc)
    else:
        raise AssertionError(
            f"modelpack server found no free port in {_PORT_ATTEMPTS} tries:\n{server.log_tail()}"
        )
    try:
        yield server
    finally:
        _stop(server.proc)


class Steps:
    """The answers of a contract script that reports each step on its own, as
    ``{name: {"ok": true, "value": ...} | {"ok": false, "error": ..., "trace": ...}}``.

    ``value(name)`` is the step's value, or fails the test with MLflow's traceback and the end of
    the server's log: a server bug fails the one test that names its step."""

    def __init__(self, answers: dict[str, Any], server: RunningServer, client: str) -> None:
        self.answers = answers
        self.server = server
        self.client = client

    def value(self, name: str) -> Any:
        import pytest

        step = self.answers.get(name)
        if step is None:
            pytest.fail(f"the MLflow {self.client} script reported no step {name!r}")
        if not step["ok"]:
            pytest.fail(
                f"MLflow {self.client} step {name!r} failed: {step['error']}\n{step['trace']}\n"
                f"--- modelpack server log (end) ---\n{self.server.log_tail()}",
                pytrace=False,
            )
        return step["value"]


# The start of a contract script: ``step(name)`` runs a function at once and records its value
# or its error, so one failing step does not hide the others; ``digests(folder)`` hashes files.
# The script ends with ``print(json.dumps(out))``.
STEPS_PRELUDE = r'''
import hashlib, json, sys, time, traceback
from pathlib import Path

out = {}


def step(name):
    """Run the function now; record its value, or the error that stopped it."""
    def run(fn):
        began = time.monotonic()
        try:
            out[name] = {"ok": True, "value": fn()}
        except BaseException as exc:  # every failure is reported, the script goes on
            out[name] = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}"[:4000],
                "trace": traceback.format_exc()[-6000:],
            }
        out[name]["seconds"] = round(time.monotonic() - began, 2)
    return run


def digests(root):
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }
'''


def run_steps(env: MlflowEnv, server: RunningServer, script: str, work: Path, *args: str) -> Steps:
    """Run a contract script (``STEPS_PRELUDE`` + steps) in ``env`` against ``server``, with
    the work folder as its first argument: the unmodified client sees only
    ``MLFLOW_TRACKING_URI`` (and the quiet settings), and never retries, so a 500 or a dropped
    connection fails at once instead of after minutes of MLflow's backoff."""
    answers = env.json(
        STEPS_PRELUDE + textwrap.dedent(script),
        str(work),
        *args,
        cwd=work,
        timeout=300,
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="30",
    )
    return Steps(answers, server, env.version)
