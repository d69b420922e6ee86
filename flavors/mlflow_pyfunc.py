"""Load and serve MLflow ``PythonModel``s: the ``python_model.pkl`` of an MLflow model directory.

Such a pickle names MLflow's own classes (``mlflow.pyfunc.PythonModel`` and its context), so it
loads only where ``mlflow`` or ``mlflow-skinny`` is importable; elsewhere loading fails saying
which to install. Loading follows MLflow's rules: artifacts are handed to ``load_context`` as
name -> absolute path inside the package, with the saved ``model_config``; ``predict`` gets the
context first when it declares one, and ``params`` when it takes them. The package's ``code/``
is importable while the model loads and runs, in a namespace of its own (as for the python
flavor; ``modelpack.package_code``).

Load-only: packages made by ``modelpack.save`` store custom models with the python flavor.
"""

from __future__ import annotations

import bz2
import gzip
import inspect
import lzma
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.errors import InvalidArgument, MissingDependency
from modelpack.flavor import Columns, Predict, check_options
from modelpack.paths import resolve_inside

NAME = "mlflow_pyfunc"
_OPEN = {None: open, "gzip": gzip.open, "bzip2": bz2.open, "lzma": lzma.open}
# The keys a conversion writes into the manifest's flavors.mlflow_pyfunc, each with the values
# it may take (None: any). Reading a manifest refuses other keys and values.
CONFIG_KEYS = {
    "path": None,
    "compression": ("gzip", "bzip2", "lzma"),
    "cloudpickle_version": None,
    "mlflow_version": None,
    "artifacts": None,
    "model_config": None,
}
# Where a loaded model keeps the MLflow context its predict is given.
_CONTEXT_ATTR = "_modelpack_mlflow_context"


def matches(obj: Any) -> bool:
    """Never: this flavor reads MLflow's files; ``modelpack.save`` does not write them."""
    return False


def save(obj: Any, dest: Path, *, example: Any = None, **options: Any) -> dict:
    raise InvalidArgument(
        "The mlflow_pyfunc flavor only loads PythonModels saved by MLflow. Save a "
        "modelpack.PythonModel (or modelpack.pyfunc.PythonModel) with the python flavor."
    )


def requirements(obj: Any, config: Mapping[str, Any]) -> list[str]:
    """Distributions loading needs: MLflow (its classes are in the pickle) and cloudpickle."""
    return [_mlflow_requirement(config), "cloudpickle"]


def _mlflow_requirement(config: Mapping[str, Any]) -> str:
    version = config.get("mlflow_version")
    return f"mlflow-skinny=={version}" if version else "mlflow-skinny"


def _mlflow(config: Mapping[str, Any]) -> Any:
    try:
        import mlflow.pyfunc
    except ImportError:
        raise MissingDependency(
            "This MLflow PythonModel's pickle refers to MLflow's own classes, so loading it "
            f"needs mlflow, which is not installed. Install it with: pip install "
            f"{_mlflow_requirement(config)}",
            NAME,
            "mlflow-skinny",
        ) from None
    return mlflow.pyfunc


def load(src: Path, config: Mapping[str, Any], **options: Any) -> Any:
    """Unpickle the PythonModel and run its ``load_context`` once, as MLflow does.

    Options:
        model_config: keys that replace those of the saved ``model_config`` (MLflow's
            ``pyfunc.load_model(..., model_config=...)``).

    Raises:
        MissingDependency: neither mlflow nor mlflow-skinny is installed.
    """
    check_options(NAME, "load", options, ("model_config",))
    override = options.get("model_config")
    if override is not None and not isinstance(override, Mapping):
        raise InvalidArgument(f"model_config must be a mapping, got {type(override).__name__}.")
    pyfunc = _mlflow(config)
    import cloudpickle  # noqa: F401 - the pickle names its functions

    from modelpack import package_code

    compression = config.get("compression")
    opener = _OPEN.get(compression)
    if opener is None:
        raise InvalidArgument(f"Unknown python_model compression {compression!r}.")
    with opener(resolve_inside(src, config["path"], "python model path"), "rb") as f:
        model = package_code.load_pickle(f)
    artifacts = {
        name: str(resolve_inside(src, rel, f"artifact {name!r}"))
        for name, rel in (config.get("artifacts") or {}).items()
    }
    model_config = {**(config.get("model_config") or {}), **(override or {})}
    context = pyfunc.PythonModelContext(artifacts=artifacts, model_config=model_config)
    model.load_context(context)
    try:
        model.__dict__[_CONTEXT_ATTR] = context
    except AttributeError:  # no instance dict: keep both in a holder instead
        return _Held(model, context)
    return model


class _Held:
    """A model whose class allows no attributes, with its context."""

    def __init__(self, model: Any, context: Any) -> None:
        self.model = model
        self.context = context


def predictor(native: Any, config: Mapping[str, Any]) -> Predict:
    """Return ``predict(data, params)``: data as MLflow hands it (a DataFrame for a column
    signature, arrays for a tensor one), the context and ``params`` as ``predict`` declares."""
    if isinstance(native, _Held):
        model, context = native.model, native.context
    else:
        model, context = native, native.__dict__.get(_CONTEXT_ATTR)
    fn = model.predict
    try:
        parameters = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        parameters = ["context", "model_input", "params"]
    # MLflow 3's rule (mlflow.models.signature._is_context_in_predict_function_signature).
    takes_context = (
        "context" in parameters or len([p for p in parameters if p not in ("self", "params")]) == 2
    )
    takes_params = "params" in parameters

    def predict(data: Any, params: Mapping[str, Any]) -> Any:
        if isinstance(data, Columns):
            data = data.to_frame()
        head = (context, data) if takes_context else (data,)
        if takes_params:
            return fn(*head, params=dict(params) if params else None)
        return fn(*head)

    return predict
