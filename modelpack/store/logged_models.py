"""MLflow 3's LoggedModels in the SQL store (PLACEHOLDER: the registry helper fills it)."""

from __future__ import annotations

__all__ = ["LoggedModelsMixin"]


class LoggedModelsMixin:
    """The ``mlflow_logged_models`` tables; mixed into ``SqlStore``."""
