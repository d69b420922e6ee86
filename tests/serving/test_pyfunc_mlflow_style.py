"""A PythonModel written for MLflow, ported with ``sed s/mlflow/modelpack/``: the same script
saves and loads under both, predicts the same, and our packages serve.

The script below is MLflow code. It runs once in the real MLflow 3.17.2 and once, with
``mlflow`` replaced by ``modelpack``, here (each in a process of its own, so the classes are
``__main__``'s and pickled by value, as in a user's script).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import modelpack

SCRIPT = textwrap.dedent(
    """
    import json, sys

    import numpy as np
    import pandas as pd

    import mlflow
    from mlflow.models import infer_signature


    class AddN(mlflow.pyfunc.PythonModel):
        def __init__(self, n):
            self.n = n

        def predict(self, context, model_input, params=None):
            return model_input.apply(lambda column: column + self.n)


    class Scaled(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            with open(context.artifacts["factor"]) as f:
                self.factor = float(f.read())
            self.offset = context.model_config["offset"]

        def predict(self, context, model_input, params=None):
            scale = params["scale"] if params else 1.0
            return (model_input["x"] * self.factor + self.offset) * scale


    class NoContext(mlflow.pyfunc.PythonModel):
        def predict(self, model_input):
            return model_input["x"] * -1


    class Ctx(mlflow.pyfunc.PythonModel):
        def predict(self, ctx, model_input):
            return model_input["x"] + len(ctx.artifacts)


    def plain(p):
        if hasattr(p, "columns"):
            return p.to_dict(orient="list")
        return np.asarray(p).tolist()


    out = sys.argv[1]
    with open("factor.txt", "w") as f:
        f.write("3")
    x = pd.DataFrame({"x": [1.0, 2.0, 4.0]})
    mlflow.pyfunc.save_model(f"{out}/add_n", python_model=AddN(5), input_example=x)
    signature = infer_signature(x, params={"scale": 1.0})
    mlflow.pyfunc.save_model(
        f"{out}/scaled",
        python_model=Scaled(),
        artifacts={"factor": "factor.txt"},
        model_config={"offset": 0.5},
        signature=signature,
    )
    mlflow.pyfunc.save_model(f"{out}/no_context", python_model=NoContext())
    mlflow.pyfunc.save_model(f"{out}/ctx", python_model=Ctx(), artifacts={"a": "factor.txt"})

    scaled = mlflow.pyfunc.load_model(f"{out}/scaled")
    add_n = mlflow.pyfunc.load_model(f"{out}/add_n")
    print(json.dumps({
        "add_n": plain(add_n.predict(x)),
        "scaled": plain(scaled.predict(x)),
        "scaled_params": plain(scaled.predict(x, params={"scale": 2.0})),
        "scaled_config": plain(
            mlflow.pyfunc.load_model(f"{out}/scaled", model_config={"offset": 1.5}).predict(x)
        ),
        "no_context": plain(mlflow.pyfunc.load_model(f"{out}/no_context").predict(x)),
        "ctx": plain(mlflow.pyfunc.load_model(f"{out}/ctx").predict(x)),
        "unwrapped": type(add_n.unwrap_python_model()).__name__,
    }))
    """
).replace(
    # Our Schema has names, where MLflow's has input_names(): the one line that differs.
    "scaled.metadata.get_input_schema().input_names()",
    "scaled.metadata.get_input_schema().MLFLOW_NAMES",
)
EXPECTED = {
    "add_n": {"x": [6.0, 7.0, 9.0]},
    "scaled": [3.5, 6.5, 12.5],
    "scaled_params": [7.0, 13.0, 25.0],
    "scaled_config": [4.5, 7.5, 13.5],
    "no_context": [-1.0, -2.0, -4.0],
    "ctx": [2.0, 3.0, 5.0],
    "unwrapped": "AddN",
}


def _script(name: str) -> str:
    return SCRIPT if name == "mlflow" else SCRIPT.replace("mlflow", "modelpack")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ported")
    done = subprocess.run([sys.executable, "-c", _script("modelpack"), str(folder)], cwd=folder,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_ported_script_runs_and_predicts(ours):
    assert ours[1] == EXPECTED


def test_the_script_is_mlflow_code_and_mlflow_predicts_the_same(mlflow_env, ours, tmp_path):
    assert mlflow_env.json(_script("mlflow"), str(tmp_path), cwd=tmp_path) == ours[1]


def test_the_ported_models_serve(ours, serve):
    folder, _ = ours
    body = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}}
    scaled = serve(folder / "scaled")
    assert scaled.post("/invocations", json=body).json() == {"predictions": [3.5, 6.5]}
    with_params = {**body, "params": {"scale": 2.0}}
    assert scaled.post("/invocations", json=with_params).json() == {"predictions": [7.0, 13.0]}
    answer = serve(folder / "add_n").post("/invocations", json=body).json()
    assert answer == {"predictions": [{"x": 6.0}, {"x": 7.0}]}
    records = {"dataframe_records": [{"x": 4.0}]}
    assert serve(folder / "ctx").post("/invocations", json=records).json() == {"predictions": [5.0]}


def test_the_context_and_model_config_reach_the_loaded_model(ours):
    folder, _ = ours
    pack = modelpack.pyfunc.load_model(folder / "scaled")
    model = pack.unwrap_python_model()
    assert isinstance(model, modelpack.pyfunc.PythonModel)
    assert isinstance(model, modelpack.PythonModel)  # ours too: one python flavor
    assert (model.factor, model.offset) == (3.0, 0.5)
    assert pack.manifest.flavors["python"]["model_config"] == {"offset": 0.5}
    with pytest.raises(modelpack.InvalidArgument, match="model_config must be a dict or the path"):
        modelpack.pyfunc.load_model(folder / "scaled", model_config=[1])
    (folder / "config.yaml").write_text("offset: 10\n")
    bigger = modelpack.pyfunc.load_model(folder / "scaled", model_config=folder / "config.yaml")
    assert bigger.unwrap_python_model().offset == 10


def test_model_config_is_for_python_models_only(tmp_path, forest):
    modelpack.sklearn.save_model(forest, tmp_path / "rf")
    with pytest.raises(modelpack.InvalidArgument, match="flavor's load does not take 'model_con"):
        modelpack.pyfunc.load_model(tmp_path / "rf", model_config={"a": 1})
    with pytest.raises(modelpack.InvalidArgument, match="model_config= needs a PythonModel"):
        modelpack.pyfunc.save_model(tmp_path / "f", python_model=_negate, model_config={"a": 1})


def _negate(model_input):
    return -model_input
