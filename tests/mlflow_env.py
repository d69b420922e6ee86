"""The real MLflow, in a virtualenv of its own, for the contract tests against it.

MLflow 3.17.2 pins versions of pandas, pyarrow, SQLAlchemy... that are not ours, so it never
enters the test environment: it lives in a virtualenv built once per machine (under
``~/.cache/modelpack-tests``, or ``$MODELPACK_TEST_MLFLOW_VENV``) with the *same* versions of the
frameworks whose files both sides read (scikit-learn, numpy, cloudpickle, torch, onnx,
onnxruntime, skops), so a pickle written on one side loads on the other without a version
warning. Scripts run there in a subprocess and answer in JSON.

A test that needs it takes the ``mlflow_env`` fixture (tests/conftest.py). Without a network to
PyPI the build fails; locally that skips, in CI (``CI=true``) it fails the test.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

MLFLOW = "mlflow==3.17.2"
# What MLflow needs beside itself here: its PostgreSQL driver (an MLflow store on PostgreSQL).
EXTRAS = ("psycopg2-binary>=2.9",)
# Frameworks whose files cross between the two environments: pinned to this environment's.
SHARED = ("scikit-learn", "numpy", "scipy", "cloudpickle", "onnx", "onnxruntime", "skops")
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


def requirements() -> list[str]:
    pins = [f"{name}=={metadata.version(name)}" for name in SHARED]
    return [MLFLOW, *EXTRAS, *pins]


def _torch_pin() -> str:
    return f"torch=={metadata.version('torch').split('+')[0]}"


def venv_dir() -> Path:
    given = os.environ.get("MODELPACK_TEST_MLFLOW_VENV")
    if given:
        return Path(given)
    spec = "\n".join([sys.version, _torch_pin(), *requirements()])
    key = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "modelpack-tests" / f"mlflow-3.17.2-{key}"


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


def build() -> Path:
    """The virtualenv's python, built if missing (once per machine; a lock serialises builds)."""
    root = venv_dir()
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
        _pip(python, *requirements(), log=log)
        marker.write_text("\n".join([_torch_pin(), *requirements()]) + "\n")
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
    """Runs Python in the MLflow virtualenv."""

    python: Path

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
                f"the MLflow script failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                f"{done.stderr[-6000:]}"
            )
        return done

    def json(self, code: str, *args: str, cwd: Path, **kwargs: Any) -> Any:
        """Run ``code``; it prints one JSON document as its last line of output."""
        done = self.run(code, *args, cwd=cwd, **kwargs)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if not lines:
            raise AssertionError(f"the MLflow script printed nothing; stderr:\n{done.stderr}")
        return json.loads(lines[-1])
