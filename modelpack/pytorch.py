"""MLflow's ``mlflow.pytorch`` calls: ``save_model``, ``log_model``, ``load_model``.

The package is an ordinary modelpack package (torch flavor): a pickle-free ``torch.export``
program when an input example is given, else TorchScript, else a cloudpickled module.

Example:
    >>> with modelpack.start_run():
    ...     info = modelpack.pytorch.log_model(net, name="net", input_example=x[:4])
    >>> modelpack.pytorch.load_model(info.model_uri)(x)
"""

from __future__ import annotations

import os
import sys
from typing import Any

from modelpack import model_calls
from modelpack.entities import ModelInfo
from modelpack.errors import InvalidArgument

__all__ = ["load_model", "log_model", "save_model"]

FLAVOR = "torch"
_REFUSED = {
    **model_calls.COMMON_REFUSED,
    "pickle_module": (
        "modelpack saves a torch.export program or TorchScript, and pickles (with cloudpickle) "
        "only when neither works; drop the argument"
    ),
    "requirements_file": "pass pip_requirements='requirements.txt' instead",
}


def _options(call: str, model: Any, serialization_format: Any, export_model: bool) -> dict:
    options: dict[str, Any] = {"flavor": FLAVOR}
    if export_model:
        if serialization_format == "pickle":
            raise InvalidArgument(
                f"{call}: export_model=True and serialization_format='pickle' contradict each "
                f"other; pass only serialization_format."
            )
        serialization_format = "pt2"
    if serialization_format is None:
        return options  # modelpack's order: torch.export with an example, TorchScript, pickle
    if serialization_format == "pt2":
        options["format"] = "export"
    elif serialization_format == "pickle":
        torch = sys.modules.get("torch")
        scripted = torch is not None and isinstance(model, torch.jit.ScriptModule)
        # MLflow saves a ScriptModule as TorchScript even when asked for "pickle".
        options["format"] = "torchscript" if scripted else "pickle"
    else:
        raise InvalidArgument(
            f"{call}: serialization_format={serialization_format!r} is not one of pt2, pickle."
        )
    return options


def save_model(
    pytorch_model: Any,
    path: str | os.PathLike[str],
    *,
    code_paths: Any = None,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    export_model: bool = False,
    serialization_format: str | None = None,
    **mlflow_only: Any,
) -> None:
    """Save a ``torch.nn.Module`` as a package at ``path``.

    Args:
        serialization_format: ``"pt2"`` (a ``torch.export`` program; needs ``input_example``)
            or ``"pickle"``; by default modelpack picks (export with an example, else
            TorchScript, else pickle). ``export_model=True`` is MLflow's older ``"pt2"``.
    """
    call = "modelpack.pytorch.save_model"
    model_calls.check_refused(call, mlflow_only, _REFUSED)
    extra = {"code_paths": code_paths} if code_paths else {}
    model_calls.save(
        call,
        pytorch_model,
        path,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        **extra,
        **_options(call, pytorch_model, serialization_format, export_model),
    )


def log_model(
    pytorch_model: Any,
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
    export_model: bool = False,
    serialization_format: str | None = None,
    **mlflow_only: Any,
) -> ModelInfo:
    """Save the module into the active run's artifacts at ``name`` (``artifact_path`` is
    MLflow 2's name for it); register it if ``registered_model_name`` is given."""
    call = "modelpack.pytorch.log_model"
    model_calls.check_refused(call, mlflow_only, {**_REFUSED, **model_calls.LOG_REFUSED})
    extra = {"code_paths": code_paths} if code_paths else {}
    return model_calls.log(
        call,
        pytorch_model,
        model_calls.model_name(call, artifact_path, name),
        registered_model_name=registered_model_name,
        await_registration_for=await_registration_for,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        **extra,
        **_options(call, pytorch_model, serialization_format, export_model),
    )


def load_model(
    model_uri: str | os.PathLike[str],
    dst_path: Any = None,
    *,
    map_location: Any = None,
    device: Any = None,
    **torch_load_kwargs: Any,
) -> Any:
    """The ``torch.nn.Module`` saved at ``model_uri``, verified, in eval mode.

    Args:
        map_location, device: where to put it (``"cpu"``, default, or ``"cuda"``); MLflow
            passes ``map_location`` to ``torch.load``.
    """
    call = "modelpack.pytorch.load_model"
    if torch_load_kwargs:
        key = next(iter(torch_load_kwargs))
        raise InvalidArgument(
            f"{call}: {key}= is not supported: MLflow passes it to torch.load, but modelpack "
            f"loads each format with its own loader (torch.export.load, torch.jit.load, or an "
            f"unpickler). It takes map_location= (or device=) only."
        )
    if map_location is not None and device is not None:
        raise InvalidArgument(f"{call}: pass map_location= or device=, not both.")
    where = device if device is not None else map_location
    options = {} if where is None else {"device": str(where)}
    return model_calls.load_package(call, model_uri, FLAVOR, dst_path, **options).unwrap()
