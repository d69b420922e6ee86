"""Every package is also an MLflow model: the real MLflow 3.17.2 loads, predicts with and serves
packages modelpack saved, for sklearn, torch and ONNX without modelpack installed, and for the
python flavor through modelpack's loader when it is (modelpack.mlmodel, modelpack.mlflow_loader).

The MLflow side runs in two scripts and one server, started once for the module: the server
boots while the scripts run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import yaml
from tolerances import FLOAT32, FLOAT64

import modelpack
from modelpack.errors import IntegrityError, InvalidArgument

torch = pytest.importorskip("torch")

MLFLOW_FILES = ["MLmodel", "conda.yaml", "mlflow_input_example.json", "serving_input_example.json"]
# package -> the input it predicts on (MLflow's own loader runs these)
PACKAGES = {
    "sk_cloudpickle": "array64",
    "sk_skops_proba": "array64",
    "sk_frame": "frame",
    "sk_onnx_also": "array32",
    "onnx": "array32",
    "torch_export": "array32",
    "torch_torchscript": "array32",
    "torch_pickle": "array32",
}
NEEDS_MODELPACK = {"python": "ab", "sk_decision": "array64", "torch_cast": "array64"}

PYTHON_MODEL = textwrap.dedent("""
    import sys
    import numpy as np, pandas as pd
    import modelpack
    from modelpack.signature import ColSpec, ColumnSchema, ParamSpec, Signature

    class Scaled(modelpack.PythonModel):  # in __main__: cloudpickle carries it by value
        def predict(self, data, params=None):
            return data.to_numpy() * params["k"]

    sig = Signature(
        inputs=ColumnSchema((ColSpec("a", "double"), ColSpec("b", "double", required=False))),
        params=(ParamSpec("k", "double", 2.0),),
    )
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    modelpack.save(Scaled(), sys.argv[1], signature=sig, input_example=frame)
""")

# Runs in the MLflow virtualenv: argv[1] the folder, argv[2] the package names; prints JSON.
MLFLOW_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    import numpy as np, pandas as pd
    import mlflow, mlflow.pyfunc
    from mlflow.models.utils import load_serving_example

    root, names = Path(sys.argv[1]), json.loads(sys.argv[2])
    inputs = json.loads((root / "inputs.json").read_text())

    def data(kind):
        if kind in ("frame", "ab"):
            return pd.DataFrame(inputs[kind]["data"], columns=inputs[kind]["columns"])
        return np.asarray(inputs["array"], np.float64 if kind == "array64" else np.float32)

    def plain(out):
        if isinstance(out, dict):
            return {str(k): np.asarray(v).tolist() for k, v in out.items()}
        if isinstance(out, (pd.DataFrame, pd.Series)):
            return out.to_numpy().tolist()
        return np.asarray(out).tolist()

    result = {}
    for name, kind in names.items():
        path = str(root / name)
        try:
            model = mlflow.pyfunc.load_model(path)
            params = {"k": 3.0} if name == "python" else None
            result[name] = {"predict": plain(model.predict(data(kind), params=params))}
        except Exception as exc:
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        info = mlflow.models.get_model_info(path)
        meta = mlflow.models.Model.load(path)
        example = meta.load_input_example(path)
        result[name].update(
            signature=info.signature.to_dict() if info.signature else None,
            example=plain(example) if example is not None else None,
            example_columns=list(example.columns) if isinstance(example, pd.DataFrame) else None,
            serving=json.loads(load_serving_example(path)),
            loader=info.flavors["python_function"]["loader_module"],
        )
    if "flavors" in sys.argv[3:]:
        import mlflow.onnx, mlflow.pytorch, mlflow.sklearn, torch
        x32 = torch.as_tensor(data("array32"))
        native = {
            "sklearn": plain(mlflow.sklearn.load_model(str(root / "sk_cloudpickle"))
                             .predict(data("array64"))),
            "onnx_outputs": [o.name for o in
                             mlflow.onnx.load_model(str(root / "onnx")).graph.output],
        }
        for fmt in ("export", "torchscript", "pickle"):
            module = mlflow.pytorch.load_model(str(root / f"torch_{fmt}"))
            with torch.no_grad():
                native[f"torch_{fmt}"] = module(x32).numpy().tolist()
        result["native"] = native
    print(json.dumps(result))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_until_up(port: int, proc: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise AssertionError(f"mlflow models serve did not answer /ping within {deadline_s} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, xy, forest, frame, frame_forest):
    """The packages, what modelpack predicts for each, and what MLflow made of them."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("mlmodel_export")
    X, y = xy
    x64, x32, rows = X[:12], X[:12].astype(np.float32), frame.iloc[:12]
    logistic = LogisticRegression().fit(X, y)
    modelpack.save(forest, root / "sk_cloudpickle", input_example=X[:5])
    modelpack.save(
        forest,
        root / "sk_skops_proba",
        input_example=X[:5],
        serialization="skops",
        predict_method="predict_proba",
    )
    modelpack.save(frame_forest, root / "sk_frame", input_example=frame.iloc[:5])
    modelpack.save(logistic, root / "sk_onnx_also", input_example=x32[:5], also=("onnx",))
    modelpack.save(
        root / "sk_onnx_also" / "model" / "model.onnx", root / "onnx", input_example=x32[:5]
    )
    for fmt in ("export", "torchscript", "pickle"):
        modelpack.save(_net(), root / f"torch_{fmt}", input_example=x32[:5], format=fmt)
    modelpack.save(
        logistic, root / "sk_decision", input_example=X[:5], predict_method="decision_function"
    )
    # A float64 example for a float32 module: modelpack casts, MLflow's wrapper would not.
    modelpack.save(_net(), root / "torch_cast", input_example=X[:5], format="torchscript")
    subprocess.run([sys.executable, "-c", PYTHON_MODEL, str(root / "python")], check=True, cwd=root)
    ab = pd.DataFrame({"a": [0.5, -1.0, 2.0], "b": [1.0, 0.0, 4.0]})
    frames = {
        name: {"columns": list(f), "data": f.values.tolist()}
        for name, f in [("frame", rows), ("ab", ab)]
    }
    (root / "inputs.json").write_text(json.dumps({"array": x64.tolist(), **frames}))

    def data(kind):
        return {"array64": x64, "array32": x32, "frame": rows, "ab": ab}[kind]

    expected = {
        name: modelpack.load(root / name).predict(
            data(kind), params={"k": 3.0} if name == "python" else None
        )
        for name, kind in {**PACKAGES, **NEEDS_MODELPACK}.items()
    }
    return root, expected, data


@pytest.fixture(scope="module")
def mlflow_side(exported, mlflow_env):
    """One server (sk_cloudpickle) booting while two scripts run: without modelpack, with it."""
    root, _, _ = exported
    port = _free_port()
    server = subprocess.Popen(
        [str(mlflow_env.bin / "mlflow"), "models", "serve", "-m", str(root / "sk_cloudpickle")]
        + ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=root,
        env=mlflow_env.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # The two scripts (each ~5 s of imports) run side by side, while the server boots.
        with ThreadPoolExecutor(2) as pool:
            alone = pool.submit(
                mlflow_env.json,
                MLFLOW_SCRIPT,
                str(root),
                json.dumps({**PACKAGES, "python": "ab"}),
                "flavors",
                cwd=root,
            )
            together = pool.submit(
                mlflow_env.json,
                MLFLOW_SCRIPT,
                str(root),
                json.dumps(NEEDS_MODELPACK),
                cwd=root,
                with_modelpack=root,
            )
            alone, together = alone.result(), together.result()
        _wait_until_up(port, server, deadline_s=120)
        rows = np.asarray(json.loads((root / "inputs.json").read_text())["array"])
        served = {
            "split": _post(port, {"dataframe_split": {"data": rows.tolist()}}),
            "inputs": _post(port, {"inputs": rows.tolist()}),
        }
    finally:
        _stop(server)
    return alone, together, served


def _same(actual, expected):
    if isinstance(expected, dict):
        assert set(actual) >= set(expected)
        for key, value in expected.items():
            _same(actual[key], value)
        return
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    if expected.dtype.kind == "f":
        tol = FLOAT32 if expected.dtype == np.float32 else FLOAT64
        np.testing.assert_allclose(actual, expected, **tol)
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_mlflow_pyfunc_predicts_what_modelpack_predicts_without_modelpack(
    name, exported, mlflow_side
):
    _, expected, _ = exported
    alone, _, _ = mlflow_side
    assert "error" not in alone[name], alone[name]
    flavor = {"sk": "mlflow.sklearn", "to": "mlflow.pytorch", "on": "mlflow.onnx"}[name[:2]]
    assert alone[name]["loader"] == flavor
    got = alone[name]["predict"]
    if name == "onnx":  # MLflow's ONNX wrapper returns every output by name
        assert set(got) == {"label", "probabilities"}
    _same(got, expected[name])


def test_mlflow_flavor_loaders_read_the_package_files(exported, mlflow_side):
    _, expected, data = exported
    native = mlflow_side[0]["native"]
    _same(native["sklearn"], expected["sk_cloudpickle"])
    assert native["onnx_outputs"] == ["label", "probabilities"]
    for fmt in ("export", "torchscript", "pickle"):
        _same(native[f"torch_{fmt}"], expected[f"torch_{fmt}"])


@pytest.mark.parametrize("name", sorted(NEEDS_MODELPACK))
def test_what_mlflow_cannot_run_loads_through_modelpack(name, exported, mlflow_side):
    root, expected, _ = exported
    _, together, _ = mlflow_side
    assert "error" not in together[name], together[name]
    assert together[name]["loader"] == "modelpack.mlflow_loader"
    _same(together[name]["predict"], expected[name])


def test_without_modelpack_mlflow_names_the_missing_module(mlflow_side):
    assert mlflow_side[0]["python"] == {"error": "ModuleNotFoundError: No module named 'modelpack'"}


def test_mlflow_models_serve_answers_with_the_same_predictions(exported, mlflow_side):
    _, expected, _ = exported
    served = mlflow_side[2]
    assert served["split"] == {"predictions": expected["sk_cloudpickle"].tolist()}
    assert served["inputs"] == {"predictions": expected["sk_cloudpickle"].tolist()}


def test_mlflow_reads_the_signature_and_input_example(exported, mlflow_side):
    root, _, _ = exported
    alone, together, _ = mlflow_side
    frame_cols = [f"f{i}" for i in range(6)]
    sk_frame = alone["sk_frame"]
    assert json.loads(sk_frame["signature"]["inputs"]) == [
        {"type": "double", "name": c, "required": True} for c in frame_cols
    ]
    assert json.loads(sk_frame["signature"]["outputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}
    ]
    assert sk_frame["example_columns"] == frame_cols and len(sk_frame["example"]) == 5
    assert sk_frame["serving"] == json.loads((root / "sk_frame" / "input_example.json").read_text())
    torch_sig = alone["torch_export"]["signature"]
    assert json.loads(torch_sig["inputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 6]}}
    ]
    assert np.asarray(alone["torch_export"]["example"]).shape == (5, 6)
    assert alone["torch_export"]["serving"].keys() == {"inputs"}
    python = together["python"]["signature"]
    assert json.loads(python["inputs"]) == [
        {"type": "double", "name": "a", "required": True},
        {"type": "double", "name": "b", "required": False},
    ]
    assert json.loads(python["params"]) == [
        {"name": "k", "default": 2.0, "shape": None, "type": "double"}
    ]


def test_the_manifest_covers_the_mlflow_files(exported):
    root, _, _ = exported
    files = modelpack.verify(root / "torch_pickle").files
    assert [f for f in files if f not in ("input_example.json", "python_env.yaml")] == sorted(
        [*MLFLOW_FILES, "model/model.pth", "model/pickle_module_info.txt", "requirements.txt"]
    )
    assert {"MLmodel", "model/MLmodel", "model/model.onnx"} <= set(
        modelpack.verify(root / "onnx").files
    )


def test_a_tampered_mlmodel_is_refused(tmp_path, forest, xy):
    modelpack.save(forest, tmp_path / "p", input_example=xy[0][:3])
    mlmodel = tmp_path / "p" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("mlflow.sklearn", "mlflow.sklear_"))
    with pytest.raises(IntegrityError, match=r"MLmodel: sha256 is .* The package was modified"):
        modelpack.load(tmp_path / "p")


def test_an_unlisted_mlmodel_in_model_is_refused(tmp_path, forest, xy):
    modelpack.save(forest, tmp_path / "p", input_example=xy[0][:3], mlflow=False)
    (tmp_path / "p" / "model" / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(IntegrityError, match="model/MLmodel: is not listed in the manifest"):
        modelpack.verify(tmp_path / "p")


def test_mlflow_false_leaves_the_mlflow_files_out(tmp_path, xy):
    X = xy[0].astype(np.float32)
    manifest = modelpack.save(
        _net(), tmp_path / "p", input_example=X[:3], format="pickle", mlflow=False
    )
    assert sorted(manifest.files) == [
        "input_example.json",
        "model/model.pth",
        "python_env.yaml",
        "requirements.txt",
    ]
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "input_example.json",
        "model",
        "modelpack.yaml",
        "python_env.yaml",
        "requirements.txt",
    ]


def test_the_mlflow_argument_is_a_bool(tmp_path, forest):
    with pytest.raises(InvalidArgument, match="mlflow must be True or False, got 'yes'"):
        modelpack.save(forest, tmp_path / "p", mlflow="yes")
    assert not (tmp_path / "p").exists()


def test_the_mlmodel_describes_the_package(tmp_path, forest, xy):
    manifest = modelpack.save(forest, tmp_path / "p", metadata={"team": "churn"})
    mlmodel = yaml.safe_load((tmp_path / "p" / "MLmodel").read_text())
    assert mlmodel["model_uuid"] == manifest.model_id
    assert mlmodel["metadata"] == {"team": "churn"}
    assert "signature" not in mlmodel and "saved_input_example_info" not in mlmodel
    assert mlmodel["flavors"]["sklearn"]["pickled_model"] == "model/model.pkl"
    assert mlmodel["flavors"]["python_function"]["env"] == {
        "conda": "conda.yaml",
        "virtualenv": "python_env.yaml",
    }
    conda = yaml.safe_load((tmp_path / "p" / "conda.yaml").read_text())
    reqs = (tmp_path / "p" / "requirements.txt").read_text().split()
    assert conda["dependencies"][-1] == {"pip": reqs}


def test_packages_saved_with_model_pt_still_load(tmp_path, xy):
    from modelpack.flavors import torch as torch_flavor

    X = xy[0][:4].astype(np.float32)
    net = _net()
    (tmp_path / "model").mkdir()
    config = torch_flavor.save(net, tmp_path, example=None, format="torchscript")
    # What saves before the MLflow names wrote: model/model.pt, named by the config.
    (tmp_path / "model" / "model.pth").rename(tmp_path / "model" / "model.pt")
    old = {**config, "path": "model/model.pt"}
    predict = torch_flavor.predictor(torch_flavor.load(tmp_path, old), old)
    with torch.no_grad():
        np.testing.assert_allclose(predict(X, {}), net(torch.as_tensor(X)).numpy(), **FLOAT32)


def test_log_model_writes_the_mlmodel_too(tracking_env, forest, xy):
    with modelpack.start_run() as run:
        modelpack.log_model(forest, "model", input_example=xy[0][:3])
        modelpack.log_model(forest, "bare", mlflow=False)
    logged = modelpack.load(f"runs:/{run.info.run_id}/model")
    assert set(MLFLOW_FILES) <= set(logged.manifest.files)
    assert (logged.path / "MLmodel").is_file()
    assert "MLmodel" not in modelpack.load(f"runs:/{run.info.run_id}/bare").manifest.files
