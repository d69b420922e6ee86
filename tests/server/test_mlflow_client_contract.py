"""Contract: the real, unmodified ``mlflow==3.17.2`` client against a real ``modelpack server``.

One script runs in MLflow's own virtualenv (tests/mlflow_env.py) with nothing but
``MLFLOW_TRACKING_URI`` pointing at a ``modelpack server`` subprocess: the seed tutorial
(``set_experiment``, ``start_run``, params, metrics over steps, ``mlflow.sklearn.log_model`` with
``registered_model_name``), a second version through ``mlflow.register_model``, stage
transitions and an alias, then the model loaded back through ``models:/Churn/Production`` and
``models:/Churn@champion``, ``search_runs``, artifacts up and down, metric history,
``log_batch``, a PyTorch network, and three bad calls (a missing run, a missing version, a
malformed filter) that must fail at once with the server's own error code and message. Then
``modelpack.load`` in this process, through modelpack's own client of the same server, loads
the versions the MLflow client registered and predicts the same.

Each step of the script is caught and reported on its own (``{"ok": ..., "value" | "error"}``),
so a server bug fails the one test that names it, with MLflow's traceback and the end of the
server's log, while the other steps still run. The client never retries
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``), so an answer of 500 shows up at once instead of after
minutes of backoff. The forest the 3.17.2 client logs needs ``skops_trusted_types`` (MLflow
refuses its own default skops format for a forest otherwise, against any server); the PyTorch
network is pickled (3.17.2's default, pt2, needs an input example and seconds of tracing, and
sends the same requests). Each
``log_model`` states its pip requirements, which spares MLflow's inference of them (a
subprocess per call that imports mlflow and the model again) and changes nothing on the wire.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlflow_env import modelpack_server, run_steps

EXPERIMENT = "churn-contract"
MODEL = "Churn"

SCRIPT = r"""
import mlflow
import mlflow.pyfunc
import mlflow.pytorch
import mlflow.sklearn
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
import sklearn

# Stated requirements spare log_model MLflow's inference of them (a subprocess that imports
# mlflow and the model again, seconds each time); the files uploaded are the same set.
SKLEARN_REQUIREMENTS = [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"]
TORCH_REQUIREMENTS = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]

work, EXPERIMENT, MODEL = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
X, y = make_classification(n_samples=60, n_features=4, random_state=0)
frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(frame, y)
expected = forest.predict(frame).tolist()
LOSSES = [0.5, 0.25, 0.125, 0.0625]
state = {}
client = MlflowClient()
out["client"] = {"ok": True, "value": {"mlflow": mlflow.__version__,
                                       "tracking_uri": mlflow.get_tracking_uri()}}


@step("tutorial")
def _():
    experiment = mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="tutorial") as run:
        mlflow.log_param("n_estimators", 5)
        mlflow.log_param("max_depth", 3)
        for i, loss in enumerate(LOSSES):
            mlflow.log_metric("loss", loss, step=i)
        mlflow.log_metric("accuracy", 0.875)
        info = mlflow.sklearn.log_model(
            forest,
            name="model",
            registered_model_name=MODEL,
            pip_requirements=SKLEARN_REQUIREMENTS,
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    state["run_id"] = run.info.run_id
    state["experiment_id"] = experiment.experiment_id
    ended = client.get_run(run.info.run_id)
    return {
        "experiment_id": experiment.experiment_id,
        "experiment_name": experiment.name,
        "run_id": run.info.run_id,
        "status": ended.info.status,
        "run_name": ended.info.run_name,
        "artifact_uri": ended.info.artifact_uri,
        "params": ended.data.params,
        "metrics": ended.data.metrics,
        "model_uri": info.model_uri,
        "model_id": info.model_id,
        "logged_model_status": mlflow.get_logged_model(info.model_id).status.value,
        "registered_model_version": info.registered_model_version,
        "flavors": sorted(info.flavors),
    }


@step("register_second_version")
def _():
    version = mlflow.register_model(f"runs:/{state['run_id']}/model", MODEL)
    return {"name": version.name, "version": str(version.version), "status": version.status,
            "run_id": version.run_id, "source": version.source}


@step("stages")
def _():
    staged = client.transition_model_version_stage(MODEL, "2", "Staging")
    after_staging = {v.version: v.current_stage
                     for v in client.search_model_versions(f"name = '{MODEL}'")}
    produced = client.transition_model_version_stage(MODEL, "2", "Production")
    latest = client.get_latest_versions(MODEL, stages=["Production"])
    return {
        "staged": staged.current_stage,
        "after_staging": after_staging,
        "produced": produced.current_stage,
        "latest_production": [v.version for v in latest],
    }


@step("alias")
def _():
    client.set_registered_model_alias(MODEL, "champion", 1)
    by_alias = client.get_model_version_by_alias(MODEL, "champion")
    model = client.get_registered_model(MODEL)
    return {"version": str(by_alias.version), "aliases": dict(model.aliases),
            "version_aliases": list(by_alias.aliases)}


@step("registry_searches")
def _():
    # MLflow 3 adds "tag.`mlflow.prompt.is_prompt` != 'true'" to every registry search.
    return {
        "models": [m.name for m in client.search_registered_models()],
        "named": [m.name for m in client.search_registered_models(f"name = '{MODEL}'")],
        "versions": sorted(v.version for v in client.search_model_versions(f"name = '{MODEL}'")),
    }


@step("load_production")
def _():
    return mlflow.pyfunc.load_model(f"models:/{MODEL}/Production").predict(frame).tolist()


@step("load_champion")
def _():
    return mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(frame).tolist()


@step("load_sklearn_version_1")
def _():
    return mlflow.sklearn.load_model(f"models:/{MODEL}/1").predict(frame).tolist()


@step("artifacts")
def _():
    source = work / "to-upload"
    (source / "tree" / "sub").mkdir(parents=True)
    single = source / "notes.bin"
    single.write_bytes(bytes(range(256)) * 64 + "é✓\n".encode())
    (source / "tree" / "a.txt").write_text("alpha\n")
    (source / "tree" / "sub" / "b.json").write_text('{"b": [1, 2, 3]}')
    with mlflow.start_run(run_name="artifacts") as run:
        mlflow.log_artifact(str(single), artifact_path="extra")
        mlflow.log_artifacts(str(source / "tree"), artifact_path="tree")
    listed = sorted(f.path for f in client.list_artifacts(run.info.run_id))
    nested = sorted(f.path for f in client.list_artifacts(run.info.run_id, "tree"))
    one = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="extra/notes.bin", dst_path=str(work / "dl-one"))
    tree = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{run.info.run_id}/tree", dst_path=str(work / "dl-tree"))
    return {
        "listed": listed,
        "nested": nested,
        "uploaded": {"notes.bin": hashlib.sha256(single.read_bytes()).hexdigest(),
                     **digests(source / "tree")},
        "downloaded": {"notes.bin": hashlib.sha256(Path(one).read_bytes()).hexdigest(),
                       **digests(tree)},
    }


@step("metric_history")
def _():
    history = client.get_metric_history(state["run_id"], "loss")
    return [[m.step, m.value] for m in sorted(history, key=lambda m: m.step)]


@step("log_batch")
def _():
    now = int(time.time() * 1000)
    with mlflow.start_run(run_name="batch") as run:
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("rmse", 1.0 / (i + 1), now + i, i) for i in range(5)],
            params=[Param("alpha", "0.5"), Param("solver", "lbfgs")],
            tags=[RunTag("team", "churn"), RunTag("stage", "exp")],
        )
    got = client.get_run(run.info.run_id)
    history = client.get_metric_history(run.info.run_id, "rmse")
    return {
        "params": got.data.params,
        "tags": {k: v for k, v in got.data.tags.items() if not k.startswith("mlflow.")},
        "metrics": got.data.metrics,
        "history": [[m.step, m.value] for m in sorted(history, key=lambda m: m.step)],
    }


@step("pytorch")
def _():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    net.eval()
    inputs = torch.tensor(X[:10], dtype=torch.float32)
    with torch.no_grad():
        want = net(inputs).numpy()
    with mlflow.start_run(run_name="torch"):
        # 3.17.2's default format, pt2, traces the network with torch.export (seconds); the
        # wire is the same either way, so the contract takes the quick one.
        info = mlflow.pytorch.log_model(
            net, name="net", serialization_format="pickle", pip_requirements=TORCH_REQUIREMENTS
        )
    loaded = mlflow.pytorch.load_model(info.model_uri)
    with torch.no_grad():
        got = loaded(inputs).numpy()
    pyfunc = np.asarray(mlflow.pyfunc.load_model(info.model_uri).predict(inputs.numpy()))
    return {"model_uri": info.model_uri,
            "torch_equal": bool(np.array_equal(got, want)),
            "pyfunc_equal": bool(np.allclose(pyfunc, want, rtol=0, atol=1e-6)),
            "shape": list(pyfunc.shape)}


@step("search_runs")
def _():
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    row = runs[runs["run_id"] == state["run_id"]].iloc[0]
    return {
        "type": type(runs).__name__,
        "rows": len(runs),
        "columns": sorted(runs.columns),
        "tutorial": {
            "metrics.loss": float(row["metrics.loss"]),
            "metrics.accuracy": float(row["metrics.accuracy"]),
            "params.n_estimators": row["params.n_estimators"],
            "params.max_depth": row["params.max_depth"],
            "status": row["status"],
            "tags.mlflow.runName": row["tags.mlflow.runName"],
            "experiment_id": row["experiment_id"],
        },
    }


@step("bad_arguments")
def _():
    def failure(call):
        try:
            call()
        except MlflowException as exc:
            return {"raised": type(exc).__name__, "error_code": exc.error_code,
                    "is_mlflow_exception": isinstance(exc, MlflowException),
                    "message": exc.message}
        return {"raised": None}

    return {
        "get_run": failure(lambda: client.get_run("nonexistent")),
        "get_model_version": failure(lambda: client.get_model_version(MODEL, "99")),
        "search_filter": failure(lambda: client.search_runs(
            [state["experiment_id"]], filter_string="metrics.loss >>> 1")),
    }


out["expected"] = {"ok": True, "value": expected}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``modelpack server`` (a subprocess on a free port, SQLite, a local artifact root),
    for the whole module."""
    with modelpack_server(tmp_path_factory.mktemp("contract-server-3")) as running:
        yield running


@pytest.fixture(scope="module")
def contract(mlflow_env, server, tmp_path_factory):
    """The whole MLflow 3.17.2 script's answers, step by step (one ``import mlflow``)."""
    work = tmp_path_factory.mktemp("contract-client-3")
    return run_steps(mlflow_env, server, SCRIPT, work, EXPERIMENT, MODEL)


def test_the_client_is_the_real_mlflow_3_17_2(contract, server):
    client = contract.value("client")
    assert client == {"mlflow": "3.17.2", "tracking_uri": server.url}


def test_the_tutorial_tracks_logs_and_registers(contract):
    done = contract.value("tutorial")
    assert done["experiment_name"] == EXPERIMENT
    assert done["experiment_id"] != "0"
    assert done["status"] == "FINISHED"
    assert done["run_name"] == "tutorial"
    # Artifacts go through the server's proxy: the client is never told a path on its disk.
    assert done["artifact_uri"].startswith("mlflow-artifacts:/")
    assert done["artifact_uri"].endswith(f"/{done['run_id']}/artifacts")
    assert done["params"] == {"n_estimators": "5", "max_depth": "3"}
    assert done["metrics"] == {"loss": 0.0625, "accuracy": 0.875}
    assert done["model_id"].startswith("m-")
    assert done["model_uri"] == f"models:/{done['model_id']}"
    assert done["logged_model_status"] == "READY"
    assert done["registered_model_version"] == "1"
    assert {"python_function", "sklearn"} <= set(done["flavors"])


def test_register_model_from_the_run_adds_version_2(contract):
    tutorial = contract.value("tutorial")
    version = contract.value("register_second_version")
    assert version["name"] == MODEL
    assert version["version"] == "2"
    assert version["status"] == "READY"
    assert version["run_id"] == tutorial["run_id"]
    # The 3.x client finds the logged model behind runs:/<run>/model and registers that.
    assert version["source"] == f"models:/{tutorial['model_id']}"


def test_stage_transitions_move_version_2_to_staging_then_production(contract):
    stages = contract.value("stages")
    assert stages["staged"] == "Staging"
    assert stages["after_staging"] == {"1": "None", "2": "Staging"}
    assert stages["produced"] == "Production"
    assert stages["latest_production"] == ["2"]


def test_the_alias_points_at_version_1(contract):
    alias = contract.value("alias")
    assert alias == {"version": "1", "aliases": {"champion": "1"}, "version_aliases": ["champion"]}


def test_registry_searches_find_the_model_despite_mlflows_prompt_clause(contract):
    found = contract.value("registry_searches")
    assert found == {"models": [MODEL], "named": [MODEL], "versions": ["1", "2"]}


def test_pyfunc_loads_the_production_stage_and_predicts(contract):
    assert contract.value("load_production") == contract.value("expected")


def test_pyfunc_loads_the_alias_and_predicts(contract):
    assert contract.value("load_champion") == contract.value("expected")


def test_sklearn_flavor_loads_version_1_and_predicts(contract):
    assert contract.value("load_sklearn_version_1") == contract.value("expected")


def test_search_runs_is_a_frame_of_the_experiments_runs(contract):
    found = contract.value("search_runs")
    assert found["type"] == "DataFrame"
    assert found["rows"] == 4  # tutorial, artifacts, batch, torch
    for column in ("run_id", "experiment_id", "status", "start_time", "end_time",
                   "artifact_uri", "metrics.loss", "metrics.accuracy", "metrics.rmse",
                   "params.n_estimators", "params.max_depth", "params.alpha",
                   "tags.mlflow.runName", "tags.team"):  # fmt: skip
        assert column in found["columns"], column
    assert found["tutorial"] == {
        "metrics.loss": 0.0625,
        "metrics.accuracy": 0.875,
        "params.n_estimators": "5",
        "params.max_depth": "3",
        "status": "FINISHED",
        "tags.mlflow.runName": "tutorial",
        "experiment_id": contract.value("tutorial")["experiment_id"],
    }


def test_artifacts_upload_list_and_download_byte_for_byte(contract):
    moved = contract.value("artifacts")
    assert moved["listed"] == ["extra", "tree"]
    assert moved["nested"] == ["tree/a.txt", "tree/sub"]
    assert set(moved["uploaded"]) == {"notes.bin", "a.txt", "sub/b.json"}
    assert moved["downloaded"] == moved["uploaded"]


def test_metric_history_has_every_step(contract):
    assert contract.value("metric_history") == [
        [0, 0.5],
        [1, 0.25],
        [2, 0.125],
        [3, 0.0625],
    ]


def test_log_batch_stores_metrics_params_and_tags(contract):
    batch = contract.value("log_batch")
    assert batch["params"] == {"alpha": "0.5", "solver": "lbfgs"}
    assert batch["tags"] == {"team": "churn", "stage": "exp"}
    assert batch["metrics"] == {"rmse": 0.2}
    assert batch["history"] == [[i, 1.0 / (i + 1)] for i in range(5)]


def test_a_pytorch_network_logs_and_loads_back(contract):
    net = contract.value("pytorch")
    assert net["model_uri"].startswith("models:/m-")
    assert net["torch_equal"] is True
    assert net["pyfunc_equal"] is True
    assert net["shape"] == [10, 2]


def test_a_bad_argument_raises_the_servers_error_without_retrying(contract, server):
    failed = contract.value("bad_arguments")["get_run"]
    # RestException: the MlflowException a client raises from a server's JSON error body.
    assert failed["raised"] == "RestException" and failed["is_mlflow_exception"] is True
    assert failed["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # The same request from here: a 404 with MLflow's error body (a 500 would be retried).
    import httpx2

    response = httpx2.get(f"{server.url}/api/2.0/mlflow/runs/get", params={"run_id": "nonexistent"})
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "nonexistent" in response.json()["message"]
    # MLflow's RestException puts the code before the server's message.
    assert failed["message"] == f"RESOURCE_DOES_NOT_EXIST: {response.json()['message']}"


def test_a_missing_version_and_a_bad_filter_are_the_servers_errors(contract):
    failed = contract.value("bad_arguments")
    missing, bad_filter = failed["get_model_version"], failed["search_filter"]
    assert missing["raised"] == "RestException"
    assert missing["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert MODEL in missing["message"] and "99" in missing["message"]
    assert bad_filter["raised"] == "RestException"
    assert bad_filter["error_code"] == "INVALID_PARAMETER_VALUE"
    assert ">>>" in bad_filter["message"]


def test_modelpack_loads_what_the_mlflow_client_registered(contract, server, monkeypatch, tmp_path):
    """Version 1, which MLflow logged as a LoggedModel, loads through modelpack's own client of
    the server and predicts what the forest predicted in MLflow's process; so do the version in
    Production (2) and the alias (1) that the MLflow client set."""
    contract.value("stages")
    contract.value("alias")
    monkeypatch.setenv("MODELPACK_TRACKING_URI", server.url)
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELPACK_ARTIFACT_ROOT", raising=False)
    import modelpack

    try:
        first = modelpack.load(f"models:/{MODEL}/1")
        production = modelpack.load(f"models:/{MODEL}/Production")  # version 2
        champion = modelpack.load(f"models:/{MODEL}@champion")  # version 1
    finally:  # the process's kept-alive connection to this module's server ends with it
        from modelpack.store.rest import shared_transport

        shared_transport(server.url).close()
    expected = contract.value("expected")
    for pack in (first, production, champion):
        assert np.asarray(pack.predict(_frame())).tolist() == expected
    assert champion.path == first.path  # the same package, from the same cache entry


def _frame():
    """The script's frame (the same seed and columns), built here for modelpack's predict."""
    import pandas as pd
    from sklearn.datasets import make_classification

    X, _ = make_classification(n_samples=60, n_features=4, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c", "d"])
