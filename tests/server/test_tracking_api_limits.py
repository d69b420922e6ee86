"""The tracking API's limits and its answers to client mistakes: MLflow's log-batch limits,
``max_results`` caps, wrong types and malformed bodies are 4xx errors that name the field,
never a 500 (which MLflow's client would retry seven times)."""

from __future__ import annotations

import pytest

A = "/api/2.0/mlflow"


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response, status: int, code: str, match: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    assert match in body["message"], body["message"]
    assert "Traceback" not in body["message"]
    return body["message"]


@pytest.fixture
def run_id(api):
    return ok(api.post(f"{A}/runs/create", json={"experiment_id": "0"}))["run"]["info"]["run_id"]


def _metrics(n: int) -> list[dict]:
    return [{"key": f"m{i % 10}", "value": 1.0, "timestamp": 1, "step": i} for i in range(n)]


def _kv(n: int, prefix: str) -> list[dict]:
    return [{"key": f"{prefix}{i}", "value": "v"} for i in range(n)]


def test_log_batch_at_the_limits_is_stored(api, server_state, run_id):
    body = {"run_id": run_id, "metrics": _metrics(1000)}
    ok(api.post(f"{A}/runs/log-batch", json=body))
    mixed = {
        "run_id": run_id,
        "metrics": _metrics(800),
        "params": _kv(100, "p"),
        "tags": _kv(100, "t"),
    }
    ok(api.post(f"{A}/runs/log-batch", json=mixed))
    run = server_state.store.get_run(run_id)
    assert len(run.data.params) == 100 and len(run.data.tags) == 100
    assert len(server_state.store.get_metric_history(run_id, "m0")) == 180


OVER_LIMITS = [
    ({"metrics": _metrics(1001)}, "at most 1000 metrics. Got 1001 metrics"),
    ({"params": _kv(101, "p")}, "at most 100 params. Got 101 params"),
    ({"tags": _kv(101, "t")}, "at most 100 tags. Got 101 tags"),
    (
        {"metrics": _metrics(900), "params": _kv(100, "p"), "tags": _kv(1, "t")},
        "at most 1000 metrics, params and tags in total. Got 1001",
    ),
]


def test_log_batch_over_a_limit_is_refused_and_stores_nothing(api, server_state, run_id):
    for body, match in OVER_LIMITS:
        error(
            api.post(f"{A}/runs/log-batch", json={"run_id": run_id, **body}),
            400,
            "INVALID_PARAMETER_VALUE",
            match,
        )
    run = server_state.store.get_run(run_id)
    assert not run.data.metrics and not run.data.params


BATCH_ERRORS = [
    ({"metrics": [{"key": "a", "value": "high"}]}, "Invalid metrics[0]: Invalid value 'high'"),
    ({"metrics": [{"key": "a", "value": True}]}, "expected a number"),
    ({"metrics": [{"key": "a"}]}, "Missing value for required parameter 'value'"),
    ({"metrics": [{"value": 1}]}, "Invalid metrics[0]: 'key' must be a non-empty string"),
    ({"metrics": [{"key": "a", "value": 1, "step": "one"}]}, "parameter 'step'"),
    ({"metrics": [{"key": "a", "value": 1, "step": 1.5}]}, "expected an integer"),
    ({"metrics": [{"key": "a", "value": 1, "timestamp": 2**64}]}, "parameter 'timestamp'"),
    ({"metrics": {"key": "a"}}, "parameter 'metrics': expected a list of objects"),
    ({"metrics": ["a"]}, "expected a list of objects"),
    ({"params": [{"key": "p", "value": 3}]}, "'value' must be a string"),
    ({"tags": [{"key": "", "value": "v"}]}, "Invalid tags[0]: 'key' must be a non-empty"),
    (
        {"params": [{"key": "p", "value": "1"}, {"key": "p", "value": "2"}]},
        "Duplicate param key 'p' in one batch",
    ),
    ({"params": [{"key": "p" * 300, "value": "1"}]}, "the limit is 256"),
    ({"idempotency_key": "k" * 65}, "'idempotency_key': 65 characters, the limit is 64"),
    ({"idempotency_key": ["a", {"b": 1}]}, "parameter 'idempotency_key'"),
]


def test_log_batch_field_errors_name_the_field(api, run_id):
    for body, match in BATCH_ERRORS:
        body = {"run_id": run_id, "metrics": _metrics(1), **body}
        error(api.post(f"{A}/runs/log-batch", json=body), 400, "INVALID_PARAMETER_VALUE", match)


SEARCH_ERRORS = [
    ("POST", "/runs/search", {"experiment_ids": ["0"], "max_results": 50_001}, "at most 50000"),
    ("POST", "/runs/search", {"experiment_ids": ["0"], "max_results": 0}, "at least 1"),
    ("POST", "/runs/search", {"experiment_ids": ["0"], "max_results": "x"}, "an integer"),
    ("POST", "/runs/search", {"experiment_ids": "0", "page_token": "bogus"}, "page_token"),
    ("POST", "/runs/search", {"experiment_ids": ["0"], "run_view_type": "SOME"}, "ACTIVE_ONLY"),
    ("POST", "/runs/search", {"experiment_ids": [0]}, "expected a list of strings"),
    ("POST", "/runs/search", {"experiment_ids": ["0"], "filter": "metrics.a >"}, "metrics.a"),
    ("POST", "/runs/search", {"experiment_ids": ["0"], "order_by": ["nope ASC"]}, "nope"),
    ("GET", "/experiments/search", {"max_results": 50_001}, "at most 50000"),
    ("GET", "/experiments/search", {"view_type": "7"}, "DELETED_ONLY"),
    ("POST", "/experiments/search", {"filter": "name ="}, "name"),
    ("POST", "/experiments/search", {"order_by": "bogus"}, "bogus"),
    ("GET", "/metrics/get-history", {"metric_key": "m", "max_results": 25_001}, "25000"),
    ("GET", "/metrics/get-history", {"metric_key": "m", "page_token": "%%"}, "page_token"),
    ("GET", "/metrics/get-history", {}, "'metric_key'"),
    (
        "GET",
        "/metrics/get-history-bulk-interval",
        {"metric_key": "m", "run_ids": [f"{i:032x}" for i in range(101)]},
        "the most one request takes is 100",
    ),
    ("GET", "/metrics/get-history-bulk-interval", {"run_ids": []}, "'run_ids'"),
    (
        "GET",
        "/metrics/get-history-bulk-interval",
        {"metric_key": "m", "max_results": 2501},
        "2500",
    ),
]


def test_search_and_history_limits(api, run_id):
    for method, path, params, match in SEARCH_ERRORS:
        params = {"run_id": run_id, "run_ids": [run_id], "metric_key": "m", **params}
        if path == "/metrics/get-history" and match == "'metric_key'":
            del params["metric_key"]
        if method == "GET":
            response = api.get(f"{A}{path}", params=params)
        else:
            response = api.post(f"{A}{path}", json=params)
        error(response, 400, "INVALID_PARAMETER_VALUE", match)


FIELD_ERRORS = [
    ("/experiments/create", {}, "Missing value for required parameter 'name'"),
    ("/experiments/create", {"name": ["a", 1]}, "parameter 'name': expected a string"),
    ("/experiments/create", {"name": "x", "tags": "t"}, "parameter 'tags'"),
    ("/experiments/create", {"name": "x\n"}, "control character"),
    ("/experiments/update", {"experiment_id": {"id": 1}}, "parameter 'experiment_id'"),
    ("/experiments/set-experiment-tag", {"experiment_id": "0", "key": "k"}, "'value'"),
    ("/runs/create", {"start_time": "soon"}, "parameter 'start_time'"),
    ("/runs/create", {"start_time": -1}, "parameter 'start_time'"),
    ("/runs/create", {"run_name": "x" * 300}, "the limit is 256"),
    ("/runs/create", {"tags": [{"key": "k", "value": 1}]}, "'value' must be a string"),
    ("/runs/update", {"status": "DONE"}, "parameter 'status': expected one of RUNNING"),
    ("/runs/update", {"end_time": "later"}, "parameter 'end_time'"),
    ("/runs/log-metric", {"key": "m", "value": "lots"}, "parameter 'value': expected a number"),
    ("/runs/log-metric", {"value": 1}, "'key'"),
    ("/runs/log-metric", {"key": "m", "value": 1, "step": 2**63}, "parameter 'step'"),
    ("/runs/log-parameter", {"key": "p"}, "Missing value for required parameter 'value'"),
    ("/runs/set-tag", {"key": "t", "value": "x" * 8001}, "the limit is 8000"),
    ("/runs/outputs", {"models": [{"step": 0}]}, "'model_id' must be a non-empty string"),
    ("/runs/log-inputs", {"datasets": [{"dataset": 5}]}, "'dataset' must be an object"),
    ("/runs/log-model", {}, "'model_json'"),
    ("/runs/log-model", {"model_json": "[1]"}, "expected a JSON object"),
]


def test_wrong_fields_are_400_naming_them(api, run_id):
    for path, body, match in FIELD_ERRORS:
        body = {"run_id": run_id, **body} if path.startswith("/runs") else body
        error(api.post(f"{A}{path}", json=body), 400, "INVALID_PARAMETER_VALUE", match)


def test_missing_run_id_and_malformed_bodies(api):
    error(
        api.post(f"{A}/runs/log-metric", json={"key": "m", "value": 1}),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'run_id'",
    )
    error(
        api.post(
            f"{A}/runs/log-batch",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
        400,
        "MALFORMED_REQUEST",
        "not valid JSON",
    )
    error(
        api.post(f"{A}/runs/log-batch", content=b"[1, 2]"),
        400,
        "MALFORMED_REQUEST",
        "must be a JSON object",
    )
    error(
        api.get(f"{A}/experiments/get", params={"experiment_id": ""}),
        400,
        "INVALID_PARAMETER_VALUE",
        "'experiment_id'",
    )


def test_writes_to_unknown_runs_are_404(api):
    unknown = "7" * 32
    for path, body in (
        ("/runs/log-metric", {"key": "m", "value": 1}),
        ("/runs/log-batch", {"metrics": _metrics(1), "idempotency_key": "k"}),
        ("/runs/log-batch", {}),
        ("/runs/log-parameter", {"key": "p", "value": "v"}),
        ("/runs/set-tag", {"key": "t", "value": "v"}),
        ("/runs/update", {"status": "FINISHED"}),
        ("/runs/delete", {}),
        ("/runs/log-inputs", {}),
        ("/runs/outputs", {"models": [{"model_id": "m-1"}]}),
    ):
        error(
            api.post(f"{A}{path}", json={"run_id": unknown, **body}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            f"No run with id '{unknown}'",
        )


def test_a_tag_that_outgrows_its_limit_is_400(api, run_id):
    model = '{"artifact_path": "m", "flavors": {"python": {"x": "%s"}}, "utc_time_created": "t", "run_id": "r"}'  # noqa: E501
    body = {"run_id": run_id, "model_json": model % ("y" * 3000)}
    ok(api.post(f"{A}/runs/log-model", json=body))
    ok(api.post(f"{A}/runs/log-model", json=body))
    error(
        api.post(f"{A}/runs/log-model", json=body),
        400,
        "INVALID_PARAMETER_VALUE",
        "mlflow.log-model.history",
    )
