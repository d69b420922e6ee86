"""modelpack: package, load and predict any model with one format and one interface.

Example:
    >>> import modelpack
    >>> modelpack.save(model, "churn", input_example=X[:5])
    >>> modelpack.load("churn").predict(X)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelpack import artifacts, data, errors
from modelpack._version import __version__
from modelpack.client import Client, MlflowClient
from modelpack.entities import ModelInfo, ModelVersion, RegisteredModel, Run
from modelpack.errors import (
    AlreadyExists,
    FlavorError,
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
    UnknownFlavor,
)
from modelpack.experiments import (
    create_experiment,
    delete_experiment,
    get_experiment,
    get_experiment_by_name,
    search_experiments,
    set_experiment,
)
from modelpack.log_queue import NotStored
from modelpack.manifest import Manifest
from modelpack.media import log_dict, log_figure, log_image, log_table, log_text
from modelpack.package import Package, load, save, verify
from modelpack.python_model import Context, PythonModel
from modelpack.signature import (
    ColSpec,
    ColumnSchema,
    ParamSpec,
    Signature,
    TensorSchema,
    TensorSpec,
)
from modelpack.tracking import (
    ActiveRun,
    active_run,
    delete_tag,
    end_run,
    flush,
    get_artifact_uri,
    get_run,
    get_tracking_uri,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_input,
    log_metric,
    log_metrics,
    log_model,
    log_param,
    log_params,
    register_model,
    search_runs,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)

if TYPE_CHECKING:
    from modelpack.inference import infer_signature

__all__ = [
    "ActiveRun",
    "Client",
    "MlflowClient",
    "ModelInfo",
    "ModelVersion",
    "RegisteredModel",
    "Run",
    "active_run",
    "artifacts",
    "create_experiment",
    "delete_experiment",
    "delete_tag",
    "autolog",
    "end_run",
    "flush",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "register_model",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
    "AlreadyExists",
    "ColSpec",
    "ColumnSchema",
    "Context",
    "FlavorError",
    "FormatError",
    "IntegrityError",
    "InvalidArgument",
    "Manifest",
    "MissingDependency",
    "ModelpackError",
    "NotFound",
    "NotStored",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Package",
    "ParamSpec",
    "PythonModel",
    "SchemaError",
    "Signature",
    "TensorSchema",
    "TensorSpec",
    "UnknownFlavor",
    "__version__",
    "data",
    "errors",
    "infer_signature",
    "load",
    "save",
    "verify",
]


# MLflow's namespaces (modelpack.sklearn.log_model...), imported on first use.
_LAZY_MODULES = ("models", "onnx", "pyfunc", "pytorch", "sklearn")


def autolog(*args: Any, **kwargs: Any) -> Any:
    """MLflow's ``mlflow.autolog``: see ``modelpack.autologging.autolog``."""
    from modelpack.autologging import autolog as autolog_all

    return autolog_all(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # infer_signature needs numpy: imported on first use, so `import modelpack` stays cheap.
    if name == "infer_signature":
        from modelpack.inference import infer_signature

        return infer_signature
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"modelpack.{name}")
    raise AttributeError(f"module 'modelpack' has no attribute {name!r}")
