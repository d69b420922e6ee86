"""A registration killed mid-copy leaves a registry folder; the next registration removes it."""

from __future__ import annotations

import subprocess
import sys

import modelpack


def _dead_owner() -> str:
    """The owner token of a process that has exited."""
    code = "from modelpack import _owner; print(_owner.token())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_next_registration_removes_a_killed_ones_copy(client, forest, xy, tmp_path):
    package = tmp_path / "churn"
    modelpack.save(forest, package, input_example=xy[0][:3])
    client.register_model(str(package), "Churn")
    registry = tmp_path / "artifacts" / "registry"
    kept = {p.name for p in registry.iterdir()}
    # What a registration killed while copying leaves: its folder and its owner's marker.
    left = registry / ("ab" * 16)
    (left / "model").mkdir(parents=True)
    (left / "model" / "model.pkl").write_bytes(b"partial")
    (registry / (left.name + ".modelpack-owner")).write_text(_dead_owner())
    # One still being copied by a live process (this one) is left alone.
    live = registry / ("cd" * 16)
    live.mkdir()
    (registry / (live.name + ".modelpack-owner")).write_text(modelpack._owner.token())

    version = client.register_model(str(package), "Churn")

    assert version.version == 2
    names = {p.name for p in registry.iterdir()}
    assert left.name not in names and left.name + ".modelpack-owner" not in names
    assert live.name in names and live.name + ".modelpack-owner" in names
    assert kept <= names and len(names - kept) == 3  # v2's copy, and the live one's two
    assert modelpack.load(client.resolve(version.uri)).predict(xy[0][:3]).shape == (3,)
