"""MLflow's ``mlflow.pyfunc`` calls: ``PythonModel``, ``save_model``, ``log_model``,
``load_model``, ``spark_udf``.

``PythonModel`` here is MLflow's convention, ``predict(self, context, model_input,
params=None)``, so a class written for MLflow works with ``mlflow`` replaced by ``modelpack``.
``load_model`` returns the ``modelpack.Package``, whose ``predict(data, params=None)``,
``metadata`` and ``unwrap_python_model()`` are those of MLflow's ``PyFuncModel``.

Example:
    >>> class AddN(modelpack.pyfunc.PythonModel):
    ...     def __init__(self, n):
    ...         self.n = n
    ...     def predict(self, context, model_input, params=None):
    ...         return model_input.apply(lambda column: column + self.n)
    >>> modelpack.pyfunc.save_model("add_n", python_model=AddN(5))
    >>> modelpack.pyfunc.load_model("add_n").predict(pd.DataFrame({"x": [1, 2]}))
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from modelpack import model_calls
from modelpack.entities import ModelInfo
from modelpack.errors import InvalidArgument, NotFound
from modelpack.package import Package
from modelpack.python_model import Context, MLflowPythonModel

__all__ = [
    "PyFuncModel",
    "PythonModel",
    "PythonModelContext",
    "get_model_dependencies",
    "load_model",
    "log_model",
    "save_model",
    "spark_udf",
]

PythonModel = MLflowPythonModel
PythonModelContext = Context


class PyFuncModel(Package):
    """What ``load_model`` returns: a ``modelpack.Package`` (``predict(data, params=None)``,
    ``unwrap()``...) with MLflow's ``PyFuncModel`` additions."""

    @classmethod
    def of(cls, pack: Package) -> PyFuncModel:
        # The same loaded model and predict: nothing is deserialized again.
        return cls(pack.path, pack.manifest, pack.flavor, pack.unwrap(), pack._predict)

    @property
    def metadata(self) -> Any:
        """The package's description under MLflow's names (``modelpack.models.Model``)."""
        from modelpack.models import Model

        return Model(self.manifest, self.path)

    def unwrap_python_model(self) -> Any:
        """The ``PythonModel`` (or function) of a python-flavor package."""
        if self.flavor != "python":
            raise InvalidArgument(
                f"unwrap_python_model() is for python-flavor packages; this one runs the "
                f"{self.flavor} flavor: unwrap() returns its model."
            )
        return self.unwrap()

    def get_raw_model(self) -> Any:
        """The framework's own model object (MLflow's name for ``unwrap()``)."""
        return self.unwrap()


_REFUSED = {
    **model_calls.COMMON_REFUSED,
    "loader_module": (
        "modelpack saves a PythonModel or a plain function, not a loader module: pass "
        "python_model=... (a PythonModel whose load_context opens the data from artifacts=)"
    ),
    "data_path": "pass artifacts={'data': path}; load_context gets its local path",
    "infer_code_paths": "list the modules the model imports in code_paths=[...]",
    "streamable": "modelpack serves predict only, not predict_stream; drop the argument",
    "resources": "a Databricks Model Serving option; drop the argument",
    "auth_policy": "a Databricks Model Serving option; drop the argument",
    "uv_project_path": "pass pip_requirements=[...] (or a requirements file) instead",
    "uv_groups": "pass pip_requirements=[...] (or a requirements file) instead",
    "uv_extras": "pass pip_requirements=[...] (or a requirements file) instead",
}
_LOG_REFUSED = {**_REFUSED, **model_calls.LOG_REFUSED, "prompts": "drop the argument"}


def _python_model(call: str, python_model: Any) -> Any:
    if python_model is None:
        raise InvalidArgument(
            f"{call}: pass python_model=... (a modelpack.pyfunc.PythonModel instance or a "
            f"function of the input)."
        )
    if isinstance(python_model, str | os.PathLike):
        raise InvalidArgument(
            f"{call}: python_model={str(python_model)!r} is a file (MLflow's models from "
            f"code), which modelpack does not support: import the class from that file and "
            f"pass an instance, python_model=MyModel()."
        )
    return python_model


def _model_config(call: str, model_config: Any) -> dict[str, Any] | None:
    """MLflow's ``model_config``: a dict, or the path of a YAML (or JSON) file."""
    if model_config is None or isinstance(model_config, Mapping):
        return None if model_config is None else dict(model_config)
    if not isinstance(model_config, str | os.PathLike):
        raise InvalidArgument(
            f"{call}: model_config must be a dict or the path of a YAML file, got "
            f"{type(model_config).__name__}."
        )
    import yaml

    path = Path(model_config)
    if not path.is_file():
        raise NotFound(f"{call}: model_config file {str(path)!r} does not exist.")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{call}: cannot read model_config {str(path)!r}: {exc}") from None
    if not isinstance(loaded, Mapping):
        raise InvalidArgument(f"{call}: model_config {str(path)!r} does not hold a mapping.")
    return dict(loaded)


def _artifacts(call: str, artifacts: Any, stack: ExitStack) -> dict[str, Any] | None:
    """MLflow's ``artifacts``: name -> a local path, ``file://`` URI or ``runs:/`` URI (the
    latter downloaded first, as MLflow does)."""
    from modelpack import uris

    if artifacts is None:
        return None
    if not isinstance(artifacts, Mapping):
        raise InvalidArgument(f"{call}: artifacts must map names to paths or URIs.")
    out: dict[str, Any] = {}
    for name, value in artifacts.items():
        where = uris.parse(value) if isinstance(value, str | os.PathLike) else value
        if isinstance(where, uris.RunURI):
            from modelpack.client import Client

            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="modelpack-art-"))
            out[name] = Client().download_artifacts(where.run_id, where.path, folder)
        elif isinstance(where, uris.ModelURI | uris.S3URI):
            raise InvalidArgument(
                f"{call}: artifact {name!r}: {value!r} is not supported; artifacts are local "
                f"paths, file:// or runs:/ URIs."
            )
        else:
            out[name] = where
    return out


def _options(
    call: str, python_model: Any, code_paths: Any, model_config: Any, stack: ExitStack, art: Any
) -> dict[str, Any]:
    options: dict[str, Any] = {"flavor": "python"}
    _python_model(call, python_model)
    if code_paths:
        options["code_paths"] = list(code_paths)
    config = _model_config(call, model_config)
    if config:
        options["model_config"] = config
    artifacts = _artifacts(call, art, stack)
    if artifacts:
        options["artifacts"] = artifacts
    return options


def save_model(
    path: str | os.PathLike[str],
    *,
    code_paths: Any = None,
    python_model: Any = None,
    artifacts: Mapping[str, Any] | None = None,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    model_config: Any = None,
    **mlflow_only: Any,
) -> None:
    """Save ``python_model`` (a ``PythonModel`` of either convention, or a function) as a
    package at ``path``.

    Args:
        artifacts: name -> local path, ``file://`` or ``runs:/`` URI; copied in, and given to
            ``load_context`` as ``context.artifacts[name]`` (a local path).
        code_paths: ``.py`` files or package folders the model imports at load.
        model_config: plain data (or a YAML file) given as ``context.model_config``.
    """
    call = "modelpack.pyfunc.save_model"
    model_calls.check_refused(call, mlflow_only, _REFUSED)
    with ExitStack() as stack:
        model_calls.save(
            call,
            python_model,
            path,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            metadata=metadata,
            **_options(call, python_model, code_paths, model_config, stack, artifacts),
        )


def log_model(
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    code_paths: Any = None,
    python_model: Any = None,
    artifacts: Mapping[str, Any] | None = None,
    registered_model_name: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    await_registration_for: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    model_config: Any = None,
    **mlflow_only: Any,
) -> ModelInfo:
    """Save ``python_model`` into the active run's artifacts at ``name`` (``artifact_path``
    is MLflow 2's name for it); register it if ``registered_model_name`` is given."""
    call = "modelpack.pyfunc.log_model"
    model_calls.check_refused(call, mlflow_only, _LOG_REFUSED)
    model_name = model_calls.model_name(call, artifact_path, name)
    with ExitStack() as stack:
        return model_calls.log(
            call,
            python_model,
            model_name,
            registered_model_name=registered_model_name,
            await_registration_for=await_registration_for,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            metadata=metadata,
            **_options(call, python_model, code_paths, model_config, stack, artifacts),
        )


def load_model(
    model_uri: str | os.PathLike[str],
    suppress_warnings: bool = False,
    dst_path: Any = None,
    model_config: Any = None,
) -> PyFuncModel:
    """The package at ``model_uri``, of any flavor, verified: MLflow's ``PyFuncModel``.

    Args:
        model_config: for a python-flavor package, keys that replace those saved with it
            (a dict or a YAML file), seen by ``load_context`` as ``context.model_config``.
    """
    call = "modelpack.pyfunc.load_model"
    config = _model_config(call, model_config)
    # Only the python flavor's loader takes model_config; any other says so, naming itself.
    options = {"model_config": config} if config else {}
    return PyFuncModel.of(model_calls.load_package(call, model_uri, None, dst_path, **options))


def spark_udf(
    spark: Any,
    model_uri: str | os.PathLike[str],
    result_type: Any = None,
    env_manager: str | None = None,
    params: Mapping[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    prebuilt_env_uri: str | None = None,
    model_config: Any = None,
) -> Any:
    """A pandas UDF that runs the package's ``predict`` on Spark columns
    (``modelpack.batch.spark.spark_udf``).

    ``result_type`` is a Spark type or DDL string (``"double"``, ``"array<double>"``); by
    default it follows the signature's outputs (MLflow's default is ``"double"``). Executors
    use their own Python environment: ``env_manager`` may only be ``"local"``.
    """
    from modelpack.batch.spark import spark_udf as package_udf

    call = "modelpack.pyfunc.spark_udf"
    if env_manager not in (None, "local"):
        raise InvalidArgument(
            f"{call}: env_manager={env_manager!r} is not supported: the executors run the "
            f"package in their own Python environment (env_manager='local'). Install its "
            f"requirements.txt there (modelpack.pyfunc.get_model_dependencies(uri))."
        )
    refused = {
        "params": "declare defaults in the signature's params (infer_signature(..., params=))",
        "extra_env": "set the variables in the executors' environment (spark.executorEnv.*)",
        "prebuilt_env_uri": "executors use their own Python environment; drop the argument",
        "model_config": "save the model with model_config= instead",
    }
    given = {
        "params": params,
        "extra_env": extra_env,
        "prebuilt_env_uri": prebuilt_env_uri,
        "model_config": model_config,
    }
    model_calls.check_refused(call, given, refused)
    return package_udf(spark, model_uri, result_type=result_type)


def get_model_dependencies(model_uri: str | os.PathLike[str], format: str = "pip") -> str:
    """The path of the package's ``requirements.txt`` (MLflow's ``format="pip"``)."""
    from modelpack.package import verify
    from modelpack.paths import resolve_inside
    from modelpack.resolution import resolve

    if format != "pip":
        raise InvalidArgument(
            f"format={format!r} is not supported: modelpack packages pin pip requirements "
            f"only (format='pip')."
        )
    root = resolve(model_uri)
    manifest = verify(root)
    rel = manifest.environment.get("requirements", "requirements.txt")
    return str(resolve_inside(root, str(rel), "environment.requirements"))
