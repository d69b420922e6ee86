"""MLflow model directories load, serve and batch-score: every flavor modelpack reads, written by
the real MLflow 3.17.2, predicts what ``mlflow.pyfunc.load_model(dir).predict`` does."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from mlflow_model_dirs import INPUTS, mlflow_models_built  # noqa: F401 - a fixture
from tolerances import tolerance

import modelpack
from modelpack import mlflow_models
from modelpack.errors import (
    AlreadyExists,
    FormatError,
    IntegrityError,
    MissingDependency,
    UnknownFlavor,
)
from modelpack.signature import ColumnSchema, TensorSchema

FLAVORS = {
    "sk_skops": "sklearn",
    "sk_pickle": "sklearn",
    "sk_cloudpickle": "sklearn",
    "torch_pt2": "torch",
    "torch_pickle": "torch",
    "torch_script": "torch",
    "onnx_external": "onnx",
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "packages"


@pytest.fixture
def built(mlflow_models_built):  # noqa: F811 - the fixture imported above
    return mlflow_models_built


def _mlflow_dir(built, name, tmp_path):
    """A private copy of one MLflow model directory (tests change theirs)."""
    copy = tmp_path / name
    shutil.copytree(built.dir(name), copy)
    return copy


def _assert_same(actual, expected):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(actual, expected, **tolerance(expected))
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("name", sorted(FLAVORS))
def test_each_flavor_predicts_what_mlflow_predicts(built, name):
    pack = modelpack.load(built.dir(name))
    assert pack.flavor == FLAVORS[name]
    assert pack.manifest.metadata["mlflow"]["mlflow_version"] == "3.17.2"
    _assert_same(pack.predict(built.input(name)), built.expected(name))


def test_torch_formats_are_told_apart_without_unpickling(built):
    formats = {
        name: modelpack.verify(modelpack.load(built.dir(name)).path).flavors["torch"]["format"]
        for name in ("torch_pt2", "torch_pickle", "torch_script")
    }
    assert formats == {
        "torch_pt2": "export",
        "torch_pickle": "pickle",
        "torch_script": "torchscript",
    }


def test_onnx_external_data_is_listed_and_hashed(built):
    manifest = modelpack.load(built.dir("onnx_external")).manifest
    external = manifest.flavors["onnx"]["external_data"]
    assert external and all(rel in manifest.files for rel in external)


def test_pyfunc_loads_with_mlflow_installed_and_predicts_the_same(built):
    # Run in MLflow's virtualenv (mlflow importable there), with code/, artifacts, model_config.
    assert built.info["pyfunc_flavor"] == "mlflow_pyfunc"
    assert built.info["helper_left_in_sys_modules"] is False  # code/ has a namespace of its own
    assert built.info["gzip_compression"] == "gzip"
    for variant in ("pyfunc", "pyfunc.params", "pyfunc_gzip"):
        _assert_same(
            np.load(built.root / f"{variant}.modelpack.npy"),
            np.load(built.root / f"{variant}.mlflow.npy"),
        )


def test_pyfunc_without_mlflow_fails_saying_what_to_install(built):
    with pytest.raises(MissingDependency, match=r"pip install mlflow-skinny==3\.17\.2$"):
        modelpack.load(built.dir("pyfunc"))


def test_a_converted_package_is_still_an_mlflow_model(built):
    assert built.info["mlflow_reads_converted"] is True


def test_signature_example_and_requirements_carry_over(built):
    sk = modelpack.load(built.dir("sk_pickle"))
    inputs = sk.signature.inputs
    assert isinstance(inputs, ColumnSchema)
    assert [(c.name, c.type, c.required) for c in inputs.columns] == [
        (n, "double", True) for n in "abcd"
    ]
    assert sk.signature.outputs.tensors[0].dtype == "int64"
    assert sk.manifest.input_example == "serving_input_example.json"
    assert sk.input_example().keys() >= {"a", "b", "c", "d"}
    assert sk.manifest.environment["python"] == "3.11.7"
    assert "scikit-learn==1.9.1" in (sk.path / "requirements.txt").read_text().split()
    # Enforcement is ours: a missing column is refused before the model runs.
    with pytest.raises(modelpack.errors.SchemaError, match="'d'"):
        sk.predict(built.frame().drop(columns=["d"]))

    pt = modelpack.load(built.dir("torch_pt2")).signature
    assert isinstance(pt.inputs, TensorSchema)
    assert (pt.inputs.tensors[0].dtype, pt.inputs.tensors[0].shape) == ("float32", (-1, 4))

    pyfunc = modelpack.verify(modelpack.resolution.resolve(built.dir("pyfunc")))
    assert [(p.name, p.type, p.default) for p in pyfunc.signature.params] == [
        ("offset", "double", 1.0)
    ]
    assert pyfunc.flavors["mlflow_pyfunc"]["artifacts"] == {"scale": "artifacts/scale.txt"}
    assert pyfunc.code == ("code/mpk_shift_helper.py",)

    assert modelpack.load(built.dir("sk_cloudpickle")).signature is None


def test_a_second_load_converts_nothing_and_a_changed_source_converts_again(
    built, tmp_path, private_cache
):
    src = _mlflow_dir(built, "sk_pickle", tmp_path)
    first, second = modelpack.load(src), modelpack.load(src)
    assert first.path == second.path and first.model_id == second.model_id
    assert first.path.parent == private_cache
    assert oct(private_cache.stat().st_mode & 0o777) == "0o700"
    (src / "conda.yaml").write_text("name: changed\n")
    third = modelpack.load(src)
    assert third.path != first.path and third.model_id != first.model_id
    assert sorted(p.name for p in private_cache.iterdir()) == sorted(
        [first.path.name, third.path.name]
    )


def test_a_tampered_cache_entry_is_refused(built, tmp_path):
    src = _mlflow_dir(built, "sk_pickle", tmp_path)
    entry = modelpack.load(src).path
    (entry / "model.pkl").write_bytes(b"not the model")
    with pytest.raises(IntegrityError, match=r"model\.pkl: size differs"):
        modelpack.load(src)
    # Rewriting the manifest to match does not help: the entry must list the source's hashes.
    from modelpack.integrity import hash_tree
    from modelpack.manifest import read_manifest, write_manifest

    manifest = read_manifest(entry)
    object.__setattr__(manifest, "files", hash_tree(entry))
    write_manifest(entry, manifest)
    with pytest.raises(IntegrityError, match=r"model\.pkl: the cached conversion's manifest"):
        modelpack.load(src)


def test_convert_writes_a_verified_package_keeping_mlflow_files(built, tmp_path):
    dest = tmp_path / "pkg"
    manifest = mlflow_models.convert(built.dir("sk_skops"), dest)
    assert modelpack.verify(dest) == manifest
    assert (dest / "MLmodel").read_bytes() == (built.dir("sk_skops") / "MLmodel").read_bytes()
    assert "MLmodel" in manifest.files and manifest.flavors["sklearn"]["serialization"] == "skops"
    _assert_same(modelpack.load(dest).predict(built.frame()), built.expected("sk_skops"))
    with pytest.raises(AlreadyExists, match="Pass overwrite=True"):
        mlflow_models.convert(built.dir("sk_skops"), dest)
    again = mlflow_models.convert(built.dir("sk_pickle"), dest, overwrite=True)
    assert modelpack.load(dest).model_id == again.model_id
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(FormatError, match="not an MLflow model directory"):
        mlflow_models.convert(tmp_path, tmp_path / "other")


def test_an_unsupported_flavor_is_named_with_the_supported_ones(tmp_path):
    src = tmp_path / "xgb"
    src.mkdir()
    (src / "model.xgb").write_bytes(b"\0")
    (src / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.xgboost\n    data: model.xgb\n"
        "  xgboost:\n    data: model.xgb\n    xgb_version: 2.1.0\nmlflow_version: 3.17.2\n"
    )
    message = (
        r"This MLflow model's flavor is xgboost, which modelpack cannot load\. Supported MLflow "
        r"flavors: sklearn, pytorch, onnx, python_function \(a PythonModel"
    )
    with pytest.raises(UnknownFlavor, match=message):
        modelpack.load(src)
    (src / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.ml\n")
    with pytest.raises(UnknownFlavor, match=r"is python_function \(loader_module mlflow\.ml"):
        modelpack.load(src)
    (src / "model.py").write_text("import mlflow\n")
    (src / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        "    model_code_path: model.py\n"
    )
    with pytest.raises(FormatError, match=r"a model from code .*pickled PythonModels"):
        modelpack.load(src)


def test_serving_an_mlflow_directory(built):
    from starlette.testclient import TestClient

    from modelpack.serving import create_app

    frame = built.frame()
    body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
    with TestClient(create_app(str(built.dir("sk_pickle")))) as client:
        response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    _assert_same(response.json()["predictions"], built.expected("sk_pickle"))


def test_info_and_batch_predict_on_an_mlflow_directory(built, tmp_path, capsys):
    from modelpack.cli import main

    assert main(["info", str(built.dir("torch_pt2"))]) == 0
    out = capsys.readouterr().out
    assert "flavor:      torch" in out and "files:       verified (sha256)" in out
    assert "torch==2.13.0" in out

    source = tmp_path / "in.csv"
    built.frame().to_csv(source, index=False)
    target = tmp_path / "out.jsonl"
    assert main(["predict", str(built.dir("sk_pickle")), "-i", str(source), "-o", str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["prediction"] for r in rows] == built.expected("sk_pickle").tolist()


def test_a_run_artifact_that_is_an_mlflow_model_loads_by_runs_uri(built, tmp_path):
    client = modelpack.Client(f"sqlite:///{tmp_path / 'store.db'}", str(tmp_path / "artifacts"))
    experiment = client.create_experiment("imported")
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, built.dir("onnx_external"), "model")
    uri = modelpack.uris.run_uri(run.info.run_id, "model")
    pack = modelpack.load(modelpack.resolution.resolve(uri, client))
    assert pack.flavor == "onnx"
    _assert_same(pack.predict(built.input("onnx_external")), built.expected("onnx_external"))
    version = client.register_model(uri, "Imported")
    registered = modelpack.load(modelpack.resolution.resolve(version, client))
    assert registered.model_id == pack.model_id


def test_inputs_cover_every_directory():
    assert set(INPUTS) == {*FLAVORS, "pyfunc"}


def test_signature_parts_modelpack_cannot_state_are_left_out_and_named(built, tmp_path, caplog):
    import yaml

    src = _mlflow_dir(built, "sk_pickle", tmp_path)
    spec = yaml.safe_load((src / "MLmodel").read_text())
    spec["signature"] = {
        "inputs": json.dumps([{"type": "double", "name": n, "required": n != "d"} for n in "abcd"]),
        "outputs": json.dumps([{"type": "array", "items": {"type": "long"}, "required": True}]),
        "params": json.dumps([{"name": "k", "type": "long", "default": [1], "shape": [-1]}]),
    }
    (src / "MLmodel").write_text(yaml.safe_dump(spec))
    pack = modelpack.load(src)
    assert [c.required for c in pack.signature.inputs.columns] == [True, True, True, False]
    assert pack.signature.outputs is None and pack.signature.params == ()
    assert pack.manifest.metadata["mlflow"]["signature_left_out"] == [
        "outputs: column type 'array'",
        "params: {'name': 'k', 'type': 'long', 'default': [1], 'shape': [-1]}",
    ]
    assert "cannot be stated in modelpack's; left out" in caplog.text
