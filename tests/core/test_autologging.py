"""modelpack.autolog() / modelpack.sklearn.autolog(): what a scikit-learn fit logs, on SQLite and
PostgreSQL; that the logging never breaks the fit; and the logged keys against MLflow 3.17.2's."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from tolerances import FLOAT64

import modelpack
from modelpack import autologging
from modelpack.errors import InvalidArgument

SPLIT = 60  # rows of the classification fixture used for the fits (kept small: fast)


@pytest.fixture
def autolog(tracking_env):
    """Autologging on for one test; scikit-learn's own methods are back afterwards."""
    modelpack.sklearn.autolog()
    yield autologging.autolog_sklearn
    autologging.autolog_sklearn(disable=True)


@pytest.fixture
def data(xy):
    X, y = xy
    return X[:SPLIT], y[:SPLIT]


def runs(**kwargs):
    return list(modelpack.Client().search_runs(**kwargs))


def only_run():
    found = runs()
    assert len(found) == 1, [r.data.tags.get("estimator_name") for r in found]
    return found[0]


def stringified(params):
    return {k: str(v) for k, v in params.items()}


def test_a_classifier_fit_logs_params_metrics_tags_model_and_data(autolog, data):
    from sklearn import metrics
    from sklearn.ensemble import RandomForestClassifier

    X, y = data
    model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)
    assert model.fit(X, y) is model
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params == stringified(model.get_params(deep=True))
    assert run.data.tags["estimator_name"] == "RandomForestClassifier"
    assert run.data.tags["estimator_class"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert run.data.tags["modelpack.autologging"] == "sklearn"

    pred, proba = model.predict(X), model.predict_proba(X)
    expected = {
        "training_score": model.score(X, y),
        "training_accuracy_score": metrics.accuracy_score(y, pred),
        "training_precision_score": metrics.precision_score(y, pred, average="weighted"),
        "training_recall_score": metrics.recall_score(y, pred, average="weighted"),
        "training_f1_score": metrics.f1_score(y, pred, average="weighted"),
        "training_log_loss": metrics.log_loss(y, proba),
        "training_roc_auc": metrics.roc_auc_score(y, proba[:, 1]),
    }
    assert set(run.data.metrics) == set(expected)
    for key, value in expected.items():
        assert_allclose(run.data.metrics[key], value, **FLOAT64, err_msg=key)

    uri = f"runs:/{run.info.run_id}/model"
    package = modelpack.load(uri)
    np.testing.assert_array_equal(package.predict(X), pred)
    np.testing.assert_array_equal(package.input_example(), X[:5])
    assert package.signature is not None
    assert package.signature.inputs is not None
    np.testing.assert_array_equal(modelpack.sklearn.load_model(uri).predict_proba(X), proba)

    (used,) = run.inputs.dataset_inputs
    assert {t.key: t.value for t in used.tags} == {"mlflow.data.context": "train"}
    assert used.dataset.digest == modelpack.data.from_numpy(X, targets=y).digest
    artifacts = {f.path for f in modelpack.Client().list_artifacts(run.info.run_id)}
    assert artifacts == {"estimator.html", "model"}


def test_a_regressor_on_a_frame_logs_regression_metrics(autolog, frame, xy):
    from sklearn import metrics
    from sklearn.linear_model import Ridge

    X, target = frame.iloc[:SPLIT], xy[0][:SPLIT, 0] * 3.0 + 1.0
    weights = np.linspace(0.5, 1.5, SPLIT)
    model = Ridge(alpha=0.3).fit(X, target, sample_weight=weights)
    run = only_run()
    pred = model.predict(X)
    mse = metrics.mean_squared_error(target, pred, sample_weight=weights)
    expected = {
        "training_score": model.score(X, target, sample_weight=weights),
        "training_mean_squared_error": mse,
        "training_root_mean_squared_error": np.sqrt(mse),
        "training_mean_absolute_error": metrics.mean_absolute_error(
            target, pred, sample_weight=weights
        ),
        "training_r2_score": metrics.r2_score(target, pred, sample_weight=weights),
    }
    assert set(run.data.metrics) == set(expected)
    for key, value in expected.items():
        assert_allclose(run.data.metrics[key], value, **FLOAT64, err_msg=key)
    package = modelpack.load(f"runs:/{run.info.run_id}/model")
    assert_allclose(package.predict(X), pred, **FLOAT64)
    example = package.input_example()  # decoded as column -> values
    assert {k: list(v) for k, v in example.items()} == X.iloc[:5].to_dict(orient="list")
    assert [c.name for c in package.signature.inputs.columns] == list(X.columns)
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.digest == modelpack.data.from_pandas(X).digest


def test_a_pipeline_logs_once_with_its_steps_params(autolog, data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = data
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5))])
    pipe.fit(X, y)
    run = only_run()  # the steps' own fits logged nothing
    assert run.data.tags["estimator_name"] == "Pipeline"
    assert run.data.params == stringified(pipe.get_params(deep=True))
    assert run.data.params["clf__C"] == "0.5"
    assert_allclose(run.data.metrics["training_score"], pipe.score(X, y), **FLOAT64)
    loaded = modelpack.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))


def test_inner_fits_of_meta_estimators_and_cross_validation_do_not_log(autolog, data):
    from sklearn.ensemble import BaggingClassifier
    from sklearn.model_selection import cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    X, y = data
    BaggingClassifier(DecisionTreeClassifier(), n_estimators=3, random_state=0).fit(X, y)
    assert only_run().data.tags["estimator_name"] == "BaggingClassifier"
    scores = cross_val_score(DecisionTreeClassifier(random_state=0), X, y, cv=3)
    assert len(scores) == 3
    assert len(runs()) == 1  # nothing for cross_val_score's three fits
    # Transformers alone are data preparation, as in MLflow: not logged.
    from sklearn.preprocessing import StandardScaler

    StandardScaler().fit_transform(X)
    assert len(runs()) == 1


def test_a_grid_search_logs_the_best_and_a_child_run_per_candidate(autolog, data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X, y = data
    autolog(max_tuning_runs=2)
    search = GridSearchCV(LogisticRegression(), {"C": [0.01, 0.1, 1.0]}, cv=3).fit(X, y)
    (parent,) = [r for r in runs() if r.data.tags["estimator_name"] == "GridSearchCV"]
    children = [r for r in runs() if r is not parent and r.info.run_id != parent.info.run_id]
    assert len(children) == 2
    assert parent.data.params["best_C"] == str(search.best_params_["C"])
    assert parent.data.params == {
        **stringified(search.get_params(deep=False)),
        "best_C": str(search.best_params_["C"]),
    }
    assert_allclose(parent.data.metrics["best_cv_score"], search.best_score_, **FLOAT64)
    results = search.cv_results_
    best_two = [results["params"][i]["C"] for i in np.argsort(results["rank_test_score"])[:2]]
    seed = stringified(search.estimator.get_params(deep=True))
    for child in children:
        assert child.data.tags["modelpack.parentRunId"] == parent.info.run_id
        assert child.data.tags["estimator_name"] == "LogisticRegression"
        assert child.info.status == "FINISHED"
        c = float(child.data.params["C"])
        assert child.data.params == {**seed, "C": str(c)}
        i = [p["C"] for p in results["params"]].index(c)
        assert child.data.metrics["rank_test_score"] == results["rank_test_score"][i]
        assert_allclose(child.data.metrics["mean_test_score"], results["mean_test_score"][i])
        assert not any(k.startswith(("split", "param")) for k in child.data.metrics)
    assert sorted(float(c.data.params["C"]) for c in children) == sorted(best_two)
    client = modelpack.Client()
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"best_estimator", "cv_results.csv", "estimator.html", "model"}
    best = modelpack.sklearn.load_model(f"runs:/{parent.info.run_id}/best_estimator")
    np.testing.assert_array_equal(best.predict(X), search.best_estimator_.predict(X))


def test_an_active_run_is_used_and_left_open(autolog, data):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    with modelpack.start_run() as active:
        LogisticRegression().fit(X, y)
        assert modelpack.active_run() is active
        run = modelpack.Client().get_run(active.info.run_id)
        assert run.info.status == "RUNNING"
        assert "training_score" in run.data.metrics
        assert "modelpack.autologging" not in run.data.tags  # a run the user started
    assert only_run().info.run_id == active.info.run_id


def test_exclusive_logs_nothing_into_the_users_run(autolog, data):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    autolog(exclusive=True)
    with modelpack.start_run() as active:
        LogisticRegression().fit(X, y)
    run = only_run()
    assert run.info.run_id == active.info.run_id
    assert run.data.params == {} and run.data.metrics == {}
    LogisticRegression().fit(X, y)  # outside a user's run: logs into its own
    assert len(runs()) == 2


def test_a_failing_store_is_one_warning_and_the_fit_still_returns(autolog, data, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    def broken(*args, **kwargs):
        raise modelpack.ModelpackError("the store is down")

    monkeypatch.setattr(modelpack.Client, "log_batch", broken)
    X, y = data
    model = LogisticRegression()
    with pytest.warns(UserWarning) as caught:
        assert model.fit(X, y) is model
    (warning,) = caught
    message = str(warning.message)
    assert message.startswith(
        "modelpack autologging could not log everything for LogisticRegression.fit(); "
        "the fit itself succeeded. Failed: log params and tags (ModelpackError: the store is "
        "down); log the training metrics (ModelpackError: the store is down)"
    )
    assert warning.filename == __file__  # points at the user's fit call
    np.testing.assert_array_equal(model.predict(X), model.predict(X))
    assert hasattr(model, "coef_")
    run = only_run()
    assert run.info.status == "FINISHED"  # the rest was still logged
    assert {f.path for f in modelpack.Client().list_artifacts(run.info.run_id)} == {
        "estimator.html",
        "model",
    }


def test_no_store_at_all_is_a_warning_too(tmp_path, monkeypatch, data):
    from sklearn.linear_model import LogisticRegression

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MODELPACK_TRACKING_URI", f"sqlite:///{blocker / 'store.db'}")
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    X, y = data
    modelpack.autolog()
    try:
        with pytest.warns(UserWarning, match=r"Failed: start a run \("):
            model = LogisticRegression().fit(X, y)
        assert hasattr(model, "coef_")
        autologging.autolog_sklearn(silent=True)
        LogisticRegression().fit(X, y)  # silent: no warning (warnings are errors here)
    finally:
        autologging.autolog_sklearn(disable=True)


def test_the_users_error_propagates_unchanged_and_fails_the_run(autolog, data, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    one_class = np.zeros(len(y), dtype=int)
    with pytest.raises(ValueError, match="at least 2 classes") as raised:
        LogisticRegression().fit(X, one_class)
    # The innermost frame is scikit-learn's own (wherever the virtualenv lives), not ours.
    import sklearn

    sklearn_dir = Path(sklearn.__file__).parent
    assert Path(raised.traceback[-1].path).is_relative_to(sklearn_dir)
    run = only_run()
    assert run.info.status == "FAILED"
    assert run.data.params  # logged before the fit
    assert "training_score" not in run.data.metrics

    # A broken store as well: the user's exception still wins over autologging's warning,
    # even with warnings turned into errors (as in this test suite).
    monkeypatch.setattr(modelpack.Client, "log_batch", lambda *a, **k: 1 / 0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogisticRegression().fit(X, one_class)


def test_disable_restores_the_original_methods(tracking_env, data):
    from sklearn.base import TransformerMixin
    from sklearn.ensemble._forest import BaseForest
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    originals = [
        LogisticRegression.__dict__["fit"],
        BaseForest.__dict__["fit"],
        TransformerMixin.__dict__["fit_transform"],
    ]
    modelpack.autolog()
    try:
        assert LogisticRegression.__dict__["fit"] is not originals[0]
        # The patched methods look like the originals: signature, available_if's hasattr.
        assert "sample_weight" in inspect.signature(LogisticRegression().fit).parameters
        assert not hasattr(Pipeline([("clf", LogisticRegression())]), "fit_transform")
        modelpack.autolog(disable=True)
        assert LogisticRegression.__dict__["fit"] is originals[0]
        assert BaseForest.__dict__["fit"] is originals[1]
        assert TransformerMixin.__dict__["fit_transform"] is originals[2]
        LogisticRegression().fit(*data)
        assert runs() == []
    finally:
        autologging.autolog_sklearn(disable=True)


def test_options_change_what_is_logged(autolog, data):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    autolog(log_models=False, log_datasets=False, extra_tags={"team": "churn"})
    LogisticRegression().fit(X, y)
    run = only_run()
    assert run.data.tags["team"] == "churn"
    assert run.inputs.dataset_inputs == ()
    assert {f.path for f in modelpack.Client().list_artifacts(run.info.run_id)} == {
        "estimator.html"
    }

    autolog(log_input_examples=False, registered_model_name="AutoChurn")
    with modelpack.start_run() as active:
        LogisticRegression().fit(X, y)
    package = modelpack.load(f"runs:/{active.info.run_id}/model")
    assert package.input_example() is None
    assert package.signature is not None and package.signature.inputs is not None
    assert modelpack.load("models:/AutoChurn/1").predict(X).tolist() == package.predict(X).tolist()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tuning_runs": -1}, "max_tuning_runs must be 0 or more, got -1"),
        ({"max_tuning_runs": 2.5}, "max_tuning_runs must be a whole number or None"),
        ({"serialization_format": "joblib"}, "Unknown serialization_format 'joblib'"),
        ({"log_post_training_metrics": True}, "a finished run refuses new metrics"),
        ({"extra_tags": ["x"]}, "extra_tags must be a dict, got list"),
        ({"extra_tags": {"modelpack.autologging": "x"}}, "autologging sets it"),
    ],
)
def test_bad_options_are_refused(tracking_env, options, message):
    with pytest.raises(InvalidArgument, match=message):
        autologging.autolog_sklearn(**options)
    assert autologging._STATE.options is None  # nothing was turned on


def test_autolog_excludes_flavors_and_checks_the_list(tracking_env, data):
    from sklearn.linear_model import LogisticRegression

    modelpack.autolog(exclude_flavors=["sklearn", "tensorflow"])
    LogisticRegression().fit(*data)
    assert runs() == []
    with pytest.raises(InvalidArgument, match="exclude_flavors must be a list of names"):
        modelpack.autolog(exclude_flavors="sklearn")


def test_without_sklearn_autolog_skips_it_and_sklearn_autolog_says_what_to_install(
    tracking_env, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    modelpack.autolog()  # nothing installed to autolog: nothing to do
    assert autologging._STATE.options is None
    with pytest.raises(modelpack.MissingDependency, match=r"pip install 'modelpack\[sklearn\]'"):
        modelpack.sklearn.autolog()


# ---------------------------------------------------------------------------- against MLflow

MLFLOW_SCRIPT = """
import json, sys
import numpy as np
import mlflow
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

mlflow.set_tracking_uri(sys.argv[1])
# Models are left out: MLflow 3 keeps them outside the run (logged models), and inferring
# their requirements costs ~8 s each; the keys compared here do not depend on them.
mlflow.sklearn.autolog(log_models=False)
X, y = make_classification(n_samples=60, n_features=6, random_state=0)
fits = {
    "forest": lambda: RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
    "linear": lambda: LinearRegression().fit(X, X[:, 0] * 2.0),
    "pipeline": lambda: Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y),
    "search": lambda: GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(X, y),
}
client = mlflow.MlflowClient()
out = {}
for name, fit in fits.items():
    with mlflow.start_run() as run:
        fit()
    data = client.get_run(run.info.run_id).data
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    out[name] = {
        "params": sorted(data.params),
        "metrics": sorted(data.metrics),
        "tags": sorted(k for k in data.tags if not k.startswith("mlflow.")),
        "artifacts": sorted(f.path for f in client.list_artifacts(run.info.run_id)),
        "children": len(children),
        "child_metrics": sorted(children[0].data.metrics) if children else [],
    }
print(json.dumps(out))
"""

# What MLflow logs that modelpack does not: matplotlib plots of the training predictions.
MLFLOW_ONLY_ARTIFACTS = {
    "training_confusion_matrix.png",
    "training_precision_recall_curve.png",
    "training_roc_curve.png",
}


@pytest.fixture(scope="module")
def mlflow_keys(mlflow_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-autolog")
    return mlflow_env.json(MLFLOW_SCRIPT, f"sqlite:///{tmp / 'mlflow.db'}", cwd=tmp)


def test_the_logged_keys_match_mlflow_autolog(mlflow_keys, autolog):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=60, n_features=6, random_state=0)
    fits = {
        "forest": lambda: RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
        "linear": lambda: LinearRegression().fit(X, X[:, 0] * 2.0),
        "pipeline": lambda: Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression())]
        ).fit(X, y),
        "search": lambda: GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(X, y),
    }
    client = modelpack.Client()
    for name, fit in fits.items():
        with modelpack.start_run() as run:
            fit()
        data = client.get_run(run.info.run_id).data
        children = [
            r for r in runs() if r.data.tags.get("modelpack.parentRunId") == run.info.run_id
        ]
        ours = {
            "params": sorted(data.params),
            "metrics": sorted(data.metrics),
            "tags": sorted(k for k in data.tags if not k.startswith(("mlflow.", "modelpack."))),
            "children": len(children),
            "child_metrics": sorted(children[0].data.metrics) if children else [],
        }
        theirs = dict(mlflow_keys[name])
        # MLflow 3 keeps models outside the run's artifacts (logged models); ours are in them.
        their_artifacts = set(theirs.pop("artifacts")) - MLFLOW_ONLY_ARTIFACTS
        assert ours == theirs, json.dumps({"ours": ours, "mlflow": theirs}, indent=1)
        our_artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert their_artifacts == our_artifacts - {"model", "best_estimator"}, name
