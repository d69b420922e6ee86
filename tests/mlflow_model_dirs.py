"""MLflow model directories written by the real MLflow 3.17.2, with what MLflow predicts on them.

One script in the MLflow virtualenv (tests/mlflow_env.py) saves every kind of model modelpack
reads, computes ``mlflow.pyfunc.load_model(dir).predict(X)`` for each into ``.npy`` files, and,
with this checkout's modelpack on its path, loads the PythonModel with modelpack there (where
mlflow is importable) and has MLflow load a package modelpack converted. Built once per session
(``mlflow_models_built``); test modules import the fixture.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# name -> the input MLflow predicted on ("frame": X as columns a..d, "array": X as float64,
# "float32": X as float32).
INPUTS = {
    "sk_skops": "frame",
    "sk_pickle": "frame",
    "sk_cloudpickle": "array",
    "torch_pt2": "float32",
    "torch_pickle": "float32",
    "torch_script": "float32",
    "onnx_external": "float32",
    "pyfunc": "frame",
}

SCRIPT = r"""
import json, os, sys
import numpy as np, pandas as pd, torch
import mlflow, mlflow.onnx, mlflow.pyfunc, mlflow.pytorch, mlflow.sklearn
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from importlib.metadata import version

sys.path.insert(0, os.getcwd())
with open("mpk_shift_helper.py", "w") as f:
    f.write("def shift(values, by):\n    return values * by\n")
import mpk_shift_helper

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 4))
y = (X[:, 0] + X[:, 1] > 0).astype(int)
df = pd.DataFrame(X, columns=list("abcd"))
X32 = X.astype(np.float32)
np.save("X.npy", X)
info = {}


def pins(*names):
    # Given, not inferred: MLflow infers requirements in a subprocess per save (~5 s each).
    return [f"{n}=={version(n)}" for n in names]


lr = LogisticRegression().fit(df, y)
mlflow.sklearn.save_model(
    lr, "sk_skops", input_example=df[:3], pip_requirements=pins("scikit-learn", "skops")
)
forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(df, y)
mlflow.sklearn.save_model(forest, "sk_pickle", serialization_format="pickle", input_example=df[:3])
bare = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
mlflow.sklearn.save_model(
    bare, "sk_cloudpickle", serialization_format="cloudpickle",
    pip_requirements=pins("scikit-learn", "cloudpickle"),
)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 2)
    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))

torch.manual_seed(0)
net = Net().eval()
torch_pins = pins("torch", "numpy")
mlflow.pytorch.save_model(net, "torch_pt2", input_example=X32[:3], pip_requirements=torch_pins)
mlflow.pytorch.save_model(
    net, "torch_pickle", serialization_format="pickle", input_example=X32[:3],
    pip_requirements=torch_pins,
)
mlflow.pytorch.save_model(
    torch.jit.script(net), "torch_script", serialization_format="pickle",
    pip_requirements=torch_pins,
)

w1 = numpy_helper.from_array(rng.normal(size=(4, 300)).astype(np.float32), "w1")
w2 = numpy_helper.from_array(rng.normal(size=(300, 2)).astype(np.float32), "w2")
graph = helper.make_graph(
    [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ],
    "mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    [w1, w2],
)
proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
proto.ir_version = 8
mlflow.onnx.save_model(
    proto, "onnx_external", input_example=X32[:3], pip_requirements=pins("onnx", "onnxruntime")
)

with open("scale.txt", "w") as f:
    f.write("3")

class Scaled(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["scale"]) as f:
            self.scale = float(f.read())
        self.config = dict(context.model_config or {})
    def predict(self, context, model_input, params=None):
        out = mpk_shift_helper.shift(model_input["a"], self.scale) + (params or {})["offset"]
        return out + self.config.get("bias", 0.0) + float(len(context.artifacts))

mlflow.pyfunc.save_model(
    "pyfunc", python_model=Scaled(), artifacts={"scale": "scale.txt"},
    code_paths=["mpk_shift_helper.py"], input_example=(df[:3], {"offset": 1.0}),
    model_config={"bias": 0.5}, pip_requirements=pins("cloudpickle"),
)

def frame_or_array(name):
    kind = INPUTS[name]
    return df if kind == "frame" else X if kind == "array" else X32

for name in INPUTS:
    out = mlflow.pyfunc.load_model(name).predict(frame_or_array(name))
    if isinstance(out, dict):
        out = next(iter(out.values()))
    np.save(f"{name}.mlflow.npy", np.asarray(out))
with_params = mlflow.pyfunc.load_model("pyfunc").predict(df, params={"offset": 2.0})
np.save("pyfunc.params.mlflow.npy", np.asarray(with_params))

# The same PythonModel with its pickle gzipped (python_model_compression), as MLflow reads it.
import gzip, shutil, yaml
shutil.copytree("pyfunc", "pyfunc_gzip")
with open("pyfunc/python_model.pkl", "rb") as f:
    pickled = f.read()
with gzip.open("pyfunc_gzip/python_model.pkl.gz", "wb") as f:
    f.write(pickled)
os.remove("pyfunc_gzip/python_model.pkl")
with open("pyfunc_gzip/MLmodel") as f:
    spec = yaml.safe_load(f)
spec["flavors"]["python_function"].update(
    python_model="python_model.pkl.gz", python_model_compression="gzip"
)
with open("pyfunc_gzip/MLmodel", "w") as f:
    yaml.safe_dump(spec, f)
np.save("pyfunc_gzip.mlflow.npy", np.asarray(mlflow.pyfunc.load_model("pyfunc_gzip").predict(df)))

# modelpack where mlflow is importable: the PythonModel loads and predicts. The helper module
# it imports comes from the model's code/ only: gone from this process and its folder.
del sys.modules["mpk_shift_helper"]
sys.path.remove(os.getcwd())
os.rename("mpk_shift_helper.py", "mpk_shift_helper.py.away")
import modelpack
pack = modelpack.load("pyfunc")
np.save("pyfunc.modelpack.npy", np.asarray(pack.predict(df)))
np.save("pyfunc.params.modelpack.npy", np.asarray(pack.predict(df, params={"offset": 2.0})))
info["pyfunc_flavor"] = pack.flavor
info["helper_left_in_sys_modules"] = "mpk_shift_helper" in sys.modules
gz = modelpack.load("pyfunc_gzip")
np.save("pyfunc_gzip.modelpack.npy", np.asarray(gz.predict(df)))
info["gzip_compression"] = gz.manifest.flavors["mlflow_pyfunc"].get("compression")

# A converted package is still an MLflow model: MLflow loads it and predicts the same.
from modelpack import mlflow_models
mlflow_models.convert("sk_pickle", "converted_sk_pickle")
again = mlflow.pyfunc.load_model("converted_sk_pickle").predict(df)
info["mlflow_reads_converted"] = bool(np.array_equal(again, np.load("sk_pickle.mlflow.npy")))
print(json.dumps(info))
"""


@dataclass(frozen=True)
class Built:
    """Where the MLflow model directories are, and what MLflow said about them."""

    root: Path
    info: dict

    def dir(self, name: str) -> Path:
        return self.root / name

    def X(self) -> np.ndarray:
        return np.load(self.root / "X.npy")

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.X(), columns=list("abcd"))

    def input(self, name: str):
        kind = INPUTS[name]
        x = self.X()
        return self.frame() if kind == "frame" else x if kind == "array" else x.astype("float32")

    def expected(self, name: str) -> np.ndarray:
        return np.load(self.root / f"{name}.mlflow.npy")


@pytest.fixture(scope="session")
def mlflow_models_built(mlflow_env, tmp_path_factory) -> Built:
    # Each test module that imports this fixture holds a copy of its own; the folder (under
    # the session's base temp, behind a lock) makes the script run once per session anyway.
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root, done = base / "mlflow-models", base / "mlflow-models.json"
    with open(base / "mlflow-models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            return Built(root, json.loads(done.read_text()))
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        info = _build(mlflow_env, root)
        done.write_text(json.dumps(info))
    return Built(root, info)


def _build(mlflow_env, root: Path) -> dict:
    # From a file, not `python -c`: torch.jit.script reads the module's source.
    (root / "build_mlflow_models.py").write_text(f"INPUTS = {INPUTS!r}\n" + SCRIPT)
    info = mlflow_env.json(
        "import runpy; runpy.run_path('build_mlflow_models.py', run_name='__main__')",
        cwd=root,
        with_modelpack=root,
        MODELPACK_CACHE_DIR=str(root / "cache-in-mlflow-venv"),
    )
    return info
