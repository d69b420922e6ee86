"""``modelpack gc``, and ``modelpack predict`` cleaning up after killed runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

import modelpack
from modelpack import gc
from modelpack.cli import main

HOURS_AGO = time.time() - 2 * 3600


def _dead_name(kind, target):
    """A leftover name whose owner was a process that has exited."""
    code = f"from modelpack import gc; print(gc.{kind}({target!r}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _age(path, when=HOURS_AGO):
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(dirpath, name), (when, when))
    os.utime(path, (when, when))


@pytest.fixture
def littered(tmp_path):
    folder = tmp_path / "models"
    modelpack.save(lambda x: x, folder / "pkg", flavor="python")
    dead = folder / _dead_name("staging_name", "pkg")
    dead.mkdir()
    (dead / "blob").write_bytes(b"x" * 1000)
    live = folder / gc.staging_name("pkg")
    live.mkdir()
    old_legacy = folder / ".pkg.modelpack-staging-0123abcd"
    old_legacy.mkdir()
    (old_legacy / "blob").write_bytes(b"y" * 200)
    _age(old_legacy)
    new_legacy = folder / ".pkg.modelpack-staging-89abcdef"
    new_legacy.mkdir()
    partial = folder / _dead_name("tmp_name", "out.csv")
    partial.write_bytes(b"z" * 10)
    aside = folder / _dead_name("old_name", "gone")
    shutil.copytree(folder / "pkg", aside)
    return folder, {"dead": dead, "live": live, "old_legacy": old_legacy,
                    "new_legacy": new_legacy, "partial": partial, "aside": aside}  # fmt: skip


def test_gc_dry_run_lists_what_it_would_free_and_changes_nothing(littered, capsys):
    folder, paths = littered
    before = sorted(os.listdir(folder))
    assert main(["gc", str(folder), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(os.listdir(folder)) == before
    assert out[-1] == "would free 3 leftovers, 1210 bytes"
    text = "\n".join(out)
    assert f"would free {paths['dead']}: 1000 bytes (staging: its process (" in text
    assert f"would restore {folder / 'gone'} from {paths['aside']}" in text
    assert f"would free {paths['old_legacy']}: 200 bytes (staging: from an older modelpack" in text
    assert f"would free {paths['partial']}: 10 bytes (predict: its process" in text
    assert str(paths["live"]) not in text and str(paths["new_legacy"]) not in text


def test_gc_frees_leftovers_and_puts_an_interrupted_overwrite_back(littered, capsys):
    folder, paths = littered
    assert main(["gc", str(folder / "pkg"), "--json"]) == 0  # a package: the folder it is in
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is False and report["freed_bytes"] == 1210
    assert sorted((r["kind"], r["action"]) for r in report["leftovers"]) == [
        ("old", "restore"),
        ("predict", "delete"),
        ("staging", "delete"),
        ("staging", "delete"),
    ]
    assert sorted(os.listdir(folder)) == sorted(
        ["pkg", "gone", paths["live"].name, paths["new_legacy"].name]
    )
    assert modelpack.verify(folder / "gone").flavor == "python"
    assert main(["gc", str(folder)]) == 0
    assert capsys.readouterr().out == "freed 0 leftovers, 0 bytes\n"


def test_gc_registry_removes_copies_no_version_refers_to(tmp_path, capsys):
    uri, root = f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "artifacts"
    client = modelpack.Client(uri, str(root))
    modelpack.save(lambda x: x + 1, tmp_path / "pkg", flavor="python")
    version = client.register_model(str(tmp_path / "pkg"), "Adder")
    registry = root / "registry"
    [kept] = os.listdir(registry)
    _age(registry / kept)  # referenced: kept however old
    orphan = registry / uuid.uuid4().hex  # a killed registration's copy
    (orphan / "model").mkdir(parents=True)
    (orphan / "model" / "python_model.pkl").write_bytes(b"p" * 300)
    _age(orphan)
    fresh = registry / uuid.uuid4().hex  # may be a registration copying right now
    fresh.mkdir()
    (fresh / "modelpack.yaml").write_bytes(b"m" * 5)
    doomed = registry / ".modelpack-tmp-0123456789abcdef"  # a deletion that died midway
    doomed.mkdir()
    (doomed / "f").write_bytes(b"d" * 7)
    _age(doomed)
    store = ["--tracking-uri", uri, "--artifact-root", str(root)]
    assert main(["gc", *store]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "freed 2 leftovers, 307 bytes"
    assert any(
        line.startswith(f"freed {orphan}: 300 bytes (registry: no model version") for line in out
    )
    assert sorted(os.listdir(registry)) == sorted([kept, fresh.name])
    loaded = modelpack.load(client.resolve("models:/Adder/1"))
    assert loaded.model_id == version.model_id


def test_gc_of_a_store_that_does_not_exist_is_an_error(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["gc", "--tracking-uri", uri]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "missing.db").exists()


def test_predict_removes_partial_outputs_that_killed_runs_left(tmp_path):
    modelpack.save(lambda df: df["x"] * 2, tmp_path / "pkg", flavor="python")
    (tmp_path / "in.csv").write_text("x\n1\n2\n")
    out = tmp_path / "out"
    out.mkdir()
    dead = out / _dead_name("tmp_name", "o.csv")
    dead.write_text("partial")
    live = out / gc.tmp_name("o.csv")  # this process's: being written
    live.write_text("partial")
    argv = [
        "predict",
        str(tmp_path / "pkg"),
        "-i",
        str(tmp_path / "in.csv"),
        "-o",
        str(out / "o.csv"),
    ]
    assert main(argv) == 0
    assert sorted(os.listdir(out)) == sorted(["o.csv", live.name])
