"""The server's own routes: ``/health`` and ``/version`` (public, as MLflow's), the capability
probe MLflow's 3.x client makes (``/api/3.0/mlflow/server-info``), and the OpenAPI document of
the whole API (``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import PlainTextResponse

from modelpack._version import __version__
from modelpack.server.endpoints import LOGIN, PUBLIC, Call, Endpoint
from modelpack.server.wire import ApiError

__all__ = ["ENDPOINTS", "server_info"]


def health(call: Call) -> Any:
    """``OK`` once the app has started (the store was opened and migrated at startup)."""
    return PlainTextResponse("OK")


def version(call: Call) -> Any:
    """modelpack's version, as plain text. (MLflow's client reads ``/version`` only before
    logging trace spans, which it sends only to servers of 3.4 or later; modelpack stores no
    traces, so its own version, below 3.4, steers the client away from them.)"""
    return PlainTextResponse(__version__)


def server_info(call: Call) -> dict[str, Any]:
    """What MLflow's 3.x client asks before it moves artifacts through the proxy: no
    multipart transfers and no presigned uploads (every byte goes through ``PUT``/``GET`` on
    ``/api/2.0/mlflow-artifacts``), no workspaces, no traces."""
    return {
        "store_type": "SqlStore",
        "workspaces_enabled": False,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
        "presigned_upload_run_id_supported": False,
        "presigned_upload_model_id_supported": False,
        "features_enabled": {"gateway": False},
        "server": "modelpack",
        "modelpack_version": __version__,
        "serve_artifacts": call.state.options.serve_artifacts,
        "auth": call.state.options.auth,
    }


def openapi(call: Call) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every endpoint the app mounts: those the app publishes in
    ``app.state.endpoints`` (importing ``app`` here would be an import cycle: app mounts
    this module)."""
    from modelpack.server.openapi import document

    endpoints = getattr(call.request.app.state, "endpoints", None)
    if endpoints is None:
        raise ApiError(
            "NOT_IMPLEMENTED",
            "This app publishes no endpoint list (app.state.endpoints), so it has no OpenAPI "
            "document; build it with modelpack.server.create_app.",
        )
    return document(endpoints)


ENDPOINTS = [
    Endpoint(("GET",), "/health", health, PUBLIC, "OK when the server is up.", absolute=True),
    Endpoint(
        ("GET",), "/version", version, PUBLIC, "The server's version, as text.", absolute=True
    ),
    Endpoint(
        ("GET",),
        "/mlflow/server-info",
        server_info,
        LOGIN,
        "What this server supports (MLflow's capability probe).",
        versions=("3.0",),
    ),
    Endpoint(
        ("GET",),
        "/api/openapi.json",
        openapi,
        LOGIN,
        "This document: the whole API as OpenAPI 3.1.",
        absolute=True,
    ),
]
