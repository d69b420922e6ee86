"""Every script in examples/ runs, so the examples cannot rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    assert {"quickstart.py", "tutorial.py"} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    out = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    if script.name == "quickstart.py":
        assert "model_id" in out.stdout and "refused   Missing required column 'f3'" in out.stdout
        assert "loaded    models:/Churn/Production -> v1" in out.stdout
        assert (tmp_path / "modelpack.db").is_file() and (tmp_path / "artifacts").is_dir()
    if script.name == "tutorial.py":  # MLflow's tutorial as written: the store is ./modelpack-store
        assert "IrisClassifier v1 is in Production" in out.stdout
        assert (tmp_path / "modelpack-store" / "modelpack.db").is_file()
