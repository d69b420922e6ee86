"""PLACEHOLDER: filled by a helper."""

from __future__ import annotations

from typing import Any

ENDPOINTS: list[Any] = []
