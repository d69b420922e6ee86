"""The wire rules of MLflow's REST API, in one place: reading a call's parameters, writing
JSON answers, and turning every error into ``{"error_code", "message"}`` with MLflow's status.

A client's mistake is a 4xx naming the problem and how to fix it; anything else is a 500 that
says only that the server failed (the traceback goes to the server's log, never to a client).
MLflow's client retries a 500 seven times, so a user error must never be one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from modelpack.errors import (
    AlreadyExists,
    Conflict,
    FormatError,
    IntegrityError,
    InvalidArgument,
    MissingDependency,
    ModelpackError,
    NotFound,
    PermissionDenied,
    SchemaError,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "ApiError",
    "boolean",
    "error_response",
    "integer",
    "json_response",
    "number",
    "objects",
    "optional_text",
    "pairs",
    "strings",
    "text",
    "wire_float",
]

log = logging.getLogger("modelpack.server")

# MLflow's error codes and the status each is answered with (mlflow/exceptions.py).
STATUS = {
    "BAD_REQUEST": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "MALFORMED_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "RESOURCE_CONFLICT": 409,
    "REQUEST_ENTITY_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
}

# Our errors, most specific first (IntegrityError and SchemaError are also other classes).
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (Unauthenticated, "UNAUTHENTICATED"),
    (PermissionDenied, "PERMISSION_DENIED"),
    (NotFound, "RESOURCE_DOES_NOT_EXIST"),
    (AlreadyExists, "RESOURCE_ALREADY_EXISTS"),
    (Conflict, "RESOURCE_CONFLICT"),
    (Unavailable, "TEMPORARILY_UNAVAILABLE"),
    (IntegrityError, "INVALID_PARAMETER_VALUE"),
    (SchemaError, "INVALID_PARAMETER_VALUE"),
    (FormatError, "INVALID_PARAMETER_VALUE"),
    (MissingDependency, "INVALID_STATE"),
    (InvalidArgument, "INVALID_PARAMETER_VALUE"),
    (ModelpackError, "INVALID_PARAMETER_VALUE"),
)


class ApiError(Exception):
    """An answer with an MLflow error code of our choosing (``error_code``) and a message."""

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload), status, headers=dict(headers or {}), media_type="application/json"
    )


def error_response(exc: BaseException, where: str = "") -> Response:
    """The answer for ``exc``: MLflow's error body and status; never a traceback or a path
    the client did not send."""
    if isinstance(exc, ApiError):
        return json_response(
            {"error_code": exc.code, "message": exc.message}, exc.status, exc.headers
        )
    for kind, code in _CODES:
        if isinstance(exc, kind):
            status = 500 if code == "INVALID_STATE" else STATUS[code]
            headers = {"WWW-Authenticate": 'Bearer realm="modelpack"'} if status == 401 else None
            return json_response({"error_code": code, "message": str(exc)}, status, headers)
    log.exception("internal error answering %s", where or "a request", exc_info=exc)
    return json_response(
        {
            "error_code": "INTERNAL_ERROR",
            "message": "The server failed to answer this request; its log says why.",
        },
        500,
    )


# ---------------------------------------------------------------------- parameters


def _missing(key: str) -> ApiError:
    return ApiError("INVALID_PARAMETER_VALUE", f"Missing value for required parameter '{key}'.")


def text(params: Mapping[str, Any], key: str, *also: str) -> str:
    """A required string; ``also`` names older spellings tried in order (``run_uuid``)."""
    value = optional_text(params, key, *also)
    if value is None or value == "":
        raise _missing(key)
    return value


def optional_text(params: Mapping[str, Any], key: str, *also: str) -> str | None:
    for name in (key, *also):
        value = params.get(name)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = value[-1]  # a query parameter given twice: the last wins, as in Flask
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ApiError(
                "INVALID_PARAMETER_VALUE",
                f"Invalid value {_shown(value)} for parameter '{name}': expected a string.",
            )
        return str(value)
    return None


def integer(
    params: Mapping[str, Any],
    key: str,
    default: int | None = None,
    *,
    low: int | None = None,
    high: int | None = None,
) -> int | None:
    """An integer (a JSON number or, from a query string, digits), within [low, high]."""
    value = params.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        value = None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            value = None
    if not isinstance(value, int):
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"Invalid value {_shown(params.get(key))} for parameter '{key}': expected an integer.",
        )
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"Invalid value {value} for parameter '{key}': it must be {bounds}.",
        )
    return value


def number(params: Mapping[str, Any], key: str) -> float:
    """A required double: a JSON number, or MLflow's strings ``NaN``, ``Infinity``,
    ``-Infinity``."""
    value = params.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None:
        raise _missing(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ApiError(
        "INVALID_PARAMETER_VALUE",
        f"Invalid value {_shown(value)} for parameter '{key}': expected a number.",
    )


def boolean(params: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = params.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ApiError(
        "INVALID_PARAMETER_VALUE",
        f"Invalid value {_shown(value)} for parameter '{key}': expected true or false.",
    )


def strings(params: Mapping[str, Any], key: str) -> list[str]:
    """A repeated string field: a JSON array, or a query parameter given once or more."""
    value = params.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ApiError(
        "INVALID_PARAMETER_VALUE",
        f"Invalid value {_shown(value)} for parameter '{key}': expected a list of strings.",
    )


def objects(params: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """A repeated message field: a JSON array of objects."""
    value = params.get(key)
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise ApiError(
        "INVALID_PARAMETER_VALUE",
        f"Invalid value {_shown(value)} for parameter '{key}': expected a list of objects.",
    )


def pairs(params: Mapping[str, Any], field: str) -> list[tuple[str, str]]:
    """A repeated ``{key, value}`` field (tags, params) as (key, value) pairs, in order."""
    out = []
    for i, item in enumerate(objects(params, field)):
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str) or not key:
            raise ApiError(
                "INVALID_PARAMETER_VALUE",
                f"Invalid {field}[{i}]: 'key' must be a non-empty string, got {key!r:.60}.",
            )
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ApiError(
                "INVALID_PARAMETER_VALUE",
                f"Invalid {field}[{i}] ({key!r:.60}): 'value' must be a string, got "
                f"{value!r:.60}; send numbers as text, as MLflow's client does.",
            )
        out.append((key, value))
    return out


def wire_float(value: float | None) -> float | str | None:
    """A double as MLflow's JSON writes it: NaN and the infinities as strings."""
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
