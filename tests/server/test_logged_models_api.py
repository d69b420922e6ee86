"""MLflow 3's LoggedModels over REST on a real SQLite server: create in experiment "0",
get, finalize, tags, params, search, list artifacts, delete; ids checked before any use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BASE = "/api/2.0/mlflow/logged-models"


def _create(api, **body):
    response = api.post(BASE, json={"experiment_id": "0", **body})
    assert response.status_code == 200, response.text
    return response.json()["model"]


def test_create_get_and_finalize(api, server_state):
    model = _create(
        api,
        name="clf",
        model_type="Classifier",
        params=[{"key": "alpha", "value": "0.5"}],
        tags=[{"key": "team", "value": "fraud"}],
    )
    info = model["info"]
    assert re.fullmatch(r"m-[0-9a-f]{32}", info["model_id"])
    assert info["experiment_id"] == "0"
    assert (info["name"], info["model_type"], info["status"]) == (
        "clf",
        "Classifier",
        "LOGGED_MODEL_PENDING",
    )
    assert info["artifact_uri"] == (
        f"mlflow-artifacts:/{server_state.default_experiment_id}/models/{info['model_id']}/artifacts"
    )
    assert info["tags"] == [{"key": "team", "value": "fraud"}]
    assert info["registrations"] == []
    assert model["data"] == {"params": [{"key": "alpha", "value": "0.5"}], "metrics": []}
    assert "creator_id" not in info  # an int64 in MLflow's message: a user name would break it

    got = api.get(f"{BASE}/{info['model_id']}").json()["model"]
    assert got == model
    done = api.patch(
        f"{BASE}/{info['model_id']}",
        json={"model_id": info["model_id"], "status": "LOGGED_MODEL_READY"},
    )
    assert done.status_code == 200
    assert done.json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    bad = api.patch(f"{BASE}/{info['model_id']}", json={"status": "FINISHED"})
    assert bad.status_code == 400
    assert "finalize with LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED" in bad.json()["message"]


def test_a_source_run_in_another_experiment_or_missing_is_refused(api):
    missing = api.post(BASE, json={"experiment_id": "0", "source_run_id": "0" * 32})
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    nowhere = api.post(BASE, json={"experiment_id": "424242", "name": "x"})
    assert nowhere.status_code == 404
    assert "No experiment with id '424242'" in nowhere.json()["message"]


def test_tags_params_and_delete(api):
    model_id = _create(api, name="m")["info"]["model_id"]
    assert (
        api.patch(
            f"{BASE}/{model_id}/tags",
            json={"tags": [{"key": "a", "value": "1"}, {"key": "b/c", "value": "2"}]},
        ).status_code
        == 200
    )
    assert api.delete(f"{BASE}/{model_id}/tags/b/c").status_code == 200
    missing = api.delete(f"{BASE}/{model_id}/tags/b/c")
    assert missing.status_code == 404 and "has no tag 'b/c'" in missing.json()["message"]
    params = {"params": [{"key": "lr", "value": "0.1"}, {"key": "depth", "value": "3"}]}
    assert api.post(f"{BASE}/{model_id}/params", json=params).status_code == 200
    changed = api.post(f"{BASE}/{model_id}/params", json={"params": [{"key": "lr", "value": "9"}]})
    assert changed.status_code == 400 and "params cannot change" in changed.json()["message"]
    got = api.get(f"{BASE}/{model_id}").json()["model"]
    assert got["info"]["tags"] == [{"key": "a", "value": "1"}]
    assert got["data"]["params"] == [
        {"key": "depth", "value": "3"},
        {"key": "lr", "value": "0.1"},
    ]
    assert api.delete(f"{BASE}/{model_id}").status_code == 200
    assert api.get(f"{BASE}/{model_id}").status_code == 404
    kept = api.get(f"{BASE}/{model_id}", params={"allow_deleted": "true"})
    assert kept.status_code == 200 and kept.json()["model"]["info"]["model_id"] == model_id


@pytest.mark.parametrize(
    "bad", ["m-123", "M-" + "a" * 32, "m-" + "a" * 31 + "%2e", "m-%2e%2e", "m-" + "A" * 32]
)
def test_bad_ids_are_refused_before_any_use(api, bad):
    for response in (
        api.get(f"{BASE}/{bad}"),
        api.patch(f"{BASE}/{bad}", json={"status": "LOGGED_MODEL_READY"}),
        api.delete(f"{BASE}/{bad}"),
        api.get(f"{BASE}/{bad}/artifacts/directories"),
    ):
        assert response.status_code == 400, response.text
        assert "expected 'm-' followed by 32 lowercase hex digits" in response.json()["message"]


def test_an_encoded_slash_in_an_id_reaches_no_handler(api):
    response = api.get(f"{BASE}/..%2f..%2fetc/artifacts/directories")
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_search_filters_and_pages(api):
    ids = []
    for i in range(4):
        ids.append(
            _create(api, name=f"m{i}", tags=[{"key": "k", "value": "even" if i % 2 else "odd"}])[
                "info"
            ]["model_id"]
        )
    api.patch(f"{BASE}/{ids[2]}", json={"status": "LOGGED_MODEL_READY"})
    search = f"{BASE}/search"

    def names(**body):
        response = api.post(search, json={"experiment_ids": ["0"], **body})
        assert response.status_code == 200, response.text
        return [m["info"]["name"] for m in response.json()["models"]], response.json()

    order = [{"field_name": "name", "ascending": True}]
    assert names(order_by=order)[0] == ["m0", "m1", "m2", "m3"]
    assert names(filter="tags.k = 'even'", order_by=order)[0] == ["m1", "m3"]
    assert names(filter="status = 'LOGGED_MODEL_READY'")[0] == ["m2"]
    first, body = names(order_by=order, max_results=3)
    assert first == ["m0", "m1", "m2"]
    rest, end = names(order_by=order, max_results=3, page_token=body["next_page_token"])
    assert rest == ["m3"] and "next_page_token" not in end
    too_many = api.post(search, json={"experiment_ids": ["0"], "max_results": 5000})
    assert too_many.status_code == 400 and "from 1 to 1000" in too_many.json()["message"]
    no_ids = api.post(search, json={})
    assert no_ids.status_code == 400 and "experiment_ids" in no_ids.json()["message"]


def test_list_artifacts(api, server_state):
    info = _create(api, name="m")["info"]
    folder = Path(server_state.stored_location(info["artifact_uri"]))
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "data" / "w.bin").write_bytes(b"12345")
    url = f"{BASE}/{info['model_id']}/artifacts/directories"
    top = api.get(url).json()
    assert top["root_uri"] == info["artifact_uri"]
    assert top["files"] == [
        {"path": "MLmodel", "is_dir": False, "file_size": 12},
        {"path": "data", "is_dir": True},
    ]
    inner = api.get(url, params={"artifact_directory_path": "data"}).json()
    assert inner["files"] == [{"path": "data/w.bin", "is_dir": False, "file_size": 5}]
    escape = api.get(url, params={"artifact_directory_path": "../../.."})
    assert escape.status_code == 400 and "'..'" in escape.json()["message"]
