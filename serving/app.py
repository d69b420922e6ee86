"""The Starlette app: MLflow's scoring routes, the Open Inference Protocol v2, health, metrics.

Handlers are thin: read the body under its limit, decode, check against the signature, hand
the rows to the model's batcher, encode. Every failure goes through ``errors.classify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelpack import uris
from modelpack._version import __version__
from modelpack.errors import ModelpackError
from modelpack.hosts import HostCheck, host_header
from modelpack.serving import codecs
from modelpack.serving.config import ServeOptions
from modelpack.serving.deployment import Deployment, Loaded
from modelpack.serving.errors import HTTPError, mlflow_body, shown, v2_body
from modelpack.serving.metrics import Metrics
from modelpack.serving.openapi import document

JSON = "application/json"
# scope["extensions"] key by which modelpack's connection protocol (protocol.py) tells the app
# when a request's body is due: a loop time, or None when the body came whole with its head.
BODY_DEADLINE = "modelpack.body_deadline"
log = logging.getLogger("modelpack.serving")
Handler = Callable[[Request], Awaitable[Response]]


def public_uri(uri: str) -> str:
    """The URI as clients may see it: a registry or run URI as given, a location (a path, a
    file:// or s3:// URI) by its last component only, so that answers never tell a client how
    the server's disks or buckets are laid out."""
    try:
        if isinstance(uris.parse(uri), uris.ModelURI | uris.RunURI):
            return uri
    except ModelpackError:
        pass
    return uri.rstrip("/").rpartition("/")[2] or uri


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON
    )


class Server:
    """State shared by the handlers of one app."""

    def __init__(self, uri: str, options: ServeOptions, metrics_dir: str | None = None) -> None:
        self.options = options
        self.metrics = Metrics(metrics_dir)
        self.deployment = Deployment(uri, options, self.metrics)

    def model(self) -> Loaded:
        loaded = self.deployment.current
        if loaded is None:
            raise HTTPError(503, "The model is not loaded yet; retry when /ready answers 200.")
        return loaded

    def headers(self) -> dict[str, str]:
        loaded = self.deployment.current
        return {"X-Model-Version": loaded.version} if loaded is not None else {}

    async def body(self, declared: str | None, receive: Any, scope: Any) -> bytes:
        """The body, refused with 413 as soon as it is known to exceed the limit, and with 408
        when it does not arrive within --read-timeout-s of the request's head."""
        limit = self.options.max_body_bytes
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise HTTPError(400, "Content-Length is not a number.") from None
            if size > limit:
                raise HTTPError(
                    413, f"The body is {size} bytes; the limit is {limit} (--max-body-bytes)."
                )
        timeout = self.options.read_timeout_s
        extensions = scope.get("extensions") or {}
        if BODY_DEADLINE in extensions:  # under modelpack's protocol, which knows
            deadline = extensions[BODY_DEADLINE]
            if deadline is None:  # the whole body came with the head: nothing to wait for
                return await self._read(receive, limit)
            expiry = asyncio.timeout_at(deadline)
        else:  # under another ASGI server
            expiry = asyncio.timeout(timeout or None)
        try:
            async with expiry:
                return await self._read(receive, limit)
        except TimeoutError:
            raise HTTPError(
                408, f"The body did not arrive within {timeout} s (--read-timeout-s).", close=True
            ) from None

    async def _read(self, receive: Any, limit: int) -> bytes:
        chunks, total = [], 0
        while True:  # the ASGI messages themselves: most bodies arrive in one
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "The client disconnected before sending the whole body.")
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise HTTPError(
                    413, f"The body is over the limit of {limit} bytes (--max-body-bytes)."
                )
            if not message.get("more_body", False):
                if not chunks:
                    return chunk
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)

    async def predict(self, loaded: Loaded, data: Any, params: Any) -> Any:
        """Check the data, then queue it for the model (or answer 0 rows at once)."""
        checked, checked_params, rows = loaded.pack.check(data, params)
        if rows == 0:
            return loaded.pack.empty_output()
        self.deployment.arriving -= 1
        try:
            async with asyncio.timeout(self.options.request_timeout_s or None):
                return await loaded.batcher.submit(checked, rows, checked_params)
        except TimeoutError:
            raise HTTPError(
                504,
                f"The prediction took longer than {self.options.request_timeout_s}"
                f" s (--request-timeout-s).",
            ) from None
        finally:
            self.deployment.arriving += 1


def _instrument(
    server: Server,
    route: str,
    handler: Handler,
    errors: Callable[[BaseException], tuple[int, dict[str, Any]]],
) -> Handler:
    """Count, time and error-wrap a handler; every response carries X-Model-Version."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        server.deployment.arriving += 1
        try:
            response = await handler(request)
        except Exception as exc:  # noqa: BLE001 - every error becomes a JSON answer
            status, body = errors(exc)
            response = _json(body, status)
            if getattr(exc, "close", False):
                response.headers["Connection"] = "close"
        finally:
            server.deployment.arriving -= 1
        served = getattr(request.state, "loaded", None) or server.deployment.current
        if served is not None:
            response.headers["X-Model-Version"] = served.version
        server.metrics.observe(route, response.status_code, time.perf_counter() - started)
        return response

    return endpoint


class _RawASGI:
    """Marks an ``(scope, receive, send)`` function as an ASGI app for Starlette's Route
    (which would otherwise call a plain function with a Request)."""

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _content_type(value: str) -> str:
    if value == JSON:
        return "json"
    media, _, rest = value.partition(";")
    media = media.strip().lower()
    params = dict(p.strip().lower().partition("=")[::2] for p in rest.split(";") if p.strip())
    if media == JSON:
        charset = params.pop("charset", "utf-8").strip('"')
        if charset not in ("utf-8", "utf8") or params:
            raise HTTPError(
                415,
                f"Unsupported content type {shown(value)}: JSON must be UTF-8, with "
                f"no other parameters.",
            )
        return "json"
    if media in ("text/csv", "application/csv"):
        return "csv"
    raise HTTPError(
        415,
        f"Unsupported content type {shown(value or '(none)')}. Send application/json or text/csv.",
    )


def create_app(uri: str, **options: Any) -> Starlette:
    """The ASGI app serving the package at ``uri`` (any model URI).

    Example:
        >>> app = modelpack.serving.create_app("models:/Churn/Production", max_batch_size=32)
    """
    metrics_dir = options.pop("_metrics_dir", None)  # set by `serve` for each of its workers
    opts = options.pop("_options", None) or ServeOptions.build(**options)
    server = Server(uri, opts, metrics_dir)
    dep = server.deployment
    shown_uri = public_uri(uri)

    async def invocations(scope: Any, receive: Any, send: Any) -> None:
        # The hot route, as a bare ASGI app: no Request or Response objects on the way.
        started = time.perf_counter()
        dep.arriving += 1
        loaded = None
        close = False
        try:
            headers = dict(scope["headers"])
            kind = _content_type(headers.get(b"content-type", b"").decode("latin-1"))
            length = headers.get(b"content-length")
            declared = length.decode("latin-1") if length else None
            body = await server.body(declared, receive, scope)
            loaded = server.model()
            sig = loaded.pack.signature
            if kind == "json":
                data, params = codecs.decode_invocations(codecs.parse_json(body, opts), sig, opts)
            else:
                data, params = codecs.decode_csv(body, sig, opts), None
            payload = codecs.encode_predictions(await server.predict(loaded, data, params))
            status = 200
        except Exception as exc:  # noqa: BLE001 - every error becomes a JSON answer
            status, error = mlflow_body(exc)
            payload = orjson.dumps(error)
            close = getattr(exc, "close", False)
        finally:
            dep.arriving -= 1
        served = loaded or dep.current
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if served is not None:
            response_headers.append((b"x-model-version", served.version.encode()))
        if close:
            response_headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
        server.metrics.observe("/invocations", status, time.perf_counter() - started)

    async def ping(request: Request) -> Response:
        return _json({"status": "ok"})

    async def health(request: Request) -> Response:
        loaded = dep.current
        payload: dict[str, Any] = {"status": "ok" if loaded else "loading", "uri": shown_uri}
        if loaded is not None:
            payload.update(model=loaded.name, version=loaded.version, model_id=loaded.pack.model_id)
        if dep.last_error is not None:
            payload["last_reload_error"] = dep.last_error
        return _json(payload)

    async def ready(request: Request) -> Response:
        if dep.current is None:
            return _json({"ready": False}, 503)
        return _json({"ready": True})

    async def version(request: Request) -> Response:
        loaded = server.model()
        return _json(
            {
                "modelpack_version": __version__,
                "model": loaded.name,
                "version": loaded.version,
                "model_id": loaded.pack.model_id,
                "flavor": loaded.pack.flavor,
                "uri": shown_uri,
                "loaded_at": loaded.loaded_at.isoformat(),
                "last_reload_error": dep.last_error,
            }
        )

    def queue_depth() -> int:
        return dep.current.batcher.depth if dep.current else 0

    async def metrics(request: Request) -> Response:
        body = server.metrics.render(queue_depth())
        return Response(body, media_type=server.metrics.content_type)

    async def openapi(request: Request) -> Response:
        loaded = dep.current
        return _json(
            document(
                loaded.name if loaded else "model",
                loaded.version if loaded else "",
                loaded.pack.signature if loaded else None,
            )
        )

    # ------------------------------------------------------------------ v2

    def v2_model(request: Request) -> Loaded:
        loaded = request.state.loaded = server.model()
        name = request.path_params["name"]
        if name != loaded.name:
            raise HTTPError(
                404, f"Unknown model {shown(name)}; this server serves {loaded.name!r}."
            )
        wanted = request.path_params.get("version")
        if wanted is not None and wanted != loaded.version:
            raise HTTPError(
                404,
                f"Model {name!r} version {shown(wanted)} is not loaded; the server "
                f"serves version {loaded.version!r}.",
            )
        return loaded

    async def v2_server(request: Request) -> Response:
        return _json(
            {"name": "modelpack", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def v2_live(request: Request) -> Response:
        return _json({"live": True})

    async def v2_ready(request: Request) -> Response:
        ready = dep.current is not None
        return _json({"ready": ready}, 200 if ready else 503)

    async def v2_model_ready(request: Request) -> Response:
        loaded = v2_model(request)
        return _json({"name": loaded.name, "ready": True})

    async def v2_metadata(request: Request) -> Response:
        loaded = v2_model(request)
        return _json(_v2_metadata(loaded))

    async def v2_infer(request: Request) -> Response:
        v2_model(request)  # 404 for an unknown model before reading the body
        body = await server.body(
            request.headers.get("content-length"), request.receive, request.scope
        )
        loaded = v2_model(request)  # the model serving now: a swap may have happened meanwhile
        header = request.headers.get("inference-header-content-length")
        try:
            header_length = int(header) if header is not None else None
        except ValueError:
            raise HTTPError(400, "Inference-Header-Content-Length is not a number.") from None
        data, params, req = codecs.decode_v2(body, header_length, loaded.pack.signature, opts)
        output = await server.predict(loaded, data, params or None)
        tensors = codecs.output_tensors(output, loaded.pack.signature)
        payload, json_length = codecs.encode_v2(tensors, req, loaded.name, loaded.version)
        headers = {"Inference-Header-Content-Length": str(json_length)} if json_length else None
        return Response(
            payload, headers=headers, media_type="application/octet-stream" if json_length else JSON
        )

    def route(path: str, handler: Handler, methods: list[str], v2: bool = False) -> Route:
        wrapped = _instrument(server, path, handler, v2_body if v2 else mlflow_body)
        return Route(path, wrapped, methods=methods)

    routes = [
        Route("/invocations", _RawASGI(invocations), methods=["POST"]),
        route("/ping", ping, ["GET"]),
        route("/health", health, ["GET"]),
        route("/ready", ready, ["GET"]),
        route("/version", version, ["GET"]),
        route("/metrics", metrics, ["GET"]),
        route("/openapi.json", openapi, ["GET"]),
        route("/v2", v2_server, ["GET"], True),
        route("/v2/health/live", v2_live, ["GET"], True),
        route("/v2/health/ready", v2_ready, ["GET"], True),
        route("/v2/models/{name}", v2_metadata, ["GET"], True),
        route("/v2/models/{name}/ready", v2_model_ready, ["GET"], True),
        route("/v2/models/{name}/infer", v2_infer, ["POST"], True),
        route("/v2/models/{name}/versions/{version}", v2_metadata, ["GET"], True),
        route("/v2/models/{name}/versions/{version}/ready", v2_model_ready, ["GET"], True),
        route("/v2/models/{name}/versions/{version}/infer", v2_infer, ["POST"], True),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with server.metrics.shared(queue_depth):
            try:
                await dep.start()
            except Exception as exc:
                # uvicorn prints what the app reports: one line, the traceback at debug level.
                log.debug("The first load failed:", exc_info=exc)
                reason = str(exc).strip().splitlines()
                what = (
                    reason[0]
                    if isinstance(exc, ModelpackError) and reason
                    else (f"{type(exc).__name__}: {reason[0]}" if reason else type(exc).__name__)
                )
                cast(_App, app).startup_error = f"Cannot serve {uri}: {what}"
                raise
            try:
                yield
            finally:
                await dep.stop()

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "Method not allowed." if status == 405 else f"No route {shown(request.url.path)}."
        body = (
            {"error": message}
            if request.url.path.startswith("/v2")
            else {
                "error_code": "RESOURCE_DOES_NOT_EXIST" if status == 404 else "METHOD_NOT_ALLOWED",
                "message": message,
            }
        )
        return _json(body, status, server.headers())

    app = _App(
        routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found}
    )
    app.invocations = invocations
    app.serve_options = opts  # the connection protocol (protocol.py) reads its limits here
    app.hosts = HostCheck(opts.allowed_hosts) if opts.allowed_hosts is not None else None
    app.state.server = server
    return app


class _App(Starlette):
    """Starlette, with the prediction route taken before the middleware stack: it handles its
    own errors, and the stack costs about as much as the rest of a one-row request."""

    invocations: Callable[[Any, Any, Any], Awaitable[None]]
    serve_options: ServeOptions
    hosts: HostCheck | None = None
    startup_error: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            # The Host check comes first, for every route (a dict lookup per request).
            if self.hosts is not None:
                host = host_header(scope["headers"])
                if not self.hosts.allows(host):
                    await _refuse_host(host, scope, send)
                    return
            if scope["path"] == "/invocations" and scope["method"] == "POST":
                await self.invocations(scope, receive, send)
                return
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, self._short_failure(send))
            return
        await super().__call__(scope, receive, send)

    def _short_failure(self, send: Any) -> Any:
        """``send`` with a failed startup told in one line instead of Starlette's traceback."""

        async def wrapped(message: Any) -> None:
            if message.get("type") == "lifespan.startup.failed" and self.startup_error:
                message = {**message, "message": self.startup_error}
            await send(message)

        return wrapped


async def _refuse_host(host: bytes | None, scope: Any, send: Any) -> None:
    """400 for a Host this server does not answer to. (400, not MLflow's 403: the request is
    addressed to the wrong server, which RFC 9110 and Starlette's TrustedHostMiddleware answer
    with 400; 403 would say the resource exists for this client but is forbidden to it.)"""
    if host is None:
        message = (
            "The request has no Host header; this server answers only to the names in "
            "--allowed-hosts."
        )
    else:
        message = (
            f"The Host header {shown(host.decode('latin-1'))} is not one this server answers "
            f"to; if clients reach it by that name, add the name to --allowed-hosts."
        )
    error: dict[str, str] = (
        {"error": message}
        if scope["path"].startswith("/v2")
        else {"error_code": "BAD_REQUEST", "message": message}
    )
    payload = orjson.dumps(error)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _v2_metadata(loaded: Loaded) -> dict[str, Any]:
    from modelpack.enforcement import tensor_dtype
    from modelpack.signature import ColumnSchema

    def tensors(schema: Any) -> list[dict[str, Any]]:
        if schema is None:
            return []
        if isinstance(schema, ColumnSchema):
            return [
                {"name": c.name, "datatype": codecs.COLUMN_TO_V2[c.type], "shape": [-1]}
                for c in schema.columns
            ]
        return [
            {
                "name": t.name or ("predict" if schema is sig.outputs else "input"),
                "datatype": codecs.v2_datatype(tensor_dtype(t.dtype)),
                "shape": list(t.shape),
            }
            for t in schema.tensors
        ]

    sig = loaded.pack.signature
    return {
        "name": loaded.name,
        "versions": [loaded.version],
        "platform": f"modelpack-{loaded.pack.flavor}",
        "inputs": tensors(sig.inputs if sig else None),
        "outputs": tensors(sig.outputs if sig else None),
    }
