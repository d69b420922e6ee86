"""Reading an MLflow ``MLmodel`` file (MLFLOW_COMPAT.md §3.1): its flavor and environment as a
manifest states them (the signature and input example: ``modelpack._mlmodel_signature``).

Nothing here deserializes a model: the flavor is chosen from the file's flavor blocks and file
names (a TorchScript archive is told from a pickled module by its zip entries), the
environment is MLflow's own ``python_env.yaml`` and ``requirements.txt``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from modelpack.errors import FormatError, UnknownFlavor
from modelpack.paths import check_relative, resolve_inside
from modelpack.signature import ColumnSchema, Signature, TensorSchema

MLMODEL = "MLmodel"
MAX_MLMODEL_BYTES = 16 << 20
# MLflow flavors we read, and the modelpack flavor each becomes.
SUPPORTED = {
    "sklearn": "sklearn",
    "pytorch": "torch",
    "onnx": "onnx",
    "python_function": "mlflow_pyfunc",  # a PythonModel (loader_module mlflow.pyfunc.model)
}
PYFUNC_LOADER = "mlflow.pyfunc.model"
# Pickle modules whose output Python's own unpickler reads (torch.load's default).
_PICKLE_MODULES = ("mlflow.pytorch.pickle_module", "cloudpickle", "pickle")
_SKLEARN_METHODS = ("predict", "predict_proba", "decision_function", "transform")


def read_mlmodel(root: Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of the MLflow model at ``root``.

    Raises:
        FormatError: it is missing, too large, not YAML, or has no ``flavors`` mapping.
    """
    import yaml

    path = resolve_inside(root, MLMODEL, "MLmodel")
    if not path.is_file():
        raise FormatError(f"{str(root)!r} is not an MLflow model: it has no {MLMODEL} file.")
    if path.stat().st_size > MAX_MLMODEL_BYTES:
        raise FormatError(f"{path}: is larger than {MAX_MLMODEL_BYTES >> 20} MiB.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FormatError(f"{path}: cannot be read as YAML ({exc}).") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("flavors"), Mapping):
        raise FormatError(f"{path}: expected a mapping with a 'flavors' mapping (MLflow's format).")
    return dict(data)


def _listed(rel: Any, files: Mapping[str, str], where: str) -> str:
    check_relative(rel, where)
    if rel not in files:
        raise FormatError(f"{where} names {rel!r}, which is not a file of the MLflow model.")
    return str(rel)


def flavor_config(
    mlmodel: Mapping[str, Any], root: Path, files: Mapping[str, str]
) -> tuple[str, str, dict[str, Any], list[str]]:
    """``(MLflow flavor, modelpack flavor, its config, code entries)`` for the model at ``root``.

    Raises:
        UnknownFlavor: the model has none of the flavors we read; the message names its own
            and the supported ones.
        FormatError: a supported flavor's block names files the model does not have.
    """
    flavors = mlmodel["flavors"]
    pyfunc = flavors.get("python_function") or {}
    if not isinstance(pyfunc, Mapping):
        raise FormatError("MLmodel flavors.python_function: expected a mapping.")
    for name in ("sklearn", "pytorch", "onnx"):
        block = flavors.get(name)
        if block is not None:
            if not isinstance(block, Mapping):
                raise FormatError(f"MLmodel flavors.{name}: expected a mapping.")
            reader = {"sklearn": _sklearn, "pytorch": _pytorch, "onnx": _onnx}[name]
            config = reader(block, pyfunc, root, files)
            return name, SUPPORTED[name], config, _code(block.get("code"), files)
    if pyfunc.get("loader_module") == PYFUNC_LOADER:
        config = _pyfunc(pyfunc, mlmodel, files)
        return "python_function", "mlflow_pyfunc", config, _code(pyfunc.get("code"), files)
    own = [n for n in flavors if n != "python_function"]
    loader = pyfunc.get("loader_module")
    if not own and loader:
        own = [f"python_function (loader_module {loader})"]
    supported = "sklearn, pytorch, onnx, python_function (a PythonModel, loader_module " + (
        f"{PYFUNC_LOADER})"
    )
    raise UnknownFlavor(
        f"This MLflow model's flavor is {', '.join(map(str, own)) or 'not given'}, which "
        f"modelpack cannot load. Supported MLflow flavors: {supported}.",
        str(own[0]) if own else "",
        list(SUPPORTED),
    )


def _sklearn(
    block: Mapping[str, Any], pyfunc: Mapping[str, Any], root: Path, files: Mapping[str, str]
) -> dict[str, Any]:
    path = _listed(block.get("pickled_model"), files, "MLmodel flavors.sklearn.pickled_model")
    fmt = block.get("serialization_format") or "pickle"  # MLflow's default when unsaid
    if fmt not in ("skops", "pickle", "cloudpickle"):
        raise FormatError(
            f"MLmodel flavors.sklearn.serialization_format {fmt!r}: modelpack reads skops, "
            f"pickle and cloudpickle."
        )
    method = pyfunc.get("predict_fn") or "predict"
    if method not in _SKLEARN_METHODS:
        raise FormatError(
            f"MLmodel flavors.python_function.predict_fn {method!r}: modelpack's sklearn "
            f"flavor predicts with one of {', '.join(_SKLEARN_METHODS)}."
        )
    config: dict[str, Any] = {
        "path": path,
        # cloudpickle.load is pickle.load: one reader for both of MLflow's pickle formats.
        "serialization": "skops" if fmt == "skops" else "cloudpickle",
        "predict_method": method,
    }
    if block.get("sklearn_version"):
        config["sklearn_version"] = str(block["sklearn_version"])
    return config


def _is_torchscript(path: Path) -> bool:
    """Whether a ``.pth`` file is a TorchScript archive (it has compiled code), read from the
    zip's directory alone; a ``torch.save`` pickle is a zip of data only (or no zip at all)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.endswith("/constants.pkl") for n in names)


def _pytorch(
    block: Mapping[str, Any], pyfunc: Mapping[str, Any], root: Path, files: Mapping[str, str]
) -> dict[str, Any]:
    data = block.get("model_data") or pyfunc.get("data") or "data"
    check_relative(data, "MLmodel flavors.pytorch.model_data")
    pth, pt2 = f"{data}/model.pth", f"{data}/model.pt2"
    if pth in files:
        info = f"{data}/pickle_module_info.txt"
        if info in files:
            module = resolve_inside(root, info, "pickle module info").read_text().strip()
            if module not in _PICKLE_MODULES:
                raise FormatError(
                    f"{info}: the model was pickled with {module!r}; modelpack reads pickles "
                    f"of {', '.join(_PICKLE_MODULES)}."
                )
        fmt = "torchscript" if _is_torchscript(resolve_inside(root, pth, "torch model")) else None
        config: dict[str, Any] = {"path": pth, "format": fmt or "pickle"}
    elif pt2 in files:
        config = {"path": pt2, "format": "export"}
    else:
        raise FormatError(
            f"MLmodel flavors.pytorch: neither {pth} nor {pt2} is a file of the MLflow model."
        )
    if block.get("pytorch_version"):
        config["torch_version"] = str(block["pytorch_version"])
    return config


def _onnx(
    block: Mapping[str, Any], pyfunc: Mapping[str, Any], root: Path, files: Mapping[str, str]
) -> dict[str, Any]:
    from modelpack.flavor import require

    path = _listed(block.get("data") or pyfunc.get("data"), files, "MLmodel flavors.onnx.data")
    onnx = require("onnx", "onnx", "onnx")
    where = resolve_inside(root, path, "ONNX model")
    try:
        proto = onnx.load(str(where), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and OS errors
        raise FormatError(f"{path}: is not a readable ONNX model ({exc}).") from None
    folder = PurePosixPath(path).parent
    external = []
    for rel in _external_locations(onnx, proto):
        check_relative(rel, "ONNX external data location")
        listed = str(folder / rel) if str(folder) != "." else rel
        _listed(listed, files, f"the external data of {path}")
        external.append(rel)
    initializers = {t.name for t in proto.graph.initializer}
    opsets = {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import}
    return {
        "path": path,
        "opset": opsets.get("ai.onnx"),
        "opsets": opsets,
        "input_names": [i.name for i in proto.graph.input if i.name not in initializers],
        "output_names": [o.name for o in proto.graph.output],
        "external_data": external,
    }


def _external_locations(onnx: Any, proto: Any) -> list[str]:
    """Every distinct external-data ``location`` the model names, subgraphs included."""
    found, graphs = set(), [proto.graph]
    while graphs:
        graph = graphs.pop()
        tensors = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
        for node in graph.node:
            for attr in node.attribute:
                tensors.extend([attr.t, *attr.tensors])
                graphs.extend([attr.g, *attr.graphs])
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                entries = {e.key: e.value for e in tensor.external_data}
                found.add(entries.get("location", ""))
    return sorted(found)


def _pyfunc(
    pyfunc: Mapping[str, Any], mlmodel: Mapping[str, Any], files: Mapping[str, str]
) -> dict[str, Any]:
    if pyfunc.get("model_code_path"):
        raise FormatError(
            "This MLflow PythonModel is a model from code (python_function.model_code_path); "
            "modelpack loads pickled PythonModels (python_model.pkl) only."
        )
    path = _listed(pyfunc.get("python_model"), files, "MLmodel python_function.python_model")
    config: dict[str, Any] = {"path": path}
    compression = pyfunc.get("python_model_compression")
    if compression is not None:
        config["compression"] = compression
    for key, value in (
        ("cloudpickle_version", pyfunc.get("cloudpickle_version")),
        ("mlflow_version", mlmodel.get("mlflow_version")),
    ):
        if value:
            config[key] = str(value)
    artifacts = pyfunc.get("artifacts") or {}
    if not isinstance(artifacts, Mapping):
        raise FormatError("MLmodel python_function.artifacts: expected a mapping.")
    out = {}
    for name, info in artifacts.items():
        rel = info.get("path") if isinstance(info, Mapping) else None
        where = f"MLmodel python_function.artifacts.{name}.path"
        if not isinstance(rel, str):
            raise FormatError(f"{where}: expected a relative path, got {rel!r}.")
        path = str(check_relative(rel, where))
        if path not in files and not any(f.startswith(f"{path}/") for f in files):
            raise FormatError(f"{where} names {path!r}, which the MLflow model does not have.")
        out[str(name)] = path
    if out:
        config["artifacts"] = out
    # MLflow writes a PythonModel's model_config as python_function.config.
    model_config = pyfunc.get("config")
    if model_config:
        if not isinstance(model_config, Mapping):
            raise FormatError("MLmodel python_function.config: expected a mapping.")
        config["model_config"] = dict(model_config)
    return config


def _code(folder: Any, files: Mapping[str, str]) -> list[str]:
    """The modules in an MLflow model's ``code`` folder, as manifest code entries."""
    if not folder:
        return []
    check_relative(folder, "MLmodel code")
    entries = set()
    for rel in files:
        if not rel.startswith(f"{folder}/"):
            continue
        head = rel[len(folder) + 1 :].split("/", 1)
        name = head[0]
        if len(head) == 1 and name.endswith(".py") and name[:-3].isidentifier():
            entries.add(f"{folder}/{name}")
        elif len(head) == 2 and name.isidentifier():
            entries.add(f"{folder}/{name}")
    return sorted(entries)


def with_input_dtype(flavor: str, config: dict[str, Any], sig: Signature | None) -> dict:
    """A pickled or TorchScript module's config with the dtype its input is cast to, as MLflow
    casts it: the input tensor's dtype, or float32 for a table (``DataFrame.to_numpy(float32)``
    in MLflow's pytorch flavor). An exported program knows its own."""
    if flavor != "torch" or config.get("format") == "export" or sig is None:
        return config
    if isinstance(sig.inputs, TensorSchema) and sig.inputs.single:
        return {**config, "input_dtype": sig.inputs.tensors[0].dtype}
    if isinstance(sig.inputs, ColumnSchema):
        return {**config, "input_dtype": "float32"}
    return config


# ---------------------------------------------------------------------------- environment


def environment(mlmodel: Mapping[str, Any], root: Path, files: Mapping[str, str]) -> dict:
    """The manifest's ``environment``: MLflow's own pinned files, as they are."""
    import yaml
    from packaging.version import InvalidVersion, Version

    pyfunc = mlmodel["flavors"].get("python_function") or {}
    env = pyfunc.get("env") if isinstance(pyfunc, Mapping) else None
    python_env = env.get("virtualenv") if isinstance(env, Mapping) else None
    python_env = python_env if isinstance(python_env, str) else "python_env.yaml"
    out: dict[str, str] = {}
    python = pyfunc.get("python_version") if isinstance(pyfunc, Mapping) else None
    if python_env in files:
        out["python_env"] = python_env
        try:
            parsed = yaml.safe_load(resolve_inside(root, python_env, "python_env").read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, Mapping) and parsed.get("python"):
            python = parsed["python"]
    if "requirements.txt" in files:
        out["requirements"] = "requirements.txt"
    if python is not None:
        try:
            Version(str(python))
            out["python"] = str(python)
        except InvalidVersion:
            pass
    return out


def provenance(mlmodel: Mapping[str, Any], mlflow_flavor: str, dropped: list[str]) -> dict:
    """What the manifest's metadata keeps of where the model came from."""
    keys = ("mlflow_version", "model_uuid", "model_id", "run_id", "artifact_path")
    out: dict[str, Any] = {"flavor": mlflow_flavor}
    out.update({k: str(mlmodel[k]) for k in keys if mlmodel.get(k)})
    if mlmodel.get("utc_time_created"):
        out["utc_time_created"] = str(mlmodel["utc_time_created"])
    if dropped:
        out["signature_left_out"] = list(dropped)
    return {"mlflow": out}
