"""What MLflow imports to load a modelpack package its own loaders cannot run.

A package's ``MLmodel`` names this module as the ``python_function`` loader where MLflow has no
flavor for the package's files (a ``modelpack.PythonModel`` or function) or would predict
differently (``modelpack.mlmodel``). ``mlflow.pyfunc.load_model(path)`` then calls
``_load_pyfunc(path)``, which loads the package with ``modelpack.load``: hashes verified,
signature enforced, the package's ``code/`` imported the way modelpack imports it. Without
modelpack installed MLflow fails with ``No module named 'modelpack'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from modelpack.package import Package, load

__all__ = ["MlflowPyfunc"]


class MlflowPyfunc:
    """A loaded package as MLflow's ``PyFuncModel`` drives it: ``predict(data, params)``."""

    def __init__(self, package: Package) -> None:
        self.package = package

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        """``Package.predict``: MLflow has checked ``data`` against its copy of the
        signature already; modelpack checks it again against the manifest's."""
        return self.package.predict(data, params)

    def get_raw_model(self) -> Any:
        """The framework's own model (what ``PyFuncModel.get_raw_model`` returns)."""
        return self.package.unwrap()


def _load_pyfunc(path: str | os.PathLike[str], model_config: Any = None) -> MlflowPyfunc:
    """MLflow's loader hook: ``path`` is the package folder (the block has no ``data``).

    ``model_config`` (``mlflow.pyfunc.load_model(..., model_config={...})``) is passed to
    ``modelpack.load`` as its loader options, e.g. ``{"device": "cuda"}`` for torch.
    """
    options = dict(model_config or {})
    return MlflowPyfunc(load(path, **options))
