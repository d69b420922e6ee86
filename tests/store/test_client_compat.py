"""``Client`` / ``MlflowClient`` with MLflow's signatures (MLFLOW_COMPAT.md §4)."""

from __future__ import annotations

import pytest

import modelpack
from modelpack.entities import Metric, Param, RunTag, ViewType
from modelpack.errors import InvalidArgument, NotFound


@pytest.fixture
def logged(client, forest, xy):
    """A run with a logged model, and the model registered as version 1 of 'Churn'."""
    eid = client.create_experiment("compat")
    run = client.create_run(eid, tags={"team": "risk"}, run_name="r")
    client.log_model(run.info.run_id, forest, "model", input_example=xy[0][:2])
    return run.info.run_id


def test_mlflow_client_takes_mlflows_positional_arguments(store_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    client = modelpack.MlflowClient(store_url, store_url)  # (tracking_uri, registry_uri)
    assert isinstance(client, modelpack.Client) and client.tracking_uri == store_url
    assert modelpack.MlflowClient(tracking_uri=store_url).create_experiment("e")
    with pytest.raises(InvalidArgument, match="modelpack keeps the model registry in the tracking"):
        modelpack.MlflowClient(store_url, "sqlite:///elsewhere.db")


def test_runs_with_mlflow_signatures(client):
    eid = client.create_experiment("runs")
    run = client.create_run(eid, 1_700_000_000_000, {"k": "v"}, "named")
    assert run.info.start_time_ms == 1_700_000_000_000 and run.info.run_name == "named"
    rid = run.info.run_id
    assert client.log_param(rid, "p", 3) == 3
    client.log_metric(rid, "m", 1.5, 1_700_000_000_100, 2)
    client.log_batch(
        rid,
        metrics=[Metric("m", 2.5, 1_700_000_000_200, 3)],
        params=[Param("q", "x")],
        tags=[RunTag("t", "y")],
        synchronous=True,
    )
    client.set_tag(rid, "gone", "1")
    client.delete_tag(rid, "gone")
    client.update_run(rid, name="renamed")
    got = client.get_run(rid)
    assert got.info.run_name == "renamed"
    assert got.data.params == {"p": "3", "q": "x"}
    assert {k: got.data.tags[k] for k in ("k", "t")} == {"k": "v", "t": "y"}
    assert [(m.value, m.step) for m in client.get_metric_history(rid, "m")] == [(1.5, 2), (2.5, 3)]
    client.set_terminated(rid)  # MLflow's default status is FINISHED
    assert client.get_run(rid).info.status == "FINISHED"
    with pytest.raises(InvalidArgument, match="start_time is milliseconds since the epoch"):
        client.create_run(eid, "now")
    with pytest.raises(InvalidArgument, match="expected Param/RunTag objects or"):
        client.log_batch(client.create_run(eid).info.run_id, params=[1])


def test_search_runs_returns_a_paged_list(client):
    eid = client.create_experiment("paged")
    for i in range(3):
        run = client.create_run(eid, run_name=f"r{i}")
        client.log_metric(run.info.run_id, "acc", i / 10)
    page = client.search_runs([eid], "", ViewType.ACTIVE_ONLY, 2, ["metrics.acc DESC"])
    assert isinstance(page, list) and [r.data.metrics["acc"] for r in page] == [0.2, 0.1]
    rest = client.search_runs([eid], "", 1, 2, ["metrics.acc DESC"], page.token)  # MLflow's int
    assert [r.data.metrics["acc"] for r in rest] == [0.0] and rest.token is None
    assert client.search_runs([eid], "metrics.acc > 0.15")[0].info.run_name == "r2"


def test_experiments_with_mlflow_signatures(client):
    a = client.create_experiment("a", tags={"x": "1"})
    b = client.create_experiment("b")
    page = client.search_experiments(max_results=1)
    assert [e.name for e in page] == ["b"] and page.token
    assert [e.name for e in client.search_experiments(page_token=page.token)] == ["a"]
    client.set_experiment_tag(b, "y", "2")
    client.rename_experiment(b, "b2")
    assert client.get_experiment_by_name("b2").tags == {"y": "2"}
    client.delete_experiment(a)
    assert [e.name for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)] == ["a"]
    with pytest.raises(InvalidArgument, match="Experiment 'a' is already deleted"):
        client.delete_experiment(a)


def test_artifacts_list_and_download(client, tmp_path):
    rid = client.create_run(client.create_experiment("art")).info.run_id
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("abc")
    client.log_artifacts(rid, tmp_path / "d", "out")
    infos = client.list_artifacts(rid)
    assert [(f.path, f.is_dir, f.file_size) for f in infos] == [("out", True, None)]
    inner = client.list_artifacts(rid, "out")
    assert [(f.path, f.is_dir, f.file_size) for f in inner] == [("out/f.txt", False, 3)]
    got = client.download_artifacts(rid, "out/f.txt", tmp_path / "dl")
    assert got.read_text() == "abc"


def test_registry_calls_with_mlflow_signatures(client, logged):
    from modelpack import uris

    v1 = client.create_model_version("Churn", uris.run_uri(logged, "model"), logged,
                                      tags={"t": "1"}, description="first")  # fmt: skip
    assert (v1.version, v1.run_id, v1.tags, v1.description) == (1, logged, {"t": "1"}, "first")
    v2 = client.create_model_version("Churn", uris.run_uri(logged, "model"))
    assert v2.version == 2 and v2.run_id == logged
    client.transition_model_version_stage("Churn", 1, "Production")
    assert [v.version for v in client.get_latest_versions("Churn", stages=["Production"])] == [1]
    assert sorted(v.version for v in client.get_latest_versions("Churn")) == [1, 2]
    client.set_registered_model_alias("Churn", "champion", 2)
    assert client.get_model_version_by_alias("Churn", "champion").version == 2
    client.delete_registered_model_alias("Churn", "champion")
    with pytest.raises(NotFound):
        client.get_model_version_by_alias("Churn", "champion")
    client.set_model_version_tag("Churn", "2", "k", "v")
    client.set_model_version_tag("Churn", key="s", value="p", stage="Production")
    assert client.get_model_version("Churn", 1).tags == {"t": "1", "s": "p"}
    assert client.update_model_version("Churn", 2, description="second").description == "second"
    with pytest.raises(InvalidArgument, match="pass description="):
        client.update_model_version("Churn", 2)
    with pytest.raises(InvalidArgument, match="by version= or by stage=, not both"):
        client.set_model_version_tag("Churn", 1, "k", "v", stage="Production")
    copy = client.copy_model_version(uris.model_uri("Churn", 1), "ChurnCopy")
    assert (copy.name, copy.version, copy.run_id, copy.tags["t"]) == ("ChurnCopy", 1, logged, "1")
    assert (client.resolve(copy.uri) / "modelpack.yaml").is_file()
    client.rename_registered_model("ChurnCopy", "ChurnArchive")
    assert client.get_registered_model("ChurnArchive").name == "ChurnArchive"
    assert client.get_model_version_download_uri("Churn", 1).startswith(client.artifact_root)
    with pytest.raises(InvalidArgument, match="run_link is not recorded by modelpack"):
        client.create_model_version("Churn", uris.run_uri(logged, "model"), run_link="http://x")
    with pytest.raises(NotFound, match="No run with id 'nope'"):
        client.create_model_version("Churn", uris.run_uri(logged, "model"), run_id="nope")
    with pytest.raises(InvalidArgument, match="copies a registered version"):
        client.copy_model_version(uris.run_uri(logged, "model"), "X")
