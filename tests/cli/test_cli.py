"""modelpack info / verify / --help through main(argv)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import modelpack
from modelpack.cli import main


@pytest.fixture
def package(tmp_path, frame_forest, frame):
    path = tmp_path / "churn"
    modelpack.save(frame_forest, path, input_example=frame.head(3), metadata={"team": "risk"})
    return path


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "info" in capsys.readouterr().out
    assert main([]) == 2


def test_console_script_answers():
    out = subprocess.run(
        [sys.executable, "-m", "modelpack.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"modelpack {modelpack.__version__}"


def test_info_shows_signature_requirements_and_verification(package, capsys):
    assert main(["info", str(package)]) == 0
    out = capsys.readouterr().out
    assert "flavor:      sklearn" in out
    assert "files:       verified (sha256)" in out
    assert "inputs: (columns)" in out and "f0  double  required" in out
    assert "scikit-learn==" in out and "team  risk" in out


def test_info_json(package, capsys):
    assert main(["info", str(package), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verified"] is True and data["manifest"]["flavor"] == "sklearn"
    assert data["size_bytes"] > 0 and any(r.startswith("numpy==") for r in data["requirements"])


def test_verify_ok_and_failure(package, capsys):
    assert main(["verify", str(package)]) == 0
    # model.pkl, requirements.txt, python_env.yaml, input_example.json, and the MLflow model's
    # MLmodel, conda.yaml and its two input examples
    assert "OK: 8 files match" in capsys.readouterr().out
    (package / "requirements.txt").write_text("evil==1\n")
    (package / "model" / "extra.bin").write_bytes(b"x")
    assert main(["verify", str(package)]) == 1
    err = capsys.readouterr().err
    assert "requirements.txt: modified" in err and "model/extra.bin: unlisted" in err
    assert main(["info", str(package)]) == 1
    assert "FAILED: requirements.txt (modified)" in capsys.readouterr().out


def test_errors_print_one_line_and_exit_1(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: No model package at") and "Traceback" not in err
    assert main(["verify", str(tmp_path)]) == 1
    assert "is not a model package" in capsys.readouterr().err
