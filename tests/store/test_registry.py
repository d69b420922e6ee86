"""Registry contract: versions, stages, aliases, tags, history, deletion, models:/ URIs — on
SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

import modelpack
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound


@pytest.fixture
def package(tmp_path_factory, forest, xy):
    path = tmp_path_factory.mktemp("pkg") / "rf"
    modelpack.save(forest, path, input_example=xy[0][:3])
    return str(path)


@pytest.fixture
def churn(client, package):
    for _ in range(3):
        client.register_model(package, "Churn")
    return "Churn"


def test_register_copies_into_registry_storage(client, package, tmp_path):
    mv = client.register_model(package, "Churn", tags={"owner": "ana"}, description="first")
    assert (mv.name, mv.version, mv.stage, mv.aliases) == ("Churn", 1, "None", ())
    assert mv.tags == {"owner": "ana"} and mv.description == "first" and mv.source == package
    assert mv.model_id == modelpack.verify(package).model_id
    assert mv.storage_location.startswith(str(tmp_path / "artifacts" / "registry"))
    assert "Churn" not in mv.storage_location  # storage paths are opaque ids, not names
    modelpack.verify(mv.storage_location)
    assert client.register_model(package, "Churn").version == 2


def test_registering_a_modified_package_is_refused(client, package):
    with open(f"{package}/requirements.txt", "a") as f:
        f.write("evil==1\n")
    with pytest.raises(modelpack.IntegrityError, match="requirements.txt"):
        client.register_model(package, "Churn")
    with pytest.raises(NotFound):
        client.get_registered_model("Churn")


def test_registered_models(client, churn):
    with pytest.raises(AlreadyExists, match="Registered model 'Churn' already exists"):
        client.create_registered_model("Churn")
    client.create_registered_model("Fraud", tags={"team": "risk"}, description="fraud model")
    client.update_registered_model("Churn", "predicts churn")
    client.set_registered_model_tag("Churn", "team", "growth")
    rm = client.get_registered_model("Churn")
    assert rm.description == "predicts churn" and rm.tags == {"team": "growth"}
    assert [(v.version, v.stage) for v in rm.latest_versions] == [(3, "None")]
    assert [m.name for m in client.search_registered_models()] == ["Churn", "Fraud"]
    assert [m.name for m in client.search_registered_models("name LIKE 'Fr%'")] == ["Fraud"]
    assert [m.name for m in client.search_registered_models("tags.team = 'risk'")] == ["Fraud"]
    with pytest.raises(InvalidArgument, match="metrics"):
        client.search_registered_models("metrics.x > 1")
    client.delete_registered_model_tag("Churn", "team")
    assert client.get_registered_model("Churn").tags == {}


def test_rename(client, churn):
    client.rename_registered_model("Churn", "Attrition")
    assert client.get_model_version("Attrition", 2).name == "Attrition"
    with pytest.raises(NotFound, match="Registered model 'Churn' does not exist"):
        client.get_registered_model("Churn")
    assert [h.action for h in client.get_model_history("Attrition")][-1] == "rename"


def test_versions_search_update_and_tags(client, churn):
    versions = client.search_model_versions("name = 'Churn'")
    assert [v.version for v in versions] == [3, 2, 1]
    assert [v.version for v in client.search_model_versions("name = 'Churn' and version_number "
                                                             "<= 2")] == [2, 1]  # fmt: skip
    client.update_model_version("Churn", 2, description="tuned")
    client.set_model_version_tag("Churn", 2, "validated", "yes")
    mv = client.get_model_version("Churn", "2")
    assert mv.description == "tuned" and mv.tags == {"validated": "yes"}
    assert [v.version for v in client.search_model_versions("tags.validated = 'yes'")] == [2]
    client.delete_model_version_tag("Churn", 2, "validated")
    assert client.get_model_version("Churn", 2).tags == {}
    with pytest.raises(NotFound, match=r"Registered model 'Churn' has no version 9\. Versions: "
                       r"1 \(None\), 2 \(None\), 3 \(None\)\."):  # fmt: skip
        client.get_model_version("Churn", 9)
    with pytest.raises(InvalidArgument, match="A version is a positive integer, got 'two'"):
        client.get_model_version("Churn", "two")


def test_stages_case_insensitive_archive_and_latest(client, churn):
    assert client.transition_model_version_stage("Churn", 1, "production").stage == "Production"
    client.transition_model_version_stage("Churn", 2, "STAGING")
    client.transition_model_version_stage("Churn", 3, "Production", archive_existing_versions=True,
                                          comment="better AUC")  # fmt: skip
    assert client.get_model_version("Churn", 1).stage == "Archived"
    latest = {v.stage: v.version for v in client.get_latest_versions("Churn")}
    assert latest == {"Staging": 2, "Production": 3, "Archived": 1}
    assert [v.version for v in client.get_latest_versions("Churn", ["production"])] == [3]
    with pytest.raises(InvalidArgument, match=r"Unknown stage 'Prod'\. Stages: None, Staging, "
                       r"Production, Archived\."):  # fmt: skip
        client.transition_model_version_stage("Churn", 1, "Prod")


def test_aliases(client, churn):
    client.set_registered_model_alias("Churn", "champion", 1)
    client.set_registered_model_alias("Churn", "challenger", 2)
    assert client.get_model_version_by_alias("Churn", "champion").version == 1
    client.set_registered_model_alias("Churn", "champion", 3)
    assert client.get_model_version("Churn", 3).aliases == ("champion",)
    assert client.get_registered_model("Churn").aliases == {"champion": 3, "challenger": 2}
    client.delete_registered_model_alias("Churn", "challenger")
    with pytest.raises(NotFound, match=r"has no alias 'challenger'\. Aliases: champion -> 3\."):
        client.get_model_version_by_alias("Churn", "challenger")
    for bad in ("latest", "v2", "7"):
        with pytest.raises(InvalidArgument, match="is reserved"):
            client.set_registered_model_alias("Churn", bad, 1)


def test_history_records_every_move(client, churn, monkeypatch):
    monkeypatch.setenv("MODELPACK_USER", "ana")
    client.transition_model_version_stage("Churn", 1, "Staging", comment="tests pass")
    client.transition_model_version_stage("Churn", 1, "Production")
    client.set_registered_model_alias("Churn", "champion", 1)
    client.set_registered_model_alias("Churn", "champion", 2)
    client.delete_registered_model_alias("Churn", "champion")
    history = client.get_model_history("Churn")
    moves = [(h.version, h.action, h.from_value, h.to_value) for h in history[3:]]
    assert moves == [
        (1, "stage", "None", "Staging"), (1, "stage", "Staging", "Production"),
        (1, "alias", None, "champion@1"), (2, "alias", "champion@1", "champion@2"),
        (2, "delete_alias", "champion@2", None),
    ]  # fmt: skip
    assert history[3].comment == "tests pass" and history[3].user_id == "ana"
    assert all(h.timestamp.tzinfo is not None for h in history)
    assert [h.action for h in history[:3]] == ["create"] * 3


def test_delete_version_guarded_by_stage_and_alias(client, churn):
    client.transition_model_version_stage("Churn", 1, "Production")
    client.set_registered_model_alias("Churn", "champion", 2)
    with pytest.raises(InvalidArgument, match=r"Refusing to delete version 1 of 'Churn': it is in "
                       r"stage 'Production'\. .*force=True"):  # fmt: skip
        client.delete_model_version("Churn", 1)
    with pytest.raises(InvalidArgument, match=r"version 2 of 'Churn': alias 'champion' points"):
        client.delete_model_version("Churn", 2)
    location = client.get_model_version("Churn", 3).storage_location
    client.delete_model_version("Churn", 3)
    assert not __import__("os").path.exists(location)
    client.delete_model_version("Churn", 1, force=True)
    assert [v.version for v in client.search_model_versions("name = 'Churn'")] == [2]
    assert client.register_model(client.get_model_version("Churn", 2).storage_location,
                                 "Churn").version == 4  # numbers are never reused  # fmt: skip
    history = client.get_model_history("Churn")
    assert [(h.version, h.action) for h in history if h.action == "delete"] == [
        (3, "delete"),
        (1, "delete"),
    ]


def test_delete_registered_model_keeps_history(client, churn):
    with pytest.raises(NotFound):
        client.delete_registered_model("Nope")
    client.delete_registered_model("Churn")
    with pytest.raises(NotFound):
        client.get_registered_model("Churn")
    assert client.get_model_history("Churn")[-1].action == "delete"


def test_deleting_the_run_never_breaks_the_version(client, forest, xy):
    eid = client.create_experiment("e")
    run = client.create_run(eid)
    info = client.log_model(run.info.run_id, forest, "model", input_example=xy[0][:2],
                            registered_model_name="Churn")  # fmt: skip
    assert info.registered_model_version.run_id == run.info.run_id
    client.delete_run(run.info.run_id)
    import shutil

    shutil.rmtree(client.get_run(run.info.run_id).info.artifact_uri)
    path = client.resolve("models:/Churn/1")
    assert modelpack.verify(path).model_id == info.model_id


def test_models_uris_resolve(client, churn, xy, forest, tracking_env):
    client.transition_model_version_stage("Churn", 2, "Production")
    client.set_registered_model_alias("Churn", "champion", 1)
    for uri, version in [("models:/Churn/Production", 2), ("models:/Churn/production", 2),
                         ("models:/Churn@champion", 1), ("models:/Churn/latest", 3),
                         ("models:/Churn/3", 3)]:  # fmt: skip
        path = client.resolve(uri)
        assert str(path) == client.get_model_version("Churn", version).storage_location
    pack = modelpack.load("models:/Churn/Production")
    np.testing.assert_array_equal(pack.predict(xy[0]), forest.predict(xy[0]))
    with pytest.raises(
        NotFound,
        match=r"Registered model 'Churn' has no version in stage "
        r"'Staging'\. Versions: 1 \(None\), 2 \(Production\), 3 \(None\)\.",
    ):
        modelpack.load("models:/Churn/Staging")
    with pytest.raises(InvalidArgument, match="Malformed model URI"):
        modelpack.load("models:/")
    with pytest.raises(InvalidArgument, match=r"'champion' is not a version number, a stage"):
        modelpack.load("models:/Churn/champion")
    with pytest.raises(NotFound, match="Registered model 'Nope' does not exist"):
        modelpack.load("models:/Nope/1")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_registry_writes_commit_durably_on_sqlite(client, package):
    """Every registry write commits with PRAGMA synchronous=FULL; tracking writes keep NORMAL."""
    import sqlalchemy as sa

    seen = []  # PRAGMA synchronous at each commit of a transaction that wrote
    writing = set()  # connections whose open transaction has written

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            writing.add(conn)

    def on_commit(conn):  # runs just before the COMMIT
        if conn in writing:
            mode = conn.connection.driver_connection.execute("PRAGMA synchronous").fetchone()[0]
            seen.append({1: "NORMAL", 2: "FULL"}.get(mode, mode))
        writing.discard(conn)

    def on_rollback(conn):
        writing.discard(conn)

    run_id = client.create_run(client.create_experiment("e")).info.run_id
    writes = {
        # A tracking write first and last: those stay on the faster setting.
        "set_tag": lambda: client.set_tag(run_id, "k", "v", synchronous=True),
        "create_registered_model": lambda: client.create_registered_model("Churn"),
        "register_model": lambda: client.register_model(package, "Churn"),
        "update_registered_model": lambda: client.update_registered_model("Churn", "d"),
        "set_registered_model_tag": lambda: client.set_registered_model_tag("Churn", "k", "v"),
        "delete_registered_model_tag": lambda: client.delete_registered_model_tag("Churn", "k"),
        "update_model_version": lambda: client.update_model_version("Churn", 1, "d"),
        "set_model_version_tag": lambda: client.set_model_version_tag("Churn", 1, "k", "v"),
        "delete_model_version_tag": lambda: client.delete_model_version_tag("Churn", 1, "k"),
        "transition_model_version_stage": lambda: client.transition_model_version_stage(
            "Churn", 1, "Production"
        ),
        "set_registered_model_alias": lambda: client.set_registered_model_alias(
            "Churn", "champion", 1
        ),
        "delete_registered_model_alias": lambda: client.delete_registered_model_alias(
            "Churn", "champion"
        ),
        "rename_registered_model": lambda: client.rename_registered_model("Churn", "Attrition"),
        "delete_model_version": lambda: client.delete_model_version("Attrition", 1, force=True),
        "delete_registered_model": lambda: client.delete_registered_model("Attrition"),
        "log_param": lambda: client.log_param(run_id, "depth", 3, synchronous=True),
    }
    engine = client.store.engine
    listeners = [("before_cursor_execute", on_execute), ("commit", on_commit),
                 ("rollback", on_rollback)]  # fmt: skip
    for name, fn in listeners:
        sa.event.listen(engine, name, fn)
    committed = {}
    try:
        for name, write in writes.items():
            seen.clear()
            write()
            committed[name] = set(seen)
    finally:
        for name, fn in listeners:
            sa.event.remove(engine, name, fn)
    expected = {name: {"FULL"} for name in writes} | {
        "set_tag": {"NORMAL"},
        "log_param": {"NORMAL"},
    }
    assert committed == expected
