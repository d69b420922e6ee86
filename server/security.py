"""The layer every request passes before any route (API, artifacts, and the web UI to come).

``secured(app, state)`` wraps the whole ASGI app; in order, for each HTTP request:

1. **Host allowlist** (DNS rebinding): a page on ``evil.example`` whose name resolves to this
   server's address makes the browser send ``Host: evil.example``; only the names in
   ``--allowed-hosts`` are answered, others get 400 naming the header and the flag (400 as the
   model server answers, not MLflow's 403: the request is addressed to another server).
   ``/health`` and ``/version`` are exempt, as in MLflow, so that load balancers may probe by
   address. With no list, ``create_app`` checks no Host (like the model server's
   ``create_app``); ``modelpack server`` always gives one (``main.with_default_hosts``):
   the loopback names when bound to loopback, otherwise the bound name, this machine's names,
   the loopback names and any IP address (a rebinding page's Host is its own name, never an
   address).
2. **Limits**: a declared ``Content-Length`` over ``--max-body-bytes`` (over
   ``--max-artifact-bytes`` on the artifact proxy) is answered 413 before the body is read, a
   streamed body is cut off at the same size, and a head of more than ``MAX_HEADERS`` fields is
   400. (uvicorn's h11 bounds the head's bytes; ``main.py`` sets that limit.)
3. **CORS**, off by default: only the exact origins of ``--cors-origins`` may read answers from
   a browser; their preflight ``OPTIONS`` is answered here with the methods and headers the API
   takes, anyone else's is refused (403).
4. **No cross-origin state change**: a POST, PUT, PATCH or DELETE whose ``Origin`` (lacking
   it, ``Referer``) is neither the server's own origin (scheme aside: a TLS proxy in front
   changes it) nor one of ``--cors-origins``, or that says ``Sec-Fetch-Site: cross-site``
   from an origin not listed, is refused with 403 ``PERMISSION_DENIED``. Clients outside
   browsers (MLflow's, modelpack's) send neither header, and pass.
5. **Authentication**: ``state.auth.authenticate(headers, path)`` for every request but the
   public paths, which ask it nothing; the caller goes into ``scope["modelpack.principal"]``
   for the routes' authorization; ``Unauthenticated`` is a 401. This is the one check that
   covers every route, present and future (CVE-2026-0545 was a router it did not cover).
6. **Headers on every answer**: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options:
   DENY`` (nothing here is meant to be framed; ``SAMEORIGIN`` would let a page of this server
   frame another), ``Referrer-Policy: no-referrer``; on the API also ``Cache-Control:
   no-store`` and a CSP that runs nothing (an artifact served as HTML stays inert); on other
   answers (the UI) a strict CSP of this origin's resources only.
7. **No stack trace**: whatever raises becomes a 500 JSON body that says only that the server
   failed; the traceback goes to the log ``modelpack.server``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response

from modelpack.errors import ModelpackError
from modelpack.hosts import HostCheck, host_header, split_host
from modelpack.server.endpoints import Principal
from modelpack.server.wire import ApiError, error_response, json_response

__all__ = [
    "API_PREFIXES",
    "ARTIFACT_PREFIXES",
    "MAX_HEADERS",
    "PRINCIPAL",
    "PUBLIC_CALLER",
    "PUBLIC_PATHS",
    "Secured",
    "secured",
]

log = logging.getLogger("modelpack.server")

PRINCIPAL = "modelpack.principal"  # the scope key the routes read the caller from
PUBLIC_PATHS = frozenset({"/health", "/version"})  # no Host check, no authentication
# Who calls a public path: nobody in particular (the auth layer is not asked).
PUBLIC_CALLER = Principal(user=None, role="public", authenticated=False)
API_PREFIXES = ("/api/", "/ajax-api/")
ARTIFACT_PREFIXES = tuple(f"{p}2.0/mlflow-artifacts/" for p in API_PREFIXES)
STATE_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_HEADERS = 100  # header fields in one request head
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = frozenset(
    {"authorization", "content-type", "accept", "x-request-id", "idempotency-key"}
)
CORS_MAX_AGE = "600"

COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
API_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; sandbox"),
)
PAGE_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'",
    ),
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def secured(app: Any, state: Any) -> Any:
    """``app`` behind the security layer (see the module's docstring). The wrapper keeps the
    app as ``.app`` and its ``state`` (so ``app.state.server`` still reaches the
    ``ServerState``)."""
    if hasattr(app, "add_exception_handler"):
        # Starlette answers an exception no handler took with a plain-text 500, then re-raises
        # it; this makes that answer our JSON one (the log line is written by the wrapper).
        app.add_exception_handler(Exception, _internal_error)
    return Secured(app, state)


async def _internal_error(request: Any, exc: Exception) -> Any:
    if isinstance(exc, ApiError | ModelpackError):  # a limit of ours, or a refusal: 4xx
        return error_response(exc)
    return json_response(INTERNAL_ERROR, 500)


INTERNAL_ERROR = {
    "error_code": "INTERNAL_ERROR",
    "message": "The server failed to answer this request; its log says why.",
}


class Secured:
    """The ASGI wrapper; built once per app, its checks are a few lookups per request."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.server = state
        options = state.options
        self.hosts = host_check(options.allowed_hosts)
        self.cors = frozenset(o.rstrip("/").lower() for o in options.cors_origins)
        self.max_body = options.max_body_bytes
        self.max_artifact = options.max_artifact_bytes

    @property
    def state(self) -> Any:
        return getattr(self.app, "state", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "websocket":  # no route takes one; refused before any check is needed
            await send({"type": "websocket.close", "code": 1008})
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.handle(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - never a trace to a client
            where = f"{scope.get('method')} {scope.get('path', '')[:200]}"
            if not started:  # error_response logs what is not a client's mistake
                response = error_response(exc, where)
                await response(scope, receive, self.decorated(scope, send, None))
            elif not isinstance(exc, ApiError | ModelpackError):
                # Starlette answered it (``_internal_error``) and re-raised it; log it once.
                log.error("internal error answering %s", where, exc_info=exc)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        headers = scope["headers"]
        public = path in PUBLIC_PATHS
        if not public and self.hosts is not None:
            host = host_header(headers)
            if not self.hosts.allows(host):
                await self.answer(scope, receive, send, host_refused(host), None)
                return
        if len(headers) > MAX_HEADERS:
            raise ApiError(
                "BAD_REQUEST",
                f"The request has {len(headers)} header fields; this server takes at most "
                f"{MAX_HEADERS}.",
            )
        artifact = path.startswith(ARTIFACT_PREFIXES)
        limit = self.max_artifact if artifact else self.max_body
        fields = Headers(scope=scope)
        declared = fields.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise too_large(int(declared), limit, artifact)
        origin = request_origin(fields)
        allowed_origin = origin if origin is not None and origin in self.cors else None
        method = scope["method"]
        if method == "OPTIONS" and "access-control-request-method" in fields and origin:
            await self.preflight(scope, receive, send, fields, allowed_origin)
            return
        if method in STATE_CHANGES and allowed_origin is None:
            refusal = cross_origin(method, fields, origin)
            if refusal is not None:
                raise ApiError("PERMISSION_DENIED", refusal)
        if public:
            scope[PRINCIPAL] = PUBLIC_CALLER
        else:
            scope[PRINCIPAL] = await self.authenticate(fields, path)
        await self.app(
            scope, bounded(receive, limit, artifact), self.decorated(scope, send, allowed_origin)
        )

    async def authenticate(self, fields: Headers, path: str) -> Principal:
        """The caller. With tokens, looking one up may read the store: off the event loop."""
        auth = self.server.auth
        if self.server.options.auth == "none":
            return auth.authenticate(fields, path)
        return await run_in_threadpool(auth.authenticate, fields, path)

    async def preflight(
        self, scope: Any, receive: Any, send: Any, fields: Headers, origin: str | None
    ) -> None:
        """A browser asks whether a page of ``origin`` may call: only the listed origins may."""
        asked = fields.get("access-control-request-method", "").strip().upper()
        wanted = [
            h.strip().lower()
            for h in fields.get("access-control-request-headers", "").split(",")
            if h.strip()
        ]
        if origin is None:
            error = ApiError(
                "PERMISSION_DENIED",
                f"Cross-origin requests from {_clip(request_origin(fields) or '')!r} are not "
                f"allowed; the server allows only the origins in --cors-origins.",
            )
        elif asked not in CORS_METHODS.split(", "):
            error = ApiError(
                "PERMISSION_DENIED",
                f"Cross-origin {_clip(asked)} requests are not allowed; allowed: {CORS_METHODS}.",
            )
        elif unknown := [h for h in wanted if h not in CORS_HEADERS]:
            error = ApiError(
                "PERMISSION_DENIED",
                f"Cross-origin requests may not send the header {_clip(unknown[0])!r}; "
                f"allowed: {', '.join(sorted(CORS_HEADERS))}.",
            )
        else:
            response = Response(
                status_code=204,
                headers={
                    "access-control-allow-methods": CORS_METHODS,
                    "access-control-allow-headers": ", ".join(sorted(CORS_HEADERS)),
                    "access-control-max-age": CORS_MAX_AGE,
                },
            )
            await self.answer(scope, receive, send, response, origin)
            return
        await self.answer(scope, receive, send, error_response(error), None)

    async def answer(
        self, scope: Any, receive: Any, send: Any, response: Any, origin: str | None
    ) -> None:
        await response(scope, receive, self.decorated(scope, send, origin))

    def decorated(self, scope: Any, send: Any, origin: str | None) -> Any:
        """``send`` with the security headers (and, for a listed origin, CORS's) added to the
        answer's head; a header the route set itself is kept."""
        extra = list(COMMON_HEADERS)
        extra += API_HEADERS if _is_api(scope["path"]) else PAGE_HEADERS
        if origin is not None:
            extra += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
            ]

        async def wrapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                added = [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        return wrapped


def cross_origin(method: str, fields: Headers, origin: str | None) -> str | None:
    """Why a state change from ``origin`` (not one of --cors-origins) is refused, or None."""
    if origin is not None and (origin == "null" or not same_origin(origin, fields.get("host"))):
        return (
            f"A {method} from the web page origin {_clip(origin)!r} is refused: this server "
            f"takes changes only from its own pages and from the origins in --cors-origins. To "
            f"allow that origin, start the server with --cors-origins {_clip(origin)}."
        )
    if fields.get("sec-fetch-site", "").strip().lower() == "cross-site":
        return (
            f"A cross-site {method} (Sec-Fetch-Site: cross-site) is refused: this server takes "
            f"changes from another site only from the origins in --cors-origins."
        )
    return None


def host_check(allowed: Iterable[str] | None) -> HostCheck | None:
    """The Host check for ``allowed``; the pseudo-pattern ``ip`` (which ``main`` adds for a
    server bound to a non-loopback address) passes any IP address."""
    if allowed is None:
        return None
    patterns = tuple(allowed)
    if "ip" not in patterns:
        return HostCheck(patterns)
    return _AnyAddress([p for p in patterns if p != "ip"])


class _AnyAddress(HostCheck):
    def allows(self, value: bytes | None) -> bool:
        if super().allows(value):
            return True
        if not value:
            return False
        host, _ = split_host(value.decode("latin-1"))
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True


def host_refused(host: bytes | None) -> Any:
    if host is None:
        message = (
            "The request has no Host header; this server answers only to the names in "
            "--allowed-hosts."
        )
    else:
        message = (
            f"The Host header {_clip(host.decode('latin-1'))!r} is not one this server answers "
            f"to; if clients reach it by that name, add the name to --allowed-hosts."
        )
    return error_response(ApiError("BAD_REQUEST", message))


def request_origin(fields: Headers) -> str | None:
    """The page origin a browser names: ``Origin``, else the scheme and host of ``Referer``;
    lower-cased, without a trailing slash."""
    origin = fields.get("origin")
    if origin is not None and origin.strip():
        return origin.strip().rstrip("/").lower()
    referer = fields.get("referer")
    if referer:
        try:
            parts = urlsplit(referer.strip())
        except ValueError:
            return "null"
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}".lower()
        return "null"
    return None


def same_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` names this server as the request's (allowlisted) Host does: the
    same host and port, a missing port being the scheme's default. The scheme is not compared:
    behind a TLS proxy the page is https and the server sees http."""
    if not host:
        return False
    try:
        parts = urlsplit(origin)
        origin_host = parts.hostname
        origin_port = str(parts.port) if parts.port is not None else None
    except ValueError:
        return False
    if not origin_host or parts.scheme not in _DEFAULT_PORTS:
        return False
    name, port = split_host(host)
    default = _DEFAULT_PORTS[parts.scheme]
    return origin_host.rstrip(".") == name and (origin_port or default) == (port or default)


def bounded(receive: Any, limit: int, artifact: bool) -> Any:
    """``receive`` that stops a streamed body at ``limit`` bytes (413)."""
    seen = 0

    async def wrapped() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(None, limit, artifact)
        return message

    return wrapped


def too_large(declared: int | None, limit: int, artifact: bool) -> ApiError:
    flag = "--max-artifact-bytes" if artifact else "--max-body-bytes"
    size = f"is {declared} bytes" if declared is not None else f"is over {limit} bytes"
    return ApiError(
        "REQUEST_ENTITY_TOO_LARGE",
        f"The request body {size}; this server takes at most {limit} ({flag}).",
    )


def _is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in PUBLIC_PATHS


def _clip(text: str, limit: int = 100) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
