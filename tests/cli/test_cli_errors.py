"""The command line as a new user meets it: one clear line per mistake, never a traceback
(unless --debug), suggestions for typos, quiet pipes, and stores that are read, never made."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import modelpack
from modelpack.cli import main


def _cli(*argv: str, cwd: Path | None = None, env: dict | None = None, **kw):
    """``modelpack ARGV`` in a subprocess, as a user's shell runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *argv], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120, **kw)  # fmt: skip


def _one_error_line(out) -> str:
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


@pytest.fixture
def registry(tmp_path, forest, xy):
    """A store in tmp_path/store with 'Churn' v1 in Production; its CLI options."""
    url = f"sqlite:///{tmp_path / 'store' / 'modelpack.db'}"
    client = modelpack.Client(url, str(tmp_path / "store" / "artifacts"))
    package = tmp_path / "churn"
    modelpack.save(forest, package, input_example=xy[0][:3])
    client.register_model(str(package), "Churn")
    client.transition_model_version_stage("Churn", 1, "Production")
    yield ["--tracking-uri", url, "--artifact-root", client.artifact_root]
    from modelpack.store import engines

    engines.dispose(url)


# ---------------------------------------------------------------------------- serve


@pytest.mark.parametrize(
    "uri, message",
    [
        ("models:/Nope/1", "error: Registered model 'Nope' does not exist."),
        (
            "models:/Churn/Staging",
            "error: Registered model 'Churn' has no version in stage "
            "'Staging'. Versions: 1 (Production).",
        ),  # fmt: skip
        ("models:/Churn@champion", "error: Registered model 'Churn' has no alias 'champion'."),
        ("models:/Churn/7", "error: Registered model 'Churn' has no version 7"),
    ],
)
def test_serve_an_unknown_model_stage_or_alias(registry, uri, message):
    line = _one_error_line(_cli("serve", uri, *registry))
    assert line.startswith(message)


def test_serve_a_folder_that_is_no_package(tmp_path):
    line = _one_error_line(_cli("serve", str(tmp_path)))
    assert "is not a model package" in line


def test_serve_an_invalid_port(registry):
    out = _cli("serve", "models:/Churn/1", *registry, "--port", "99999")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "argument --port: expected a port number from 0 to 65535, got '99999'" in out.stderr


def test_serve_an_occupied_port(registry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_error_line(_cli("serve", "models:/Churn/1", *registry, "--port", str(port)))
    assert line == (
        f"error: Port {port} on 127.0.0.1 is already in use by another process. Stop it, or "
        f"choose another port with --port."
    )


def test_serve_an_unknown_host(registry):
    line = _one_error_line(_cli("serve", "models:/Churn/1", *registry, "--host", "no.such.host."))
    assert line.startswith("error: Cannot listen on 'no.such.host.'") and "--host" in line


def test_serve_without_the_serve_extras(registry, tmp_path):
    """A Python where starlette and uvicorn are not installed."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('starlette', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    out = _cli("serve", "models:/Churn/1", *registry, env={"PYTHONPATH": str(blocker)})
    assert _one_error_line(out) == (
        "error: modelpack serve needs starlette, uvicorn, which is not installed. Install the "
        "serving extras with: pip install 'modelpack[serve]'"
    )


# ---------------------------------------------------------------------------- any command


def test_debug_shows_the_traceback_and_the_same_error(registry):
    for argv in (["--debug", "serve"], ["serve", "--debug"]):
        out = _cli(*argv, "models:/Nope/1", *registry)
        assert out.returncode == 1
        assert out.stderr.startswith("Traceback (most recent call last):")
        assert out.stderr.strip().splitlines()[-1] == (
            "error: Registered model 'Nope' does not exist."
        )


def test_an_unexpected_error_is_one_line_with_a_hint(tmp_path, capsys, monkeypatch):
    package = tmp_path / "bad"
    package.mkdir()
    (package / "modelpack.yaml").write_bytes(b"\xff\xfe not yaml")
    monkeypatch.setattr(
        "modelpack.manifest.read_manifest", lambda root: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    assert main(["info", str(package)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: RuntimeError: boom",
        "(run with --debug to see where it failed)",
    ]


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["serv", "x"], "invalid choice: 'serv'; did you mean 'serve'?"),
        (["modles", "list"], "invalid choice: 'modles'; did you mean 'models'?"),
        (["models", "lst"], "invalid choice: 'lst'; did you mean 'list'?"),
        (["serve", "x", "--prot", "1"], "unrecognized arguments: --prot 1; did you mean '--port'?"),
        (["runs", "list", "--max-reslts=3"], "did you mean '--max-results'?"),
    ],
)
def test_a_typo_gets_the_nearest_command_or_option(argv, suggestion, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert suggestion in capsys.readouterr().err


def test_nothing_close_suggests_nothing(capsys):
    with pytest.raises(SystemExit):
        main(["zzzzzz"])
    err = capsys.readouterr().err
    assert "invalid choice: 'zzzzzz' (choose from" in err and "did you mean" not in err


def test_predict_into_a_closed_pipe_exits_quietly(tmp_path, forest, xy):
    import pandas as pd

    package = tmp_path / "churn"
    modelpack.save(forest, package, input_example=xy[0][:3])
    rows = tmp_path / "rows.csv"
    pd.DataFrame(xy[0].repeat(400, axis=0)).to_csv(rows, index=False)  # 120,000 rows
    command = [sys.executable, "-m", "modelpack.cli", "predict", str(package), "-i", str(rows),
               "-o", "-", "--batch-size", "1000"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == b'"prediction"'  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert err == "" and code == 141


# ---------------------------------------------------------------------------- stores


def test_info_verify_and_predict_read_registry_uris(registry, tmp_path, capsys, xy):
    assert main(["info", "models:/Churn/1", *registry]) == 0
    assert "flavor:      sklearn" in capsys.readouterr().out
    assert main(["verify", "models:/Churn/Production", *registry]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(["f0,f1,f2,f3,f4,f5", *(",".join(map(str, r)) for r in xy[0][:4])]))
    out = tmp_path / "out.csv"
    assert main(["predict", "models:/Churn/1", "-i", str(rows),
                 "-o", str(out), *registry]) == 0  # fmt: skip
    assert out.read_text().splitlines()[0] == '"prediction"' and len(out.read_text().split()) == 5


def test_reading_commands_never_create_a_store(tmp_path):
    missing = tmp_path / "typo" / "modelpack.db"
    for argv in (
        ["runs", "list"],
        ["runs", "search", "--filter", "metrics.acc > 0"],
        ["models", "list"],
        ["models", "show", "Churn"],
        ["models", "history", "Churn"],
        ["models", "transition", "Churn", "1", "Production"],
        ["info", "models:/Churn/1"],
        ["verify", "models:/Churn/1"],
        ["serve", "models:/Churn/Production"],
        ["db", "current"],
    ):
        out = _cli(*argv, "--tracking-uri", f"sqlite:///{missing}")
        line = _one_error_line(out) if argv[0] != "db" else out.stderr.strip()
        assert str(missing) in line and "does not exist" in line or "No database at" in line
    assert not (tmp_path / "typo").exists()


def test_a_default_store_that_is_not_there_is_named(tmp_path):
    line = _one_error_line(_cli("info", "models:/Churn/Production", cwd=tmp_path))
    assert line.startswith(
        f"error: No tracking store at sqlite:///{tmp_path / 'modelpack-store' / 'modelpack.db'}: "
    )
    assert "the default is ./modelpack-store in the current folder" in line
    assert not (tmp_path / "modelpack-store").exists()


def test_load_never_creates_a_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("MODELPACK_TRACKING_URI", "MODELPACK_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(modelpack.errors.NotFound, match="No tracking store at sqlite:///"):
        modelpack.load("models:/Churn/Production")
    with pytest.raises(modelpack.errors.NotFound, match="does not exist"):
        modelpack.load("runs:/0123456789abcdef0123456789abcdef/model")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_postgresql_database_is_not_a_store(postgres_url):
    with pytest.raises(modelpack.errors.NotFound, match="the database has no modelpack tables"):
        modelpack.Client(postgres_url, "/nowhere", create=False).search_registered_models()
    # Writing still creates the store there.
    modelpack.Client(postgres_url, "/nowhere").create_registered_model("Churn")
    assert modelpack.Client(postgres_url, "/nowhere", create=False).get_registered_model("Churn")


def test_serve_a_model_that_fails_to_load_says_why_in_one_line(tmp_path):
    import hashlib

    import yaml

    package = tmp_path / "broken"
    modelpack.save(lambda df: df, package, flavor="python")
    (package / "model" / "python_model.pkl").write_bytes(b"not a pickle")
    manifest = yaml.safe_load((package / "modelpack.yaml").read_text())  # hashes still match
    manifest["files"]["model/python_model.pkl"] = hashlib.sha256(b"not a pickle").hexdigest()
    manifest["sizes"]["model/python_model.pkl"] = len(b"not a pickle")
    (package / "modelpack.yaml").write_text(yaml.safe_dump(manifest))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    out = _cli("serve", str(package), "--port", port)
    assert out.returncode == 3 and "Traceback" not in out.stderr + out.stdout
    assert f"ERROR:    Cannot serve {package}: UnpicklingError: invalid load key" in out.stderr
