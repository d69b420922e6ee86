"""The tutorial (examples/tutorial.py) as written: its model has no input example, so no
signature, and every tabular request form still reaches it as a DataFrame (as with MLflow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from live import LiveServer, running

import modelpack
from modelpack.cli import main

TUTORIAL = Path(__file__).parent.parent.parent / "examples" / "tutorial.py"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.4, 1.3]]
URI = "models:/IrisClassifier/Production"


@pytest.fixture(scope="module")
def tutorial_store(tmp_path_factory):
    """The tutorial run as a user runs it: `python tutorial.py` in a folder of their own."""
    folder = tmp_path_factory.mktemp("tutorial")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    out = subprocess.run([sys.executable, str(TUTORIAL)], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "IrisClassifier v1 is in Production" in out.stdout
    # One line says what a package without a signature costs, and nothing else is printed.
    assert out.stderr.strip().splitlines() == [
        "Saved without a signature (no input_example): inputs are not checked, /v2 metadata "
        "lists no inputs, and a server cannot smoke-test a new version before serving it. "
        "Pass input_example=X[:5] to get all three."
    ]
    return folder / "modelpack-store"


@pytest.fixture
def store_env(tutorial_store, monkeypatch):
    monkeypatch.setenv("MODELPACK_TRACKING_URI", f"sqlite:///{tutorial_store / 'modelpack.db'}")
    monkeypatch.delenv("MODELPACK_ARTIFACT_ROOT", raising=False)
    return tutorial_store


@pytest.fixture
def expected(store_env):
    pack = modelpack.load(URI)
    assert pack.signature is None
    return pack.unwrap().predict(np.asarray(ROWS)).tolist()


def _by_column(rows):
    return {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}


CSV = ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n"
JSON_FORMS = {
    "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
    "dataframe_split_with_index": {
        "dataframe_split": {"index": [0, 1, 2], "columns": COLUMNS, "data": ROWS}
    },
    "dataframe_split_without_columns": {"dataframe_split": {"data": ROWS}},
    "dataframe_records": {"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]},
    "instances_records": {"instances": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]},
    "instances_rows": {"instances": ROWS},
    "inputs_rows": {"inputs": ROWS},
    "inputs_columns": {"inputs": _by_column(ROWS)},
}


@pytest.mark.parametrize("form", JSON_FORMS)
def test_every_json_form(serve, store_env, expected, form):
    response = serve(URI).post("/invocations", json=JSON_FORMS[form])
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}
    assert response.headers["X-Model-Version"] == "1"


@pytest.mark.parametrize("content_type", ["text/csv", "application/csv"])
def test_csv(serve, store_env, expected, content_type):
    response = serve(URI).post("/invocations", content=CSV, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}


def _v2_columns(shape_of):
    return [
        {"name": c, "shape": shape_of(len(ROWS)), "datatype": "FP64", "data": [r[i] for r in ROWS]}
        for i, c in enumerate(COLUMNS)
    ]


V2_FORMS = {
    "per_column": {"inputs": _v2_columns(lambda n: [n])},
    "per_column_n_by_1": {"inputs": _v2_columns(lambda n: [n, 1])},
    "content_type_pd": {"parameters": {"content_type": "pd"}, "inputs": _v2_columns(lambda n: [n])},
    "one_tensor": {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": ROWS}]},
}


@pytest.mark.parametrize("form", V2_FORMS)
def test_every_v2_form(serve, store_env, expected, form):
    response = serve(URI).post("/v2/models/IrisClassifier/infer", json=V2_FORMS[form])
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["data"] == expected and output["shape"] == [3]


def test_v2_pd_columns_of_different_lengths_are_refused(serve, store_env):
    inputs = _v2_columns(lambda n: [n])
    inputs[0] = {**inputs[0], "shape": [2], "data": inputs[0]["data"][:2]}
    body = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    response = serve(URI).post("/v2/models/IrisClassifier/infer", json=body)
    assert response.status_code == 400
    assert "every input must have the same number of rows" in response.json()["error"]


def test_text_columns_reach_the_model_as_a_frame(tmp_path, serve):
    """A model with no signature sees the request's columns, named, in the request's order."""

    def echo(frame):
        return np.asarray([",".join(f"{c}:{frame[c].dtype.kind}" for c in frame.columns)])

    modelpack.save(echo, tmp_path / "echo", flavor="python")
    client = serve(tmp_path / "echo")
    body = {"dataframe_split": {"columns": ["b", "a", "c"], "data": [[1, "x", 2.5]]}}
    assert client.post("/invocations", json=body).json() == {"predictions": ["b:i,a:O,c:f"]}
    records = {"dataframe_records": [{"z": "t", "y": 1}]}
    assert client.post("/invocations", json=records).json() == {"predictions": ["z:O,y:i"]}
    csv = "n,s,f\n1,hello,\n2,world,0.5\n"
    response = client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert response.json() == {"predictions": ["n:i,s:O,f:f"]}


def test_modelpack_serve_answers_the_tutorial_model(store_env, expected, tmp_path):
    server = LiveServer(URI, tmp_path, args=["--poll-interval-s", "60"], label="tutorial")
    with running(server):
        import httpx2

        with httpx2.Client(base_url=server.url, timeout=10) as http:
            split = http.post("/invocations", json=JSON_FORMS["dataframe_split"])
            csv = http.post("/invocations", content=CSV, headers={"Content-Type": "text/csv"})
            v2 = http.post("/v2/models/IrisClassifier/infer", json=V2_FORMS["per_column"])
    assert split.status_code == 200, server.logs()
    assert split.json() == {"predictions": expected}
    assert csv.json() == {"predictions": expected}
    assert v2.json()["outputs"][0]["data"] == expected


def test_only_a_package_without_a_signature_says_so(tmp_path, forest, xy, caplog):
    modelpack.save(forest, tmp_path / "signed", input_example=xy[0][:3])
    assert caplog.records == []
    modelpack.save(forest, tmp_path / "unsigned")
    (record,) = caplog.records
    assert record.levelname == "WARNING" and record.name == "modelpack.package"
    assert record.getMessage().startswith("Saved without a signature (no input_example)")


def test_the_tutorial_is_mlflows_with_mlflow_replaced_by_modelpack(mlflow_env, tmp_path):
    """The script, with ``modelpack`` put back to ``mlflow``, is a working MLflow 3.17.2 script.

    One thing is set first: MLflow 3.17 saves scikit-learn models with skops by default and
    then refuses to load a random forest (``sklearn.tree._tree.Tree`` is not a type skops
    trusts) unless ``skops_trusted_types`` is passed; it is run with the cloudpickle default
    MLflow itself uses on Databricks (and modelpack everywhere).
    """
    script = TUTORIAL.read_text().replace("modelpack", "mlflow")
    assert 'mlflow.sklearn.log_model(model, "random_forest_model")' in script
    assert "from mlflow import MlflowClient" in script
    prelude = (
        "import mlflow.sklearn\n"
        "mlflow.sklearn._get_default_serialization_format = lambda: 'cloudpickle'\n"
        "import sys\n"
        "exec(compile(sys.argv[1], 'tutorial.py', 'exec'), {'__name__': '__main__'})\n"
    )
    done = mlflow_env.run(prelude, script, cwd=tmp_path)
    assert "IrisClassifier v1 is in Production" in done.stdout


def test_the_tutorial_model_loads_through_the_sklearn_namespace(store_env):
    from sklearn.ensemble import RandomForestClassifier

    model = modelpack.sklearn.load_model(URI)
    assert isinstance(model, RandomForestClassifier) and model.n_estimators == 100
    info = modelpack.models.get_model_info(URI)
    assert info.artifact_path == "random_forest_model" and info.signature is None


def test_modelpack_predict_scores_a_file_with_the_tutorial_model(store_env, expected, tmp_path):
    rows, out = tmp_path / "iris.csv", tmp_path / "scores.jsonl"
    rows.write_text(CSV)
    assert main(["predict", URI, "-i", str(rows), "-o", str(out)]) == 0
    assert [json.loads(line)["prediction"] for line in out.read_text().splitlines()] == expected
