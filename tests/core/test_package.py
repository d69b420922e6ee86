"""save / load / verify through the public API: format, integrity, atomicity, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import modelpack
from modelpack.errors import (
    AlreadyExists,
    FormatError,
    IntegrityError,
    InvalidArgument,
    MissingDependency,
    NotFound,
    SchemaError,
    UnknownFlavor,
)
from modelpack.manifest import Manifest

GOLDEN = Path(__file__).parent.parent / "data" / "modelpack-v1.yaml"


@pytest.fixture
def saved(tmp_path, forest, xy):
    path = tmp_path / "rf"
    modelpack.save(forest, path, input_example=xy[0][:5])
    return path


def test_golden_manifest_reads_and_writes_back_unchanged():
    raw = yaml.safe_load(GOLDEN.read_text())
    manifest = Manifest.from_dict(raw)
    assert manifest.to_dict() == raw
    from modelpack.manifest import dump_yaml

    assert dump_yaml(manifest.to_dict()) == GOLDEN.read_text()


def test_saved_manifest_has_the_golden_layout(saved):
    golden = yaml.safe_load(GOLDEN.read_text())
    written = yaml.safe_load((saved / "modelpack.yaml").read_text())
    assert [k for k in golden if k in written] == list(written)
    assert set(written) == set(golden) - {"code", "source"}
    assert set(written["flavors"]["sklearn"]) == set(golden["flavors"]["sklearn"])
    assert written["environment"] == {
        **golden["environment"],
        "python": written["environment"]["python"],
    }
    assert sorted(written["files"]) == [
        "MLmodel",  # the MLflow files (modelpack.mlmodel), hashed like the rest
        "conda.yaml",
        "input_example.json",
        "mlflow_input_example.json",
        "model/model.pkl",
        "python_env.yaml",
        "requirements.txt",
        "serving_input_example.json",
    ]


def test_package_files(saved):
    reqs = (saved / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in reqs)
    assert any(r.startswith("numpy==") for r in reqs)
    assert all("==" in r for r in reqs)
    env = yaml.safe_load((saved / "python_env.yaml").read_text())
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["dependencies"] == ["-r requirements.txt"]
    example = json.loads((saved / "input_example.json").read_text())
    assert len(example["inputs"]) == 5 and len(example["inputs"][0]) == 6


def test_load_exposes_manifest_signature_and_native(saved, forest, xy):
    pack = modelpack.load(saved)
    assert pack.flavor == "sklearn" and pack.path == saved
    assert pack.model_id == pack.manifest.model_id and len(pack.model_id) == 32
    assert pack.signature.inputs.to_dict() == {
        "kind": "tensor",
        "dtype": "float64",
        "shape": [-1, 6],
    }
    assert type(pack.unwrap()) is type(forest)
    np.testing.assert_array_equal(pack.predict(xy[0]), forest.predict(xy[0]))
    np.testing.assert_array_equal(pack.input_example(), xy[0][:5])
    assert "sklearn" in repr(pack)


def test_file_uri_loads(saved, xy):
    assert modelpack.load(saved.as_uri()).predict(xy[0][:2]).shape == (2,)


def test_zero_rows_give_an_empty_prediction_without_calling_the_model(saved):
    out = modelpack.load(saved).predict(np.empty((0, 6)))
    assert out.shape == (0,) and out.dtype == np.int64


def test_verify_passes_and_names_modified_missing_and_unlisted_files(saved):
    assert modelpack.verify(saved).flavor == "sklearn"
    with open(saved / "model" / "model.pkl", "ab") as f:
        f.write(b"x")
    (saved / "requirements.txt").unlink()
    (saved / "model" / "backdoor.py").write_text("print('hi')")
    with pytest.raises(IntegrityError, match="3 files fail verification") as e:
        modelpack.verify(saved)
    assert sorted(e.value.problems) == [
        ("model/backdoor.py", "unlisted"),
        ("model/model.pkl", "modified"),
        ("requirements.txt", "missing"),
    ]
    assert "The package was modified after it was saved" in str(e.value)


def test_load_refuses_a_modified_model_before_unpickling(saved, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    size = (saved / "model" / "model.pkl").stat().st_size  # same size: only the hash can tell
    (saved / "model" / "model.pkl").write_bytes(payload.ljust(size, b" "))
    with pytest.raises(
        IntegrityError,
        match=r"model/model.pkl: sha256 is [0-9a-f]{12}\.\.\., "
        r"the manifest says [0-9a-f]{12}\.\.\.",
    ):
        modelpack.load(saved)
    assert not marker.exists()


def test_symlink_in_package_is_refused(saved, tmp_path):
    (tmp_path / "outside.txt").write_text("x")
    os.symlink(tmp_path / "outside.txt", saved / "model" / "link.txt")
    with pytest.raises(IntegrityError, match="model/link.txt: is a symlink") as e:
        modelpack.load(saved)
    assert e.value.problems == [("model/link.txt", "symlink")]


def _edit_manifest(path: Path, change) -> None:
    data = yaml.safe_load((path / "modelpack.yaml").read_text())
    change(data)
    (path / "modelpack.yaml").write_text(yaml.safe_dump(data))


def test_unknown_format_version_is_refused(saved):
    _edit_manifest(saved, lambda d: d.update(format_version=7))
    with pytest.raises(
        FormatError,
        match=r"Unknown format_version 7; this modelpack reads "
        r"format_version 1\. Upgrade modelpack",
    ):
        modelpack.load(saved)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "model/../../x"])
def test_manifest_paths_must_stay_inside(saved, bad):
    _edit_manifest(saved, lambda d: d["flavors"]["sklearn"].update(path=bad))
    with pytest.raises(FormatError, match=r"flavors\.sklearn\.path .*(relative|'\.\.')"):
        modelpack.load(saved)


def test_manifest_path_through_symlink_is_refused(saved, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", saved / "linked")
    _edit_manifest(saved, lambda d: d["files"].update({"linked/x": "0" * 64}))
    with pytest.raises(IntegrityError, match="linked: is a symlink"):
        modelpack.load(saved)


def test_manifest_with_unknown_key_or_garbage(saved):
    _edit_manifest(saved, lambda d: d.update(surprise=1))
    with pytest.raises(FormatError, match="manifest: unknown key 'surprise'"):
        modelpack.load(saved)
    (saved / "modelpack.yaml").write_text("{{{ not yaml")
    with pytest.raises(FormatError, match="cannot be read as YAML"):
        modelpack.load(saved)


def test_missing_package_and_non_package(tmp_path):
    with pytest.raises(NotFound, match="No model package at .*the path does not exist"):
        modelpack.load(tmp_path / "nope")
    with pytest.raises(FormatError, match="is not a model package: it has no modelpack.yaml"):
        modelpack.load(tmp_path)


def test_unknown_uri_schemes_are_refused():
    with pytest.raises(
        InvalidArgument,
        match=r"Unsupported URI 'http://example.com/model'\. "
        r"Supported: a local path, file://, runs:/",
    ):
        modelpack.load("http://example.com/model")


def test_flavor_not_in_package(saved):
    with pytest.raises(UnknownFlavor, match=r"does not store the 'onnx' flavor\. Stored: sklearn"):
        modelpack.load(saved, flavor="onnx")


def test_existing_target(tmp_path, forest, saved):
    with pytest.raises(AlreadyExists, match="exists and is not empty. Pass overwrite=True"):
        modelpack.save(forest, saved)
    old_id = modelpack.verify(saved).model_id
    new = modelpack.save(forest, saved, overwrite=True)
    assert modelpack.verify(saved).model_id == new.model_id != old_id
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.csv").write_text("precious")
    with pytest.raises(AlreadyExists, match="is not a model package; overwrite only replaces"):
        modelpack.save(forest, other, overwrite=True)
    assert (other / "keep.csv").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    modelpack.save(forest, tmp_path / "empty")
    assert (tmp_path / "empty" / "modelpack.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unsupported_object_lists_flavors_and_the_way_out(tmp_path):
    with pytest.raises(
        UnknownFlavor,
        match=r"Cannot save an object of type builtins\.object: no "
        r"flavor recognizes it\. Available flavors: mlflow_pyfunc, onnx, python, sklearn, "
        r"torch\. "
        r"To save custom code, subclass modelpack\.PythonModel",
    ):
        modelpack.save(object(), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_unknown_flavor_name(tmp_path, forest):
    with pytest.raises(
        UnknownFlavor,
        match=r"No flavor named 'sklern'\. Available: mlflow_pyfunc, onnx, python, "
        r"sklearn, torch\.",
    ):
        modelpack.save(forest, tmp_path / "p", flavor="sklern")


def test_bad_arguments_write_nothing(tmp_path, forest, xy):
    target = tmp_path / "p"
    with pytest.raises(InvalidArgument, match="needs an input_example"):
        modelpack.save(forest, target, also=("onnx",))
    with pytest.raises(InvalidArgument, match="not a valid requirement"):
        modelpack.save(forest, target, requirements=["scikit-learn=>1"])
    with pytest.raises(InvalidArgument, match="metadata must hold only plain data"):
        modelpack.save(forest, target, metadata={"x": object()})
    with pytest.raises(InvalidArgument, match=r"'sklearn' flavor's save does not take 'devcie'"):
        modelpack.save(forest, target, devcie="cpu")
    with pytest.raises(SchemaError, match="Cannot infer a schema from an empty list"):
        modelpack.save(forest, target, input_example=[])
    assert list(tmp_path.iterdir()) == []


def test_requirements_given_and_extra(tmp_path, forest):
    modelpack.save(
        forest,
        tmp_path / "p",
        requirements=["scikit-learn>=1.3"],
        extra_requirements=["xgboost==2.0.0"],
    )
    assert (tmp_path / "p" / "requirements.txt").read_text() == (
        "scikit-learn>=1.3\nxgboost==2.0.0\n"
    )


def test_no_signature_without_example_and_pass_through_predict(tmp_path, forest, xy):
    modelpack.save(forest, tmp_path / "p", metadata={"team": "churn"})
    pack = modelpack.load(tmp_path / "p")
    assert pack.signature is None and pack.manifest.metadata == {"team": "churn"}
    np.testing.assert_array_equal(pack.predict(xy[0][:3]), forest.predict(xy[0][:3]))


def test_infer_signature_false_keeps_the_example_only(tmp_path, forest, xy):
    modelpack.save(forest, tmp_path / "p", input_example=xy[0][:2], infer_signature=False)
    pack = modelpack.load(tmp_path / "p")
    assert pack.signature is None and pack.manifest.input_example == "input_example.json"


@pytest.mark.parametrize(
    ("serialization", "missing", "needs", "extra"),
    [
        ("cloudpickle", ["sklearn"], "scikit-learn", "sklearn"),
        ("skops", ["skops", "skops.io"], "skops", "skops"),
    ],
)
def test_missing_framework_names_the_extra(
    tmp_path, monkeypatch, forest, xy, serialization, missing, needs, extra
):
    modelpack.save(forest, tmp_path / "p", input_example=xy[0][:2], serialization=serialization)
    modelpack.save(lambda data: data, tmp_path / "python", flavor="python")
    for module in missing:  # as if it were not installed: importing it fails
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        MissingDependency,
        match=rf"^The 'sklearn' flavor needs {needs}\. Install it with: "
        rf"pip install 'modelpack\[{extra}\]'$",
    ) as e:
        modelpack.load(tmp_path / "p")
    assert (e.value.flavor, e.value.extra) == ("sklearn", extra)
    # The python flavor needs no framework.
    assert modelpack.load(tmp_path / "python").predict(np.ones(2)).tolist() == [1.0, 1.0]


def test_save_killed_midway_leaves_no_package(tmp_path, slow_save):
    script = slow_save
    target, marker = tmp_path / "pkg", tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, str(script), str(target), str(marker)])
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the save never started pickling"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not target.exists()
    with pytest.raises(NotFound):
        modelpack.load(target)
    # The next save to the same path is not disturbed by the dead staging directory.
    modelpack.save(lambda data: data, target, flavor="python")
    assert modelpack.verify(target).flavor == "python"
