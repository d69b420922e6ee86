"""The model registry over MLflow's REST API on a real SQLite server (one test on the real
PostgreSQL): every endpoint with its values, MLflow 3's flow (a LoggedModel's files registered
as models:/m-<id>, loaded back by modelpack), MLflow 2's run-artifact sources, modelpack's
uploads/, every traversal variant refused with nothing registered, and the history's user."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack.errors import NotFound
from modelpack.server.endpoints import Principal

API = "/api/2.0/mlflow"
RM, MV = f"{API}/registered-models", f"{API}/model-versions"
EXT = "/api/2.0/modelpack"
X = np.arange(20, dtype=float).reshape(10, 2)


@pytest.fixture(scope="module")
def saved_package(tmp_path_factory):
    """A tiny scikit-learn package (modelpack's, with MLflow's MLmodel beside its manifest)."""
    from sklearn.linear_model import LinearRegression

    path = tmp_path_factory.mktemp("pkg") / "pkg"
    import sklearn

    model = LinearRegression().fit(X, X @ [1.0, 2.0])
    requirements = [f"scikit-learn=={sklearn.__version__}"]
    modelpack.save(model, path, input_example=X[:2], requirements=requirements)
    return path


def _package_at(saved: Path, target: Path) -> Path:
    shutil.copytree(saved, target)
    return target


def _mlflow_dir_at(saved: Path, target: Path) -> Path:
    """An MLflow model directory: the same files without modelpack's manifest."""
    shutil.copytree(saved, target)
    (target / "modelpack.yaml").unlink()
    return target


@pytest.fixture
def as_alice(server_state):
    """Every request authenticated as alice (an admin), as a token would make it."""
    server_state.auth.authenticate = lambda headers, path: Principal("alice", "admin", True)
    return "alice"


def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


def refused(response, fragment):
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert fragment in body["message"], body["message"]
    return body["message"]


def _run(api):
    return ok(api.post(f"{API}/runs/create", json={"experiment_id": "0"}))["run"]["info"]


def _run_via_store(server_state):
    store = server_state.store
    return store.create_run(server_state.default_experiment_id, run_name="r", user_id="bob").info


def _logged_model(api, server_state, saved, *, mlflow_format=True, ready=True):
    info = ok(api.post(f"{API}/logged-models", json={"experiment_id": "0", "name": "clf"}))[
        "model"
    ]["info"]
    folder = Path(server_state.stored_location(info["artifact_uri"]))
    folder.parent.mkdir(parents=True, exist_ok=True)
    (_mlflow_dir_at if mlflow_format else _package_at)(saved, folder)
    if ready:
        ok(
            api.patch(
                f"{API}/logged-models/{info['model_id']}", json={"status": "LOGGED_MODEL_READY"}
            )
        )
    return info


def _registered_folders(server_state) -> list[str]:
    registry = Path(server_state.artifact_root) / "registry"
    return sorted(p.name for p in registry.iterdir()) if registry.is_dir() else []


# ---------------------------------------------------------------------- MLflow 3's flow


def test_mlflow3_flow_logged_model_to_loadable_version(api, server_state, saved_package, as_alice):
    info = _logged_model(api, server_state, saved_package)
    model_id = info["model_id"]
    created = ok(api.post(f"{RM}/create", json={"name": "Churn", "description": "d"}))
    assert created["registered_model"]["name"] == "Churn"
    assert created["registered_model"]["latest_versions"] == []
    version = ok(
        api.post(
            f"{MV}/create",
            json={"name": "Churn", "source": f"models:/{model_id}", "model_id": model_id},
        )
    )["model_version"]
    assert version["version"] == "1"
    assert version["status"] == "READY"
    assert version["current_stage"] == "None"
    assert version["source"] == f"models:/{model_id}"
    assert version["model_id"] == model_id
    assert version["user_id"] == "alice"
    assert version["aliases"] == [] and version["tags"] == []
    # modelpack's own client verifies a load against the package's record: sent beside.
    assert len(version["modelpack_model_id"]) == 32 and len(version["manifest_sha256"]) == 64
    assert version["storage_location"].startswith("mlflow-artifacts:/registry/")

    uri = ok(api.get(f"{MV}/get-download-uri", params={"name": "Churn", "version": "1"}))[
        "artifact_uri"
    ]
    assert uri.startswith("mlflow-artifacts:/registry/")
    stored = Path(server_state.stored_location(uri))
    assert (stored / "MLmodel").is_file() and (stored / "modelpack.yaml").is_file()
    assert (stored / "model" / "model.pkl").is_file()  # MLflow's files where MLmodel says
    predictions = modelpack.load(str(stored)).predict(X[:3])
    np.testing.assert_allclose(np.asarray(predictions).ravel(), X[:3] @ [1.0, 2.0])

    assert ok(api.get(f"{EXT}/model-versions/verify", params={"name": "Churn", "version": 1})) == {
        "ok": True,
        "problems": [],
    }
    again = ok(api.get(f"{API}/logged-models/{model_id}"))["model"]["info"]
    assert again["registrations"] == [{"name": "Churn", "version": "1"}]
    trail = ok(api.get(f"{EXT}/registered-models/history", params={"name": "Churn"}))["history"]
    assert [(r["action"], r["version"], r["to_value"], r["user_id"]) for r in trail] == [
        ("create", "1", "None", "alice")
    ]


def test_a_tampered_stored_copy_fails_verification(api, server_state, saved_package):
    info = _logged_model(api, server_state, saved_package, mlflow_format=False)
    ok(api.post(f"{MV}/create", json={"name": "C", "source": f"models:/{info['model_id']}"}))
    uri = ok(api.get(f"{MV}/get-download-uri", params={"name": "C", "version": "1"}))
    stored = Path(server_state.stored_location(uri["artifact_uri"]))
    (stored / "model" / "model.pkl").write_bytes(b"evil")
    result = ok(api.get(f"{EXT}/model-versions/verify", params={"name": "C", "version": "1"}))
    assert result["ok"] is False
    assert [(p["path"], p["problem"]) for p in result["problems"]] == [
        ("model/model.pkl", "modified")
    ]


def test_a_pending_logged_model_or_a_bad_package_is_not_registered(
    api, server_state, saved_package
):
    pending = _logged_model(api, server_state, saved_package, ready=False)
    refused(
        api.post(f"{MV}/create", json={"name": "P", "source": f"models:/{pending['model_id']}"}),
        "is LOGGED_MODEL_PENDING",
    )
    info = _logged_model(api, server_state, saved_package, mlflow_format=False, ready=False)
    folder = Path(server_state.stored_location(info["artifact_uri"]))
    (folder / "model" / "model.pkl").write_bytes(b"tampered")
    api.patch(f"{API}/logged-models/{info['model_id']}", json={"status": "LOGGED_MODEL_READY"})
    message = refused(
        api.post(f"{MV}/create", json={"name": "P", "source": f"models:/{info['model_id']}"}),
        "fails verification, so nothing was registered",
    )
    assert "model/model.pkl" in message
    assert api.get(f"{RM}/get", params={"name": "P"}).status_code == 404
    assert _registered_folders(server_state) == []


# ---------------------------------------------------------------------- MLflow 2's sources


def test_run_artifact_sources(api, server_state, saved_package):
    run = _run(api)
    artifacts = Path(server_state.stored_location(run["artifact_uri"]))
    artifacts.mkdir(parents=True, exist_ok=True)
    _mlflow_dir_at(saved_package, artifacts / "model")
    sources = [
        f"{run['artifact_uri']}/model",  # mlflow-artifacts:/<exp>/<run>/artifacts/model
        f"runs:/{run['run_id']}/model",
        f"{server_state.stored_location(run['artifact_uri'])}/model",  # the stored URI itself
    ]
    for number, source in enumerate(sources, start=1):
        version = ok(
            api.post(f"{MV}/create", json={"name": "R", "source": source, "run_id": run["run_id"]})
        )["model_version"]
        assert (version["version"], version["run_id"], version["source"]) == (
            str(number),
            run["run_id"],
            source,
        )
        assert "model_id" not in version
    assert len(_registered_folders(server_state)) == 3


def test_an_upload_folder_source(api, server_state, saved_package):
    folder = f"uploads/{uuid.uuid4().hex}"
    _package_at(saved_package, Path(server_state.artifact_root) / folder / "pkg")
    version = ok(
        api.post(f"{MV}/create", json={"name": "U", "source": f"mlflow-artifacts:/{folder}/pkg"})
    )["model_version"]
    assert version["version"] == "1" and "run_id" not in version


def test_a_registered_version_can_be_copied(api, server_state, saved_package):
    folder = f"uploads/{uuid.uuid4().hex}"
    _package_at(saved_package, Path(server_state.artifact_root) / folder)
    ok(api.post(f"{MV}/create", json={"name": "A", "source": f"mlflow-artifacts:/{folder}"}))
    copy = ok(api.post(f"{MV}/create", json={"name": "B", "source": "models:/A/1"}))
    assert copy["model_version"]["source"] == "models:/A/1"
    assert ok(api.get(f"{EXT}/model-versions/verify", params={"name": "B", "version": "1"}))["ok"]


# ---------------------------------------------------------------------- refusals


def _traversals(run_id: str, run_uri: str, stored_uri: str) -> list[tuple[str, str | None, str]]:
    up = "uploads/" + "a" * 32
    return [
        ("../../etc", run_id, "'..' segment"),
        ("mlflow-artifacts:/../../etc", None, "'..' segment"),
        (f"{run_uri}/../../../etc", run_id, "'..' segment"),
        (f"{run_uri}/%2e%2e/%2e%2e/etc", run_id, "'..' segment once decoded"),
        (f"{run_uri}/%2E%2E/x", run_id, "'..' segment once decoded"),
        (f"{run_uri}/%252e%252e/%252e%252e/etc", run_id, "'..' segment decoded 2 times"),
        (f"runs:/{run_id}/../../x", None, "'..' segment"),
        (f"runs:/{run_id}/%2e%2e/x", None, "'..' segment once decoded"),
        (f"mlflow-artifacts:/{up}/../../x", None, "'..' segment"),
        (f"mlflow-artifacts:/{up}/./x", None, "'.' segment"),
        (f"{run_uri}\\..\\..\\etc", run_id, "backslash"),
        (f"{run_uri}%5c..%5cetc", run_id, "backslash once decoded"),
        (f"{run_uri}/model%00", run_id, "NUL or control character once decoded"),
        ("/etc/passwd", None, "absolute path"),
        ("/etc/passwd", run_id, f"not under the artifact location of run {run_id}"),
        (f"file://{stored_uri}/model", run_id, "not under the artifact location of run"),
        ("s3://their-bucket/model", None, "scheme or form"),
        ("s3://their-bucket/model", run_id, "not under the artifact location"),
        ("http://169.254.169.254/latest/meta-data", None, "scheme or form"),
        ("https://evil.example/model.tar", run_id, "not under the artifact location"),
        ("C:\\models\\x", None, "backslash"),
        ("models:/m-123", None, "32 lowercase hex digits"),
        ("models:/m-" + "0" * 32, None, "does not exist"),
        ("mlflow-artifacts:/0/other-run/artifacts/model", None, "give run_id"),
        ("mlflow-artifacts:/", None, "whole artifact root"),
        ("runs:/not-a-run/model", None, "is not 32 hex digits"),
        (f"{up}/pkg", None, "scheme or form"),
        (f"mlflow-artifacts:/{up}", "f" * 32, "No run with id"),
    ]


def test_every_traversal_variant_is_refused_and_nothing_registered(
    api, server_state, saved_package
):
    run = _run(api)
    stored = server_state.stored_location(run["artifact_uri"])
    Path(stored).mkdir(parents=True, exist_ok=True)
    _mlflow_dir_at(saved_package, Path(stored) / "model")
    for source, run_id, fragment in _traversals(run["run_id"], run["artifact_uri"], stored):
        body = {"name": "T", "source": source} | ({"run_id": run_id} if run_id else {})
        response = api.post(f"{MV}/create", json=body)
        assert response.status_code in (400, 404), (source, response.text)
        assert fragment in response.json()["message"], (source, response.json()["message"])
    assert api.get(f"{RM}/get", params={"name": "T"}).status_code == 404
    assert ok(api.get(f"{MV}/search"))["model_versions"] == []
    assert _registered_folders(server_state) == []


def test_another_runs_artifacts_and_symlinks_are_refused(
    api, server_state, saved_package, tmp_path
):
    mine, other = _run(api), _run(api)
    theirs = Path(server_state.stored_location(other["artifact_uri"]))
    theirs.mkdir(parents=True, exist_ok=True)
    _mlflow_dir_at(saved_package, theirs / "model")
    refused(
        api.post(
            f"{MV}/create",
            json={
                "name": "S",
                "source": f"{other['artifact_uri']}/model",
                "run_id": mine["run_id"],
            },
        ),
        f"not under the artifact location of run {mine['run_id']}",
    )
    outside = _mlflow_dir_at(saved_package, tmp_path / "outside")
    own = Path(server_state.stored_location(mine["artifact_uri"]))
    own.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, own / "linked")
    refused(
        api.post(
            f"{MV}/create",
            json={
                "name": "S",
                "source": f"{mine['artifact_uri']}/linked",
                "run_id": mine["run_id"],
            },
        ),
        "symlink",
    )
    refused(
        api.post(f"{MV}/create", json={"name": "S", "source": f"runs:/{mine['run_id']}/linked"}),
        "symlink",
    )
    # A link inside the model folder is refused as well (packages hold no links).
    inner = _mlflow_dir_at(saved_package, own / "model")
    os.symlink("/etc/hostname", inner / "extra.txt")
    refused(
        api.post(f"{MV}/create", json={"name": "S", "source": f"runs:/{mine['run_id']}/model"}),
        "symlink",
    )
    refused(
        api.post(f"{MV}/create", json={"name": "S", "source": f"runs:/{mine['run_id']}/nothing"}),
        "no model directory there",
    )
    assert _registered_folders(server_state) == []


# ---------------------------------------------------------------------- every endpoint


def _version_from_upload(api, server_state, saved_package, name):
    folder = f"uploads/{uuid.uuid4().hex}"
    _package_at(saved_package, Path(server_state.artifact_root) / folder)
    return ok(
        api.post(f"{MV}/create", json={"name": name, "source": f"mlflow-artifacts:/{folder}"})
    )["model_version"]


def test_registered_model_endpoints(api, server_state, saved_package, as_alice):
    created = ok(
        api.post(
            f"{RM}/create",
            json={"name": "M", "description": "first", "tags": [{"key": "t", "value": "1"}]},
        )
    )["registered_model"]
    assert (created["name"], created["description"], created["tags"]) == (
        "M",
        "first",
        [{"key": "t", "value": "1"}],
    )
    assert isinstance(created["creation_timestamp"], int)
    twice = api.post(f"{RM}/create", json={"name": "M"})
    assert twice.status_code == 400
    assert twice.json() == {
        "error_code": "RESOURCE_ALREADY_EXISTS",
        "message": "Registered model 'M' already exists.",
    }
    updated = ok(api.patch(f"{RM}/update", json={"name": "M", "description": "second"}))
    assert updated["registered_model"]["description"] == "second"
    ok(api.post(f"{RM}/set-tag", json={"name": "M", "key": "owner", "value": "ml"}))
    ok(api.request("DELETE", f"{RM}/delete-tag", json={"name": "M", "key": "t"}))
    assert ok(api.get(f"{RM}/get", params={"name": "M"}))["registered_model"]["tags"] == [
        {"key": "owner", "value": "ml"}
    ]
    renamed = ok(api.post(f"{RM}/rename", json={"name": "M", "new_name": "N"}))
    assert renamed["registered_model"]["name"] == "N"
    missing = api.get(f"{RM}/get", params={"name": "M"})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for name in ("O", "P"):
        ok(api.post(f"{RM}/create", json={"name": name}))
    page = ok(api.get(f"{RM}/search", params={"max_results": 2, "order_by": "name ASC"}))
    assert [m["name"] for m in page["registered_models"]] == ["N", "O"]
    rest = ok(api.get(f"{RM}/search", params={"page_token": page["next_page_token"]}))
    assert [m["name"] for m in rest["registered_models"]] == ["P"]
    assert [
        m["name"]
        for m in ok(api.get(f"{RM}/search", params={"filter": "name LIKE 'O%'"}))[
            "registered_models"
        ]
    ] == ["O"]
    refused(api.get(f"{RM}/search", params={"max_results": 1001}), "from 1 to 1000")
    ok(api.request("DELETE", f"{RM}/delete", json={"name": "P"}))
    assert api.get(f"{RM}/get", params={"name": "P"}).status_code == 404
    trail = ok(api.get(f"{EXT}/registered-models/history", params={"name": "N"}))["history"]
    assert [(r["action"], r["from_value"], r["to_value"], r["user_id"]) for r in trail] == [
        ("rename", "M", "N", "alice")
    ]


def test_model_version_endpoints(api, server_state, saved_package, as_alice):
    for _ in range(3):
        _version_from_upload(api, server_state, saved_package, "V")
    key = {"name": "V", "version": "1"}
    moved = ok(api.post(f"{MV}/transition-stage", json={**key, "stage": "staging"}))
    assert moved["model_version"]["current_stage"] == "Staging"
    ok(
        api.post(
            f"{MV}/transition-stage", json={"name": "V", "version": "2", "stage": "Production"}
        )
    )
    latest = ok(api.post(f"{RM}/get-latest-versions", json={"name": "V"}))["model_versions"]
    assert sorted((v["version"], v["current_stage"]) for v in latest) == [
        ("1", "Staging"),
        ("2", "Production"),
        ("3", "None"),
    ]
    only = ok(api.get(f"{RM}/get-latest-versions", params={"name": "V", "stages": "Production"}))
    assert [v["version"] for v in only["model_versions"]] == ["2"]
    ok(api.post(f"{RM}/alias", json={"name": "V", "alias": "champion", "version": "3"}))
    by_alias = ok(api.get(f"{RM}/alias", params={"name": "V", "alias": "champion"}))
    assert by_alias["model_version"]["version"] == "3"
    assert by_alias["model_version"]["aliases"] == ["champion"]
    got_model = ok(api.get(f"{RM}/get", params={"name": "V"}))["registered_model"]
    assert got_model["aliases"] == [{"alias": "champion", "version": "3"}]
    ok(api.request("DELETE", f"{RM}/alias", json={"name": "V", "alias": "champion"}))
    assert api.get(f"{RM}/alias", params={"name": "V", "alias": "champion"}).status_code == 404

    updated = ok(api.patch(f"{MV}/update", json={**key, "description": "the first"}))
    assert updated["model_version"]["description"] == "the first"
    ok(api.post(f"{MV}/set-tag", json={**key, "key": "k", "value": "v"}))
    assert ok(api.get(f"{MV}/get", params=key))["model_version"]["tags"] == [
        {"key": "k", "value": "v"}
    ]
    ok(api.request("DELETE", f"{MV}/delete-tag", json={**key, "key": "k"}))
    assert ok(api.get(f"{MV}/get", params=key))["model_version"]["tags"] == []

    found = ok(api.get(f"{MV}/search", params={"filter": "name = 'V'", "max_results": 2}))
    assert [v["version"] for v in found["model_versions"]] == ["3", "2"]
    more = ok(api.get(f"{MV}/search", params={"page_token": found["next_page_token"]}))
    assert [v["version"] for v in more["model_versions"]] == ["1"]
    refused(api.get(f"{MV}/search", params={"max_results": 200_001}), "from 1 to 200000")

    newest = ok(api.get(f"{EXT}/model-versions/newest", params={"name": "V"}))
    assert newest["model_version"]["version"] == "3"
    staged = ok(api.get(f"{EXT}/model-versions/in-stage", params={"name": "V", "stage": "Staging"}))
    assert staged["model_version"]["version"] == "1"

    production = api.request("DELETE", f"{MV}/delete", json={"name": "V", "version": "2"})
    refused(production, "it is in stage 'Production'")
    uri = ok(api.get(f"{MV}/get-download-uri", params={"name": "V", "version": "3"}))
    folder = Path(server_state.stored_location(uri["artifact_uri"]))
    assert folder.is_dir()
    ok(api.request("DELETE", f"{MV}/delete", json={"name": "V", "version": "3"}))
    assert not folder.exists()
    assert api.get(f"{MV}/get", params={"name": "V", "version": "3"}).status_code == 404
    trail = ok(api.get(f"{EXT}/registered-models/history", params={"name": "V"}))["history"]
    assert [(r["action"], r["version"], r["to_value"]) for r in trail][3:] == [
        ("stage", "1", "Staging"),
        ("stage", "2", "Production"),
        ("alias", "3", "champion@3"),
        ("delete_alias", "3", None),
        ("delete", "3", None),
    ]
    assert {r["user_id"] for r in trail} == {"alice"}


def test_the_access_each_call_asks_for(api, server_state, saved_package):
    asked: list[tuple[str | None, str | None, str | None]] = []

    def authorize(call):
        access = call.endpoint.access
        where = access.locate(call) if access.locate is not None else None
        asked.append((access.kind, access.level, where))

    server_state.auth.authorize = authorize
    ok(api.post(f"{RM}/create", json={"name": "Z"}))
    assert asked[-1] == ("permission", "EDIT", None)  # a new model: the editor role decides
    _version_from_upload(api, server_state, saved_package, "Z")
    assert asked[-1] == ("permission", "EDIT", "Z")
    asked.clear()
    ok(api.post(f"{MV}/transition-stage", json={"name": "Z", "version": "1", "stage": "Staging"}))
    assert asked == [("permission", "EDIT", "Z")]
    asked.clear()
    ok(api.post(f"{MV}/transition-stage", json={"name": "Z", "version": "1", "stage": "Archived"}))
    assert asked == [("permission", "EDIT", "Z"), ("permission", "MANAGE", "Z")]
    asked.clear()
    ok(api.post(f"{RM}/alias", json={"name": "Z", "alias": "a", "version": "1"}))
    ok(api.get(f"{MV}/get", params={"name": "Z", "version": "1"}))
    ok(api.get(f"{RM}/search"))
    assert asked == [
        ("permission", "MANAGE", "Z"),
        ("permission", "READ", "Z"),
        ("login", None, None),
    ]


def test_searches_show_only_readable_models(api, server_state, saved_package):
    for name in ("Seen", "Hidden"):
        _version_from_upload(api, server_state, saved_package, name)
    server_state.auth.readable = lambda call, kind: {"Seen"} if kind == "registered_model" else None
    models = ok(api.get(f"{RM}/search"))["registered_models"]
    assert [m["name"] for m in models] == ["Seen"]
    versions = ok(api.get(f"{MV}/search"))["model_versions"]
    assert [(v["name"], v["version"]) for v in versions] == [("Seen", "1")]


def test_with_tokens_the_history_names_the_token_user(tmp_path, saved_package):
    from starlette.testclient import TestClient

    from modelpack.server import create_app
    from modelpack.store import auth as store_auth
    from modelpack.store import engines

    url = f"sqlite:///{tmp_path}/tokens.sqlite"
    app = create_app(backend_store_uri=url, artifact_root=str(tmp_path / "art"), auth="token")
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as http:
        state = app.app.state.server if hasattr(app, "app") else app.state.server

        def headers(user, role):
            return {
                "Authorization": f"Bearer {store_auth.create_token(state.store, user, role)[1]}"
            }

        alice, reader, dave = (
            headers("alice", "editor"),
            headers("rita", "reader"),
            headers("dave", "editor"),
        )
        folder = f"uploads/{uuid.uuid4().hex}"
        _package_at(saved_package, Path(state.artifact_root) / folder)
        body = {"name": "Tok", "source": f"mlflow-artifacts:/{folder}", "user_id": "mallory"}
        assert http.post(f"{MV}/create", json=body).status_code == 401
        denied = http.post(f"{MV}/create", json=body, headers=reader)
        assert denied.status_code == 403 and "creating needs the role editor" in denied.text
        made = http.post(f"{MV}/create", json=body, headers=alice)
        assert made.status_code == 200, made.text
        assert made.json()["model_version"]["user_id"] == "alice"
        promote = {"name": "Tok", "version": "1", "stage": "Production"}
        other = http.post(f"{MV}/transition-stage", json=promote, headers=dave)
        assert other.status_code == 403 and "MANAGE" in other.text
        mine = http.post(f"{MV}/transition-stage", json=promote, headers=alice)
        assert mine.status_code == 200, mine.text
        # Registering copies what the source names: the caller must be able to read it.
        store_auth.set_default(state.store, "NO_PERMISSIONS", "registered_model")
        state.auth.changed()
        copy = http.post(
            f"{MV}/create", json={"name": "Dave", "source": "models:/Tok/1"}, headers=dave
        )
        assert copy.status_code == 403, copy.text
        assert "needs READ on registered model 'Tok'" in copy.json()["message"]
        with pytest.raises(NotFound):
            state.store.get_registered_model("Dave")
        assert len(_registered_folders(state)) == 1
        trail = http.get(
            f"{EXT}/registered-models/history", params={"name": "Tok"}, headers=alice
        ).json()["history"]
        assert [(r["action"], r["user_id"]) for r in trail] == [
            ("create", "alice"),
            ("stage", "alice"),
        ]
    engines.dispose(url)


# ---------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_server(tmp_path):
    import psycopg
    from starlette.testclient import TestClient

    from modelpack.server import create_app
    from modelpack.store import engines

    name = f"t_srvreg_{uuid.uuid4().hex[:8]}"
    conninfo = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        app = create_app(backend_store_uri=url, artifact_root=str(tmp_path / "artifacts"))
        with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
            yield client, app.app.state.server if hasattr(app, "app") else app.state.server
    finally:
        engines.dispose(url)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_registry_on_postgresql(pg_server, saved_package):
    api, state = pg_server
    state.auth.authenticate = lambda headers, path: Principal("carol", "admin", True)
    info = _logged_model(api, state, saved_package)
    version = ok(
        api.post(f"{MV}/create", json={"name": "PG", "source": f"models:/{info['model_id']}"})
    )
    assert version["model_version"]["version"] == "1"
    ok(
        api.post(
            f"{MV}/transition-stage", json={"name": "PG", "version": "1", "stage": "Production"}
        )
    )
    uri = ok(api.get(f"{MV}/get-download-uri", params={"name": "PG", "version": "1"}))
    stored = Path(state.stored_location(uri["artifact_uri"]))
    np.testing.assert_allclose(
        np.asarray(modelpack.load(str(stored)).predict(X[:2])).ravel(), X[:2] @ [1.0, 2.0]
    )
    trail = ok(api.get(f"{EXT}/registered-models/history", params={"name": "PG"}))["history"]
    assert [(r["action"], r["to_value"], r["user_id"]) for r in trail] == [
        ("create", "None", "carol"),
        ("stage", "Production", "carol"),
    ]


# ---------------------------------------------------------------------- S3


@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    """A server whose artifact root is a bucket on a moto S3 server (dummy credentials)."""
    import boto3
    from moto.server import ThreadedMotoServer
    from starlette.testclient import TestClient

    from modelpack.server import create_app
    from modelpack.store import engines

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "absent"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent"),
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("MODELPACK_S3_ENDPOINT_URL", endpoint)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="models")
        url = f"sqlite:///{tmp_path}/s3.sqlite"
        app = create_app(backend_store_uri=url, artifact_root="s3://models/root")
        with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as http:
            yield http, app.app.state.server if hasattr(app, "app") else app.state.server
        engines.dispose(url)
    finally:
        moto.stop()


def test_an_s3_artifact_root_registers_and_verifies(s3_server, saved_package, tmp_path):
    from modelpack.artifacts import artifact_store

    api, state = s3_server
    info = ok(api.post(f"{API}/logged-models", json={"experiment_id": "0"}))["model"]["info"]
    location = state.stored_location(info["artifact_uri"])
    assert location.startswith("s3://models/root/")
    mlflow_dir = _mlflow_dir_at(saved_package, tmp_path / "mlflow-model")
    artifact_store(location).put_dir(mlflow_dir, "")
    ok(api.patch(f"{API}/logged-models/{info['model_id']}", json={"status": "LOGGED_MODEL_READY"}))
    source = f"models:/{info['model_id']}"
    made = ok(api.post(f"{MV}/create", json={"name": "S3", "source": source}))
    stored = made["model_version"]["storage_location"]
    assert stored.startswith("mlflow-artifacts:/registry/")
    files = artifact_store(state.stored_location(stored)).list_files()
    assert {"MLmodel", "modelpack.yaml", "model/model.pkl"} <= set(files)
    assert ok(api.get(f"{EXT}/model-versions/verify", params={"name": "S3", "version": "1"}))["ok"]
    refused(
        api.post(f"{MV}/create", json={"name": "S3", "source": "mlflow-artifacts:/../x"}),
        "'..' segment",
    )
