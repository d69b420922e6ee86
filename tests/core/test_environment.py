"""Requirement inference: module walk and the module -> distribution mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version

from modelpack.environment import modules_of


def _fake_distribution(site, name, dist_version, module):
    """An installed distribution ``name`` in folder ``site`` whose import name is ``module``,
    as pip leaves one: the package, and a .dist-info with its METADATA and RECORD."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text("class Gadget:\n    pass\n")
    info = site / f"{name.replace('-', '_')}-{dist_version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {dist_version}\n"
    )
    (info / "RECORD").write_text(f"{module}/__init__.py,,\n{info.name}/METADATA,,\n")


def test_import_names_map_to_their_distributions(tmp_path):
    # gadgets -> acme-gadgets is found by the scan of every installed distribution; yaml ->
    # PyYAML by the table of known names; numpy is its own distribution's name. It runs in a
    # fresh interpreter, with the fake on its path: the scan is cached once per process.
    site = tmp_path / "site"
    _fake_distribution(site, "acme-gadgets", "1.2.3", "gadgets")
    script = textwrap.dedent("""
        import json, gadgets, numpy, yaml
        from modelpack.environment import infer_requirements
        model = {"g": gadgets.Gadget(), "n": numpy.zeros(2), "y": yaml.SafeLoader}
        print(json.dumps(infer_requirements(model, [])))
    """)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == [
        "acme-gadgets==1.2.3",
        f"numpy=={version('numpy')}",
        f"PyYAML=={version('PyYAML')}",
    ]


def test_walk_finds_modules_in_closures_and_globals():
    import numpy as np

    factor = np.float64(2.0)

    def model(data):
        return np.asarray(data) * factor

    assert {"numpy"} <= modules_of(model)
    assert "modelpack" not in modules_of(model) and "builtins" not in modules_of([1, "x"])
