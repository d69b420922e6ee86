"""The one table from exception to HTTP status and JSON body. Nothing else picks statuses."""

from __future__ import annotations

import logging
from typing import Any

from modelpack.errors import InvalidArgument, ModelpackError, NotFound, SchemaError

log = logging.getLogger("modelpack.serving")


MAX_MESSAGE = 1_000  # characters of a message a client sees, whatever it quotes


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: how a message quotes what a client sent
    (a name, a type, a shape), so an error never echoes a large input back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HTTPError(Exception):
    """A protocol-level refusal (413, 415, 503, 504...) with the message clients see.
    ``close`` asks for the connection to be closed after the answer (the request was not read
    to its end, and the client is too slow to wait for)."""

    def __init__(
        self, status: int, message: str, code: str | None = None, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "BAD_REQUEST")
        self.close = close


class ModelFailed(Exception):
    """The model itself raised while predicting (the server's fault, not the client's)."""


_CODES = {
    400: "BAD_REQUEST",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "TIMEOUT",
}

_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (HTTPError, 0),
    (SchemaError, 400),
    (InvalidArgument, 400),
    (NotFound, 404),
    (ModelFailed, 500),
    (ModelpackError, 400),
)


def classify(exc: BaseException) -> tuple[int, str, str]:
    """``(status, error_code, message)`` for any exception; unknown ones are logged as 500s.
    The message is cut to ``MAX_MESSAGE`` characters (values in it are cut where quoted)."""
    for kind, status in _TABLE:
        if isinstance(exc, kind):
            if isinstance(exc, HTTPError):
                return exc.status, exc.code, _cut(exc.message)
            return status, _CODES[status], _cut(str(exc))
    log.exception("Unexpected error while serving a request", exc_info=exc)
    return 500, "INTERNAL_ERROR", "The server failed to handle the request; see its log."


def _cut(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def mlflow_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    status, code, message = classify(exc)
    return status, {"error_code": code, "message": message}


def v2_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    status, _, message = classify(exc)
    return status, {"error": message}
