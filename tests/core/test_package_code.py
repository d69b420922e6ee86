"""What a load may run and open: package code only for the python flavor, never in place of
an installed module, and only files the manifest lists with their hashes."""

from __future__ import annotations

import hashlib
import pathlib
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

import modelpack
from modelpack.errors import FormatError, IntegrityError


def _edit_manifest(package, edit):
    path = package / "modelpack.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _add_listed(package, rel, text):
    """Add a file to ``package`` and list it, as a tool that rewrites the manifest would."""
    (package / rel).parent.mkdir(parents=True, exist_ok=True)
    (package / rel).write_text(text)
    data = (package / rel).read_bytes()

    def edit(d):
        d["files"][rel] = hashlib.sha256(data).hexdigest()
        if "sizes" in d:  # manifests that record sizes too
            d["sizes"][rel] = len(data)

    _edit_manifest(package, edit)


@pytest.fixture
def two_runtimes(tmp_path, forest, xy):
    path = tmp_path / "rf"
    modelpack.save(forest, path, input_example=xy[0][:5], also=("onnx",))
    return path


def _load_in_subprocess(package, flavor):
    script = textwrap.dedent(f"""
        import sys, modelpack
        try:
            modelpack.load({str(package)!r}, flavor={flavor!r})
            print("loaded")
        except modelpack.ModelpackError as exc:
            print(type(exc).__name__, exc)
        print(getattr(sys.modules.get("onnx"), "__file__", None))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_package_code_named_like_an_installed_module_is_refused_for_every_flavor(two_runtimes):
    marker = two_runtimes.parent / "fake-onnx-ran"
    fake = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    _add_listed(two_runtimes, "code/onnx.py", fake)
    _edit_manifest(two_runtimes, lambda d: d.__setitem__("code", ["code/onnx.py"]))
    for flavor in ("onnx", "sklearn"):
        error, onnx_file = _load_in_subprocess(two_runtimes, flavor)
        assert error == (
            "FormatError code/onnx.py would shadow the installed module 'onnx'; rename it."
        )
        assert not onnx_file.startswith(str(two_runtimes))  # None, or the real onnx
    assert not marker.exists()


def test_other_flavors_never_import_package_code(two_runtimes, xy):
    marker = two_runtimes.parent / "helpers-ran"
    _add_listed(two_runtimes, "code/helpers.py", f"open({str(marker)!r}, 'w').close()\n")
    _edit_manifest(two_runtimes, lambda d: d.__setitem__("code", ["code/helpers.py"]))
    for flavor in ("onnx", "sklearn"):
        pack = modelpack.load(two_runtimes, flavor=flavor)
        assert pack.predict(xy[0][:3]).shape == (3,)
    assert not marker.exists()
    assert "helpers" not in sys.modules


class _Touch:
    """A pickle that, when loaded, creates a file: proof that something was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_a_flavor_path_to_an_unlisted_file_is_refused_before_unpickling(two_runtimes):
    marker = two_runtimes.parent / "unpickled"
    (two_runtimes / "notes.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    _edit_manifest(two_runtimes, lambda d: d["flavors"]["sklearn"].__setitem__("path", "notes.pkl"))
    # Refused when the manifest is read (FormatError), or else before the flavor runs.
    with pytest.raises(
        (IntegrityError, FormatError),
        match=r"^(notes\.pkl: flavors\.sklearn\.path names a file the manifest does not list, "
        r"so its sha256 was never checked\. Every file a flavor opens must be listed"
        r"|flavors\.sklearn\.path 'notes\.pkl': is not among the files the manifest lists)",
    ):
        modelpack.load(two_runtimes)
    assert not marker.exists()


class Reader(modelpack.PythonModel):
    def load_context(self, context):
        self.text = pathlib.Path(context.artifacts["notes"]).read_text()

    def predict(self, data, params=None):
        return np.full(len(data), len(self.text))


def test_an_artifact_or_example_outside_the_listed_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("abc")
    package = tmp_path / "p"
    modelpack.save(Reader(), package, artifacts={"notes": tmp_path / "notes.txt"})
    assert modelpack.load(package).predict(np.ones(2)).tolist() == [3, 3]
    (package / "extra.txt").write_text("not what was saved")
    _edit_manifest(
        package, lambda d: d["flavors"]["python"]["artifacts"].__setitem__("notes", "extra.txt")
    )
    with pytest.raises(
        IntegrityError, match=r"^extra\.txt: flavors\.python\.artifacts\.notes names a file"
    ):
        modelpack.load(package)
    (package / "extra").mkdir()
    (package / "extra" / "a.txt").write_text("x")
    _edit_manifest(
        package, lambda d: d["flavors"]["python"]["artifacts"].__setitem__("notes", "extra")
    )
    with pytest.raises(IntegrityError, match=r"^extra/a\.txt: flavors\.python\.artifacts\.notes"):
        modelpack.load(package)

    _edit_manifest(package, lambda d: d["flavors"]["python"]["artifacts"].pop("notes"))
    (package / "example.json").write_text("[[1.0]]")
    _edit_manifest(package, lambda d: d.__setitem__("input_example", "example.json"))
    with pytest.raises(
        (IntegrityError, FormatError),
        match=r"^(example\.json: input_example names a file the manifest does not list"
        r"|input_example 'example\.json': is not among the files the manifest lists)",
    ):
        modelpack.load(package)


def test_code_outside_the_listed_files_is_refused(tmp_path):
    package = tmp_path / "p"
    modelpack.save(lambda d: d, package, flavor="python")
    (package / "extra.py").write_text("raise SystemExit('ran')\n")
    _edit_manifest(package, lambda d: d.__setitem__("code", ["extra.py"]))
    with pytest.raises(IntegrityError, match=r"^extra\.py: code names a file the manifest does"):
        modelpack.load(package)


def test_a_shadowing_package_folder_is_refused(tmp_path):
    package = tmp_path / "p"
    modelpack.save(lambda d: d, package, flavor="python")
    _add_listed(package, "code/numpy/__init__.py", "raise SystemExit('fake numpy')\n")
    _edit_manifest(package, lambda d: d.__setitem__("code", ["code/numpy"]))
    with pytest.raises(
        FormatError, match=r"^code/numpy would shadow the installed module 'numpy'; rename it\.$"
    ):
        modelpack.load(package)
