"""Custom Python models: subclass ``PythonModel``, or save a plain function.

Two conventions, one flavor. ``modelpack.PythonModel.predict(self, data, params=None)`` is
ours; ``modelpack.pyfunc.PythonModel`` (``MLflowPythonModel`` here) is MLflow's, whose
``predict(self, context, model_input, params=None)`` also receives the load-time context, so a
class written for MLflow saves, loads and serves unchanged once ``mlflow`` reads ``modelpack``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Context", "MLflowPythonModel", "PythonModel", "context_of", "mlflow_caller"]

# Where the python flavor keeps, on a loaded MLflow-style model, the context its predict gets.
CONTEXT_ATTR = "_modelpack_context"


@dataclass(frozen=True)
class Context:
    """What a ``PythonModel`` gets at load time (MLflow's ``PythonModelContext``).

    Attributes:
        artifacts: artifact name -> absolute local path of the copy inside the package.
        model_config: the ``model_config`` given at save (plain data), ``{}`` when none was.
    """

    artifacts: Mapping[str, str] = field(default_factory=dict)
    model_config: Mapping[str, Any] = field(default_factory=dict)


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


class MLflowPythonModel(PythonModel):
    """A ``PythonModel`` written the MLflow way; ``modelpack.pyfunc.PythonModel`` is this class.

    ``predict(self, context, model_input, params=None)`` gets the same ``Context`` that
    ``load_context`` got. As in MLflow 3, ``context`` may be left out of ``predict``'s
    parameters (``predict(self, model_input, params=None)``), and so may ``params`` (then
    the signature's params are not passed).

    Example:
        >>> class AddN(modelpack.pyfunc.PythonModel):
        ...     def __init__(self, n):
        ...         self.n = n
        ...     def predict(self, context, model_input, params=None):
        ...         return model_input.apply(lambda column: column + self.n)
        >>> modelpack.pyfunc.save_model("add_n", python_model=AddN(5))
    """

    def load_context(self, context: Context) -> None:
        """Called once after unpickling, before the first ``predict``."""

    def predict(  # type: ignore[override]
        self, context: Context, model_input: Any, params: Mapping[str, Any] | None = None
    ) -> Any:
        """Return predictions for ``model_input``."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement predict(context, model_input, params=None)."
        )


def context_of(model: MLflowPythonModel) -> Context:
    """The context the python flavor gave ``model`` at load (an empty one before)."""
    return getattr(model, CONTEXT_ATTR, None) or Context()


def mlflow_caller(model: MLflowPythonModel) -> Any:
    """``call(data, params)`` that runs ``model.predict`` with the arguments it declares."""
    try:
        parameters = list(inspect.signature(model.predict).parameters)
    except (TypeError, ValueError):  # a builtin or C callable: assume MLflow's full form
        parameters = ["context", "model_input", "params"]
    # MLflow 3's rules (mlflow.models.signature): the context goes first when predict has a
    # parameter named "context", or exactly two besides params; params only by that name.
    takes_context = (
        "context" in parameters or len([p for p in parameters if p not in ("self", "params")]) == 2
    )
    takes_params = "params" in parameters
    predict: Any = model.predict  # called with the arguments it declares, not ours

    def call(data: Any, params: Mapping[str, Any] | None) -> Any:
        head = (context_of(model), data) if takes_context else (data,)
        if takes_params:
            return predict(*head, params=params)
        return predict(*head)

    return call
