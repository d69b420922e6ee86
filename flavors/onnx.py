"""Save and serve ONNX models with onnxruntime; convert scikit-learn estimators to ONNX.

A package stores ``model/model.onnx`` and, when its tensors live in separate files, those files
under ``model/`` at the relative locations the model names. Each location is checked when the
model is saved and again before onnxruntime opens it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelpack.errors import InvalidArgument, SchemaError
from modelpack.flavor import Predict, check_options, require
from modelpack.flavors import _zipmap
from modelpack.paths import resolve_inside

NAME = "onnx"
# The keys save() writes into the manifest's flavors.onnx, each with the values it may take
# (None: any). Reading a manifest refuses other keys and values.
CONFIG_KEYS = {
    "path": None,
    "opset": None,
    "opsets": None,
    "input_names": None,
    "output_names": None,
    "external_data": None,
    "columns": None,
}
MODEL_PATH = "model/model.onnx"
_PROTO_LIMIT = 2**31 - 2**24  # protobuf cannot serialize 2 GiB: store big tensors outside
# ONNX element type names (as onnxruntime spells them in "tensor(...)") -> signature dtypes.
_DTYPES = {
    "float": "float32",
    "double": "float64",
    "float16": "float16",
    "bool": "bool",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "string": "str",
}
_LOCATION = "ONNX external data location"


def _onnx() -> Any:
    return require("onnx", NAME, "onnx")


def matches(obj: Any) -> bool:
    """True for an ``onnx.ModelProto`` or the path of an existing ``.onnx`` file."""
    onnx = sys.modules.get("onnx")
    if onnx is not None and isinstance(obj, onnx.ModelProto):
        return True
    return isinstance(obj, str | os.PathLike) and str(obj).endswith(".onnx") and Path(obj).is_file()


def requirements(obj: Any, config: Mapping[str, Any]) -> list[str]:
    """Distributions a saved ONNX model needs at load."""
    return ["onnx", "onnxruntime", "numpy"]


def save(obj: Any, dest: Path, *, example: Any = None, **options: Any) -> dict:
    """Write the model to ``dest/model/model.onnx``, its external data files beside it.

    A classifier converted with skl2onnx's default ZipMap output (a class -> probability map
    per row) is stored with that output as the ``[rows, classes]`` probabilities tensor the
    ZipMap read, columns in class order; the caller's proto is left as it is.

    Options:
        output_names: the graph outputs ``predict`` returns, in order (default: all).
        columns: for a one-input graph fed from columns, their order in the input tensor.

    Raises:
        InvalidArgument: an unknown option or output, a proto whose external data cannot be
            found (pass the file's path instead), a ZipMap that cannot become a tensor (convert
            with ``options={'zipmap': False}``), or neither a proto nor a path.
        FormatError: an external-data location that is absolute, has ``..`` or leaves the
            model's directory.
    """
    check_options(NAME, "save", options, ("output_names", "columns"))
    onnx = _onnx()
    target = dest / MODEL_PATH
    if isinstance(obj, str | os.PathLike):
        try:
            proto = onnx.load(str(obj), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and OS errors
            raise InvalidArgument(f"{str(obj)!r} is not a readable ONNX model: {exc}") from exc
        unzipped = _zipmap.unzipped(onnx, proto)
        locations = _external_locations(proto)
        for rel in locations:
            source = resolve_inside(Path(obj).parent, rel, _LOCATION)
            if rel == target.name:
                raise InvalidArgument(f"{_LOCATION} {rel!r} is the name of the model file.")
            (dest / "model" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / "model" / rel)
        if unzipped is None:
            shutil.copyfile(obj, target)
        else:  # its external tensors keep their locations, copied above
            proto = unzipped
            target.write_bytes(proto.SerializeToString())
    elif isinstance(obj, onnx.ModelProto):
        if _external_locations(obj):
            raise InvalidArgument(
                "This ModelProto keeps tensors in external files modelpack cannot locate. "
                "Pass the path of its .onnx file instead, or load it with onnx.load(path)."
            )
        unzipped = _zipmap.unzipped(onnx, obj)
        proto = obj if unzipped is None else unzipped
        locations = []
        if proto.ByteSize() > _PROTO_LIMIT:
            locations = ["model.onnx.data"]
            if proto is obj:  # saving as external data rewrites the proto: not the caller's
                proto = onnx.ModelProto()
                proto.CopyFrom(obj)
        onnx.save_model(
            proto, str(target), save_as_external_data=bool(locations), location="model.onnx.data"
        )
    else:
        raise InvalidArgument(
            f"The 'onnx' flavor saves an onnx.ModelProto or the path of a .onnx file, "
            f"got {type(obj).__name__}."
        )
    opsets = {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import}
    config = {
        "path": MODEL_PATH,
        "opset": opsets.get("ai.onnx"),
        "opsets": opsets,
        "input_names": [i.name for i in _graph_inputs(proto)],
        "output_names": _check_names(
            options.get("output_names"), [o.name for o in proto.graph.output]
        ),
        "external_data": locations,
    }
    columns = options.get("columns")
    if columns is not None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise InvalidArgument(f"columns must be a list of column names, got {columns!r}.")
        config["columns"] = list(columns)
    return config


def load(src: Path, config: Mapping[str, Any], **options: Any) -> Any:
    """Open the saved model in an ``onnxruntime.InferenceSession``.

    Options:
        providers: execution providers by preference, names or ``(name, options)`` pairs
            (default ``["CPUExecutionProvider"]``).
        intra_op_num_threads, inter_op_num_threads: thread-pool sizes (default: onnxruntime's).

    Raises:
        InvalidArgument: an unknown option, provider or thread count.
        FormatError: an external-data location that is unsafe or leaves the package.
    """
    allowed = ("providers", "intra_op_num_threads", "inter_op_num_threads")
    check_options(NAME, "load", options, allowed)
    onnx, ort = _onnx(), require("onnxruntime", NAME, "onnx")
    path = resolve_inside(src, config["path"], "ONNX model path")
    for rel in _external_locations(onnx.load(str(path), load_external_data=False)):
        resolve_inside(path.parent, rel, _LOCATION)
    providers = options.get("providers") or ["CPUExecutionProvider"]
    providers = [providers] if isinstance(providers, str) else list(providers)
    available = ort.get_available_providers()
    for provider in providers:
        name = provider[0] if isinstance(provider, tuple | list) else provider
        if name not in available:
            raise InvalidArgument(
                f"Unknown onnxruntime provider {name!r}. Available: {', '.join(available)}."
            )
    sess_options = ort.SessionOptions()
    for key in allowed[1:]:
        value = options.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"{key} must be an integer >= 0, got {value!r}.")
            setattr(sess_options, key, value)
    return ort.InferenceSession(str(path), sess_options, providers=providers)


def predictor(native: Any, config: Mapping[str, Any]) -> Predict:
    """Return ``predict(data, params)`` that feeds ``native``, an InferenceSession.

    ``data``: an array (one-input graphs), ``Columns`` or a DataFrame (one column matrix for a
    one-input graph, else one input per column), or a dict of input name -> array. Returns one
    array for one selected output, else a dict of output name -> array.
    """
    import numpy as np

    inputs = native.get_inputs()
    names = [i.name for i in inputs]
    dtypes = {i.name: _np_dtype(np, i.type) for i in inputs}
    two_d = {i.name for i in inputs if isinstance(i.shape, list) and len(i.shape) == 2}
    outputs = list(config.get("output_names") or [o.name for o in native.get_outputs()])
    one_output = len(outputs) == 1
    first, first_dtype, single = names[0], dtypes[names[0]], len(names) == 1
    columns = list(config.get("columns") or ())
    run = native.run

    def cast(values: Any, dtype: Any) -> Any:
        arr = np.asarray(values)
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def feed(values: Any, name: str) -> Any:
        arr = cast(values, dtypes[name])
        return arr.reshape(-1, 1) if arr.ndim == 1 and name in two_d else arr

    def feeds(data: Any) -> dict:
        if type(data) is np.ndarray and single:
            return {first: cast(data, first_dtype)}
        if single and hasattr(data, "to_matrix"):  # Columns: fill is 2x faster than stacking
            order = columns or list(data)
            matrix = np.empty((data.n_rows, len(order)), first_dtype or np.float64)
            for i, name in enumerate(order):
                matrix[:, i] = data[name]
            return {first: matrix}
        if isinstance(data, Mapping) or (hasattr(data, "columns") and not single):
            missing = [n for n in names if n not in data]
            if missing:
                got = ", ".join(map(str, data)) or "nothing"
                raise SchemaError(
                    f"Missing input {missing[0]!r}: the model takes {', '.join(names)}; got {got}.",
                    missing[0],
                )
            return {n: feed(data[n], n) for n in names}
        if not single:
            raise SchemaError(
                f"The model takes {len(names)} inputs ({', '.join(names)}): pass a dict of "
                f"input name -> array, got {type(data).__name__}."
            )
        return {first: cast(data, first_dtype)}

    def predict(data: Any, params: Mapping[str, Any] | None = None) -> Any:
        result = run(outputs, feeds(data))
        return result[0] if one_output else dict(zip(outputs, result, strict=True))

    return predict


def infer_signature(model: Any, output_names: Sequence[str] | None = None) -> Any:
    """The tensor ``Signature`` of an ``onnxruntime.InferenceSession``, ``onnx.ModelProto`` or
    ``.onnx`` path.

    Inputs are the graph's fed inputs, outputs ``output_names`` (default: all), in graph
    order; symbolic and unknown dimensions read as ``-1``. ``inputs`` or ``outputs`` is
    ``None`` when one of its tensors is not a plain tensor of a signature dtype (sequences,
    maps, bfloat16...) or has no known rank.
    """
    from modelpack.signature import Signature, TensorSchema, TensorSpec

    if hasattr(model, "get_inputs"):  # an InferenceSession: (name, "tensor(float)", shape)
        ins = [(v.name, _DTYPES.get(v.type[7:-1]), v.shape) for v in model.get_inputs()]
        outs = [(v.name, _DTYPES.get(v.type[7:-1]), v.shape) for v in model.get_outputs()]
    else:
        proto = model
        if isinstance(model, str | os.PathLike):
            proto = _onnx().load(str(model), load_external_data=False)
        ins = [_tensor_info(v) for v in _graph_inputs(proto)]
        outs = [_tensor_info(v) for v in proto.graph.output]
    selected = _check_names(output_names, [name for name, _, _ in outs])
    outs = [next(o for o in outs if o[0] == name) for name in selected]

    def schema(infos: list) -> Any:
        if not infos or any(dtype is None or shape is None for _, dtype, shape in infos):
            return None
        return TensorSchema(
            tuple(
                TensorSpec(
                    dtype, tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape), name
                )
                for name, dtype, shape in infos
            )
        )

    return Signature(inputs=schema(ins), outputs=schema(outs))


def graph_signature(config: Mapping[str, Any], src: Path) -> Any:
    """``infer_signature`` of the model saved at ``src`` with ``config``'s selected outputs."""
    path = resolve_inside(src, config["path"], "ONNX model path")
    return infer_signature(path, config.get("output_names"))


def convert(model: Any, example: Any, *, predict_method: str = "predict") -> tuple[Any, dict]:
    """Convert a scikit-learn estimator for ``save(..., also=("onnx",))``.

    See ``modelpack.flavors._skl2onnx.convert``: returns ``(proto, save_options)``.
    """
    from modelpack.flavors import _skl2onnx

    return _skl2onnx.convert(model, example, predict_method=predict_method)


def _graph_inputs(proto: Any) -> list:
    """Graph inputs fed at run time (initializers listed as inputs are not)."""
    initializers = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def _external_locations(proto: Any) -> list[str]:
    """Every distinct external-data ``location`` in the model, subgraphs included."""
    external, found, graphs = _onnx().TensorProto.EXTERNAL, set(), [proto.graph]
    while graphs:
        graph = graphs.pop()
        tensors = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
        for node in graph.node:
            for attr in node.attribute:
                tensors.extend([attr.t, *attr.tensors])
                graphs.extend([attr.g, *attr.graphs])
        for tensor in tensors:
            if tensor.data_location == external:
                entries = {e.key: e.value for e in tensor.external_data}
                found.add(entries.get("location", ""))
    return sorted(found)


def _np_dtype(np: Any, type_str: str) -> Any:
    """The numpy dtype of an onnxruntime type such as ``tensor(float)`` (``None``: leave as is)."""
    name = _DTYPES.get(type_str[7:-1]) if type_str.startswith("tensor(") else None
    return None if name is None else np.dtype(object if name == "str" else name)


def _tensor_info(value: Any) -> tuple[str, str | None, list | None]:
    """``(name, signature dtype, shape)`` of a graph input or output; ``None`` where unknown."""
    t = value.type.tensor_type
    if value.type.WhichOneof("value") != "tensor_type":
        return value.name, None, None
    dtype = _DTYPES.get(_onnx().TensorProto.DataType.Name(t.elem_type).lower())
    shape = [d.dim_value or None for d in t.shape.dim] if t.HasField("shape") else None
    return value.name, dtype, shape


def _check_names(requested: Any, outputs: list[str]) -> list[str]:
    if requested is None:
        return outputs
    if isinstance(requested, str) or not isinstance(requested, Sequence) or not requested:
        raise InvalidArgument(f"output_names must be a non-empty list, got {requested!r}.")
    for name in requested:
        if name not in outputs:
            raise InvalidArgument(
                f"output_names: the model has no output {name!r}. Outputs: {', '.join(outputs)}."
            )
    return list(requested)
