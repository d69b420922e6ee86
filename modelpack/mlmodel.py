"""The ``MLmodel`` file: every package is also an MLflow model (MLFLOW_COMPAT.md §3).

``write`` runs while a package is being saved, before its files are hashed, so the manifest
covers what it writes like every other file. It describes the package's own files with MLflow
3.17's flavor blocks where MLflow has one (``sklearn``, ``pytorch``, ``onnx``) and adds the
``python_function`` block that ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` read:

- its ``loader_module`` is MLflow's own (``mlflow.sklearn``, ``mlflow.pytorch``,
  ``mlflow.onnx``) where MLflow's wrapper predicts what ``modelpack.load(...).predict`` does, so
  such a package loads where modelpack is not installed;
- it is ``modelpack.mlflow_loader`` otherwise (the python flavor, a third-party flavor, and the
  cases ``_native_loader`` lists), which MLflow imports when modelpack is installed.

Besides ``MLmodel`` it writes what MLflow's loaders open by fixed names: ``conda.yaml`` (the
``env`` dict names it beside ``python_env.yaml``), ``serving_input_example.json`` and, in
MLflow's own input-example format, ``mlflow_input_example.json`` (modelpack's
``input_example.json`` is a scoring-protocol body, which is what MLflow calls a serving input);
``model/pickle_module_info.txt`` beside a pickled or TorchScript ``model/model.pth``; and
``model/MLmodel`` beside ``model/model.onnx``, where MLflow's ONNX wrapper reads its providers.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from modelpack.signature import ColumnSchema, Schema, Signature, TensorSchema

__all__ = [
    "CONDA_ENV",
    "LOADER_MODULE",
    "MLFLOW_INPUT_EXAMPLE",
    "MLMODEL",
    "SERVING_INPUT_EXAMPLE",
    "mlflow_signature",
    "write",
]

MLMODEL = "MLmodel"
CONDA_ENV = "conda.yaml"
SERVING_INPUT_EXAMPLE = "serving_input_example.json"  # mlflow.models.utils hard-codes it
MLFLOW_INPUT_EXAMPLE = "mlflow_input_example.json"
LOADER_MODULE = "modelpack.mlflow_loader"
# mlflow.pytorch opens <model_data>/model.pth with the pickle module this file names; the
# standard one reads what cloudpickle wrote, and torch.load dispatches TorchScript itself.
_PICKLE_MODULE_INFO = "pickle_module_info.txt"
_PICKLE_MODULE = "pickle"
# MLflow's sklearn wrapper has these methods; for another predict_method it has none.
_SKLEARN_PYFUNC_METHODS = ("predict", "predict_proba")
# What modelpack.load opens by default, so MLflow runs the model where modelpack would.
_ONNX_PROVIDERS = ["CPUExecutionProvider"]


def write(
    root: Path,
    *,
    flavor: str,
    configs: Mapping[str, Mapping[str, Any]],
    signature: Signature | None,
    input_example: str | None,
    model_id: str,
    created_at: _dt.datetime,
    python_version: str,
    requirements: Sequence[str],
    metadata: Mapping[str, Any],
    modelpack_version: str,
) -> list[str]:
    """Write the MLflow files of the package staged at ``root``; return their relative paths.

    Args:
        root: the staging folder, holding every other file of the package already.
        flavor: the primary flavor; ``configs`` holds its config and those of ``also=``.
        input_example: the stored example's path (a scoring-protocol body), if any.
        model_id: the manifest's, also MLflow's ``model_uuid`` (both are uuid4 hex).
        requirements: the lines of ``requirements.txt``, for ``conda.yaml``.
    """
    written: list[str] = []

    def put(rel: str, data: str) -> None:
        # No fsync here: save() flushes the whole staging folder before publishing it.
        (root / rel).write_bytes(data.encode("utf-8"))
        written.append(rel)

    env = {"conda": CONDA_ENV, "virtualenv": "python_env.yaml"}
    flavors: dict[str, Any] = {}
    native = None
    for name, config in configs.items():
        block = _flavor_block(name, config, root, put)
        if block is None:
            continue
        mlflow_name, body, pyfunc = block
        flavors[mlflow_name] = body
        if name == flavor and _native_loader(name, config, signature, root):
            native = pyfunc
    pyfunc = native or {"loader_module": LOADER_MODULE}
    flavors["python_function"] = {**pyfunc, "env": env, "python_version": python_version}

    model: dict[str, Any] = {
        "flavors": flavors,
        "model_uuid": model_id,
        # MLflow writes str() of a naive UTC datetime.
        "utc_time_created": str(created_at.astimezone(_dt.UTC).replace(tzinfo=None)),
        "modelpack_version": modelpack_version,
    }
    encoded = mlflow_signature(signature)
    if encoded is not None:
        model["signature"] = encoded
        model["is_signature_from_type_hint"] = False
        model["type_hint_from_example"] = False
    if input_example is not None:
        payload = json.loads((root / input_example).read_bytes())
        example, info = _mlflow_example(payload)
        put(MLFLOW_INPUT_EXAMPLE, json.dumps(example))
        put(SERVING_INPUT_EXAMPLE, json.dumps(payload, indent=2))
        model["saved_input_example_info"] = {
            **info,
            "artifact_path": MLFLOW_INPUT_EXAMPLE,
            "serving_input_path": SERVING_INPUT_EXAMPLE,
        }
    if metadata:
        model["metadata"] = dict(metadata)
    put(CONDA_ENV, _dump(_conda_env(python_version, requirements)))
    model["model_size_bytes"] = _size(root)
    put(MLMODEL, _dump(model))
    return written


# ---------------------------------------------------------------------------- flavor blocks


def _flavor_block(
    name: str, config: Mapping[str, Any], root: Path, put: Any
) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """``(MLflow flavor name, its block, the python_function block using it)``, writing the
    files MLflow's loader opens beside ours; ``None`` where MLflow cannot read the files."""
    path = str(config["path"])
    if name == "sklearn":
        serialization = config.get("serialization", "cloudpickle")
        trusted = _skops_types(root / path) if serialization == "skops" else None
        version = config.get("sklearn_version")
        body = {
            "pickled_model": path,
            "serialization_format": serialization,
            "sklearn_version": None if version is None else str(version),
            "skops_trusted_types": trusted,
            "code": None,
        }
        method = config.get("predict_method", "predict")
        pyfunc = {"loader_module": "mlflow.sklearn", "model_path": path, "predict_fn": method}
        return "sklearn", body, pyfunc
    if name == "torch":
        folder, file = PurePosixPath(path).parent, PurePosixPath(path).name
        if file == "model.pth":
            put(str(folder / _PICKLE_MODULE_INFO), _PICKLE_MODULE)
        elif file != "model.pt2":
            return None  # mlflow.pytorch opens these two names only
        version = config.get("torch_version")
        body = {
            "model_data": str(folder),
            "pytorch_version": None if version is None else str(version),
            "code": None,
        }
        pyfunc = {"loader_module": "mlflow.pytorch", "data": str(folder)}
        if file == "model.pth":
            pyfunc["pickle_module_name"] = _PICKLE_MODULE
        return "pytorch", body, pyfunc
    if name == "onnx":
        body = {
            "onnx_version": _version_of("onnx"),
            "data": path,
            "providers": list(_ONNX_PROVIDERS),
            "onnx_session_options": None,
            "code": None,
        }
        beside = PurePosixPath(path)
        # mlflow.onnx's wrapper reads the MLmodel in the folder of the file it opens.
        nested = {"flavors": {"onnx": {**body, "data": beside.name}}}
        put(str(beside.parent / MLMODEL), _dump(nested))
        return "onnx", body, {"loader_module": "mlflow.onnx", "data": path}
    return None


def _native_loader(
    name: str, config: Mapping[str, Any], signature: Signature | None, root: Path
) -> bool:
    """Whether MLflow's own wrapper predicts what modelpack's predict does for this flavor."""
    inputs = signature.inputs if signature is not None else None
    outputs = signature.outputs if signature is not None else None
    if name == "sklearn":
        return config.get("predict_method", "predict") in _SKLEARN_PYFUNC_METHODS
    if name == "torch":
        # MLflow feeds one tensor (a frame as float32) and returns one tensor; modelpack casts
        # inputs to the module's dtype and takes keyword tensors and tuple outputs too.
        if isinstance(inputs, TensorSchema):
            if not inputs.single or inputs.tensors[0].dtype != config.get("input_dtype"):
                return False
        elif isinstance(inputs, ColumnSchema) and config.get("float_dtype") != "float32":
            return False
        return not (isinstance(outputs, TensorSchema) and not outputs.single)
    if name == "onnx":
        # MLflow returns every graph output, and turns each into one column for a frame.
        if isinstance(inputs, ColumnSchema) or config.get("columns"):
            return False
        return list(config.get("output_names") or ()) == _onnx_outputs(root / config["path"])
    return False


def _skops_types(path: Path) -> list[str]:
    """The types a skops file holds that skops does not trust by default: what modelpack's
    loader trusts (the file's hash was checked first), and MLflow's ``skops_trusted_types``."""
    import skops.io as sio

    return sorted(sio.get_untrusted_types(file=path))


def _onnx_outputs(path: Path) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]


def _version_of(module: str) -> str | None:
    version = getattr(sys.modules.get(module), "__version__", None)
    return None if version is None else str(version)


# ---------------------------------------------------------------------------- signature


def mlflow_signature(signature: Signature | None) -> dict[str, Any] | None:
    """The signature as MLflow's ``MLmodel`` holds it: ``inputs``, ``outputs`` and ``params``,
    each a JSON string of specs (or ``None``); ``None`` without any of them."""
    if signature is None or (
        signature.inputs is None and signature.outputs is None and not signature.params
    ):
        return None
    params = None
    if signature.params:
        params = json.dumps(
            [
                {"name": p.name, "default": p.default, "shape": None, "type": p.type}
                for p in signature.params
            ]
        )
    return {
        "inputs": _schema_json(signature.inputs),
        "outputs": _schema_json(signature.outputs),
        "params": params,
    }


def _schema_json(schema: Schema | None) -> str | None:
    if schema is None:
        return None
    if isinstance(schema, ColumnSchema):
        specs = [{"type": c.type, "name": c.name, "required": c.required} for c in schema.columns]
        return json.dumps(specs)
    tensors = []
    for t in schema.tensors:
        spec: dict[str, Any] = {} if t.name is None else {"name": t.name}
        spec.update({"type": "tensor", "tensor-spec": {"dtype": t.dtype, "shape": list(t.shape)}})
        tensors.append(spec)
    return json.dumps(tensors)


# ---------------------------------------------------------------------------- example, env


def _mlflow_example(payload: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The input example as MLflow's ``input_example.json`` holds it, and its ``type``."""
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        frame = {k: split[k] for k in ("columns", "data") if k in split}
        return frame, {"type": "dataframe", "pandas_orient": "split"}
    if "dataframe_records" in payload:
        records = payload["dataframe_records"]
        columns: dict[str, None] = {}
        for record in records:
            columns.update(dict.fromkeys(record))
        rows = [[record.get(c) for c in columns] for record in records]
        return {"columns": list(columns), "data": rows}, {
            "type": "dataframe",
            "pandas_orient": "split",
        }
    value = payload.get("inputs", payload.get("instances"))
    if isinstance(value, list) or (
        isinstance(value, Mapping) and all(isinstance(v, list) for v in value.values())
    ):
        return value, {"type": "ndarray"}
    return value, {"type": "json_object"}


def _conda_env(python_version: str, requirements: Sequence[str]) -> dict[str, Any]:
    """MLflow's ``conda.yaml``: this Python from conda-forge, and pip installing the
    requirements (the same lines as ``requirements.txt``)."""
    return {
        "channels": ["conda-forge"],
        "dependencies": [f"python={python_version}", "pip", {"pip": list(requirements)}],
        "name": "mlflow-env",
    }


def _size(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _dump(data: Any) -> str:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, default_flow_style=False)
