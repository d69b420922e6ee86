"""``RestStore``: modelpack's API against a real ``modelpack server`` (uvicorn on a free loopback
port, in a thread; SQLite behind it), with the same results as against the database.

One server serves the module; each test makes its own experiments and models (names with a
fresh suffix), so the tests share nothing but the server.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from server_backend import start_server

import modelpack
from modelpack import resolution
from modelpack import transport as transport_module
from modelpack.entities import Dataset, DatasetInput, InputTag, Metric
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from modelpack.store import default_artifact_root, open_store
from modelpack.store import rest as rest_module
from modelpack.store.rest import RestStore


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(url, db_url, artifact_root)`` of a server started for this module."""
    from modelpack.store import engines

    root = tmp_path_factory.mktemp("rest-server")
    db = f"sqlite:///{root / 'store' / 'modelpack.db'}"
    url, stop = start_server(db, root / "artifacts")
    yield url, db, root / "artifacts"
    stop()
    engines.dispose(db)


@pytest.fixture
def url(server, monkeypatch, tmp_path):
    """The server's URL, set as the tracking URI of the fluent API (cache in tmp_path)."""
    monkeypatch.setenv("MODELPACK_TRACKING_URI", server[0])
    monkeypatch.delenv("MODELPACK_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("MODELPACK_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    yield server[0]
    while modelpack.active_run() is not None:
        modelpack.end_run()


@pytest.fixture
def client(url):
    return modelpack.Client(url)


@pytest.fixture
def sql(server):
    """The same store, opened directly: what the server's answers must equal."""
    return modelpack.Client(server[1], artifact_root=str(server[2]))


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_WHERE = ("artifact_uri", "artifact_location", "storage_location")


def plain(value):
    """Entities as dicts, without where their files are (the proxy's URL through the server,
    a path in the database): everything else must be equal."""
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in _WHERE}
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


# ---------------------------------------------------------------------------- opening


def test_http_uris_open_a_rest_store_whose_artifacts_are_the_proxy(url):
    store = open_store(url)
    assert isinstance(store, RestStore)
    proxy = f"{url}/api/2.0/mlflow-artifacts/artifacts"
    assert default_artifact_root(url) == default_artifact_root(url + "/") == proxy
    assert store.artifact_root == proxy
    assert modelpack.Client(url).store.url == url
    assert store.local_uri("mlflow-artifacts:/1/r/artifacts") == f"{proxy}/1/r/artifacts"
    assert store.public_uri(f"{proxy}/a%20b/c") == "mlflow-artifacts:/a b/c"
    assert store.local_uri("s3://bucket/x") == "s3://bucket/x"  # a server that does not proxy


# ---------------------------------------------------------------------------- experiments


def test_experiments_read_as_the_database_has_them(client, sql):
    name = fresh("exp")
    eid = client.create_experiment(name, tags={"team": "risk", "n": 3})
    got = client.get_experiment(eid)
    direct = sql.get_experiment(eid)
    assert got.name == direct.name == name
    assert got.tags == direct.tags == {"team": "risk", "n": "3"}
    assert got.creation_time == direct.creation_time
    assert got.artifact_location == f"{client.store.proxy_root}/{eid}"
    assert direct.artifact_location.endswith(f"/artifacts/{eid}")
    assert client.get_experiment_by_name(name) == got
    assert client.get_experiment_by_name(fresh("none")) is None
    assert client.get_experiment("0").name == "Default"  # MLflow's id, taken as it is
    with pytest.raises(AlreadyExists, match=name):
        client.create_experiment(name)

    client.rename_experiment(eid, name + "-renamed")
    client.set_experiment_tag(eid, "team", "fraud")
    assert client.get_experiment(eid).tags["team"] == "fraud"
    client.delete_experiment(eid)
    assert client.get_experiment(eid).lifecycle_stage == "deleted"
    with pytest.raises(InvalidArgument, match="already deleted"):
        client.delete_experiment(eid)
    client.restore_experiment(eid)
    assert sql.get_experiment(eid).name == name + "-renamed"
    assert sql.get_experiment(eid).lifecycle_stage == "active"


def test_experiment_search_pages_like_the_database(client, sql):
    tag = fresh("page")
    for i in range(5):
        client.create_experiment(f"{tag}-{i}", tags={"batch": tag})
    query = f"tags.batch = '{tag}'"
    first = client.search_experiments(max_results=2, filter_string=query)
    assert [e.name for e in first] == [f"{tag}-4", f"{tag}-3"]  # newest first
    names, token, pages = [e.name for e in first], first.token, 1
    while token and pages < 10:
        page = client.search_experiments(max_results=2, filter_string=query, page_token=token)
        names += [e.name for e in page]
        token, pages = page.token, pages + 1
    assert names == [e.name for e in sql.search_experiments(filter_string=query)]
    assert len(names) == 5 and pages == 3
    every = client.store.search_experiments()
    assert [e.name for e in every if e.tags.get("batch") == tag] == [f"{tag}-{i}" for i in range(5)]


# ---------------------------------------------------------------------------- runs


def test_runs_create_update_end_delete_restore_resume(client, sql):
    eid = client.create_experiment(fresh("runs"))
    parent = client.create_run(eid, run_name="parent", tags={"k": "v"})
    child = client.create_run(eid, run_name="child", parent_run_id=parent.info.run_id)
    run_id = child.info.run_id
    assert plain(child) == plain(sql.get_run(run_id))
    assert child.info.parent_run_id == parent.info.run_id
    assert child.data.tags == {}  # the server's derived mlflow.* tags are not the run's
    assert parent.data.tags == {"k": "v"}
    assert child.info.artifact_uri == f"{client.store.proxy_root}/{eid}/{run_id}/artifacts"

    client.update_run(run_id, name="renamed")
    client.set_tag(run_id, "t", 1)
    client.delete_tag(run_id, "t")
    with pytest.raises(NotFound, match="no tag 't'"):
        client.delete_tag(run_id, "t")
    client.set_terminated(run_id, "FAILED", end_time=1_800_000_000_000)
    ended = client.get_run(run_id)
    assert plain(ended) == plain(sql.get_run(run_id))
    assert (ended.info.status, ended.info.run_name) == ("FAILED", "renamed")
    assert ended.info.end_time_ms == 1_800_000_000_000
    with pytest.raises(InvalidArgument, match="has ended"):
        client.log_param(run_id, "p", 1)

    client.store.resume_run(run_id, "again")
    resumed = client.get_run(run_id)
    assert (resumed.info.status, resumed.info.run_name, resumed.info.end_time) == (
        "RUNNING",
        "again",
        None,
    )
    client.delete_run(run_id)
    assert sql.get_run(run_id).info.lifecycle_stage == "deleted"
    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "active"


def test_search_runs_with_or_and_parentheses(client, sql):
    eid = client.create_experiment(fresh("search"))
    ids = []
    for i in range(4):
        run = client.create_run(eid, run_name=f"r{i}")
        client.log_batch(run.info.run_id, metrics=[("acc", i / 4, None, 0)], params={"i": i})
        ids.append(run.info.run_id)
    query = "(metrics.acc > 0.6 OR params.i = '0') AND attributes.status = 'RUNNING'"
    order = ["metrics.acc DESC"]
    found = client.search_runs([eid], query, order_by=order)
    assert [r.info.run_id for r in found] == [ids[3], ids[0]]
    assert plain(found) == plain(sql.search_runs([eid], query, order_by=order))
    page = client.search_runs([eid], "", max_results=3, order_by=["attributes.run_name ASC"])
    rest = client.search_runs(
        [eid], "", max_results=3, order_by=["attributes.run_name ASC"], page_token=page.token
    )
    assert [r.info.run_name for r in page + rest] == ["r0", "r1", "r2", "r3"]
    assert rest.token is None
    frame = client.search_runs([eid], "params.i = '2'", output_format="pandas")
    assert list(frame["run_id"]) == [ids[2]]


# ---------------------------------------------------------------------------- logging


def test_log_batch_past_mlflows_limits_is_stored_whole(client, sql):
    run_id = client.create_run(client.create_experiment(fresh("batch"))).info.run_id
    metrics = [Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, i) for i in range(2500)]
    params = {f"p{i}": i for i in range(150)}
    tags = {f"t{i}": "x" * 500 for i in range(120)}
    client.store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    run = sql.get_run(run_id)
    assert run.data.params == {k: str(v) for k, v in params.items()}
    assert run.data.tags == tags
    assert sql.get_metric_history(run_id, "loss") == metrics
    assert plain(client.get_run(run_id)) == plain(run)


def test_an_idempotency_key_stores_a_retried_batch_once(client, sql):
    run_id = client.create_run(client.create_experiment(fresh("idem"))).info.run_id
    points = [Metric("m", float(i), 1_700_000_000_000, i) for i in range(3)]
    key = uuid.uuid4().hex
    client.store.log_batch(run_id, metrics=points, idempotency_key=key)
    client.store.log_batch(run_id, metrics=points, idempotency_key=key)  # a retry
    assert sql.get_metric_history(run_id, "m") == points
    many = [Metric("n", float(i), 1_700_000_000_000, i) for i in range(1500)]  # two requests
    client.store.log_batch(run_id, metrics=many, idempotency_key="k" * 64)
    client.store.log_batch(run_id, metrics=many, idempotency_key="k" * 64)
    assert len(sql.get_metric_history(run_id, "n")) == 1500
    with pytest.raises(InvalidArgument, match="idempotency_key"):
        client.store.log_batch(run_id, metrics=points, idempotency_key="k" * 65)


def test_metric_history_reads_every_page_and_nan_survives(client, sql, monkeypatch):
    monkeypatch.setattr(rest_module, "HISTORY_PAGE", 7)
    run_id = client.create_run(client.create_experiment(fresh("hist"))).info.run_id
    values = [float("nan"), float("inf"), float("-inf"), *range(20)]
    client.log_batch(run_id, metrics=[("v", v, 1_700_000_000_000, i) for i, v in enumerate(values)])
    history = client.get_metric_history(run_id, "v")
    assert len(history) == len(values) == len(sql.get_metric_history(run_id, "v"))
    assert math.isnan(history[0].value) and history[1].value == math.inf
    assert history[2].value == -math.inf and [m.value for m in history[3:]] == list(range(20))
    assert [m.step for m in history] == list(range(len(values)))


def test_log_inputs_round_trip(client, sql):
    run_id = client.create_run(client.create_experiment(fresh("inputs"))).info.run_id
    dataset = Dataset("train", "abc123", "local", '{"uri": "x"}', '{"cols": 2}', None)
    client.log_inputs(run_id, [DatasetInput(dataset, (InputTag("mlflow.data.context", "train"),))])
    assert plain(client.get_run(run_id).inputs) == plain(sql.get_run(run_id).inputs)
    assert client.get_run(run_id).inputs.dataset_inputs[0].dataset == dataset
    with pytest.raises(InvalidArgument, match="DatasetInput"):
        client.log_inputs(run_id, [dataset])


def test_artifacts_go_through_the_proxy(client, server, tmp_path):
    eid = client.create_experiment(fresh("art"))
    run_id = client.create_run(eid).info.run_id
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "b.txt").write_text("deep")
    client.log_artifact(run_id, tmp_path / "a.txt", "extra")
    client.log_artifacts(run_id, tmp_path / "tree", "dir")
    assert [f.path for f in client.list_artifacts(run_id)] == ["dir", "extra"]
    stored = server[2] / eid / run_id / "artifacts" / "dir" / "sub" / "b.txt"
    assert stored.read_text() == "deep"  # where the server keeps it
    back = client.download_artifacts(run_id, "", tmp_path / "back")
    assert (back / "extra" / "a.txt").read_text() == "hello"
    assert (back / "dir" / "sub" / "b.txt").read_text() == "deep"


# ---------------------------------------------------------------------------- models


def test_log_register_load_and_the_cache(url, client, sql, forest, xy, monkeypatch):
    from modelpack import proxy_artifacts

    name = fresh("Churn")
    X, _ = xy
    with modelpack.start_run(experiment=fresh("models")) as run:
        info = modelpack.log_model(forest, "model", registered_model_name=name)
    assert info.registered_model_version.version == 1
    logged = client.store.get_logged_model(run.info.run_id, "model")
    assert (logged.model_id, logged.manifest_sha256) == (
        sql.store.get_logged_model(run.info.run_id, "model").model_id,
        sql.store.get_logged_model(run.info.run_id, "model").manifest_sha256,
    )
    assert client.store.get_logged_model(run.info.run_id, "elsewhere") is None
    v1 = client.get_model_version(name, 1)
    assert v1 == client.get_model_version(name, "1")
    direct = sql.get_model_version(name, 1)
    assert (v1.source, v1.run_id, v1.manifest_sha256, v1.model_id) == (
        f"runs:/{run.info.run_id}/model",
        run.info.run_id,
        direct.manifest_sha256,
        direct.model_id,
    )
    assert v1.storage_location.startswith(f"{client.store.proxy_root}/registry/")
    expected = forest.predict(X[:5])

    downloads = []
    real = proxy_artifacts.ProxyArtifactStore.get_file

    def counted(self, src, local):
        downloads.append(src)
        return real(self, src, local)

    monkeypatch.setattr(proxy_artifacts.ProxyArtifactStore, "get_file", counted)
    assert (modelpack.load(f"models:/{name}/1").predict(X[:5]) == expected).all()
    assert downloads  # the first load downloaded the package into the cache
    downloads.clear()

    client.transition_model_version_stage(name, 1, "Production")
    client.set_registered_model_alias(name, "champion", 1)
    for uri in (f"models:/{name}/1", f"models:/{name}@champion", f"models:/{name}/Production"):
        assert (modelpack.load(uri).predict(X[:5]) == expected).all()
    assert downloads == []  # keyed by model_id + manifest sha256: nothing downloaded again
    path = resolution.resolve(f"models:/{name}/Production", client)
    assert path.name.startswith(f"{v1.model_id}-{v1.manifest_sha256[:16]}")
    # what `modelpack serve models:/...` and `modelpack predict` follow
    assert resolution.model_version(client, f"models:/{name}/Production").version == 1
    assert resolution.model_version(client, f"models:/{name}/latest").version == 1
    runs_path = resolution.resolve(f"runs:/{run.info.run_id}/model", client)
    assert (modelpack.load(runs_path).predict(X[:5]) == expected).all()


def test_modelpack_predict_follows_production_on_the_server(url, client, forest, xy, tmp_path):
    import pandas as pd

    from modelpack.cli import main

    name = fresh("Predict")
    modelpack.save(forest, tmp_path / "pkg")
    client.register_model(str(tmp_path / "pkg"), name)
    client.transition_model_version_stage(name, 1, "Production")
    X, _ = xy
    pd.DataFrame(X[:7]).to_csv(tmp_path / "in.csv", index=False)
    argv = ["predict", f"models:/{name}/Production", "-i", str(tmp_path / "in.csv")]
    assert main([*argv, "-o", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.iloc[:, -1]) == list(forest.predict(X[:7]))


def test_registering_a_local_package_uploads_it(client, sql, forest, xy, tmp_path, server):
    name = fresh("Local")
    modelpack.save(forest, tmp_path / "pkg")
    version = client.register_model(str(tmp_path / "pkg"), name, tags={"from": "disk"})
    assert version.version == 1 and version.tags == {"from": "disk"}
    assert version.source.startswith("mlflow-artifacts:/uploads/")
    assert plain(version) == plain(sql.get_model_version(name, 1))
    assert sql.get_model_version(name, 1).manifest_sha256 == version.manifest_sha256
    X, _ = xy
    assert (
        modelpack.load(client.resolve(f"models:/{name}/1")).predict(X[:3])
        == (forest.predict(X[:3]))
    ).all()
    copy = client.copy_model_version(f"models:/{name}/1", name + "-copy")
    assert (copy.version, copy.model_id, copy.tags) == (1, version.model_id, {"from": "disk"})


def test_every_registry_call(client, sql, forest, tmp_path):
    name = fresh("Reg")
    model = client.create_registered_model(name, tags={"a": "1"}, description="first")
    assert plain(model) == plain(sql.get_registered_model(name))
    with pytest.raises(AlreadyExists, match=name):
        client.create_registered_model(name)
    modelpack.save(forest, tmp_path / "pkg")
    for _ in range(3):
        client.register_model(str(tmp_path / "pkg"), name)
    client.set_registered_model_tag(name, "b", 2)
    client.delete_registered_model_tag(name, "a")
    assert client.update_registered_model(name, "second").description == "second"
    client.update_model_version(name, 2, "v2")
    client.set_model_version_tag(name, 2, "k", "v")
    client.set_model_version_tag(name, key="s", value="x", stage="None")
    client.delete_model_version_tag(name, 2, "k")
    client.transition_model_version_stage(name, 1, "Production")
    moved = client.transition_model_version_stage(
        name, 2, "production", archive_existing_versions=True, comment="better"
    )
    assert moved.stage == "Production" and client.get_model_version(name, 1).stage == "Archived"
    client.set_registered_model_alias(name, "champion", 3, comment="try")
    assert client.get_model_version_by_alias(name, "champion").version == 3
    assert [v.version for v in client.get_latest_versions(name, ["Production"])] == [2]
    assert plain(client.get_latest_versions(name)) == plain(sql.get_latest_versions(name))
    assert plain(client.get_registered_model(name)) == plain(sql.get_registered_model(name))
    query = f"name = '{name}'"
    assert plain(client.search_model_versions(query)) == plain(sql.search_model_versions(query))
    found = client.search_registered_models(f"name = '{name}'")
    assert [m.name for m in found] == [name]
    assert plain(found) == plain(sql.search_registered_models(query))
    assert client.get_model_version_download_uri(name, 2).startswith(client.store.proxy_root)
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(NotFound, match="no alias 'champion'"):
        client.get_model_version_by_alias(name, "champion")
    with pytest.raises(InvalidArgument, match="Production"):
        client.delete_model_version(name, 2)
    client.delete_model_version(name, 3)
    with pytest.raises(NotFound, match="no version 3"):
        client.get_model_version(name, 3)
    renamed = client.rename_registered_model(name, name + "-new")
    assert renamed.name == name + "-new"
    history = client.get_model_history(name + "-new")
    assert history == sql.get_model_history(name + "-new")
    assert [(h.action, h.version, h.to_value) for h in history if h.action == "stage"] == [
        ("stage", 1, "Production"),
        ("stage", 1, "Archived"),
        ("stage", 2, "Production"),
    ]
    assert {h.user_id for h in history} == {modelpack.run_context.current_user()}
    client.delete_registered_model(name + "-new", force=True)
    with pytest.raises(NotFound, match="does not exist"):
        client.get_registered_model(name + "-new")


# ---------------------------------------------------------------------------- errors


def test_errors_name_the_problem(client):
    with pytest.raises(NotFound, match=r"No run with id 'nope'"):
        client.get_run("nope")
    with pytest.raises(NotFound, match="does not exist"):
        client.get_model_version(fresh("Missing"), 1)
    with pytest.raises(InvalidArgument, match="run_id must be a non-empty string"):
        client.get_run("")


def test_a_server_that_is_down_is_named(monkeypatch):
    monkeypatch.setattr("modelpack.transport.RETRIES", 0)
    with socket_closed() as url:
        with pytest.raises(Unavailable) as caught:
            modelpack.Client(url).get_run("abc")
    assert url in str(caught.value) and "Is it running" in str(caught.value)


def socket_closed():
    """A URL on a loopback port nothing listens on."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        yield f"http://127.0.0.1:{port}"

    return closed()


def test_a_token_server_takes_the_environments_token(tmp_path, monkeypatch):
    from modelpack.errors import Unauthenticated
    from modelpack.store import auth, engines

    db = f"sqlite:///{tmp_path / 'store' / 'modelpack.db'}"
    url, stop = start_server(db, tmp_path / "artifacts", auth="token")
    try:
        _, secret = auth.create_token(open_store(db, str(tmp_path / "artifacts")), "ana", "admin")
        for name in transport_module._CREDENTIALS:
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(Unauthenticated, match="MODELPACK_TRACKING_TOKEN"):
            modelpack.Client(url).create_experiment("locked")
        monkeypatch.setenv("MODELPACK_TRACKING_TOKEN", secret)  # a later token is used
        client = modelpack.Client(url)
        run = client.create_run(client.create_experiment("open"))
        assert run.info.user_id == "ana"
        client.create_registered_model("Tok")
        client.rename_registered_model("Tok", "Tok2")
        assert [h.user_id for h in client.get_model_history("Tok2")] == ["ana"]
    finally:
        stop()
        engines.dispose(db)


def test_download_artifacts_of_a_run_asks_the_server_for_its_location(client, url, tmp_path):
    from modelpack.artifacts import download_artifacts

    run = client.create_run(client.create_experiment(f"dl-{uuid.uuid4().hex[:6]}"))
    note = tmp_path / "note.txt"
    note.write_text("through the proxy")
    client.log_artifact(run.info.run_id, str(note), "docs")
    got = download_artifacts(run_id=run.info.run_id, artifact_path="docs/note.txt",
                             dst_path=str(tmp_path / "out"))  # fmt: skip
    assert Path(got).read_text() == "through the proxy"


def test_import_mlflow_into_a_server_is_refused_naming_what_to_do_instead(client, tmp_path):
    from modelpack.mlflow_store import import_mlflow

    (tmp_path / "mlruns").mkdir()
    with pytest.raises(InvalidArgument, match="import into the server's own store instead"):
        import_mlflow(str(tmp_path / "mlruns"), client)
