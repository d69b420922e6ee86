"""HTTP to a ``modelpack server`` (or an MLflow server): persistent connections, credentials,
retries of what is safe to retry, and MLflow's error bodies turned back into our errors.

The standard library's ``http.client``: no dependency, and one kept-alive connection per thread
(a request on a fresh connection costs a TCP handshake; a run's logging makes thousands).

Credentials, first found wins: ``token=``, ``MODELPACK_TRACKING_TOKEN``, ``MLFLOW_TRACKING_TOKEN``
(``Authorization: Bearer``), else ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD``
(HTTP Basic, as MLflow's client sends them).
"""

from __future__ import annotations

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

__all__ = ["API", "Transport", "error_for"]

API = "/api/2.0/mlflow"
TIMEOUT_S = float(os.environ.get("MODELPACK_HTTP_TIMEOUT_S", "120"))
RETRIES = 5  # on a refused or dropped connection, 429, 502, 503, 504
CHUNK = 1024 * 1024

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
        self._local = threading.local()

    # ------------------------------------------------------------------ connections

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT_S)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def close(self) -> None:
        self._drop()

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
        for attempt in range(RETRIES + 1):
            try:
                conn = self._connection()
                conn.request(method, target, body=data, headers=send_headers)
                reply = conn.getresponse()
                payload = reply.read()
                answer = dict(reply.getheaders())
                if reply.will_close:
                    self._drop()
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop()
                if attempt < RETRIES and (retry or _never_sent(exc)):
                    _pause(attempt)
                    continue
                raise Unavailable(
                    f"Cannot reach the {self.description}: {exc or type(exc).__name__}. Is it "
                    f"running, and is the URL right?"
                ) from None
            if reply.status in (429, 502, 503, 504) and attempt < RETRIES and retry:
                _pause(attempt)
                continue
            return reply.status, payload, answer
        raise AssertionError("unreachable")

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
        """PUT ``size`` bytes read from ``stream`` to ``path``, in chunks (bounded memory)."""
        conn = self._connection()
        headers = {
            **self.headers,
            "Content-Type": content_type,
            "Content-Length": str(size),
        }
        what = f"The {self.description} (PUT {path})"
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
            if reply.will_close:
                self._drop()
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            self._drop()
            raise Unavailable(f"{what}: the upload failed: {exc}.") from None
        if reply.status >= 400:
            raise error_for(reply.status, payload, what)

    def download(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """GET ``path``, the body in chunks as it arrives (bounded memory). The connection is
        this call's own, closed when the iteration ends."""
        target = self.prefix + path
        if params:
            target += "?" + urllib.parse.urlencode(_query(params), doseq=True)
        what = f"The {self.description} (GET {path})"
        for attempt in range(RETRIES + 1):
            if self.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=TIMEOUT_S
                )
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
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
