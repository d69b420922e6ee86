"""Custom Python models: subclass ``PythonModel``, or save a plain function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Context", "PythonModel"]


@dataclass(frozen=True)
class Context:
    """What a ``PythonModel`` gets at load time.

    Attributes:
        artifacts: artifact name -> absolute local path of the copy inside the package.
    """

    artifacts: Mapping[str, str] = field(default_factory=dict)


class PythonModel:
    """Base class for custom models saved with the ``python`` flavor.

    Override ``predict``; override ``load_context`` to open artifacts (files or folders passed
    as ``artifacts={"name": path}`` to ``modelpack.save``) once, at load time.

    Example:
        >>> class Doubler(modelpack.PythonModel):
        ...     def predict(self, data, params=None):
        ...         return data * 2
        >>> modelpack.save(Doubler(), "doubler", input_example=np.array([[1.0]]))
    """

    def load_context(self, context: Context) -> None:
        """Called once after unpickling, before the first ``predict``."""

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Return predictions for ``data`` (a DataFrame for column signatures, else arrays)."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict(data, params).")
