"""The tracking half of MLflow's REST API, through HTTP (Starlette's TestClient): each
endpoint's answer, with its values, as MLflow's clients read it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

A = "/api/2.0/mlflow"
M = "/api/2.0/modelpack"


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response, status: int, code: str, match: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    assert match in body["message"], body["message"]
    return body["message"]


def new_experiment(api, name: str = "demo", **extra) -> str:
    return ok(api.post(f"{A}/experiments/create", json={"name": name, **extra}))["experiment_id"]


def new_run(api, experiment_id: str = "0", **extra) -> str:
    body = {"experiment_id": experiment_id, "user_id": "alice", "start_time": 1_000, **extra}
    return ok(api.post(f"{A}/runs/create", json=body))["run"]["info"]["run_id"]


def get_run(api, run_id: str) -> dict:
    return ok(api.get(f"{A}/runs/get", params={"run_id": run_id, "run_uuid": run_id}))["run"]


def pairs(items: list[dict]) -> dict:
    return {i["key"]: i["value"] for i in items}


# ---------------------------------------------------------------------- experiments


def test_set_experiment_sequence_as_mlflow_sends_it(api, server_state):
    error(
        api.get(f"{A}/experiments/get-by-name", params={"experiment_name": "demo"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Could not find experiment with name 'demo'",
    )
    tags = [{"key": "team", "value": "ml"}]
    experiment_id = new_experiment(api, tags=tags)
    assert len(experiment_id) == 32
    by_name = ok(api.get(f"{A}/experiments/get-by-name", params={"experiment_name": "demo"}))
    by_id = ok(api.get(f"{A}/experiments/get", params={"experiment_id": experiment_id}))
    assert by_name == by_id
    experiment = by_id["experiment"]
    stored = server_state.store.get_experiment(experiment_id)
    assert experiment == {
        "experiment_id": experiment_id,
        "name": "demo",
        "artifact_location": f"mlflow-artifacts:/{experiment_id}",
        "lifecycle_stage": "active",
        "creation_time": stored.creation_time_ms,
        "last_update_time": stored.creation_time_ms,
        "tags": tags,
    }
    assert stored.artifact_location == f"{server_state.artifact_root}/{experiment_id}"
    error(
        api.post(f"{A}/experiments/create", json={"name": "demo"}),
        400,
        "RESOURCE_ALREADY_EXISTS",
        "'demo' already exists",
    )


def test_experiment_zero_is_default(api, server_state):
    experiment = ok(api.get(f"{A}/experiments/get", params={"experiment_id": "0"}))["experiment"]
    assert experiment["experiment_id"] == "0" and experiment["name"] == "Default"
    by_name = ok(api.get(f"{A}/experiments/get-by-name", params={"experiment_name": "Default"}))
    assert by_name["experiment"]["experiment_id"] == "0"
    # A client that never set an experiment sends "0", or nothing.
    for body in ({"experiment_id": "0"}, {}):
        run = ok(api.post(f"{A}/runs/create", json=body))["run"]
        assert run["info"]["experiment_id"] == "0"
        stored = server_state.store.get_run(run["info"]["run_id"])
        assert stored.info.experiment_id == server_state.default_experiment_id
    listed = ok(api.post(f"{A}/experiments/search", json={}))["experiments"]
    assert [e["experiment_id"] for e in listed] == ["0"]
    error(
        api.post(f"{A}/experiments/delete", json={"experiment_id": "0"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "'Default' (id \"0\") cannot be deleted",
    )
    error(
        api.post(f"{A}/experiments/update", json={"experiment_id": "0", "new_name": "x"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "cannot be renamed",
    )


def test_artifact_location_must_lie_under_the_root(api, server_state, tmp_path):
    experiment_id = new_experiment(api, "placed", artifact_location="mlflow-artifacts:/team/a")
    stored = server_state.store.get_experiment(experiment_id)
    assert stored.artifact_location == f"{server_state.artifact_root}/team/a"
    run = get_run(api, new_run(api, experiment_id))
    assert (
        run["info"]["artifact_uri"] == f"mlflow-artifacts:/team/a/{run['info']['run_id']}/artifacts"
    )
    spelled = new_experiment(api, "spelled", artifact_location=f"{server_state.artifact_root}/b")
    assert server_state.store.get_experiment(spelled).artifact_location.endswith("/b")
    for location in (
        str(tmp_path / "elsewhere"),
        "/etc",
        "s3://bucket/x",
        "file:///tmp/x",
        "mlflow-artifacts:/../outside",
        "mlflow-artifacts:/a/../../outside",
        "mlflow-artifacts:/a\\..\\b",
        f"{server_state.artifact_root}-sibling/x",
    ):
        error(
            api.post(
                f"{A}/experiments/create", json={"name": "bad", "artifact_location": location}
            ),
            400,
            "INVALID_PARAMETER_VALUE",
            "artifact_location",
        )
    for reserved in ("registry", "uploads/x"):
        error(
            api.post(
                f"{A}/experiments/create",
                json={"name": "bad", "artifact_location": f"mlflow-artifacts:/{reserved}"},
            ),
            400,
            "INVALID_PARAMETER_VALUE",
            "belongs to the server",
        )
    # Inside another experiment's folder, around it, or on it: the artifact proxy would grant
    # its creator the other experiment's files.
    plain = new_experiment(api, "plain")  # at mlflow-artifacts:/<its id>
    for overlapping in (
        f"mlflow-artifacts:/{plain}/x",
        f"mlflow-artifacts:/{plain}",
        "mlflow-artifacts:/b",
        "mlflow-artifacts:/b/c/",
        "mlflow-artifacts:/team",
        "mlflow-artifacts:/team/a",
        "mlflow-artifacts:/team/a/deeper",
    ):
        error(
            api.post(
                f"{A}/experiments/create",
                json={"name": "bad", "artifact_location": overlapping},
            ),
            400,
            "INVALID_PARAMETER_VALUE",
            "overlaps the artifact location of experiment",
        )
    ok(
        api.post(
            f"{A}/experiments/create",
            json={"name": "near", "artifact_location": "mlflow-artifacts:/team/a_b"},
        )
    )
    ok(
        api.post(
            f"{A}/experiments/create",
            json={"name": "near2", "artifact_location": "mlflow-artifacts:/team/ab"},
        )
    )
    assert server_state.store.get_experiment_by_name("bad") is None


def test_rename_delete_restore_and_tags(api, server_state):
    experiment_id = new_experiment(api)
    ok(api.post(f"{A}/experiments/update", json={"experiment_id": experiment_id, "new_name": "b"}))
    assert server_state.store.get_experiment(experiment_id).name == "b"
    run_id = new_run(api, experiment_id)
    ok(api.post(f"{A}/experiments/delete", json={"experiment_id": experiment_id}))
    got = ok(api.get(f"{A}/experiments/get", params={"experiment_id": experiment_id}))
    assert got["experiment"]["lifecycle_stage"] == "deleted"
    assert get_run(api, run_id)["info"]["lifecycle_stage"] == "deleted"
    error(
        api.post(f"{A}/experiments/delete", json={"experiment_id": experiment_id}),
        400,
        "INVALID_PARAMETER_VALUE",
        "already deleted",
    )
    error(
        api.post(f"{A}/runs/create", json={"experiment_id": experiment_id}),
        400,
        "INVALID_PARAMETER_VALUE",
        "is deleted; restore it first",
    )
    ok(api.post(f"{A}/experiments/restore", json={"experiment_id": experiment_id}))
    assert get_run(api, run_id)["info"]["lifecycle_stage"] == "active"

    tag = {"experiment_id": experiment_id, "key": "owner", "value": "bob"}
    ok(api.post(f"{A}/experiments/set-experiment-tag", json=tag))
    ok(api.post(f"{A}/experiments/set-experiment-tag", json={**tag, "value": "carol"}))
    got = ok(api.get(f"{A}/experiments/get", params={"experiment_id": experiment_id}))
    assert got["experiment"]["tags"] == [{"key": "owner", "value": "carol"}]
    gone = {"experiment_id": experiment_id, "key": "owner"}
    ok(api.post(f"{A}/experiments/delete-experiment-tag", json=gone))
    assert server_state.store.get_experiment(experiment_id).tags == {}
    error(
        api.post(f"{A}/experiments/delete-experiment-tag", json=gone),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "has no tag 'owner'",
    )
    error(
        api.get(f"{A}/experiments/get", params={"experiment_id": "f" * 32}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No experiment with id",
    )


def test_search_experiments_get_and_post_with_filter_order_and_pages(api):
    ids = {name: new_experiment(api, name) for name in ("alpha", "beta", "gamma")}
    ok(api.post(f"{A}/experiments/delete", json={"experiment_id": ids["gamma"]}))
    got = ok(api.get(f"{A}/experiments/search", params={"filter": "name LIKE '%a'"}))
    assert [e["name"] for e in got["experiments"]] == ["beta", "alpha"]  # newest first
    body = {"order_by": ["name ASC"], "max_results": 2, "view_type": "ALL"}
    first = ok(api.post(f"{A}/experiments/search", json=body))
    assert [e["name"] for e in first["experiments"]] == ["Default", "alpha"]
    second = ok(
        api.post(f"{A}/experiments/search", json={**body, "page_token": first["next_page_token"]})
    )
    assert [e["name"] for e in second["experiments"]] == ["beta", "gamma"]
    assert "next_page_token" not in second
    deleted = ok(api.get(f"{A}/experiments/search", params={"view_type": "DELETED_ONLY"}))
    assert [e["experiment_id"] for e in deleted["experiments"]] == [ids["gamma"]]
    either = ok(
        api.get(
            f"{A}/experiments/search",
            params={"filter": "name = 'alpha' OR name = 'beta'", "order_by": "name DESC"},
        )
    )  # noqa: E501
    assert [e["name"] for e in either["experiments"]] == ["beta", "alpha"]


def test_searches_keep_to_the_experiments_the_caller_may_read(api, server_state):
    mine, theirs = new_experiment(api, "mine"), new_experiment(api, "theirs")
    run_mine, run_theirs = new_run(api, mine), new_run(api, theirs)
    server_state.auth.readable_experiments = lambda call: {mine}
    got = ok(api.post(f"{A}/experiments/search", json={"filter": "name LIKE '%'"}))
    assert [e["experiment_id"] for e in got["experiments"]] == [mine]
    runs = ok(api.post(f"{A}/runs/search", json={"experiment_ids": [mine, theirs]}))["runs"]
    assert [r["info"]["run_id"] for r in runs] == [run_mine]
    bulk = {"run_ids": [run_mine, run_theirs], "metric_key": "m"}
    error(
        api.get(f"{A}/metrics/get-history-bulk-interval", params=bulk),
        403,
        "PERMISSION_DENIED",
        run_theirs,
    )
    server_state.auth.readable_experiments = lambda call: set()
    assert ok(api.post(f"{A}/experiments/search", json={}))["experiments"] == []


# ---------------------------------------------------------------------- runs


def test_create_get_update_run(api, server_state):
    experiment_id = new_experiment(api)
    tags = [
        {"key": "mlflow.user", "value": "alice"},
        {"key": "mlflow.source.type", "value": "LOCAL"},
    ]
    run = ok(
        api.post(
            f"{A}/runs/create",
            json={
                "experiment_id": experiment_id,
                "user_id": "alice",
                "run_name": "first",
                "start_time": 1_700_000_000_123,
                "tags": tags,
            },
        )
    )["run"]
    run_id = run["info"]["run_id"]
    assert run["info"] == {
        "run_id": run_id,
        "run_uuid": run_id,
        "run_name": "first",
        "experiment_id": experiment_id,
        "user_id": "alice",
        "status": "RUNNING",
        "start_time": 1_700_000_000_123,
        "artifact_uri": f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
        "lifecycle_stage": "active",
    }
    assert pairs(run["data"]["tags"]) == {
        "mlflow.user": "alice",
        "mlflow.source.type": "LOCAL",
        "mlflow.runName": "first",
    }
    assert run["data"]["metrics"] == [] and run["data"]["params"] == []
    assert run["inputs"] == {"dataset_inputs": []}
    # The older spelling alone, and the AJAX prefix the UI uses.
    assert ok(api.get(f"{A}/runs/get", params={"run_uuid": run_id}))["run"] == run
    assert ok(api.get("/ajax-api/2.0/mlflow/runs/get", params={"run_id": run_id}))["run"] == run

    update = {"run_id": run_id, "status": "FINISHED", "end_time": 1_700_000_009_000}
    info = ok(api.post(f"{A}/runs/update", json={**update, "run_name": "renamed"}))["run_info"]
    assert (info["status"], info["end_time"], info["run_name"]) == (
        "FINISHED",
        1_700_000_009_000,
        "renamed",
    )
    assert server_state.store.get_run(run_id).info.run_name == "renamed"
    assert pairs(get_run(api, run_id)["data"]["tags"])["mlflow.runName"] == "renamed"
    message = error(
        api.post(f"{A}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1}),
        400,
        "INVALID_PARAMETER_VALUE",
        "has ended (FINISHED)",
    )
    assert "start_run(run_id=" in message
    resumed = ok(api.post(f"{M}/runs/resume", json={"run_id": run_id, "run_name": "again"}))
    assert resumed["run"]["info"]["status"] == "RUNNING"
    assert resumed["run"]["info"]["run_name"] == "again"
    assert "end_time" not in resumed["run"]["info"]
    ok(api.post(f"{A}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1}))


def test_run_name_tag_and_parent_tag(api, server_state):
    parent = new_run(api, run_name="parent")
    child = ok(
        api.post(
            f"{A}/runs/create",
            json={
                "experiment_id": "0",
                "tags": [
                    {"key": "mlflow.parentRunId", "value": parent},
                    {"key": "mlflow.runName", "value": "child"},
                ],
            },
        )
    )["run"]
    assert child["info"]["run_name"] == "child"
    assert child["info"]["parent_run_id"] == parent
    assert pairs(child["data"]["tags"])["mlflow.parentRunId"] == parent
    assert server_state.store.get_run(child["info"]["run_id"]).info.parent_run_id == parent
    # The name is the run's, shown as MLflow's tag; the parent tag was stored as sent.
    assert child["data"]["derived_tags"] == ["mlflow.runName"]
    assert "mlflow.runName" not in server_state.store.get_run(child["info"]["run_id"]).data.tags
    own = ok(api.post(f"{A}/runs/create", json={"parent_run_id": parent}))["run"]
    assert own["data"]["derived_tags"] == ["mlflow.runName", "mlflow.parentRunId"]
    assert pairs(own["data"]["tags"])["mlflow.parentRunId"] == parent
    # Setting the tag renames the run, as MLflow's store does.
    child_id = child["info"]["run_id"]
    body = {"run_id": child_id, "key": "mlflow.runName", "value": "renamed"}
    ok(api.post(f"{A}/runs/set-tag", json=body))
    assert get_run(api, child_id)["info"]["run_name"] == "renamed"
    batch = {"run_id": child_id, "tags": [{"key": "mlflow.runName", "value": "batched"}]}
    ok(api.post(f"{A}/runs/log-batch", json=batch))
    got = get_run(api, child_id)
    assert got["info"]["run_name"] == "batched"
    assert pairs(got["data"]["tags"])["mlflow.runName"] == "batched"
    ok(api.post(f"{A}/runs/update", json={"run_id": child_id, "status": "KILLED"}))
    error(
        api.post(f"{A}/runs/set-tag", json=body),
        400,
        "INVALID_PARAMETER_VALUE",
        "has ended (KILLED)",
    )
    found = ok(
        api.post(
            f"{A}/runs/search",
            json={"experiment_ids": ["0"], "filter": f"tags.mlflow.parentRunId = '{parent}'"},
        )
    )["runs"]
    assert [r["info"]["run_id"] for r in found] == [child["info"]["run_id"]]
    error(
        api.post(
            f"{A}/runs/create",
            json={"tags": [{"key": "mlflow.parentRunId", "value": "e" * 32}]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "no run has that id",
    )


def test_metrics_params_tags_round_trip_with_nan_and_infinities(api):
    run_id = new_run(api)
    for step, value in enumerate(["NaN", "Infinity", "-Infinity", 0.25, "1.5"]):
        body = {"run_id": run_id, "run_uuid": run_id, "key": "loss", "value": value}
        ok(api.post(f"{A}/runs/log-metric", json={**body, "timestamp": 100 + step, "step": step}))
    ok(api.post(f"{A}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"}))
    ok(api.post(f"{A}/runs/log-parameter", json={"run_id": run_id, "key": "empty", "value": ""}))
    ok(api.post(f"{A}/runs/set-tag", json={"run_id": run_id, "key": "t", "value": "v1"}))
    ok(api.post(f"{A}/runs/set-tag", json={"run_id": run_id, "key": "t", "value": "v2"}))
    ok(api.post(f"{A}/runs/set-tag", json={"run_id": run_id, "key": "gone", "value": "x"}))
    ok(api.post(f"{A}/runs/delete-tag", json={"run_id": run_id, "key": "gone"}))
    history = ok(
        api.get(f"{A}/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"})
    )
    assert history == {
        "metrics": [
            {"key": "loss", "value": "NaN", "timestamp": 100, "step": 0},
            {"key": "loss", "value": "Infinity", "timestamp": 101, "step": 1},
            {"key": "loss", "value": "-Infinity", "timestamp": 102, "step": 2},
            {"key": "loss", "value": 0.25, "timestamp": 103, "step": 3},
            {"key": "loss", "value": 1.5, "timestamp": 104, "step": 4},
        ]
    }
    run = get_run(api, run_id)
    assert run["data"]["metrics"] == [{"key": "loss", "value": 1.5, "timestamp": 104, "step": 4}]
    assert pairs(run["data"]["params"]) == {"lr": "0.1", "empty": ""}
    assert pairs(run["data"]["tags"])["t"] == "v2" and "gone" not in pairs(run["data"]["tags"])
    error(
        api.post(f"{A}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.2"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "Param 'lr' was already logged as '0.1'",
    )
    error(
        api.post(f"{A}/runs/delete-tag", json={"run_id": run_id, "key": "gone"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "has no tag 'gone'",
    )
    nan_run = new_run(api)
    ok(
        api.post(
            f"{A}/runs/log-metric",
            json={"run_id": nan_run, "key": "x", "value": "NaN", "timestamp": 1},
        )
    )
    metric = get_run(api, nan_run)["data"]["metrics"][0]
    assert metric["value"] == "NaN"


def test_log_batch_stores_everything_once_per_idempotency_key(api, server_state):
    run_id = new_run(api)
    body = {
        "run_id": run_id,
        "metrics": [
            {"key": "acc", "value": 0.5, "timestamp": 10, "step": 0},
            {"key": "acc", "value": "NaN", "timestamp": 11, "step": 1},
        ],
        "params": [{"key": "depth", "value": "4"}, {"key": "depth", "value": "4"}],
        "tags": [{"key": "stage", "value": "a"}, {"key": "stage", "value": "b"}],
        "idempotency_key": "3f2a" * 8,
    }
    ok(api.post(f"{A}/runs/log-batch", json=body))
    ok(api.post(f"{A}/runs/log-batch", json=body))  # the retry of a lost answer
    history = server_state.store.get_metric_history(run_id, "acc")
    assert [m.step for m in history] == [0, 1] and math.isnan(history[1].value)
    run = get_run(api, run_id)
    assert pairs(run["data"]["params"]) == {"depth": "4"}
    assert pairs(run["data"]["tags"])["stage"] == "b"
    metrics_only = {"run_id": run_id, "metrics": body["metrics"][:1], "idempotency_key": "k2"}
    for _ in range(3):
        ok(api.post(f"{A}/runs/log-batch", json=metrics_only))
    assert len(server_state.store.get_metric_history(run_id, "acc")) == 3
    ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id, "metrics": body["metrics"][:1]}))
    ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id, "metrics": body["metrics"][:1]}))
    assert len(server_state.store.get_metric_history(run_id, "acc")) == 5  # no key: each stored
    ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id}))  # an empty batch is fine


def test_idempotency_and_store_queries_on_postgresql(postgres_url, tmp_path):
    from starlette.testclient import TestClient

    from modelpack.server import create_app

    app = create_app(backend_store_uri=postgres_url, artifact_root=str(tmp_path / "artifacts"))
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as api:
        run_id = new_run(api)
        body = {
            "run_id": run_id,
            "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}],
            "idempotency_key": "pg-key",
        }
        ok(api.post(f"{A}/runs/log-batch", json=body))
        ok(api.post(f"{A}/runs/log-batch", json=body))
        ok(api.post(f"{A}/runs/log-batch", json={**body, "tags": [{"key": "a", "value": "b"}]}))
        ok(api.post(f"{A}/runs/log-batch", json={**body, "idempotency_key": "other"}))
        history = ok(
            api.get(f"{A}/metrics/get-history", params={"run_id": run_id, "metric_key": "m"})
        )
        assert len(history["metrics"]) == 2
        assert "a" not in pairs(get_run(api, run_id)["data"]["tags"])

        # The queries this module added to the store, on PostgreSQL too.
        experiment_id = new_experiment(api, "pg", artifact_location="mlflow-artifacts:/pg_1")
        error(
            api.post(
                f"{A}/experiments/create",
                json={"name": "x", "artifact_location": "mlflow-artifacts:/pg_1/in"},
            ),
            400,
            "INVALID_PARAMETER_VALUE",
            "overlaps",
        )
        new_experiment(api, "y", artifact_location="mlflow-artifacts:/pgx1")  # '_' is literal
        tag = {"experiment_id": experiment_id, "key": "k", "value": "v"}
        ok(api.post(f"{A}/experiments/set-experiment-tag", json=tag))
        ok(api.post(f"{A}/experiments/delete-experiment-tag", json={**tag, "value": None}))
        run_ids = [new_run(api, experiment_id, run_name=f"r{i}") for i in range(3)]
        for i, rid in enumerate(run_ids):
            points = [
                {"key": "acc", "value": i + s / 10, "timestamp": s, "step": s} for s in range(4)
            ]
            ok(api.post(f"{A}/runs/log-batch", json={"run_id": rid, "metrics": points}))
        page = ok(
            api.post(
                f"{A}/runs/search",
                json={
                    "experiment_ids": [experiment_id],
                    "filter": "metrics.acc > 1 OR attributes.run_name = 'r0'",
                    "order_by": ["metrics.acc DESC"],
                    "max_results": 2,
                },
            )
        )
        assert [r["info"]["run_name"] for r in page["runs"]] == ["r2", "r1"]
        assert page["runs"][0]["data"]["metrics"] == [
            {"key": "acc", "value": 2.3, "timestamp": 3, "step": 3}
        ]
        params = {"run_id": run_ids[0], "metric_key": "acc", "max_results": 3}
        first = ok(api.get(f"{A}/metrics/get-history", params=params))
        rest = ok(
            api.get(
                f"{A}/metrics/get-history",
                params={**params, "page_token": first["next_page_token"]},
            )
        )
        assert [m["step"] for m in first["metrics"] + rest["metrics"]] == [0, 1, 2, 3]


def test_metrics_relogged_with_a_model_id_are_not_duplicated(api, server_state):
    run_id = new_run(api)
    point = {"key": "acc", "value": 0.9, "timestamp": 5, "step": 0}
    ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id, "metrics": [point]}))
    # MLflow 3's log_model re-logs the run's metrics tagged with the new model's id.
    again = {**point, "model_id": "m-" + "a" * 32}
    ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id, "metrics": [again]}))
    ok(api.post(f"{A}/runs/log-metric", json={"run_id": run_id, **again}))
    assert len(server_state.store.get_metric_history(run_id, "acc")) == 1
    ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id, "metrics": [{**again, "step": 1}]}))
    assert len(server_state.store.get_metric_history(run_id, "acc")) == 2


def test_delete_restore_and_search_runs(api):
    experiment_id = new_experiment(api)
    ids = []
    for i in range(5):
        run_id = new_run(api, experiment_id, run_name=f"r{i}", start_time=1_000 + i)
        metric = {"key": "acc", "value": i / 10, "timestamp": 1, "step": 0}
        params = [{"key": "depth", "value": str(i % 2)}]
        ok(
            api.post(
                f"{A}/runs/log-batch",
                json={"run_id": run_id, "metrics": [metric], "params": params},
            )
        )
        ids.append(run_id)
    body = {
        "experiment_ids": [experiment_id],
        "filter": "(params.depth = '0' AND metrics.acc > 0.1) OR attributes.run_name = 'r1'",
        "order_by": ["metrics.acc DESC"],
    }
    found = ok(api.post(f"{A}/runs/search", json=body))
    assert [r["info"]["run_name"] for r in found["runs"]] == ["r4", "r2", "r1"]
    assert "next_page_token" not in found
    assert found["runs"][0]["data"]["metrics"] == [
        {"key": "acc", "value": 0.4, "timestamp": 1, "step": 0}
    ]
    names, token, pages = [], None, 0
    while pages < 10:
        page = ok(
            api.post(
                f"{A}/runs/search",
                json={"experiment_ids": [experiment_id], "max_results": 2, "page_token": token},
            )
        )
        names += [r["info"]["run_name"] for r in page["runs"]]
        pages += 1
        token = page.get("next_page_token")
        if not token:
            break
    assert names == ["r4", "r3", "r2", "r1", "r0"] and pages == 3

    ok(api.post(f"{A}/runs/delete", json={"run_id": ids[0]}))
    assert get_run(api, ids[0])["info"]["lifecycle_stage"] == "deleted"
    error(
        api.post(f"{A}/runs/set-tag", json={"run_id": ids[0], "key": "k", "value": "v"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "is deleted; restore it",
    )
    error(
        api.post(f"{A}/runs/update", json={"run_id": ids[0], "status": "FINISHED"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "is deleted; restore it",
    )
    deleted = ok(
        api.post(
            f"{A}/runs/search",
            json={"experiment_ids": [experiment_id], "run_view_type": "DELETED_ONLY"},
        )
    )
    assert [r["info"]["run_id"] for r in deleted["runs"]] == [ids[0]]
    active = ok(api.get(f"{A}/runs/search", params={"experiment_ids": experiment_id}))
    assert len(active["runs"]) == 4
    ok(api.post(f"{A}/runs/restore", json={"run_id": ids[0]}))
    every = ok(api.post(f"{A}/runs/search", json={"experiment_ids": [experiment_id, "0"]}))
    assert len(every["runs"]) == 5


def test_metric_history_pages(api):
    run_id = new_run(api)
    metrics = [{"key": "m", "value": float(i), "timestamp": i, "step": i} for i in range(7)]
    ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}))
    steps, token, pages = [], None, 0
    while pages < 10:
        params = {"run_id": run_id, "metric_key": "m", "max_results": 3}
        if token:
            params["page_token"] = token
        page = ok(api.get(f"{A}/metrics/get-history", params=params))
        steps += [m["step"] for m in page["metrics"]]
        pages += 1
        token = page.get("next_page_token")
        if not token:
            break
    assert steps == list(range(7)) and pages == 3
    whole = ok(api.get(f"{A}/metrics/get-history", params={"run_id": run_id, "metric_key": "m"}))
    assert len(whole["metrics"]) == 7 and "next_page_token" not in whole
    none = ok(api.get(f"{A}/metrics/get-history", params={"run_id": run_id, "metric_key": "x"}))
    assert none == {"metrics": []}


def test_metric_history_bulk_interval_samples_steps(api):
    runs = [new_run(api), new_run(api)]
    for offset, run_id in enumerate(runs):
        metrics = [
            {"key": "m", "value": float(s + offset), "timestamp": s, "step": s} for s in range(10)
        ]
        ok(api.post(f"{A}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}))
    url = f"{A}/metrics/get-history-bulk-interval"
    whole = ok(api.get(url, params={"run_ids": runs, "metric_key": "m"}))["metrics"]
    assert len(whole) == 20
    assert whole[0] == {"key": "m", "value": 0.0, "timestamp": 0, "step": 0, "run_id": runs[0]}
    sampled = ok(api.get(url, params={"run_ids": runs, "metric_key": "m", "max_results": 3}))
    steps = [m["step"] for m in sampled["metrics"] if m["run_id"] == runs[0]]
    assert steps == [0, 3, 6]  # MLflow's spread: 0, 3, 6 and the last (9), capped at 3 a run
    window = ok(
        api.get(
            url,
            params={"run_ids": runs[0], "metric_key": "m", "start_step": 2, "end_step": 4},
        )
    )["metrics"]
    assert [m["step"] for m in window] == [2, 3, 4]
    error(
        api.get(url, params={"run_ids": runs, "metric_key": "m", "start_step": 2}),
        400,
        "INVALID_PARAMETER_VALUE",
        "both must be",
    )
    error(
        api.get(url, params={"run_ids": runs, "metric_key": "m", "start_step": 5, "end_step": 1}),
        400,
        "INVALID_PARAMETER_VALUE",
        "end_step must be at least start_step",
    )
    error(
        api.get(url, params={"run_ids": ["d" * 32], "metric_key": "m"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No run with id",
    )


def test_list_artifacts(api, server_state):
    run_id = new_run(api)
    root = Path(server_state.store.get_run(run_id).info.artifact_uri)
    (root / "model").mkdir(parents=True)
    (root / "model" / "MLmodel").write_text("flavors: {}\n")
    (root / "notes.txt").write_text("hello")
    listing = ok(api.get(f"{A}/artifacts/list", params={"run_id": run_id}))
    experiment = server_state.store.get_run(run_id).info.experiment_id
    assert listing == {
        "root_uri": f"mlflow-artifacts:/{experiment}/{run_id}/artifacts",
        "files": [
            {"path": "model", "is_dir": True},
            {"path": "notes.txt", "is_dir": False, "file_size": 5},
        ],
    }
    inside = ok(api.get(f"{A}/artifacts/list", params={"run_id": run_id, "path": "model"}))
    assert inside["files"] == [{"path": "model/MLmodel", "is_dir": False, "file_size": 12}]
    missing = ok(api.get(f"{A}/artifacts/list", params={"run_id": run_id, "path": "nothing"}))
    assert missing["files"] == []
    for path in ("../secrets", "/etc", "model/../..", "a\\b", "C:/x"):
        error(
            api.get(f"{A}/artifacts/list", params={"run_id": run_id, "path": path}),
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value for parameter 'path'",
        )


def test_log_inputs_outputs_and_log_model(api):
    run_id = new_run(api)
    dataset = {
        "name": "train",
        "digest": "abc123",
        "source_type": "local",
        "source": '{"uri": "data.csv"}',
        "schema": '{"mlflow_colspec": []}',
    }
    inputs = {
        "run_id": run_id,
        "datasets": [
            {"dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": "training"}]}
        ],
        "models": [{"model_id": "m-1"}],
    }
    ok(api.post(f"{A}/runs/log-inputs", json=inputs))
    got = get_run(api, run_id)["inputs"]["dataset_inputs"]
    assert got == [
        {"tags": [{"key": "mlflow.data.context", "value": "training"}], "dataset": dataset}
    ]
    outputs = {"run_id": run_id, "models": [{"model_id": "m-" + "1" * 32, "step": 0}]}
    ok(api.post(f"{A}/runs/outputs", json=outputs))
    ok(api.post(f"{A}/runs/outputs", json=outputs))  # once only
    run = get_run(api, run_id)
    assert run["outputs"] == {"model_outputs": [{"model_id": "m-" + "1" * 32, "step": 0}]}

    model = {
        "artifact_path": "model",
        "flavors": {"sklearn": {"pickled_model": "model.pkl", "config": {"x": 1}}},
        "utc_time_created": "2026-01-01 00:00:00.000000",
        "run_id": run_id,
        "model_uuid": "u1",
        "signature": {"inputs": "[]"},
    }
    for _ in range(2):
        ok(
            api.post(
                f"{A}/runs/log-model", json={"run_id": run_id, "model_json": json.dumps(model)}
            )
        )
    history = json.loads(pairs(get_run(api, run_id)["data"]["tags"])["mlflow.log-model.history"])
    assert (
        history
        == [
            {
                "run_id": run_id,
                "utc_time_created": "2026-01-01 00:00:00.000000",
                "artifact_path": "model",
                "model_uuid": "u1",
                "flavors": {"sklearn": {"pickled_model": "model.pkl"}},
            }
        ]
        * 2
    )
    error(
        api.post(f"{A}/runs/log-model", json={"run_id": run_id, "model_json": '{"flavors": {}}'}),
        400,
        "INVALID_PARAMETER_VALUE",
        "missing mandatory fields: artifact_path, utc_time_created, run_id",
    )
    error(
        api.post(f"{A}/runs/log-model", json={"run_id": run_id, "model_json": "{nope"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "not JSON",
    )
    error(
        api.post(
            f"{A}/runs/log-inputs",
            json={"run_id": run_id, "datasets": [{"dataset": {"name": "x"}}]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "'digest' must be a non-empty string",
    )


def test_modelpack_logged_model_records(api):
    run_id = new_run(api)
    record = {
        "run_id": run_id,
        "artifact_path": "model",
        "model_id": "a" * 32,
        "manifest_sha256": "b" * 64,
        "flavor": "sklearn",
    }
    query = {"run_id": run_id, "artifact_path": "model"}
    assert ok(api.get(f"{M}/runs/logged-model", params=query)) == {}
    ok(api.post(f"{M}/runs/record-logged-model", json=record))
    found = ok(api.get(f"{M}/runs/logged-model", params=query))["logged_model"]
    assert {k: found[k] for k in record} == record and found["creation_time"] > 0
    for field, value, match in (
        ("model_id", "A" * 32, "32 lowercase hexadecimal"),
        ("manifest_sha256", "b" * 63, "64 lowercase hexadecimal"),
        ("artifact_path", "../escape", "Invalid value for parameter 'artifact_path'"),
    ):
        error(
            api.post(f"{M}/runs/record-logged-model", json={**record, field: value}),
            400,
            "INVALID_PARAMETER_VALUE",
            match,
        )
    error(
        api.get(f"{M}/runs/logged-model", params={**query, "run_id": "c" * 32}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No run with id",
    )


@pytest.mark.parametrize(
    "path", ["/mlflow/runs/get", "/mlflow/metrics/get-history", "/mlflow/artifacts/list"]
)
def test_unknown_run_is_404(api, path):
    params = {"run_id": "9" * 32, "metric_key": "m"}
    error(
        api.get(f"/api/2.0{path}", params=params), 404, "RESOURCE_DOES_NOT_EXIST", "No run with id"
    )
