"""MLflow's flavor namespaces, as a script ported with ``sed s/mlflow/modelpack/`` calls them:
modelpack.sklearn / .pytorch / .onnx / .pyfunc (save_model, log_model, load_model) and
modelpack.models, against our stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import modelpack
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound, UnknownFlavor


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    return X, RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)


def test_the_namespaces_are_attributes_of_modelpack_and_import_nothing_heavy():
    code = (
        "import sys, modelpack\n"
        "names = [modelpack.sklearn.__name__, modelpack.pytorch.__name__, modelpack.onnx.__name__,"
        " modelpack.pyfunc.__name__, modelpack.models.__name__]\n"
        "heavy = [m for m in ('numpy', 'pandas', 'sklearn', 'torch', 'onnx', 'onnxruntime') "
        "if m in sys.modules]\n"
        "print(names, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "['modelpack.sklearn', 'modelpack.pytorch', 'modelpack.onnx', 'modelpack.pyfunc', "
        "'modelpack.models'] []"
    )


# ---------------------------------------------------------------------------- sklearn


def test_sklearn_log_model_with_mlflow_2_positional_artifact_path(tracking_env, iris):
    X, model = iris
    with modelpack.start_run() as run:
        info = modelpack.sklearn.log_model(model, "random_forest_model")
    run_id = run.info.run_id
    assert info.model_uri == f"runs:/{run_id}/random_forest_model"
    assert (info.run_id, info.artifact_path, info.name) == (
        run_id,
        "random_forest_model",
        "random_forest_model",
    )
    assert list(info.flavors) == ["sklearn"] and info.signature is None
    assert info.model_uuid == info.model_id and info.registered_model_version is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", info.utc_time_created)
    loaded = modelpack.sklearn.load_model(info.model_uri)
    assert type(loaded) is type(model)
    assert loaded.predict(X).tolist() == model.predict(X).tolist()


def test_sklearn_log_model_by_name_registers_and_maps_mlflow_arguments(
    tracking_env, iris, tmp_path
):
    X, model = iris
    (tmp_path / "base.txt").write_text("scikit-learn\n# a comment\n")
    (tmp_path / "reqs.txt").write_text("-r base.txt\nnumpy  # pinned elsewhere\n")
    with modelpack.start_run():
        info = modelpack.sklearn.log_model(
            model,
            name="forest",
            input_example=X[:3],
            registered_model_name="Iris",
            serialization_format="skops",
            pyfunc_predict_fn="predict_proba",
            pip_requirements=str(tmp_path / "reqs.txt"),
            extra_pip_requirements=["pandas>=2"],
            metadata={"team": "risk"},
            await_registration_for=300,
            conda_env=None,  # MLflow's defaults ask for nothing
            step=0,
        )
    version = info.registered_model_version
    assert version.name == "Iris" and version.version == 1
    assert info.flavors["sklearn"]["serialization"] == "skops"
    assert info.metadata == {"team": "risk"}
    assert info.saved_input_example_info == {
        "artifact_path": "input_example.json",
        "type": "json_object",
    }
    pack = modelpack.pyfunc.load_model("models:/Iris/1")
    assert np.allclose(pack.predict(X[:4]), model.predict_proba(X[:4]))
    assert (pack.path / "requirements.txt").read_text().splitlines() == [
        "scikit-learn",
        "numpy",
        "pandas>=2",
    ]
    got = modelpack.models.get_model_info("models:/Iris/1")
    assert (got.run_id, got.artifact_path, got.model_id) == (
        info.run_id,
        "forest",
        info.model_id,
    )


def test_a_second_log_model_to_the_same_path_is_refused(tracking_env, iris):
    X, model = iris
    with modelpack.start_run() as run:
        first = modelpack.sklearn.log_model(model, name="m")
        with pytest.raises(AlreadyExists) as refused:
            modelpack.sklearn.log_model(model, name="m")
        with pytest.raises(AlreadyExists, match=r"has a model at 'm'; 'm/inner' would be logged"):
            modelpack.sklearn.log_model(model, name="m/inner")
        second = modelpack.sklearn.log_model(model, name="m_2")
    assert str(refused.value) == (
        f"Run {run.info.run_id!r} already has a model (or artifacts) at 'm'. MLflow would have "
        f"silently overwritten them; modelpack never replaces what runs:/{run.info.run_id}/m "
        f"names. Log this model under a new name (e.g. name='m_2'), or in a new run."
    )
    assert modelpack.load(first.model_uri).model_id == first.model_id != second.model_id


def test_log_model_name_rules(tracking_env, iris):
    _, model = iris
    with modelpack.start_run():
        with pytest.raises(InvalidArgument, match=r"both artifact_path .* and name were given"):
            modelpack.sklearn.log_model(model, "a", name="b")
        with pytest.raises(InvalidArgument, match=r"pass the model's name in the run"):
            modelpack.sklearn.log_model(model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conda_env": {"dependencies": []}}, r"conda_env= is not supported: modelpack "
         r"environments are pip-only: pass pip_requirements="),
        ({"params": {"a": 1}}, r"params= is not supported: .* modelpack\.log_params"),
        ({"tags": {"a": "b"}}, r"tags= is not supported: .* modelpack\.set_tags"),
        ({"step": 3}, r"step= is not supported"),
        ({"skops_trusted_types": ["x"]}, r"skops_trusted_types= is not supported: modelpack "
         r"checks every file's sha256"),
        ({"extra_files": ["a.txt"]}, r"extra_files= is not supported: .* artifacts="),
        ({"serialization_format": "joblib"}, r"serialization_format='joblib' is not one of "
         r"cloudpickle, pickle, skops"),
        ({"pyfunc_predict_fn": "score"}, r"pyfunc_predict_fn='score' is not supported; "
         r"modelpack serves one of predict, predict_proba"),
        ({"pip_requirements": ["not a requirement!"]}, r"pip_requirements: 'not a "
         r"requirement!' is not a valid requirement"),
        ({"await_registration_for": -1}, r"await_registration_for must be a number"),
    ],
)  # fmt: skip
def test_mlflow_arguments_modelpack_does_not_support_are_refused_by_name(
    tmp_path, iris, kwargs, message
):
    with pytest.raises(InvalidArgument, match=f"modelpack.sklearn.log_model: {message}"):
        modelpack.sklearn.log_model(iris[1], name="m", **kwargs)
    assert not (tmp_path / "store").exists()  # refused before any run or store is touched


def test_an_argument_mlflow_does_not_take_either_is_a_type_error(iris):
    with pytest.raises(TypeError, match=r"log_model\(\) got an unexpected keyword argument 'x'"):
        modelpack.sklearn.log_model(iris[1], name="m", x=1)


def test_sklearn_save_model_and_load_model(tmp_path, iris):
    X, model = iris
    modelpack.sklearn.save_model(model, tmp_path / "m", serialization_format="pickle")
    assert (
        modelpack.sklearn.load_model(tmp_path / "m").predict(X).tolist()
        == model.predict(X).tolist()
    )
    assert modelpack.load(tmp_path / "m").manifest.flavors["sklearn"]["serialization"] == (
        "cloudpickle"  # what pickle.load reads too
    )
    with pytest.raises(AlreadyExists, match="exists and is not empty"):
        modelpack.sklearn.save_model(model, tmp_path / "m")
    with pytest.raises(InvalidArgument, match="code_paths are imported by the python flavor"):
        modelpack.sklearn.save_model(model, tmp_path / "c", code_paths=[__file__])
    with pytest.raises(NotFound, match="the requirements file .*nope.txt' does not exist"):
        modelpack.sklearn.save_model(model, tmp_path / "r", pip_requirements="nope.txt")
    with pytest.raises(InvalidArgument, match=r"dst_path= is not supported: .*download_artifacts"):
        modelpack.sklearn.load_model(tmp_path / "m", dst_path=tmp_path / "d")


def test_load_model_of_another_flavor_says_which_it_stores(tmp_path, iris):
    modelpack.sklearn.save_model(iris[1], tmp_path / "m")
    with pytest.raises(UnknownFlavor, match=r"is not a torch model \(it stores: sklearn\)\. "
                       r"Load it with modelpack.pyfunc.load_model"):  # fmt: skip
        modelpack.pytorch.load_model(tmp_path / "m")


# ---------------------------------------------------------------------------- pytorch, onnx


def _net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def test_pytorch_save_load_and_log(tmp_path, tracking_env):
    import torch

    net, x = _net(), np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    modelpack.pytorch.save_model(net, tmp_path / "pt2", input_example=x, serialization_format="pt2")
    modelpack.pytorch.save_model(net, tmp_path / "pickled", serialization_format="pickle")
    assert modelpack.load(tmp_path / "pt2").manifest.flavors["torch"]["format"] == "export"
    assert modelpack.load(tmp_path / "pickled").manifest.flavors["torch"]["format"] == "pickle"
    for name in ("pt2", "pickled"):
        module = modelpack.pytorch.load_model(tmp_path / name, map_location="cpu")
        assert isinstance(module, torch.nn.Module)
        assert np.allclose(module(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-6)
    with modelpack.start_run():
        info = modelpack.pytorch.log_model(net, name="net", input_example=x, export_model=True)
    assert info.flavors["torch"]["format"] == "export"
    assert np.allclose(modelpack.pyfunc.load_model(info.model_uri).predict(x), expected, atol=1e-6)
    with pytest.raises(InvalidArgument, match=r"weights_only= is not supported: MLflow passes it "
                       r"to torch.load"):  # fmt: skip
        modelpack.pytorch.load_model(tmp_path / "pt2", weights_only=True)
    with pytest.raises(InvalidArgument, match=r"export_model=True and serialization_format="):
        modelpack.pytorch.save_model(net, tmp_path / "x", export_model=True,
                                     serialization_format="pickle")  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"pickle_module= is not supported"):
        modelpack.pytorch.save_model(net, tmp_path / "x", pickle_module=object())


def test_onnx_load_model_returns_the_model_proto(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    modelpack.onnx.save_model(proto, tmp_path / "relu")
    loaded = modelpack.onnx.load_model(tmp_path / "relu")
    assert isinstance(loaded, onnx.ModelProto)
    assert loaded.SerializeToString() == proto.SerializeToString()
    x = np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)
    assert modelpack.pyfunc.load_model(tmp_path / "relu").predict(x).tolist() == [[0.0, 0.5, 2.0]]
    with pytest.raises(InvalidArgument, match=r"onnx_execution_providers= is not supported: "
                       r"providers are chosen when a package is loaded"):  # fmt: skip
        modelpack.onnx.save_model(proto, tmp_path / "p", onnx_execution_providers=["CPU"])
    modelpack.onnx.save_model(proto, tmp_path / "q", save_as_external_data=True)  # the default
    with pytest.raises(InvalidArgument, match=r"save_as_external_data= is not supported"):
        modelpack.onnx.save_model(proto, tmp_path / "r", save_as_external_data=False)


# ---------------------------------------------------------------------------- models


def test_models_predict_prints_and_writes_mlflows_json(tmp_path, iris, capsys):
    X, model = iris
    modelpack.sklearn.save_model(model, tmp_path / "m", input_example=X[:2])
    expected = model.predict(X[:3]).tolist()
    assert modelpack.models.predict(tmp_path / "m", X[:3]).tolist() == expected
    assert json.loads(capsys.readouterr().out) == {"predictions": expected}
    modelpack.models.predict(tmp_path / "m", {"inputs": X[:3].tolist()}, output_path=tmp_path / "o")
    assert json.loads((tmp_path / "o").read_text()) == {"predictions": expected}
    (tmp_path / "in.json").write_text(json.dumps({"inputs": X[:3].tolist()}))
    modelpack.models.predict(tmp_path / "m", input_path=tmp_path / "in.json", env_manager="local")
    assert json.loads(capsys.readouterr().out) == {"predictions": expected}
    with pytest.raises(InvalidArgument, match=r"env_manager='virtualenv' is not supported: "
                       r"modelpack runs the model in this Python environment"):  # fmt: skip
        modelpack.models.predict(tmp_path / "m", X[:3], env_manager="virtualenv")
    with pytest.raises(InvalidArgument, match="pass input_data or input_path, not both"):
        modelpack.models.predict(tmp_path / "m", X[:3], input_path=tmp_path / "in.json")
    with pytest.raises(InvalidArgument, match="install_mlflow= is not supported"):
        modelpack.models.predict(tmp_path / "m", X[:3], install_mlflow=True)


def test_models_predict_writes_a_frame_as_records(tmp_path, capsys):
    def both(model_input):
        return pd.DataFrame({"a": model_input["x"], "b": model_input["x"] * 2})

    modelpack.pyfunc.save_model(tmp_path / "m", python_model=both, input_example=_rows(2))
    frame = modelpack.models.predict(tmp_path / "m", _rows(2))
    assert list(frame.columns) == ["a", "b"]
    assert json.loads(capsys.readouterr().out) == {
        "predictions": [{"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 2.0}]
    }


def test_models_predict_reads_csv(tmp_path, frame_forest, frame, capsys):
    modelpack.sklearn.save_model(frame_forest, tmp_path / "m", input_example=frame.head(2))
    frame.head(4).to_csv(tmp_path / "rows.csv", index=False)
    modelpack.models.predict(tmp_path / "m", input_path=tmp_path / "rows.csv", content_type="csv")
    expected = frame_forest.predict(frame.head(4)).tolist()
    assert json.loads(capsys.readouterr().out) == {"predictions": expected}


def test_infer_signature_and_model_metadata(tmp_path, frame_forest, frame):
    signature = modelpack.models.infer_signature(frame.head(3), frame_forest.predict(frame.head(3)))
    assert isinstance(signature, modelpack.models.ModelSignature)
    modelpack.sklearn.save_model(frame_forest, tmp_path / "m", signature=signature,
                                 input_example=frame.head(2))  # fmt: skip
    meta = modelpack.models.Model.load(tmp_path / "m")
    assert meta.signature == signature and meta.get_input_schema().names == list(frame.columns)
    assert meta.run_id is None and list(meta.flavors) == ["sklearn"]
    assert meta.load_input_example().equals(frame.head(2))
    pack = modelpack.pyfunc.load_model(tmp_path / "m")
    assert pack.metadata.get_input_schema() == signature.inputs
    assert pack.get_raw_model() is pack.unwrap()
    with pytest.raises(InvalidArgument, match=r"unwrap_python_model\(\) is for python-flavor "
                       r"packages; this one runs the sklearn flavor"):  # fmt: skip
        pack.unwrap_python_model()


def test_pyfunc_spark_udf_refuses_other_environments(tmp_path):
    with pytest.raises(InvalidArgument, match=r"env_manager='conda' is not supported"):
        modelpack.pyfunc.spark_udf(None, tmp_path, env_manager="conda")


def test_autolog_delegates_to_the_autologging_module(monkeypatch):
    import modelpack.autologging

    calls = []
    monkeypatch.setattr(modelpack.autologging, "autolog", lambda **kw: calls.append(("all", kw)))
    monkeypatch.setattr(
        modelpack.autologging, "autolog_sklearn", lambda **kw: calls.append(("sklearn", kw))
    )
    modelpack.autolog(disable=True)
    modelpack.sklearn.autolog(log_models=False)
    assert calls == [("all", {"disable": True}), ("sklearn", {"log_models": False})]


def test_pyfunc_save_model_refusals(tmp_path):
    with pytest.raises(InvalidArgument, match=r"pass python_model=\.\.\."):
        modelpack.pyfunc.save_model(tmp_path / "a")
    with pytest.raises(InvalidArgument, match=r"is a file \(MLflow's models from code\)"):
        modelpack.pyfunc.save_model(tmp_path / "b", python_model="model.py")
    with pytest.raises(InvalidArgument, match=r"loader_module= is not supported"):
        modelpack.pyfunc.save_model(tmp_path / "c", loader_module="my_loader", data_path="d")


def _rows(n):
    return pd.DataFrame({"x": np.arange(n, dtype=float)})


def test_pyfunc_log_model_of_a_function(tracking_env):
    def double(model_input):
        return model_input["x"].to_numpy() * 2

    with modelpack.start_run():
        info = modelpack.pyfunc.log_model(
            name="double",
            python_model=double,
            input_example=_rows(2),
            registered_model_name="Double",
        )
    pack = modelpack.pyfunc.load_model("models:/Double/1")
    assert pack.predict(_rows(3)).tolist() == [0.0, 2.0, 4.0]
    assert pack.unwrap_python_model()(_rows(1)).tolist() == [0.0]
    assert info.registered_model_version.version == 1
