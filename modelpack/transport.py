"""HTTP to a ``modelpack server`` (or an MLflow server): persistent connections, credentials,
retries of what is safe to retry, and MLflow's error bodies turned back into our errors.

The standard library's ``http.client``: no dependency, and one kept-alive connection per thread
(a request on a fresh connection costs a TCP handshake; a run's logging makes thousands).

Credentials, first found wins: ``token=``, ``MODELPACK_TRACKING_TOKEN``, ``MLFLOW_TRACKING_TOKEN``
(``Authorization: Bearer``), else ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD``
(HTTP Basic, as MLflow's client sends them).
"""

from __future__ import annotations

import atexit
import base64
import http.client
import json
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from modelpack.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    ModelpackError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from modelpack.uris import redact

__all__ = ["API", "Transport", "error_for", "shared"]

API = "/api/2.0/mlflow"
TIMEOUT_S = float(os.environ.get("MODELPACK_HTTP_TIMEOUT_S", "120"))
RETRIES = 5  # on a refused or dropped connection, 429, 502, 503, 504
CHUNK = 1024 * 1024
POOL = 8  # idle connections kept per server
# What a kept-alive connection the server closed while it sat idle fails with, before any
# answer: the request never ran, so it is sent again on a new connection whatever its method.
_STALE = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    http.client.RemoteDisconnected,
)

_ERRORS: dict[str, type[ModelpackError]] = {
    "RESOURCE_DOES_NOT_EXIST": NotFound,
    "NOT_FOUND": NotFound,
    "ENDPOINT_NOT_FOUND": NotFound,
    "RESOURCE_ALREADY_EXISTS": AlreadyExists,
    "ALREADY_EXISTS": AlreadyExists,
    "UNAUTHENTICATED": Unauthenticated,
    "CUSTOMER_UNAUTHORIZED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "TEMPORARILY_UNAVAILABLE": Unavailable,
    "INVALID_PARAMETER_VALUE": InvalidArgument,
    "BAD_REQUEST": InvalidArgument,
    "MALFORMED_REQUEST": InvalidArgument,
    "REQUEST_ENTITY_TOO_LARGE": InvalidArgument,
}
_BY_STATUS: dict[int, type[ModelpackError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: InvalidArgument,
    503: Unavailable,
}


def error_for(status: int, body: bytes, what: str) -> ModelpackError:
    """The error an answer with ``status`` and ``body`` means, its message the server's."""
    try:
        detail = json.loads(body or b"{}")
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    code = str(detail.get("error_code") or "")
    message = str(detail.get("message") or "").strip() or (
        body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    )
    cls = _ERRORS.get(code) or _BY_STATUS.get(status, ModelpackError)
    if cls is Conflict:
        return Conflict(f"{what}: {message}", reason=code or f"HTTP {status}", attempts=1)
    if status == 401:
        message += (
            " Set MODELPACK_TRACKING_TOKEN (or MLFLOW_TRACKING_TOKEN) to a token from "
            "`modelpack server token create`."
        )
    return cls(f"{what}: {message}")


class Transport:
    """Requests to one server (``http://host:port``, optionally with a path prefix)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidArgument(
                f"Not a server URL: {redact(url)!r}; expected http://host:port or https://..."
            )
        self.url = url.rstrip("/")
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.prefix = parsed.path.rstrip("/")
        self.description = f"server {redact(self.url)}"
        self.headers = {"User-Agent": "modelpack"}
        auth = _authorization(token, parsed)
        if auth:
            self.headers["Authorization"] = auth
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    # ------------------------------------------------------------------ connections

    def _new_connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT_S)
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)

    def _acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection (``reused`` True) or a new one. Connections live in a
        pool, not per thread, so a thread that ends (the logging queue's) leaves none open."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new_connection(), False

    def _release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable:
            with self._lock:
                if len(self._idle) < POOL:
                    self._idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        """Close the idle connections (ones in use close when their request ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        """``method path`` with ``params`` in the query and ``body`` as JSON (or bytes); the
        status, body and headers of the answer. A dropped connection, 429, 502, 503 and 504
        are retried (GETs always; other methods when ``idempotent``)."""
        target = self.prefix + path
        if params:
            target += "?" + urllib.parse.urlencode(_query(params), doseq=True)
        send_headers = dict(self.headers)
        data: bytes | None = None
        if body is not None:
            if isinstance(body, bytes):
                data = body
            else:
                data = json.dumps(body, allow_nan=False, default=str).encode()
                send_headers["Content-Type"] = "application/json"
        send_headers.update(headers or {})
        retry = method == "GET" if idempotent is None else idempotent
        attempt = 0
        while True:
            conn, reused = self._acquire()
            try:
                conn.request(method, target, body=data, headers=send_headers)
                reply = conn.getresponse()
                payload = reply.read()
                answer = dict(reply.getheaders())
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                if reused and isinstance(exc, _STALE):
                    continue  # the server closed it while idle: the request never ran
                if attempt < RETRIES and (retry or _never_sent(exc)):
                    _pause(attempt)
                    attempt += 1
                    continue
                raise Unavailable(
                    f"Cannot reach the {self.description}: {exc or type(exc).__name__}. Is it "
                    f"running, and is the URL right?"
                ) from None
            self._release(conn, not reply.will_close)
            if reply.status in (429, 502, 503, 504) and attempt < RETRIES and retry:
                _pause(attempt)
                attempt += 1
                continue
            return reply.status, payload, answer

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A JSON API call: the answer's object, or the error it names raised."""
        status, payload, _ = self.request(
            method, path, params=params, body=body, idempotent=idempotent, headers=headers
        )
        what = f"The {self.description} ({method} {path})"
        if status >= 400:
            raise error_for(status, payload, what)
        if not payload.strip():
            return {}
        try:
            data = json.loads(payload)
        except ValueError:
            raise ModelpackError(f"{what} answered with something that is not JSON.") from None
        if not isinstance(data, dict):
            raise ModelpackError(f"{what} answered with a JSON {type(data).__name__}.")
        return data

    def api(self, method: str, route: str, **kwargs: Any) -> dict[str, Any]:
        """``call`` on MLflow's API: ``api("GET", "runs/get", params={...})``."""
        return self.call(method, f"{API}/{route}", **kwargs)

    # ------------------------------------------------------------------ streams

    def upload(self, path: str, stream: IO[bytes], size: int, content_type: str) -> None:
        """PUT ``size`` bytes read from ``stream`` to ``path``, in chunks (bounded memory). A
        kept-alive connection found closed is replaced once, when ``stream`` can seek back."""
        headers = {**self.headers, "Content-Type": content_type, "Content-Length": str(size)}
        what = f"The {self.description} (PUT {path})"
        start = stream.tell() if stream.seekable() else None
        while True:
            conn, reused = self._acquire()
            try:
                conn.putrequest("PUT", self.prefix + path, skip_accept_encoding=True)
                for key, value in headers.items():
                    conn.putheader(key, value)
                conn.endheaders()
                sent = 0
                while sent < size:
                    chunk = stream.read(min(CHUNK, size - sent))
                    if not chunk:
                        raise ModelpackError(f"{what}: the file shrank while it was being sent.")
                    conn.send(chunk)
                    sent += len(chunk)
                reply = conn.getresponse()
                payload = reply.read()
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                if reused and start is not None and isinstance(exc, _STALE):
                    stream.seek(start)
                    continue
                raise Unavailable(f"{what}: the upload failed: {exc}.") from None
            except BaseException:
                conn.close()
                raise
            self._release(conn, not reply.will_close)
            if reply.status >= 400:
                raise error_for(reply.status, payload, what)
            return

    def download(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """GET ``path``, the body in chunks as it arrives (bounded memory). The connection is
        this call's own, closed when the iteration ends."""
        target = self.prefix + path
        if params:
            target += "?" + urllib.parse.urlencode(_query(params), doseq=True)
        what = f"The {self.description} (GET {path})"
        for attempt in range(RETRIES + 1):
            conn = self._new_connection()
            try:
                conn.request("GET", target, headers=self.headers)
                reply = conn.getresponse()
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                if attempt < RETRIES:
                    _pause(attempt)
                    continue
                raise Unavailable(f"Cannot reach the {self.description}: {exc}.") from None
            if reply.status in (429, 502, 503, 504) and attempt < RETRIES:
                conn.close()
                _pause(attempt)
                continue
            if reply.status >= 400:
                payload = reply.read()
                conn.close()
                raise error_for(reply.status, payload, what)
            return _chunks(conn, reply, what)
        raise AssertionError("unreachable")


def _chunks(
    conn: http.client.HTTPConnection, reply: http.client.HTTPResponse, what: str
) -> Iterator[bytes]:
    try:
        while True:
            try:
                chunk = reply.read(CHUNK)
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                raise Unavailable(f"{what}: the download broke off: {exc}.") from None
            if not chunk:
                return
            yield chunk
    finally:
        conn.close()


def _query(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in params.items():
        if value is None:
            continue
        values: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
        for item in values:
            pairs.append((key, "true" if item is True else "false" if item is False else item))
    return pairs


def _never_sent(exc: BaseException) -> bool:
    """Whether the request surely never reached the server (so any method may be retried)."""
    return isinstance(exc, ConnectionRefusedError)


def _pause(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))


def _authorization(token: str | None, parsed: urllib.parse.SplitResult) -> str | None:
    token = (
        token
        or os.environ.get("MODELPACK_TRACKING_TOKEN")
        or os.environ.get("MLFLOW_TRACKING_TOKEN")
    )
    if token:
        return f"Bearer {token}"
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or parsed.username
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or parsed.password
    if user and password:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


_CREDENTIALS = (
    "MODELPACK_TRACKING_TOKEN",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
_SHARED: dict[tuple[Any, ...], Transport] = {}
_SHARED_LOCK = threading.Lock()


def shared(url: str, token: str | None = None) -> Transport:
    """The process's ``Transport`` to ``url`` (one per URL and credentials, like the SQL
    stores' shared engines): every ``Client`` and artifact store of a server reuses its
    kept-alive connections instead of opening (and leaving to the garbage collector) its own."""
    key = (url.rstrip("/"), token, *(os.environ.get(name) for name in _CREDENTIALS))
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            if not _SHARED:
                atexit.register(_close_shared)
            found = _SHARED[key] = Transport(url, token)
        return found


def _close_shared() -> None:
    """At exit: close the kept-alive connections, which the garbage collector would report."""
    with _SHARED_LOCK:
        transports = list(_SHARED.values())
    for transport in transports:
        transport.close()
