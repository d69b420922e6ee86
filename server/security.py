"""PLACEHOLDER: the security helper replaces it; keeps ``secured(app, state)``."""

from __future__ import annotations

from typing import Any

__all__ = ["secured"]


def secured(app: Any, state: Any) -> Any:
    return app
