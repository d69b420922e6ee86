"""The OpenAPI 3.1 document of the server, built from the endpoints the app mounts (so it
cannot list a route that does not exist, nor miss one that does)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from modelpack._version import __version__
from modelpack.server.endpoints import Endpoint

__all__ = ["document", "operation_id"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}")
_QUERY_METHODS = ("GET", "HEAD", "DELETE")
_ERRORS = (
    ("400", "The request is invalid: the message says which parameter and why"),
    ("401", "No valid token (with --auth token)"),
    ("403", "The caller lacks the permission, or a cross-origin change was refused"),
    ("404", "No such resource"),
    ("413", "The request body is over the server's limit"),
    ("500", "The server failed; its log says why"),
)


def operation_id(method: str, path: str) -> str:
    """A unique, stable name: ``get_api_2_0_mlflow_runs_get``."""
    words = re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"\1", path)).strip("_")
    return f"{method.lower()}_{words}"


def document(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    """OpenAPI 3.1 for ``endpoints``: every path each is mounted at, with its methods,
    summary, path parameters, and the fields it declares (query parameters for GET and
    DELETE, JSON body properties otherwise)."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        for path in endpoint.paths():
            template = _PARAM.sub(r"{\1}", path)
            item = paths.setdefault(template, {})
            for method in endpoint.methods:
                item[method.lower()] = _operation(endpoint, method, path, template)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelpack server",
            "version": __version__,
            "description": (
                "MLflow's tracking and registry REST API (under /api/2.0/mlflow and "
                "/ajax-api/2.0/mlflow), the artifact proxy (/api/2.0/mlflow-artifacts) and "
                "modelpack's own calls (/api/2.0/modelpack). GET takes its fields as query "
                "parameters, other methods as a JSON object; errors are "
                '{"error_code", "message"}.'
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error_code", "message"],
                    "properties": {
                        "error_code": {"type": "string", "examples": ["RESOURCE_DOES_NOT_EXIST"]},
                        "message": {"type": "string"},
                    },
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Any user name; the token as the password "
                    "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).",
                },
            },
        },
    }


def _operation(endpoint: Endpoint, method: str, path: str, template: str) -> dict[str, Any]:
    names = _PARAM.findall(path)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]
    fields = [f for f in endpoint.request_fields if f not in names]
    operation: dict[str, Any] = {
        "operationId": operation_id(method, path),
        "summary": endpoint.summary,
        "tags": [_tag(template)],
    }
    if method in _QUERY_METHODS or endpoint.raw:
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": {}} for name in fields
        ]
    if endpoint.raw and method in ("PUT", "POST"):
        operation["requestBody"] = {
            "required": False,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    elif method not in _QUERY_METHODS:
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": {name: {} for name in fields}}
                }
            },
        }
    if parameters:
        operation["parameters"] = parameters
    if endpoint.raw:
        ok: dict[str, Any] = {"description": "OK"}
    else:
        ok = {"description": "OK", "content": {"application/json": {"schema": {}}}}
    operation["responses"] = {
        "200": ok,
        **{
            code: {
                "description": why,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for code, why in _ERRORS
        },
    }
    public = endpoint.access.kind == "public"
    operation["security"] = [] if public else [{"bearer": []}, {"basic": []}]
    return operation


def _tag(template: str) -> str:
    """The group a path belongs to: ``runs`` for /api/2.0/mlflow/runs/get, ``meta`` else."""
    parts = [p for p in template.split("/") if p and not p.startswith("{")]
    for marker in ("mlflow", "modelpack", "mlflow-artifacts"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return f"{marker}/{rest[0]}" if rest and marker != "mlflow-artifacts" else marker
    return "server"
