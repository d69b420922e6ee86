"""``create_app``: the server as an ASGI app (Starlette).

Every handler module lists its endpoints (``ENDPOINTS``); each is mounted under ``/api`` and
``/ajax-api`` (MLflow's layout). Every request passes the security middleware (Host allowlist,
cross-origin refusal, headers, limits) and the one authentication check before any route;
every endpoint's handler runs only after its authorization check.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from modelpack.errors import InvalidArgument
from modelpack.server import (
    artifacts,
    auth,
    logged_models,
    meta,
    registry,
    tracking,
)
from modelpack.server.config import ServerOptions, with_default_hosts
from modelpack.server.endpoints import Call, Endpoint
from modelpack.server.state import ServerState
from modelpack.server.wire import ApiError, error_response, json_response

__all__ = ["all_endpoints", "create_app"]

log = logging.getLogger("modelpack.server")

MODULES = (tracking, registry, logged_models, artifacts, auth, meta)


def all_endpoints() -> list[Endpoint]:
    return [endpoint for module in MODULES for endpoint in module.ENDPOINTS]


async def read_params(request: Any, limit: int) -> dict[str, Any]:
    """The query parameters, the path parameters and (for a body) the JSON object."""
    params: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in params:
            previous = params[key]
            params[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[key] = value
    if request.method not in ("GET", "HEAD"):
        body = await _body(request, limit)
        if body.strip():
            import orjson

            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise ApiError(
                    "MALFORMED_REQUEST", f"The request body is not valid JSON: {exc}."
                ) from None
            if not isinstance(data, dict):
                raise ApiError(
                    "MALFORMED_REQUEST",
                    f"The request body must be a JSON object, got {type(data).__name__}.",
                )
            params.update(data)
    params.update(request.path_params)
    return params


async def _body(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            "REQUEST_ENTITY_TOO_LARGE",
            f"The request body is {int(declared)} bytes; this server takes at most {limit} "
            f"(--max-body-bytes).",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                "REQUEST_ENTITY_TOO_LARGE",
                f"The request body is over {limit} bytes, the most this server takes "
                f"(--max-body-bytes).",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _handler(endpoint: Endpoint, state: ServerState) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    async def handle(request: Any) -> Any:
        try:
            principal = request.scope.get("modelpack.principal")
            if principal is None:  # the middleware sets it; a bare mount still checks here
                principal = state.auth.authenticate(request.headers, request.url.path)
            if endpoint.raw:
                params = dict(request.query_params) | dict(request.path_params)
            else:
                params = await read_params(request, state.options.max_body_bytes)
            call = Call(request, params, state, principal, endpoint)
            await run_in_threadpool(state.auth.authorize, call)
            if endpoint.raw:
                return await endpoint.handler(call)  # type: ignore[misc]
            result = await run_in_threadpool(endpoint.handler, call)
            return result if isinstance(result, Response) else json_response(result or {})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a trace
            return error_response(exc, f"{request.method} {request.url.path}")

    return handle


def routes(state: ServerState, endpoints: Iterable[Endpoint]) -> list[Any]:
    from starlette.routing import Route

    found = []
    for endpoint in endpoints:
        handle = _handler(endpoint, state)
        for path in endpoint.paths():
            found.append(Route(path, handle, methods=list(endpoint.methods)))
    return found


def create_app(options: ServerOptions | None = None, **kwargs: Any) -> Any:
    """The server as an ASGI app. Takes a ``ServerOptions`` or its fields as keywords
    (``create_app(backend_store_uri="sqlite:///...", artifact_root="...", auth="token")``)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException

    from modelpack.server.security import secured

    if options is None:
        options = ServerOptions.build(**kwargs)
    elif kwargs:
        raise InvalidArgument("Pass create_app either a ServerOptions or keywords, not both.")
    # Secure by default: without --allowed-hosts, a loopback-bound server answers only to the
    # loopback names (no DNS-rebinding page can drive it).
    state = ServerState(with_default_hosts(options))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(lambda: state.default_experiment_id)  # opens and migrates
        yield

    async def http_error(request: Any, exc: Exception) -> Any:
        status = getattr(exc, "status_code", 500)
        if status == 404:
            return error_response(
                ApiError(
                    "ENDPOINT_NOT_FOUND",
                    f"No endpoint {request.url.path!s:.200}; see /api/openapi.json for the API.",
                )
            )
        if status == 405:
            return error_response(
                ApiError(
                    "METHOD_NOT_ALLOWED",
                    f"{request.method} is not allowed on {request.url.path!s:.200}.",
                    {"Allow": allowed}
                    if (allowed := (getattr(exc, "headers", None) or {}).get("Allow"))
                    else None,
                )
            )
        return error_response(exc)

    app = Starlette(
        routes=routes(state, all_endpoints()),
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, 404: http_error, 405: http_error},
    )
    app.state.server = state
    app.state.endpoints = tuple(all_endpoints())  # for /api/openapi.json (meta cannot import app)
    return secured(app, state)
