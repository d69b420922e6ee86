"""Checks on names, keys and values that come from users (stored as data, never interpreted)."""

from __future__ import annotations

import unicodedata
from typing import Any

from modelpack.errors import InvalidArgument

MAX_NAME = 256
MAX_VALUE = 8000


def name(value: Any, what: str) -> str:
    """A non-empty name of at most 256 characters without control characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}.")
    if not value or not value.strip():
        raise InvalidArgument(f"{what} must not be empty.")
    if len(value) > MAX_NAME:
        raise InvalidArgument(
            f"{what} is {len(value)} characters long; the limit is {MAX_NAME}: {value[:40]!r}..."
        )
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise InvalidArgument(
                f"{what} {value!r} contains a control character ({ch!r}); use printable text."
            )
    return value


def text(value: Any, what: str, limit: int = MAX_VALUE) -> str:
    """Any value, as the string stored for it, at most ``limit`` characters."""
    out = value if isinstance(value, str) else str(value)
    if len(out) > limit:
        raise InvalidArgument(f"{what} is {len(out)} characters long; the limit is {limit}.")
    return out


def metric_value(key: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        and not hasattr(value, "__float__")
    ):
        raise InvalidArgument(f"Metric {key!r}: expected a number, got {value!r}.")
    return float(value)
