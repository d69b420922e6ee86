"""MLflow's ``mlflow.onnx`` calls: ``save_model``, ``log_model``, ``load_model``.

``load_model`` returns the ``onnx.ModelProto``, as MLflow's does; ``modelpack.load`` (or
``modelpack.pyfunc.load_model``) gives the package with an onnxruntime session behind
``predict``.

Example:
    >>> modelpack.onnx.save_model(proto, "model_dir")
    >>> modelpack.onnx.load_model("model_dir").graph.input[0].name
"""

from __future__ import annotations

import os
from typing import Any

from modelpack import model_calls
from modelpack.entities import ModelInfo

__all__ = ["load_model", "log_model", "save_model"]

FLAVOR = "onnx"
_REFUSED = {
    **model_calls.COMMON_REFUSED,
    "onnx_execution_providers": (
        "providers are chosen when a package is loaded: "
        "modelpack.load(uri, providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])"
    ),
    "onnx_session_options": (
        "session options are given when a package is loaded: modelpack.load(uri, "
        "intra_op_num_threads=..., inter_op_num_threads=...)"
    ),
    "save_as_external_data": (
        "modelpack keeps tensors inside model.onnx, and writes them to model.onnx.data only "
        "past protobuf's 2 GiB limit; drop the argument"
    ),
}


def save_model(
    onnx_model: Any,
    path: str | os.PathLike[str],
    *,
    code_paths: Any = None,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    **mlflow_only: Any,
) -> None:
    """Save an ``onnx.ModelProto`` (or the path of a ``.onnx`` file) as a package at ``path``."""
    call = "modelpack.onnx.save_model"
    model_calls.check_refused(call, mlflow_only, _REFUSED)
    model_calls.save(
        call,
        onnx_model,
        path,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        flavor=FLAVOR,
        **({"code_paths": code_paths} if code_paths else {}),
    )


def log_model(
    onnx_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    code_paths: Any = None,
    registered_model_name: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    await_registration_for: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    **mlflow_only: Any,
) -> ModelInfo:
    """Save the model into the active run's artifacts at ``name`` (``artifact_path`` is
    MLflow 2's name for it); register it if ``registered_model_name`` is given."""
    call = "modelpack.onnx.log_model"
    model_calls.check_refused(call, mlflow_only, {**_REFUSED, **model_calls.LOG_REFUSED})
    return model_calls.log(
        call,
        onnx_model,
        model_calls.model_name(call, artifact_path, name),
        registered_model_name=registered_model_name,
        await_registration_for=await_registration_for,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        flavor=FLAVOR,
        **({"code_paths": code_paths} if code_paths else {}),
    )


def load_model(model_uri: str | os.PathLike[str], dst_path: Any = None) -> Any:
    """The ``onnx.ModelProto`` saved at ``model_uri`` (external data included), verified."""
    from modelpack.flavor import require
    from modelpack.paths import resolve_inside

    onnx = require("onnx", FLAVOR, "onnx")
    pack = model_calls.load_package("modelpack.onnx.load_model", model_uri, FLAVOR, dst_path)
    path = resolve_inside(pack.path, pack.manifest.flavors[FLAVOR]["path"], "ONNX model path")
    return onnx.load(str(path))
