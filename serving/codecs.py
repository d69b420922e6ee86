"""Bodies in and out: MLflow's scoring JSON and CSV, and the Open Inference Protocol v2
(JSON, with Triton's binary tensor extension). Every size is checked before it is allocated."""

from __future__ import annotations

import csv
import io
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from modelpack.enforcement import COLUMN_DTYPES, tensor_dtype
from modelpack.errors import SchemaError
from modelpack.payload import decode_input
from modelpack.serving.config import ServeOptions
from modelpack.serving.errors import HTTPError, shown
from modelpack.signature import ColumnSchema, Signature, TensorSchema

V2_TO_NUMPY = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_V2 = {v: k for k, v in V2_TO_NUMPY.items() if k != "BYTES"}
COLUMN_TO_V2 = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
_MAX_DIMS = 64  # numpy's limit on an array's dimensions
_SHAPE = 60  # characters of a shape a message quotes
_RESERVED_PARAMETERS = {
    "content_type",
    "headers",
    "binary_data_output",
    "priority",
    "timeout",
    "binary_data",
    "binary_data_size",
}


def v2_datatype(dtype: np.dtype) -> str:
    return NUMPY_TO_V2.get(dtype, "BYTES")


def parse_json(body: bytes, options: ServeOptions) -> Any:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if body[exc.pos : exc.pos + 3].lower() in (b"nan", b"inf"):
            hint = " NaN and Infinity are not JSON: send null for a missing value."
        raise HTTPError(400, f"The body is not valid JSON: {exc}.{hint}") from None
    # Nesting needs a bracket per level: a body with few brackets cannot be too deep.
    if body.count(b"[") + body.count(b"{") > options.max_json_depth:
        _check_depth(obj, options.max_json_depth)
    return obj


def _check_depth(obj: Any, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit``. Lists of scalars end the walk at once, so a
    large table costs one pass over its rows, not over every value."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise HTTPError(400, f"The JSON is nested deeper than {limit} levels.")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list) and node and isinstance(node[0], dict | list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


def _check_table(rows: int, columns: int, options: ServeOptions) -> None:
    if rows > options.max_rows:
        raise HTTPError(
            413,
            f"The request has {rows} rows; this server accepts at most "
            f"{options.max_rows} per request. Split it.",
        )
    if columns > options.max_columns:
        raise HTTPError(
            413,
            f"The request has {columns} columns; this server accepts at most "
            f"{options.max_columns}.",
        )


def decode_invocations(
    obj: Any, signature: Signature | None, options: ServeOptions
) -> tuple[Any, Mapping[str, Any] | None]:
    """An MLflow scoring body -> (data, params), after checking its size limits."""
    if isinstance(obj, dict):
        for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
            value = obj.get(key)
            if value is None:
                continue
            if isinstance(value, dict) and key == "dataframe_split":
                rows, cols = value.get("data"), value.get("columns")
                _check_table(
                    len(rows) if isinstance(rows, list) else 0,
                    len(cols) if isinstance(cols, list) else 0,
                    options,
                )
            elif isinstance(value, list):
                width = len(value[0]) if value and isinstance(value[0], dict | list) else 1
                _check_table(len(value), width, options)
            elif isinstance(value, dict):
                lengths = [len(v) for v in value.values() if isinstance(v, list)]
                _check_table(max(lengths, default=0), len(value), options)
    return decode_input(obj, signature)


def decode_csv(body: bytes, signature: Signature | None, options: ServeOptions) -> Any:
    """CSV with a header row -> columns typed by the signature (or a matrix for tensors)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPError(400, "The CSV body is not UTF-8 text.") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise HTTPError(400, "The CSV body is empty; send a header row and data rows.") from None
    except csv.Error as exc:
        raise HTTPError(400, f"The CSV body cannot be parsed: {exc}.") from None
    rows: list[list[str]] = []
    try:
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise HTTPError(
                    400, f"CSV line {line} has {len(row)} fields; the header has {len(header)}."
                )
            rows.append(row)
            if len(rows) > options.max_rows:
                _check_table(len(rows), len(header), options)
    except csv.Error as exc:
        raise HTTPError(400, f"The CSV body cannot be parsed: {exc}.") from None
    _check_table(len(rows), len(header), options)
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    if signature is not None and isinstance(signature.inputs, TensorSchema):
        spec = signature.inputs.tensors[0]
        return _typed_strings(
            "Input tensor", [v for row in rows for v in row], tensor_dtype(spec.dtype)
        ).reshape(len(rows), len(header))
    if signature is not None and isinstance(signature.inputs, ColumnSchema):
        for col in signature.inputs.columns:
            if col.name in columns and col.type not in ("string", "binary"):
                columns[col.name] = _typed_strings(
                    f"Column {col.name!r}", columns[col.name], COLUMN_DTYPES[col.type]
                )
        return columns
    # No signature: a DataFrame in the header's order, each column as numbers where every
    # value reads as one (an empty field is missing), else as text, as pandas would read it.
    import pandas as pd

    return pd.DataFrame({name: _guess_type(values) for name, values in columns.items()})


def _guess_type(values: list[str]) -> Any:
    if not any(values):
        return np.asarray(values, dtype=object)
    try:
        return np.asarray(values, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        return np.asarray([float("nan") if v == "" else v for v in values], dtype=np.float64)
    except ValueError:
        return np.asarray(values, dtype=object)


def _typed_strings(label: str, values: list[str], dtype: np.dtype) -> Any:
    if dtype.kind not in "biuf":
        return np.asarray(values, dtype=object)
    if dtype.kind == "b":
        lowered = [v.strip().lower() for v in values]
        for i, v in enumerate(lowered):
            if v not in ("true", "false", "1", "0"):
                raise SchemaError(f"{label}: expected boolean, got {shown(values[i])} at row {i}.")
        return np.asarray([v in ("true", "1") for v in lowered])
    try:
        return np.asarray([float("nan") if v == "" else v for v in values], dtype=np.float64)
    except ValueError:
        for i, v in enumerate(values):
            try:
                float(v or "nan")
            except ValueError:
                raise SchemaError(
                    f"{label}: expected a number, got {shown(v)} at row {i}."
                ) from None
        raise


# ---------------------------------------------------------------------------- v2


def _flatten(data: Any, limit: int, label: str) -> list[Any]:
    if not isinstance(data, list):
        raise SchemaError(f"{label}: 'data' must be a list.")
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
            if len(flat) > limit:
                raise HTTPError(413, f"{label}: more than {limit} elements.")
        else:
            stack.pop()
    return flat


def _bytes_elements(raw: bytes, label: str) -> list[bytes]:
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise SchemaError(f"{label}: truncated BYTES element at byte {pos}.")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise SchemaError(f"{label}: a BYTES element runs past the end of its data.")
        out.append(raw[pos : pos + size])
        pos += size
    return out


def _expected_v2(signature: Signature | None) -> dict[str, str]:
    if signature is None or signature.inputs is None:
        return {}
    if isinstance(signature.inputs, ColumnSchema):
        return {c.name: COLUMN_TO_V2[c.type] for c in signature.inputs.columns}
    return {t.name or "": v2_datatype(tensor_dtype(t.dtype)) for t in signature.inputs.tensors}


def _compatible(expected: str, got: str) -> bool:
    if expected == got:
        return True
    numeric = {
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
    }
    return expected in numeric and got in numeric


def _kind(value: Any) -> str:
    """What JSON calls a value's type, for messages: 'a string', 'an object', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _parameters(value: Any, where: str) -> dict[str, Any]:
    """A ``parameters`` field: an object, or absent (null counts as absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SchemaError(f"{where}'parameters' must be an object, got {_kind(value)}.")
    return value


def _check_flag(parameters: Mapping[str, Any], key: str, where: str) -> None:
    if key in parameters and not isinstance(parameters[key], bool):
        raise SchemaError(
            f"{where}'parameters.{key}' must be true or false, got {_kind(parameters[key])}."
        )


def _check_outputs(request: Mapping[str, Any]) -> None:
    """The requested outputs are objects with a string name and boolean binary flags (their
    names are checked against the model's outputs once those exist)."""
    outputs = request.get("outputs")
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise SchemaError(
            f"'outputs' must be a list of objects with a 'name', got {_kind(outputs)}."
        )
    for i, out in enumerate(outputs):
        if not isinstance(out, dict):
            raise SchemaError(f"outputs[{i}] must be an object with a 'name'.")
        if not isinstance(out.get("name"), str):
            raise SchemaError(
                f"outputs[{i}]: 'name' must be a string, got {_kind(out.get('name'))}."
            )
        _check_flag(
            _parameters(out.get("parameters"), f"outputs[{i}]: "), "binary_data", f"outputs[{i}]: "
        )


def _check_rank(label: str, shape: list[int], signature: Signature | None, name: str) -> None:
    """Refuse a rank the signature forbids (or numpy cannot hold) before anything is shaped."""
    rank = len(shape)
    inputs = signature.inputs if signature is not None else None
    if isinstance(inputs, ColumnSchema):
        if rank == 1 or rank == 2:
            return  # [N, k] with k != 1 is the signature check's to refuse, naming the column
        raise SchemaError(
            f"{label}: 'shape' has {rank} dimensions; a column takes shape [N] or [N, 1]."
        )
    if isinstance(inputs, TensorSchema):
        specs = {t.name: t for t in inputs.tensors}
        spec = specs.get(name) or (inputs.tensors[0] if inputs.single else None)
        if spec is not None and rank != len(spec.shape):
            raise SchemaError(
                f"{label}: 'shape' has {rank} dimensions; the model takes {len(spec.shape)}: "
                f"{list(spec.shape)}."
            )
    if rank > _MAX_DIMS:
        raise SchemaError(
            f"{label}: 'shape' has {rank} dimensions; at most {_MAX_DIMS} are supported."
        )


def decode_v2(
    body: bytes, header_length: int | None, signature: Signature | None, options: ServeOptions
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A v2 inference request -> (data, params, the request JSON)."""
    if header_length is not None:
        if not 0 <= header_length <= len(body):
            raise HTTPError(400, "Inference-Header-Content-Length is larger than the body.")
        head, tail = body[:header_length], body[header_length:]
    else:
        head, tail = body, b""
    request = parse_json(head, options)
    if (
        not isinstance(request, dict)
        or not isinstance(request.get("inputs"), list)
        or not (request["inputs"])
    ):
        raise SchemaError("The request needs 'inputs': a non-empty list of tensors.")
    parameters = _parameters(request.get("parameters"), "")
    _check_flag(parameters, "binary_data_output", "")
    _check_outputs(request)
    expected = _expected_v2(signature)
    is_columns = signature is not None and isinstance(signature.inputs, ColumnSchema)
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(request["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise SchemaError(f"inputs[{i}] must be an object with a 'name'.")
        name = tensor["name"]
        label = f"input {shown(name)}"
        datatype, shape = tensor.get("datatype"), tensor.get("shape")
        if not isinstance(datatype, str):
            raise SchemaError(
                f"{label}: 'datatype' must be a string, got {_kind(datatype)}. Use one of "
                f"{', '.join(V2_TO_NUMPY)}."
            )
        if datatype not in V2_TO_NUMPY:
            raise SchemaError(
                f"{label}: unknown datatype {shown(datatype)}. Use one of {', '.join(V2_TO_NUMPY)}."
            )
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise SchemaError(
                f"{label}: 'shape' must be a list of sizes >= 0, got {shown(shape, _SHAPE)}."
            )
        count = math.prod(shape)  # Python ints: no overflow, checked before any allocation
        if count > options.max_elements:
            raise HTTPError(
                413,
                f"{label}: shape {shown(shape, _SHAPE)} means {count} elements; this server "
                f"accepts at most {options.max_elements}.",
            )
        _check_rank(label, shape, signature, name)
        want = (
            expected.get(name)
            if len(expected) > 1 or is_columns
            else next(iter(expected.values()), None)
        )
        if is_columns and name not in expected:
            raise SchemaError(
                f"{label}: the model has no such input. Inputs: {', '.join(expected)}."
            )
        if want is not None and not _compatible(want, datatype):
            raise SchemaError(f"{label}: expected datatype {want}, got {datatype}.", name)
        size = _parameters(tensor.get("parameters"), f"{label}: ").get("binary_data_size")
        if size is not None:
            if (
                not isinstance(size, int)
                or isinstance(size, bool)
                or size < 0
                or offset + size > len(tail)
            ):
                raise SchemaError(f"{label}: binary_data_size does not match the binary data.")
            raw = tail[offset : offset + size]
            offset += size
            if datatype == "BYTES":
                values: Any = _bytes_elements(raw, label)
                if len(values) != count:
                    raise SchemaError(
                        f"{label}: shape {shown(shape, _SHAPE)} needs {count} elements, got "
                        f"{len(values)}."
                    )
                arr = np.empty(count, dtype=object)
                arr[:] = values
            else:
                dtype = V2_TO_NUMPY[datatype]
                if size != count * dtype.itemsize:
                    raise SchemaError(
                        f"{label}: shape {shown(shape, _SHAPE)} needs {count * dtype.itemsize} "
                        f"bytes of {datatype}, got {size}."
                    )
                arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
        else:
            flat = _flatten(tensor.get("data"), options.max_elements, label)
            if len(flat) != count:
                raise SchemaError(
                    f"{label}: shape {shown(shape, _SHAPE)} needs {count} elements, got "
                    f"{len(flat)}."
                )
            arr = _json_values(flat, datatype, label)
        tensors[name] = arr.reshape(shape)
    params = {k: v for k, v in parameters.items() if k not in _RESERVED_PARAMETERS}
    unsigned = signature is None or signature.inputs is None
    if is_columns or (unsigned and _is_table(tensors, request)):
        data: Any = {
            name: (a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a)
            for name, a in tensors.items()
        }
        if unsigned:  # a table for a model that says nothing of its input: a DataFrame
            import pandas as pd

            data = pd.DataFrame(data)
    elif len(tensors) == 1 and (
        signature is None
        or signature.inputs is None
        or isinstance(signature.inputs, TensorSchema)
        and signature.inputs.single
    ):
        data = next(iter(tensors.values()))
    else:
        data = tensors
    return data, params, request


def _json_values(flat: list[Any], datatype: str, label: str) -> np.ndarray:
    """JSON values as an array of ``datatype``, refusing what that type cannot hold as it is:
    text for numbers, numbers for BOOL, fractions for integers, numbers beyond the type's range
    (numpy alone would parse the text, make 2 true, truncate 1.5, or turn 1e300 into inf)."""
    if datatype == "BYTES":
        return np.asarray(flat, dtype=object)
    dtype = V2_TO_NUMPY[datatype]
    wrong = SchemaError(f"{label}: the data are not all {datatype} values.")
    try:
        raw = np.asarray(flat)  # one C pass; numpy picks the type of what came
    except (TypeError, ValueError):
        raise wrong from None
    if raw.dtype.kind == "O":
        # null (a missing float), or integers beyond int64: numpy reads these only when told
        # the type. Anything else mixed (text, objects) is not of a numeric datatype.
        numbers = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in flat if v is not None
        )
        if dtype.kind == "f" and numbers:
            raw = np.asarray(flat, dtype=np.float64)
        elif dtype.kind in "iu" and numbers and all(isinstance(v, int) for v in flat):
            info = np.iinfo(dtype)
            for i, v in enumerate(flat):
                if not info.min <= v <= info.max:
                    raise SchemaError(
                        f"{label}: expected {datatype} values, got {v} at index {i}, outside "
                        f"the range {info.min}..{info.max}."
                    )
            return np.asarray(flat, dtype=dtype)
        else:
            raise wrong
    kind = raw.dtype.kind
    if kind not in "biuf" or (dtype.kind == "b") != (kind == "b"):
        raise wrong
    if raw.dtype == dtype or dtype == np.float64:
        return raw.astype(dtype, copy=False)
    if dtype.kind in "iu":
        if kind == "f":
            fraction = np.flatnonzero(np.isfinite(raw) & (raw != np.floor(raw)))
            if fraction.size:
                i = int(fraction[0])
                raise SchemaError(
                    f"{label}: expected {datatype} values, got {raw[i].item()!r} at index {i}, "
                    f"which has a fraction."
                )
        iinfo = np.iinfo(dtype)
        lo, hi, bound = iinfo.min, iinfo.max, f"{iinfo.min}..{iinfo.max}"
        outside = (raw < lo) | (raw > hi)
        if kind == "f":
            outside |= np.isnan(raw)
    else:
        hi = float(np.finfo(dtype).max)
        bound = f"{-hi:.8g}..{hi:.8g}"
        wide = raw.astype(np.float64, copy=False)
        outside = np.isfinite(wide) & (np.abs(wide) > hi)  # infinities stay infinities
    where = np.flatnonzero(outside)
    if where.size:
        i = int(where[0])
        raise SchemaError(
            f"{label}: expected {datatype} values, got {raw[i].item()!r} at index {i}, outside "
            f"the range {bound}."
        )
    return raw.astype(dtype)


def _is_table(tensors: Mapping[str, np.ndarray], request: Mapping[str, Any]) -> bool:
    """Whether a request is one input per column: MLServer's ``content_type: pd``, or several
    inputs that are each one value per row, all with the same number of rows."""
    parameters = request.get("parameters")
    if isinstance(parameters, Mapping) and parameters.get("content_type") == "pd":
        if not all(a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1) for a in tensors.values()):
            raise SchemaError("content_type 'pd' needs every input to be one column: shape [N].")
        if len({a.shape[0] for a in tensors.values()}) > 1:
            raise SchemaError("content_type 'pd': every input must have the same number of rows.")
        return True
    shapes = [a.shape for a in tensors.values()]
    return (
        len(tensors) > 1
        and all(len(s) == 1 or (len(s) == 2 and s[1] == 1) for s in shapes)
        and len({s[0] for s in shapes}) == 1
    )


def output_tensors(output: Any, signature: Signature | None) -> dict[str, np.ndarray]:
    """A prediction as named arrays: the signature's names, else 'predict'."""
    if isinstance(output, dict):
        return {str(k): np.asarray(v) for k, v in output.items()}
    if hasattr(output, "columns"):
        return {str(c): output[c].to_numpy() for c in output.columns}
    name = "predict"
    if signature is not None and isinstance(signature.outputs, TensorSchema):
        name = signature.outputs.tensors[0].name or name
    return {name: np.asarray(output)}


def encode_v2(
    tensors: Mapping[str, np.ndarray], request: Mapping[str, Any], model_name: str, version: str
) -> tuple[bytes, int | None]:
    """The v2 response body, and the JSON header length when binary outputs follow it.

    ``request`` is one ``decode_v2`` accepted: its outputs and parameters are well formed.
    """
    requested = request.get("outputs")
    wanted: dict[str, bool] = {}
    default_binary = bool((request.get("parameters") or {}).get("binary_data_output", False))
    if requested:
        for out in requested:
            if out["name"] not in tensors:
                raise SchemaError(
                    f"Unknown output {shown(out['name'])}. Outputs: {', '.join(tensors)}."
                )
            params = out.get("parameters") or {}
            wanted[out["name"]] = bool(params.get("binary_data", default_binary))
    else:
        wanted = {name: default_binary for name in tensors}
    outputs = []
    binary = bytearray()
    for name, use_binary in wanted.items():
        arr = tensors[name]
        datatype = v2_datatype(arr.dtype)
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if use_binary:
            if datatype == "BYTES":
                chunk = b"".join(
                    struct.pack("<I", len(b)) + b
                    for b in (v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel())
                )
            else:
                chunk = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(chunk)}
            binary += chunk
        elif datatype == "BYTES":
            entry["data"] = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in arr.ravel()
            ]
        else:
            entry["data"] = _json_array(arr.ravel())
        outputs.append(entry)
    response: dict[str, Any] = {
        "model_name": model_name,
        "model_version": version,
        "outputs": outputs,
    }
    if "id" in request:
        response["id"] = request["id"]
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if binary:
        return head + bytes(binary), len(head)
    return head, None


def _json_array(arr: Any) -> Any:
    """An array orjson writes natively (contiguous, a dtype it knows), else a list."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "biuf" and arr.dtype != np.float16:
        return np.ascontiguousarray(arr)
    return arr.tolist()


def encode_predictions(output: Any) -> bytes:
    """``{"predictions": ...}``: arrays as nested lists, frames as records, dicts as lists."""
    if isinstance(output, np.ndarray):
        value: Any = _json_array(output)
    elif isinstance(output, dict):
        value = {k: _json_array(v) for k, v in output.items()}
    elif hasattr(output, "to_dict"):
        value = output.to_dict(orient="records")
    else:
        value = output
    return orjson.dumps(
        {"predictions": value}, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    )
