"""The wheel holds every module of the three folders, under the one modelpack namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "modelpack": "modelpack",
    "flavors": "modelpack/flavors",
    "serving": "modelpack/serving",
    "server": "modelpack/server",
}


def test_wheel_contains_every_module(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", "*.egg-info", "build", "__pycache__", ".*_cache", "tests"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("modelpack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{dest}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, dest in FOLDERS.items()
        for path in (ROOT / folder).rglob("*.py")
    }
    assert expected - names == set()
    assert "modelpack/py.typed" in names
    assert "modelpack/store/migrations/script.py.mako" in names
    assert not any(n.startswith(("flavors/", "serving/", "server/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "modelpack = modelpack.cli:run" in zipfile.ZipFile(wheel).read(entry_points).decode()
