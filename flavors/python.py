"""Save and serve custom Python models: a ``modelpack.PythonModel`` or a plain function."""

from __future__ import annotations

import inspect
import os
import shutil
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.errors import InvalidArgument, NotFound
from modelpack.flavor import Columns, Predict, check_options
from modelpack.paths import resolve_inside
from modelpack.python_model import (
    CONTEXT_ATTR,
    Context,
    MLflowPythonModel,
    PythonModel,
    mlflow_caller,
)

NAME = "python"
# The keys save() writes into the manifest's flavors.python, each with the values it may take
# (None: any). Reading a manifest refuses other keys and values.
CONFIG_KEYS = {
    "path": None,
    "kind": ("function", "class"),
    "cloudpickle_version": None,
    "artifacts": None,
    "model_config": None,
}


def matches(obj: Any) -> bool:
    return isinstance(obj, PythonModel) or isinstance(obj, types.FunctionType)


def _copy_artifacts(artifacts: Mapping[str, Any], dest: Path) -> dict[str, str]:
    if not isinstance(artifacts, Mapping):
        raise InvalidArgument(f"artifacts must map names to local paths, got {artifacts!r}.")
    out: dict[str, str] = {}
    # Artifact names are data: each copy lives under an opaque numbered folder.
    for i, (name, local) in enumerate(artifacts.items()):
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"Artifact names must be non-empty strings, got {name!r}.")
        src = Path(os.fspath(local))
        if not src.exists():
            raise NotFound(f"Artifact {name!r}: {str(src)!r} does not exist.")
        if src.is_dir() and src.resolve() in (dest.resolve(), *dest.resolve().parents):
            raise InvalidArgument(
                f"Artifact {name!r}: the folder {str(src)!r} contains the package being saved; "
                f"point at a folder beside it instead."
            )
        folder = dest / "artifacts" / str(i)
        folder.mkdir(parents=True)
        target = folder / (src.name or "artifact")
        if src.is_dir():
            shutil.copytree(src, target, symlinks=False)
        else:
            shutil.copy2(src, target)
        out[name] = target.relative_to(dest).as_posix()
    return out


def save(model: Any, dest: Path, *, example: Any = None, **options: Any) -> dict:
    check_options(NAME, "save", options, ("artifacts", "model_config"))
    if not matches(model):
        raise InvalidArgument(
            f"The python flavor saves a modelpack.PythonModel or a plain function, not "
            f"{type(model).__name__}."
        )
    import cloudpickle

    rel = "model/python_model.pkl"
    with open(dest / rel, "wb") as f:
        cloudpickle.dump(model, f)
    config: dict[str, Any] = {
        "path": rel,
        "kind": "function" if isinstance(model, types.FunctionType) else "class",
        "cloudpickle_version": cloudpickle.__version__,
    }
    artifacts = options.get("artifacts")
    if artifacts:
        if config["kind"] == "function":
            raise InvalidArgument(
                "artifacts= needs a PythonModel subclass (its load_context receives them); "
                "a plain function has nowhere to get them."
            )
        config["artifacts"] = _copy_artifacts(artifacts, dest)
    model_config = options.get("model_config")
    if model_config:
        config["model_config"] = _check_model_config(model_config, config["kind"])
    return config


def _check_model_config(model_config: Any, kind: str) -> dict[str, Any]:
    import yaml

    from modelpack.manifest import dump_yaml

    if kind == "function":
        raise InvalidArgument(
            "model_config= needs a PythonModel subclass (its load_context receives it); a "
            "plain function has nowhere to get it."
        )
    if not isinstance(model_config, Mapping) or not all(isinstance(k, str) for k in model_config):
        raise InvalidArgument(
            f"model_config must map strings to plain data, got {type(model_config).__name__}."
        )
    try:
        dump_yaml(dict(model_config))
    except yaml.YAMLError as exc:
        raise InvalidArgument(
            f"model_config must hold only plain data (strings, numbers, lists, dicts): {exc}"
        ) from None
    return dict(model_config)


def load(src: Path, config: Mapping[str, Any], **options: Any) -> Any:
    """Unpickle the model and run its ``load_context`` once.

    Options:
        model_config: keys that replace those of the ``model_config`` saved with the model
            (MLflow's ``pyfunc.load_model(..., model_config=...)``).
    """
    check_options(NAME, "load", options, ("model_config",))
    override = options.get("model_config")
    if override is not None and not isinstance(override, Mapping):
        raise InvalidArgument(f"model_config must be a mapping, got {type(override).__name__}.")
    import cloudpickle  # noqa: F401 - the pickle names its functions

    from modelpack import package_code

    # The package's code/ (if it has one) is importable while this unpickles and runs
    # load_context, and to the model's own imports for good (modelpack.package_code).
    with open(resolve_inside(src, config["path"], "python model path"), "rb") as f:
        model = package_code.load_pickle(f)
    if isinstance(model, PythonModel):
        artifacts = {
            name: str(resolve_inside(src, rel, f"artifact {name!r}"))
            for name, rel in (config.get("artifacts") or {}).items()
        }
        model_config = {**(config.get("model_config") or {}), **(override or {})}
        context = Context(artifacts=artifacts, model_config=model_config)
        if isinstance(model, MLflowPythonModel):
            # Its predict gets the context too, as MLflow passes it (modelpack.python_model).
            model.__dict__[CONTEXT_ATTR] = context
        model.load_context(context)
    elif override:
        raise InvalidArgument(
            "model_config= is for a PythonModel (its load_context receives it); this package "
            "holds a plain function."
        )
    return model


def _takes_params(fn: Any) -> bool:
    try:
        return "params" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def predictor(native: Any, config: Mapping[str, Any]) -> Predict:
    if isinstance(native, MLflowPythonModel):
        call = mlflow_caller(native)

        def predict_mlflow(data: Any, params: Mapping[str, Any]) -> Any:
            if isinstance(data, Columns):
                data = data.to_frame()
            return call(data, params or None)

        return predict_mlflow
    fn = native.predict if isinstance(native, PythonModel) else native
    takes_params = isinstance(native, PythonModel) or _takes_params(fn)

    def predict(data: Any, params: Mapping[str, Any]) -> Any:
        if isinstance(data, Columns):
            data = data.to_frame()
        if takes_params:
            return fn(data, params=params or None)
        return fn(data)

    return predict


def requirements(model: Any, config: Mapping[str, Any]) -> list[str]:
    return ["cloudpickle", "numpy"]
