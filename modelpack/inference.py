"""Inferring a signature from examples: the input, the model's output on it, param defaults."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelpack.enforcement import (
    column_array,
    describe_dtype,
    describe_value,
    is_arrow_table,
    is_frame,
    raw_columns,
)
from modelpack.errors import SchemaError
from modelpack.signature import (
    ColSpec,
    ColumnSchema,
    ParamSpec,
    Schema,
    Signature,
    TensorSchema,
    TensorSpec,
)

__all__ = ["infer_params", "infer_schema", "infer_signature"]


def _infer_column_type(name: str, values: np.ndarray) -> str:
    if values.dtype.kind != "O":
        t = describe_dtype(values.dtype)
        if t in ("boolean", "integer", "long", "float", "double", "string", "binary", "datetime"):
            return t
        raise SchemaError(f"Column {name!r}: cannot infer a type from dtype {values.dtype}.", name)
    kinds = {describe_value(v) for v in values if v is not None and v == v}
    if not kinds:
        raise SchemaError(
            f"Column {name!r}: every value in the example is missing, so its type cannot be "
            f"inferred. Give an example with values, or pass signature= explicitly.",
            name,
        )
    if kinds <= {"long"}:
        return "long"
    if kinds <= {"long", "double"}:
        return "double"
    if len(kinds) == 1 and next(iter(kinds)) in ("boolean", "string", "binary"):
        return next(iter(kinds))
    if kinds <= {"datetime", "Timestamp", "date"}:
        return "datetime"
    raise SchemaError(
        f"Column {name!r}: cannot infer one type from values of types "
        f"{', '.join(sorted(kinds))}. Give an example with one type per column, or pass "
        f"signature= explicitly.",
        name,
    )


def _infer_tensor(name: str | None, arr: np.ndarray) -> TensorSpec:
    if arr.dtype.kind == "O" or arr.dtype.kind == "U":
        dtype = "str"
    elif arr.dtype.kind == "M":
        raise SchemaError("Datetime tensors are not supported; use a column signature.")
    else:
        dtype = arr.dtype.name
    shape = (-1, *arr.shape[1:]) if arr.ndim else (-1,)
    return TensorSpec(dtype=dtype, shape=shape, name=name)


def infer_schema(data: Any) -> Schema:
    """Infer a column or tensor schema from an example of data."""
    if is_frame(data) or is_arrow_table(data):
        names = [str(c) for c in (data.columns if is_frame(data) else data.column_names)]
        raw, _ = raw_columns(data, names)
        return ColumnSchema(
            tuple(ColSpec(n, _infer_column_type(n, column_array(raw[n]))) for n in names)
        )
    if type(data).__module__.startswith("pandas"):  # a Series
        return TensorSchema((_infer_tensor(None, data.to_numpy()),))
    if hasattr(data, "numpy") and type(data).__module__.startswith("torch"):
        return TensorSchema((_infer_tensor(None, data.detach().cpu().numpy()),))
    if isinstance(data, np.ndarray):
        return TensorSchema((_infer_tensor(None, data),))
    if isinstance(data, Mapping):
        if not data:
            raise SchemaError("Cannot infer a schema from an empty dict.")
        arrays = {
            str(k): column_array(v) if not isinstance(v, np.ndarray) else v for k, v in data.items()
        }
        lengths = {len(a) if a.ndim else 1 for a in arrays.values()}
        if all(a.ndim == 1 for a in arrays.values()) and len(lengths) == 1:
            return ColumnSchema(
                tuple(ColSpec(n, _infer_column_type(n, a)) for n, a in arrays.items())
            )
        return TensorSchema(tuple(_infer_tensor(n, np.asarray(a)) for n, a in arrays.items()))
    if isinstance(data, list | tuple):
        if not data:
            raise SchemaError("Cannot infer a schema from an empty list.")
        if isinstance(data[0], Mapping):
            keys: list[str] = []
            for row in data:
                keys.extend(k for k in row if k not in keys)
            raw, _ = raw_columns(data, keys)
            return ColumnSchema(
                tuple(ColSpec(n, _infer_column_type(n, column_array(raw[n]))) for n in keys)
            )
        return TensorSchema((_infer_tensor(None, np.asarray(data)),))
    raise SchemaError(
        f"Cannot infer a schema from {type(data).__name__}. Pass a DataFrame, numpy array, "
        f"dict of arrays, list of records or rows, or pyarrow Table."
    )


def infer_params(params: Mapping[str, Any]) -> tuple[ParamSpec, ...]:
    specs = []
    for name, value in params.items():
        v = value.item() if isinstance(value, np.generic) else value
        if isinstance(v, bool):
            t = "boolean"
        elif isinstance(v, int):
            t = "long"
        elif isinstance(v, float):
            t = "double"
        elif isinstance(v, str):
            t = "string"
        elif isinstance(v, bytes):
            t = "binary"
        elif isinstance(v, _dt.datetime):
            t = "datetime"
        else:
            raise SchemaError(
                f"Param {name!r}: cannot infer a type from {type(v).__name__}; params are "
                f"booleans, numbers, strings, bytes or datetimes.",
                name,
            )
        specs.append(ParamSpec(name=name, type=t, default=v))
    return tuple(specs)


def infer_signature(
    model_input: Any = None, model_output: Any = None, params: Mapping[str, Any] | None = None
) -> Signature:
    """Infer a signature from example input, the model's output on it, and param defaults.

    Args:
        model_input: any accepted input (DataFrame, numpy array, dict of arrays, list of
            records, list of rows, pyarrow Table).
        model_output: what the model returned for it (array, DataFrame, dict of arrays).
        params: inference params and their default values, e.g. ``{"threshold": 0.5}``.

    Example:
        >>> sig = infer_signature(X_train[:5], model.predict(X_train[:5]))
    """
    return Signature(
        inputs=infer_schema(model_input) if model_input is not None else None,
        outputs=infer_schema(model_output) if model_output is not None else None,
        params=infer_params(params or {}),
    )
