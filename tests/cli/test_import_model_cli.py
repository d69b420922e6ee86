"""``modelpack import-model SRC DEST``: an MLflow model (a folder or runs:/ URI) becomes a verified
package in a folder, or the next version of a registered model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow_model_dirs import mlflow_models_built  # noqa: F401 - a fixture

import modelpack
from modelpack.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def built(mlflow_models_built):  # noqa: F811 - the fixture imported above
    return mlflow_models_built


@pytest.fixture
def store(tmp_path):
    return [
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'store.db'}",
        "--artifact-root",
        str(tmp_path / "artifacts"),
    ]


def test_import_to_a_folder_writes_a_verified_package(built, tmp_path, capsys):
    dest = tmp_path / "churn"
    assert main(["import-model", str(built.dir("sk_skops")), str(dest)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote {dest} from {built.dir('sk_skops')}"
    assert out[1] == "flavor:     sklearn (MLflow sklearn)"
    assert out[2].startswith("files:      8 (sha256 of each in modelpack.yaml, verified)")
    manifest = modelpack.verify(dest)
    assert out[3] == f"model_id:   {manifest.model_id}"
    assert out[4:] == ["signature:  yes", "example:    serving_input_example.json"]
    predictions = modelpack.load(dest).predict(built.frame())
    np.testing.assert_array_equal(predictions, built.expected("sk_skops"))


def test_an_existing_folder_is_replaced_only_with_overwrite(built, tmp_path, capsys):
    dest = tmp_path / "torch"
    assert main(["import-model", str(built.dir("torch_pt2")), str(dest), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["flavor"] == "torch" and first["mlflow_flavor"] == "pytorch"
    assert main(["import-model", str(built.dir("torch_pt2")), str(dest)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: {str(dest)!r} exists and is not empty. Pass overwrite=True (--overwrite) to "
        f"replace the package there, or choose another path.\n"
    )
    assert main(["import-model", str(built.dir("torch_pt2")), str(dest), "--overwrite"]) == 0
    assert modelpack.verify(dest).model_id != first["model_id"]


def test_import_to_models_registers_a_version(built, tmp_path, store, capsys):
    src = str(built.dir("sk_pickle"))
    assert main(["import-model", src, "models:/Churn", *store]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"registered Churn version 1 from {src}"
    assert out[1] == "flavor:     sklearn (MLflow sklearn)"
    assert main(["import-model", src, "models:/Churn", *store, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["registered_model"], second["version"]) == ("Churn", 2)
    client = modelpack.Client(store[1], store[3])
    uri = modelpack.uris.model_uri("Churn", 1)
    pack = modelpack.load(modelpack.resolution.resolve(uri, client))
    np.testing.assert_array_equal(pack.predict(built.frame()), built.expected("sk_pickle"))


def test_a_runs_uri_source(built, tmp_path, store, capsys):
    client = modelpack.Client(store[1], store[3])
    run = client.create_run(client.create_experiment("imported"))
    client.log_artifacts(run.info.run_id, built.dir("onnx_external"), "model")
    uri = modelpack.uris.run_uri(run.info.run_id, "model")
    dest = tmp_path / "onnx"
    assert main(["import-model", uri, str(dest), *store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flavor"] == "onnx" and modelpack.verify(dest).model_id == out["model_id"]
    predictions = modelpack.load(dest).predict(built.input("onnx_external"))
    np.testing.assert_allclose(predictions, built.expected("onnx_external"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "dest", "message"),
    [
        (
            lambda src: (src / "MLmodel").write_text(
                "flavors:\n  keras:\n    data: model.keras\nmlflow_version: 3.17.2\n"
            ),
            "out",
            "error: This MLflow model's flavor is keras, which modelpack cannot load. Supported "
            "MLflow flavors: sklearn, pytorch, onnx, python_function (a PythonModel, "
            "loader_module mlflow.pyfunc.model).\n",
        ),
        (
            lambda src: (src / "notes.txt").write_text("hi"),
            "out",
            "error: '{src}' is not an MLflow model directory: it has no MLmodel file.\n",
        ),
        (
            lambda src: (src / "MLmodel").write_text("flavors: {}\n"),
            "models:/Churn/1",
            "error: Expected models:/<name> (a registered model to add a version to), got "
            "'models:/Churn/1'.\n",
        ),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, make, dest, message):
    src = tmp_path / "src"
    src.mkdir()
    make(src)
    target = dest if dest.startswith("models:") else str(tmp_path / dest)
    assert main(["import-model", str(src), target]) == 1
    captured = capsys.readouterr()
    assert captured.err == message.format(src=src)
    assert not (tmp_path / "out").exists()
