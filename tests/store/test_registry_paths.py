"""Where the registry keeps versions: deletion removes only its own ``registry/<id>`` folders,
whatever a row says; a relative artifact root is stored absolute — on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

import modelpack
from modelpack.errors import InvalidArgument
from modelpack.store import schema as t


@pytest.fixture
def package(tmp_path, forest, xy):
    path = tmp_path / "pkg"
    modelpack.save(forest, path, input_example=xy[0][:2])
    return str(path)


@pytest.fixture
def victim(tmp_path):
    """A folder outside the registry, as a user's home would be."""
    home = tmp_path / "home" / "user"
    home.mkdir(parents=True)
    (home / "thesis.tex").write_text("years of work")
    return home


def _tamper(client, name: str, version: int, location: str) -> None:
    """Rewrite a version's storage location behind the registry's back."""
    rm = t.registered_models
    with client.store.engine.begin() as conn:
        model = conn.execute(sa.select(rm.c.id).where(rm.c.name == name)).scalar_one()
        conn.execute(
            t.model_versions.update()
            .where(t.model_versions.c.model == model, t.model_versions.c.version == version)
            .values(storage_location=location)
        )


def _refused(version: int, location: str, root: str, how: str) -> str:
    return (
        rf"^Refusing to delete version {version} of 'Churn': its storage location "
        rf"{re.escape(repr(location))} is not a folder of this registry's storage "
        rf"\({re.escape(root)}/registry/<id>\), so nothing was deleted\. {how}$"
    )


ALTERED = r"The row may have been altered; check it before removing anything by hand\."


def test_a_version_whose_row_names_a_foreign_folder_is_not_deleted(client, package, victim):
    """Before: the folder the row named was rmtree'd (and the row deleted)."""
    client.register_model(package, "Churn")
    _tamper(client, "Churn", 1, str(victim))
    with pytest.raises(InvalidArgument, match=_refused(1, str(victim), client.artifact_root,
                                                       ALTERED)):  # fmt: skip
        client.delete_model_version("Churn", 1, force=True)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert client.get_model_version("Churn", 1).storage_location == str(victim)
    assert [h.action for h in client.get_model_history("Churn")] == ["create"]


def test_a_model_with_one_foreign_version_is_not_deleted(client, package, victim):
    for _ in range(2):
        client.register_model(package, "Churn")
    kept = client.get_model_version("Churn", 1).storage_location
    _tamper(client, "Churn", 2, str(victim))
    with pytest.raises(InvalidArgument, match=_refused(2, str(victim), client.artifact_root,
                                                       ALTERED)):  # fmt: skip
        client.delete_registered_model("Churn", force=True)
    assert (victim / "thesis.tex").exists() and Path(kept).is_dir()
    assert [v.version for v in client.search_model_versions("name = 'Churn'")] == [2, 1]


@pytest.mark.parametrize(
    "shape", ["run artifacts", "dot-dot", "registry itself", "not an id", "a link"]
)
def test_locations_inside_the_root_but_not_a_version_folder_are_refused(
    client, package, victim, shape
):
    mv = client.register_model(package, "Churn")
    root = client.artifact_root
    run = client.create_run(client.create_experiment("e"))
    client.log_artifact(run.info.run_id, victim / "thesis.tex")
    location = {
        "run artifacts": run.info.artifact_uri,
        "dot-dot": f"{root}/registry/../../{victim.parent.name}",
        "registry itself": f"{root}/registry",
        "not an id": f"{root}/registry/Churn",
        "a link": f"{root}/registry/{'0' * 32}",
    }[shape]
    if shape == "a link":
        os.symlink(victim, location)
    _tamper(client, "Churn", 1, location)
    with pytest.raises(InvalidArgument, match=_refused(1, location, root, ALTERED)):
        client.delete_model_version("Churn", 1, force=True)
    assert (victim / "thesis.tex").exists() and Path(mv.storage_location).is_dir()
    assert Path(run.info.artifact_uri, "thesis.tex").is_file()


def test_a_version_registered_under_another_root_names_that_root(client, package, tmp_path):
    client.register_model(package, "Churn")
    other = modelpack.Client(client.tracking_uri, artifact_root=str(tmp_path / "elsewhere"))
    location = client.get_model_version("Churn", 1).storage_location
    how = (
        rf"It was registered under the artifact root {re.escape(repr(client.artifact_root))}: "
        rf"delete it with Client\(artifact_root={re.escape(repr(client.artifact_root))}\)\."
    )
    with pytest.raises(InvalidArgument, match=_refused(1, location, other.artifact_root, how)):
        other.delete_model_version("Churn", 1)
    assert Path(location).is_dir()
    client.delete_model_version("Churn", 1)  # its own root deletes it, files and all
    assert not Path(location).exists()
    assert client.search_model_versions("name = 'Churn'") == []


def test_a_relative_artifact_root_is_stored_absolute(store_url, package, tmp_path, monkeypatch):
    """Before: "rel/dir" was stored as written, so nothing resolved from another folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    client = modelpack.Client(store_url, artifact_root="rel/dir")
    root = str(work / "rel" / "dir")
    assert client.artifact_root == root and client.store.artifact_root == root
    experiment = client.get_experiment(client.create_experiment("e"))
    assert experiment.artifact_location == f"{root}/{experiment.experiment_id}"
    run = client.create_run(experiment.experiment_id)
    assert run.info.artifact_uri.startswith(f"{root}/")
    client.log_artifact(run.info.run_id, package + "/modelpack.yaml", "notes")
    mv = client.register_model(package, "Churn")
    assert mv.storage_location.startswith(f"{root}/registry/")
    placed = client.get_experiment(client.create_experiment("placed", artifact_location="mine"))
    assert placed.artifact_location == str(work / "mine")

    monkeypatch.chdir(tmp_path)  # from anywhere else, the same store finds everything
    again = modelpack.Client(store_url, artifact_root=root)
    assert modelpack.verify(again.resolve("models:/Churn/1")).model_id == mv.model_id
    got = again.download_artifacts(run.info.run_id, "notes", tmp_path / "out")
    assert (got / "modelpack.yaml").is_file()
    again.delete_model_version("Churn", 1)
    assert not Path(mv.storage_location).exists()


def test_a_relative_root_from_the_environment_is_absolute(store_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", "rel")
    assert modelpack.Client(store_url).artifact_root == str(tmp_path / "rel")
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", "s3://bucket/prefix")
    assert modelpack.Client(store_url).artifact_root == "s3://bucket/prefix"
