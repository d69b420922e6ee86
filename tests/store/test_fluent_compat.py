"""MLflow's fluent calls with MLflow's arguments and return shapes (MLFLOW_COMPAT.md §4)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.errors import AlreadyExists, InvalidArgument, MissingDependency, NotFound


def _artifact(run_id, path, tmp_path):
    return modelpack.Client().download_artifacts(run_id, path, tmp_path / "dl")


def test_set_experiment_returns_the_experiment_by_name_or_id(tracking_env):
    exp = modelpack.set_experiment("churn")
    assert exp.name == "churn" and exp.lifecycle_stage == "active"
    assert modelpack.set_experiment(experiment_name="churn").experiment_id == exp.experiment_id
    other = modelpack.create_experiment("other", tags={"team": "risk"})
    assert isinstance(other, str)
    assert modelpack.set_experiment(experiment_id=other).name == "other"
    with modelpack.start_run() as run:
        pass
    assert run.info.experiment_id == other
    with pytest.raises(NotFound, match="No experiment with id 'nope'"):
        modelpack.set_experiment(experiment_id="nope")
    with pytest.raises(InvalidArgument, match="exactly one of them"):
        modelpack.set_experiment()
    with pytest.raises(AlreadyExists, match="Experiment 'other' already exists"):
        modelpack.create_experiment("other")


def test_experiment_calls(tracking_env):
    a = modelpack.create_experiment("exp-a", tags={"team": "risk"})
    b = modelpack.create_experiment("exp-b")
    assert modelpack.get_experiment(a).tags == {"team": "risk"}
    assert modelpack.get_experiment_by_name("exp-b").experiment_id == b
    assert modelpack.get_experiment_by_name("missing") is None
    names = [e.name for e in modelpack.search_experiments()]
    assert names[:2] == ["exp-b", "exp-a"]  # newest first, as MLflow
    assert [e.name for e in modelpack.search_experiments(filter_string="tags.team = 'risk'")] == [
        "exp-a"
    ]
    assert [e.name for e in modelpack.search_experiments(filter_string="name LIKE 'exp-%'",
                                                         order_by=["name ASC"])] == [
        "exp-a", "exp-b"
    ]  # fmt: skip
    assert len(modelpack.search_experiments(max_results=1)) == 1
    modelpack.set_experiment("exp-a")
    with modelpack.start_run() as run:
        pass
    modelpack.delete_experiment(a)
    assert modelpack.get_experiment(a).lifecycle_stage == "deleted"
    assert "exp-a" not in [e.name for e in modelpack.search_experiments()]
    assert [e.name for e in modelpack.search_experiments(view_type=2)] == ["exp-a"]  # MLflow's int
    assert modelpack.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(InvalidArgument, match="Experiment 'exp-a' is deleted; restore it"):
        modelpack.start_run()
    modelpack.Client().restore_experiment(a)
    assert modelpack.get_run(run.info.run_id).info.lifecycle_stage == "active"
    with pytest.raises(InvalidArgument, match="this search has no metrics; filter on tags"):
        modelpack.search_experiments(filter_string="metrics.x > 1")
    with pytest.raises(InvalidArgument, match="view type must be ACTIVE_ONLY"):
        modelpack.search_experiments(view_type=7)


def test_start_run_resumes_a_run_by_id(tracking_env):
    with modelpack.start_run(run_name="first", description="baseline") as run:
        modelpack.log_metric("loss", 1.0, step=0)
    run_id = run.info.run_id
    ended = modelpack.get_run(run_id)
    assert ended.info.status == "FINISHED" and ended.info.end_time is not None
    assert ended.data.tags["modelpack.note.content"] == "baseline"
    with modelpack.start_run(run_id) as again:  # MLflow's first positional argument
        assert again.info.run_id == run_id
        assert modelpack.get_run(run_id).info.status == "RUNNING"
        assert modelpack.get_run(run_id).info.end_time is None
        modelpack.log_metric("loss", 0.5, step=1)
    resumed = modelpack.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    assert [m.value for m in modelpack.Client().get_metric_history(run_id, "loss")] == [1.0, 0.5]
    with pytest.raises(NotFound, match=r"No run with id 'churn' to resume.*experiment='churn'"):
        modelpack.start_run("churn")
    with modelpack.start_run(experiment="churn") as by_name:  # our keyword still works
        pass
    assert modelpack.get_experiment(by_name.info.experiment_id).name == "churn"
    with pytest.raises(InvalidArgument, match="belongs to experiment"):
        modelpack.start_run(run_id, experiment_id=by_name.info.experiment_id)


def test_end_run_status_last_active_run_and_nesting(tracking_env):
    run = modelpack.start_run()
    assert modelpack.last_active_run().info.run_id == run.info.run_id
    child = modelpack.start_run(nested=True)
    assert modelpack.get_run(child.info.run_id).info.parent_run_id == run.info.run_id
    modelpack.end_run(status="KILLED")
    modelpack.end_run(status="FAILED")
    assert modelpack.get_run(child.info.run_id).info.status == "KILLED"
    last = modelpack.last_active_run()
    assert last.info.run_id == run.info.run_id and last.info.status == "FAILED"
    assert modelpack.active_run() is None
    with pytest.raises(InvalidArgument, match="A run ends FINISHED, FAILED or KILLED"):
        with modelpack.start_run():
            modelpack.end_run(status="DONE")
    with pytest.raises(InvalidArgument, match="parent_run_id 'x' is not the active run"):
        with modelpack.start_run():
            modelpack.start_run(parent_run_id="x")
    with modelpack.start_run() as parent:
        pass
    with modelpack.start_run(parent_run_id=parent.info.run_id) as orphan:
        pass
    assert modelpack.get_run(orphan.info.run_id).info.parent_run_id == parent.info.run_id
    with pytest.raises(InvalidArgument, match="does not collect system metrics"):
        modelpack.start_run(log_system_metrics=True)


def test_logging_calls_with_mlflow_arguments(tracking_env):
    with modelpack.start_run() as run:
        assert modelpack.log_param("depth", 5) == 5  # MLflow returns the value
        modelpack.log_params({"lr": 0.1}, synchronous=True)
        modelpack.log_metric("acc", 0.5, 1, False, 1_700_000_000_000)  # MLflow's order
        modelpack.log_metric("acc", 0.7, step=2, timestamp=1_700_000_000_500)
        modelpack.log_metrics({"f1": 0.6, "auc": 0.8}, step=3)
        modelpack.set_tag("team", "risk")
        modelpack.set_tags({"a": 1, "b": "x"})
        modelpack.delete_tag("b")
        uri = modelpack.get_artifact_uri()
        assert uri == run.info.artifact_uri
        assert modelpack.get_artifact_uri("plots/a.png") == f"{uri}/plots/a.png"
        with pytest.raises(InvalidArgument, match="synchronous must be True, False or None"):
            modelpack.log_metric("acc", 0.1, 1, 1_700_000_000_000)  # a timestamp by position
        with pytest.raises(NotFound, match="has no tag 'b'"):
            modelpack.delete_tag("b")
    got = modelpack.get_run(run.info.run_id)
    assert got.data.params == {"depth": "5", "lr": "0.1"}
    assert got.data.metrics == {"acc": 0.7, "f1": 0.6, "auc": 0.8}
    assert {k: got.data.tags[k] for k in ("team", "a")} == {"team": "risk", "a": "1"}
    assert "b" not in got.data.tags
    history = modelpack.Client().get_metric_history(run.info.run_id, "acc")
    assert [(m.step, m.timestamp) for m in history] == [
        (1, 1_700_000_000_000),
        (2, 1_700_000_000_500),
    ]
    assert got.info.start_time_ms == round(got.info.start_time.timestamp() * 1000)
    assert (
        isinstance(got.info.start_time_ms, int) and got.info.end_time_ms >= got.info.start_time_ms
    )


def test_a_finished_run_refuses_and_says_what_mlflow_did(tracking_env):
    with modelpack.start_run() as run:
        pass
    rid = run.info.run_id
    with pytest.raises(
        InvalidArgument,
        match=rf"has ended \(FINISHED\).*start_run\(run_id='{rid}'\).*MLflow would have written",
    ):
        modelpack.log_metric("x", 1.0, run_id=rid)


def test_logging_without_a_run_starts_one_like_mlflow(tracking_env):
    modelpack.log_param("a", 1)
    modelpack.log_metric("m", 0.5)
    run = modelpack.active_run()
    assert run is not None
    got = modelpack.get_run(run.info.run_id)
    assert got.data.params == {"a": "1"} and got.data.metrics == {"m": 0.5}
    assert got.info.status == "RUNNING"
    modelpack.end_run()
    assert modelpack.get_run(run.info.run_id).info.status == "FINISHED"


@pytest.mark.parametrize(
    ("tail", "status"), [("", "FINISHED"), ("raise SystemError('x')", "FAILED")]
)
def test_a_run_started_by_a_log_call_ends_when_the_script_exits(tmp_path, tail, status):
    import subprocess
    import sys

    store = f"sqlite:///{tmp_path / 'store.db'}"
    script = tmp_path / "train.py"
    script.write_text(
        "import modelpack\n"
        "modelpack.log_param('alpha', 0.5)\n"
        "print(modelpack.active_run().info.run_id)\n" + tail + "\n"
    )
    env = {
        **os.environ,
        "MODELPACK_TRACKING_URI": store,
        "MODELPACK_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    run_id = done.stdout.strip().splitlines()[0]
    run = modelpack.Client(store, str(tmp_path / "artifacts")).get_run(run_id)
    assert run.info.status == status
    assert run.data.params == {"alpha": "0.5"}


def test_search_runs_is_a_dataframe_like_mlflow(tracking_env):
    modelpack.set_experiment("search")
    for i, acc in enumerate((0.5, 0.9)):
        with modelpack.start_run(run_name=f"r{i}"):
            modelpack.log_metric("acc", acc)
            modelpack.log_param("depth", i)
            if i:
                modelpack.set_tag("best", "yes")
    df = modelpack.search_runs(order_by=["metrics.acc DESC"])
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns[:6]) == [
        "run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"
    ]  # fmt: skip
    assert {"metrics.acc", "params.depth", "tags.best"} <= set(df.columns)
    assert df["metrics.acc"].tolist() == [0.9, 0.5]
    assert df["params.depth"].tolist() == ["1", "0"]
    assert df["tags.best"].iloc[0] == "yes" and pd.isna(df["tags.best"].iloc[1])
    assert str(df["start_time"].dtype).startswith("datetime64") and "UTC" in str(
        df["start_time"].dtype
    )
    assert df["status"].tolist() == ["FINISHED", "FINISHED"]
    runs = modelpack.search_runs(filter_string="metrics.acc > 0.6", output_format="list")
    assert [r.data.metrics["acc"] for r in runs] == [0.9]
    assert len(modelpack.search_runs(max_results=1)) == 1
    assert modelpack.search_runs(experiment_names=["missing"]).empty
    modelpack.set_experiment("elsewhere")
    assert modelpack.search_runs().empty and list(modelpack.search_runs().columns[:2]) == [
        "run_id", "experiment_id"
    ]  # fmt: skip
    assert len(modelpack.search_runs(search_all_experiments=True)) == 2
    assert len(modelpack.search_runs(experiment_names=["search"])) == 2
    with pytest.raises(InvalidArgument, match="output_format must be 'pandas' or 'list'"):
        modelpack.search_runs(output_format="json")
    with pytest.raises(InvalidArgument, match="are lists"):
        modelpack.search_runs(experiment_ids="123")


def test_log_text_dict_and_table(tracking_env, tmp_path):
    with modelpack.start_run() as run:
        modelpack.log_text("hello", "notes/readme.txt")
        modelpack.log_dict({"a": 1, "b": [1, 2]}, "config.json")
        modelpack.log_dict({"a": 1, "b": [1, 2]}, "config/params.yaml")
        modelpack.log_table({"x": [1, 2], "y": ["a", "b"]}, artifact_file="tables/t.json")
        modelpack.log_table(pd.DataFrame({"x": [3], "y": ["c"]}), artifact_file="tables/t.json")
        with pytest.raises(InvalidArgument, match="must end in .json"):
            modelpack.log_table({"x": [1]}, artifact_file="t.csv")
        with pytest.raises(InvalidArgument, match="log_text takes a str"):
            modelpack.log_text(3, "x.txt")
        with pytest.raises(InvalidArgument, match="names a folder"):
            modelpack.log_text("x", "notes/")
    rid = run.info.run_id
    assert _artifact(rid, "notes/readme.txt", tmp_path).read_text() == "hello"
    assert json.loads(_artifact(rid, "config.json", tmp_path).read_text()) == {"a": 1, "b": [1, 2]}
    assert yaml.safe_load(_artifact(rid, "config/params.yaml", tmp_path).read_text()) == {
        "a": 1,
        "b": [1, 2],
    }
    table = json.loads(_artifact(rid, "tables/t.json", tmp_path).read_text())
    assert table == {"columns": ["x", "y"], "data": [[1, "a"], [2, "b"], [3, "c"]]}
    tags = modelpack.get_run(rid).data.tags
    assert json.loads(tags["modelpack.loggedArtifacts"]) == [
        {"path": "tables/t.json", "type": "table"}
    ]


def test_log_figure_matplotlib_and_plotly(tracking_env, tmp_path):
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [2, 3])
    with modelpack.start_run() as run:
        modelpack.log_figure(fig, "plots/line.png")
        modelpack.log_figure(fig, "plots/line.svg")
        modelpack.log_figure(go.Figure(go.Scatter(x=[0, 1], y=[2, 3])), "plots/line.html")
        with pytest.raises(MissingDependency, match=r"needs kaleido.*artifact_file='plots/p.html'"):
            modelpack.log_figure(go.Figure(), "plots/p.png")
        with pytest.raises(InvalidArgument, match="takes a matplotlib or plotly Figure, got dict"):
            modelpack.log_figure({}, "x.png")
    rid = run.info.run_id
    assert _artifact(rid, "plots/line.png", tmp_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in _artifact(rid, "plots/line.svg", tmp_path).read_bytes()
    assert "plotly" in _artifact(rid, "plots/line.html", tmp_path).read_text()
    assert [f.path for f in modelpack.Client().list_artifacts(rid, "plots")] == [
        "plots/line.html",
        "plots/line.png",
        "plots/line.svg",
    ]


def test_log_image_arrays_and_pil(tracking_env, tmp_path):
    from PIL import Image

    gray = np.array([[0, 255], [128, 64]], dtype=np.uint8)
    rgb = np.zeros((2, 3, 3), dtype=np.float32)
    rgb[0, 0] = [1.0, 0.5, 0.0]
    with modelpack.start_run() as run:
        modelpack.log_image(gray, "images/gray.png")
        modelpack.log_image(rgb, artifact_file="images/rgb.png")
        modelpack.log_image(Image.new("RGBA", (4, 4)), "images/pil.png")
        modelpack.log_image(gray[:, :, None], key="train/sample", step=3)
        with pytest.raises(InvalidArgument, match=r"float pixels must be in \[0, 1\]"):
            modelpack.log_image(rgb * 2, "bad.png")
        with pytest.raises(InvalidArgument, match=r"HxWx4 \(RGBA\); got shape \(2, 2, 2\)"):
            modelpack.log_image(np.zeros((2, 2, 2), dtype=np.uint8), "bad.png")
        with pytest.raises(InvalidArgument, match="artifact_file alone, or key="):
            modelpack.log_image(gray, "x.png", key="k")
        with pytest.raises(InvalidArgument, match="needs artifact_file="):
            modelpack.log_image(gray)
    rid = run.info.run_id
    back = np.asarray(Image.open(_artifact(rid, "images/gray.png", tmp_path)))
    assert back.tolist() == gray.tolist()
    pixel = np.asarray(Image.open(_artifact(rid, "images/rgb.png", tmp_path)))[0, 0]
    assert pixel.tolist() == [255, 128, 0]
    series = [f.path for f in modelpack.Client().list_artifacts(rid, "images")]
    stepped = [p for p in series if p.startswith("images/train~sample+step+3+timestamp+")]
    assert len(stepped) == 2 and any(p.endswith("+compressed.webp") for p in stepped)


def test_download_artifacts_module_function(tracking_env, tmp_path):
    with modelpack.start_run() as run:
        modelpack.log_text("a", "dir/a.txt")
    rid = run.info.run_id
    got = modelpack.artifacts.download_artifacts(
        run_id=rid, artifact_path="dir", dst_path=tmp_path / "o"
    )
    assert (got / "a.txt").read_text() == "a"
    whole = modelpack.artifacts.download_artifacts(
        artifact_uri=f"{run.info.artifact_uri}/dir/a.txt", dst_path=tmp_path / "p"
    )
    assert whole.read_text() == "a"
    from modelpack import uris

    by_uri = modelpack.artifacts.download_artifacts(
        artifact_uri=uris.run_uri(rid, "dir"), dst_path=tmp_path / "q"
    )
    assert (by_uri / "a.txt").read_text() == "a"
    with pytest.raises(NotFound, match="No run with id 'nope'"):
        modelpack.artifacts.download_artifacts(run_id="nope")
    with pytest.raises(InvalidArgument, match="exactly one"):
        modelpack.artifacts.download_artifacts()


def test_tracking_uris_mlflow_accepts_and_modelpack_does_not(tracking_env, monkeypatch):
    for uri in ("file:./mlruns", "./mlruns"):
        with pytest.raises(InvalidArgument, match=r"SQLite, PostgreSQL.*modelpack import-mlflow"):
            modelpack.set_tracking_uri(uri)
    modelpack.set_tracking_uri("http://127.0.0.1:5000")  # a modelpack server
    assert modelpack.get_tracking_uri() == "http://127.0.0.1:5000"
    monkeypatch.delenv("MODELPACK_TRACKING_URI")
    modelpack.set_tracking_uri(tracking_env)
    assert modelpack.get_tracking_uri() == tracking_env
