"""/health, /version, MLflow's capability probe, and the OpenAPI document of every route."""

from __future__ import annotations

import re

import pytest

import modelpack
from modelpack.server.app import all_endpoints
from modelpack.server.openapi import document, operation_id


def test_health_and_version_are_text(api):
    r = api.get("/health")
    assert (r.status_code, r.text) == (200, "OK")
    assert r.headers["content-type"].startswith("text/plain")
    r = api.get("/version")
    assert (r.status_code, r.text) == (200, modelpack.__version__)


def test_server_info_tells_mlflow_what_is_supported(api):
    for prefix in ("/api", "/ajax-api"):
        r = api.get(f"{prefix}/3.0/mlflow/server-info")
        assert r.status_code == 200
        info = r.json()
        assert info["store_type"] == "SqlStore"
        for flag in (
            "workspaces_enabled",
            "multipart_uploads_enabled",
            "multipart_downloads_enabled",
            "trace_archival_enabled",
            "presigned_upload_run_id_supported",
        ):
            assert info[flag] is False, flag
        assert info["modelpack_version"] == modelpack.__version__
        assert info["serve_artifacts"] is True and info["auth"] == "none"


def _template(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


def test_openapi_lists_every_mounted_route(api):
    doc = document(all_endpoints())
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"] == modelpack.__version__
    starlette_app = api.app.app
    routes = [route for route in starlette_app.routes if hasattr(route, "methods")]
    assert routes
    for route in routes:
        item = doc["paths"][_template(route.path)]
        for method in route.methods - {"HEAD"}:
            assert method.lower() in item, (method, route.path)
    mounted = {(m, _template(route.path)) for route in routes for m in route.methods - {"HEAD"}}
    listed = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert listed == mounted
    for endpoint in all_endpoints():
        for path in endpoint.paths():
            for method in endpoint.methods:
                op = doc["paths"][_template(path)][method.lower()]
                assert op["summary"] == endpoint.summary
                assert op["operationId"] == operation_id(method, path)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == [{"bearer": []}, {"basic": []}]


def test_openapi_is_served(api):
    if getattr(api.app.app.state, "endpoints", None) is None:
        pytest.skip(
            "create_app does not publish app.state.endpoints yet (server/app.py: "
            "app.state.endpoints = tuple(all_endpoints()))"
        )
    r = api.get("/api/openapi.json")
    assert r.status_code == 200
    assert r.json() == document(all_endpoints())


def test_openapi_without_an_endpoint_list_says_so(api, monkeypatch):
    monkeypatch.delattr(api.app.app.state, "endpoints", raising=False)
    r = api.get("/api/openapi.json")
    assert r.status_code == 501
    assert r.json()["error_code"] == "NOT_IMPLEMENTED"
    assert "app.state.endpoints" in r.json()["message"]


def test_openapi_parameters_come_from_the_endpoint():
    from modelpack.server.endpoints import LOGIN, Endpoint

    endpoints = [
        Endpoint(
            ("GET",),
            "/mlflow/things/get",
            lambda call: {},
            LOGIN,
            "Get a thing.",
            request_fields=("thing_id", "view"),
        ),
        Endpoint(
            ("POST",),
            "/mlflow/things/{thing_id}/tags",
            lambda call: {},
            LOGIN,
            "Tag a thing.",
            request_fields=("thing_id", "key", "value"),
        ),
        Endpoint(
            ("PUT",),
            "/mlflow-artifacts/artifacts/{path:path}",
            lambda call: {},
            LOGIN,
            "Upload.",
            raw=True,
        ),
    ]
    doc = document(endpoints)
    get = doc["paths"]["/api/2.0/mlflow/things/get"]["get"]
    assert [(p["name"], p["in"]) for p in get["parameters"]] == [
        ("thing_id", "query"),
        ("view", "query"),
    ]
    assert "requestBody" not in get
    post = doc["paths"]["/ajax-api/2.0/mlflow/things/{thing_id}/tags"]["post"]
    assert [(p["name"], p["in"]) for p in post["parameters"]] == [("thing_id", "path")]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert list(schema["properties"]) == ["key", "value"]
    put = doc["paths"]["/api/2.0/mlflow-artifacts/artifacts/{path}"]["put"]
    assert "application/octet-stream" in put["requestBody"]["content"]
    assert put["parameters"] == [
        {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
