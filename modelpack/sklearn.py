"""MLflow's ``mlflow.sklearn`` calls: ``save_model``, ``log_model``, ``load_model``, ``autolog``.

A script ported with ``sed s/mlflow/modelpack/`` runs unchanged; the package is an ordinary
modelpack package (sklearn flavor). See ``modelpack.model_calls`` for how MLflow's arguments map.

Example:
    >>> with modelpack.start_run():
    ...     info = modelpack.sklearn.log_model(model, name="model", input_example=X[:5])
    >>> modelpack.sklearn.load_model(info.model_uri).predict(X)
"""

from __future__ import annotations

import os
from typing import Any

from modelpack import model_calls
from modelpack.entities import ModelInfo
from modelpack.errors import InvalidArgument

__all__ = ["autolog", "load_model", "log_model", "save_model"]

FLAVOR = "sklearn"
# MLflow's serialization_format -> the sklearn flavor's serialization. A cloudpickle file is
# what pickle.load reads too, so MLflow's "pickle" is saved with cloudpickle.
_SERIALIZATIONS = {"cloudpickle": "cloudpickle", "pickle": "cloudpickle", "skops": "skops"}
_PREDICT_FNS = ("predict", "predict_proba", "decision_function", "transform")
_REFUSED = {
    **model_calls.COMMON_REFUSED,
    "skops_trusted_types": (
        "modelpack checks every file's sha256 before loading and then trusts the types the "
        "skops file declares; drop the argument"
    ),
}


def _options(
    call: str, code_paths: Any, serialization_format: str | None, pyfunc_predict_fn: str
) -> dict[str, Any]:
    options: dict[str, Any] = {"flavor": FLAVOR}
    if code_paths:
        options["code_paths"] = code_paths  # save explains why a sklearn package refuses them
    if serialization_format is not None:
        if serialization_format not in _SERIALIZATIONS:
            raise InvalidArgument(
                f"{call}: serialization_format={serialization_format!r} is not one of "
                f"{', '.join(_SERIALIZATIONS)}."
            )
        options["serialization"] = _SERIALIZATIONS[serialization_format]
    if pyfunc_predict_fn not in _PREDICT_FNS:
        raise InvalidArgument(
            f"{call}: pyfunc_predict_fn={pyfunc_predict_fn!r} is not supported; modelpack "
            f"serves one of {', '.join(_PREDICT_FNS)}."
        )
    options["predict_method"] = pyfunc_predict_fn
    return options


def save_model(
    sk_model: Any,
    path: str | os.PathLike[str],
    *,
    code_paths: Any = None,
    serialization_format: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    pyfunc_predict_fn: str = "predict",
    metadata: Any = None,
    **mlflow_only: Any,
) -> None:
    """Save a scikit-learn estimator (or pipeline) as a package at ``path``.

    Args:
        serialization_format: ``"cloudpickle"`` (default), ``"pickle"`` (saved with
            cloudpickle, which pickle reads) or ``"skops"`` (pickle-free).
        pyfunc_predict_fn: the method ``predict`` calls: predict, predict_proba,
            decision_function or transform.
        pip_requirements, extra_pip_requirements: a list of lines or a requirements file.

    Raises:
        AlreadyExists: ``path`` is not empty (as in MLflow).
        InvalidArgument: for an MLflow argument modelpack does not support, naming what to use.
    """
    call = "modelpack.sklearn.save_model"
    model_calls.check_refused(call, mlflow_only, _REFUSED)
    model_calls.save(
        call,
        sk_model,
        path,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        **_options(call, code_paths, serialization_format, pyfunc_predict_fn),
    )


def log_model(
    sk_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    code_paths: Any = None,
    serialization_format: str | None = None,
    registered_model_name: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    await_registration_for: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    pyfunc_predict_fn: str = "predict",
    metadata: Any = None,
    **mlflow_only: Any,
) -> ModelInfo:
    """Save the estimator into the active run's artifacts at ``name`` (and register it if
    ``registered_model_name`` is given).

    ``artifact_path`` is MLflow 2's name for ``name`` (still MLflow 3's second positional
    argument): ``log_model(model, "random_forest_model")`` works.

    Returns:
        A ``ModelInfo`` (``model_uri`` is ``runs:/<run_id>/<name>``).

    Raises:
        AlreadyExists: the run already has a model (or artifacts) at ``name``; MLflow would
            have replaced them.
    """
    call = "modelpack.sklearn.log_model"
    model_calls.check_refused(call, mlflow_only, {**_REFUSED, **model_calls.LOG_REFUSED})
    return model_calls.log(
        call,
        sk_model,
        model_calls.model_name(call, artifact_path, name),
        registered_model_name=registered_model_name,
        await_registration_for=await_registration_for,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        **_options(call, code_paths, serialization_format, pyfunc_predict_fn),
    )


def load_model(model_uri: str | os.PathLike[str], dst_path: Any = None) -> Any:
    """The estimator saved at ``model_uri`` (any URI ``modelpack.load`` takes), verified."""
    pack = model_calls.load_package("modelpack.sklearn.load_model", model_uri, FLAVOR, dst_path)
    return pack.unwrap()


def autolog(*args: Any, **kwargs: Any) -> Any:
    """MLflow's ``mlflow.sklearn.autolog``: see ``modelpack.autologging.autolog_sklearn``."""
    from modelpack.autologging import autolog_sklearn

    return autolog_sklearn(*args, **kwargs)
