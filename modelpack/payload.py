"""Data to and from the JSON of MLflow's scoring protocol (PROTOCOLS.md §1).

The input example a package stores is a valid ``/invocations`` body, so the example doubles as
the smoke test a server runs before it serves a model, and one decoder serves both.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any

from modelpack.errors import MissingDependency, SchemaError
from modelpack.signature import ColumnSchema, Signature, TensorSchema

DATA_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def json_value(v: Any) -> Any:
    """A JSON-safe copy of ``v``: numpy to Python, NaN to null, bytes to base64, times to ISO."""
    if isinstance(v, str | bool | int) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_value(x) for x in v]
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, _dt.datetime | _dt.date):
        return v.isoformat()
    module = type(v).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(v, np.ndarray):
            if v.dtype.kind == "M":
                return [json_value(x) for x in v.astype("datetime64[us]").tolist()]
            return json_value(v.tolist())
        if isinstance(v, np.datetime64):
            return json_value(v.astype("datetime64[us]").item())
        return json_value(v.item())
    if module.startswith("pandas"):
        if hasattr(v, "isoformat"):  # Timestamp
            return v.isoformat()
        if hasattr(v, "to_numpy"):
            return json_value(v.to_numpy())
    if module.startswith("torch") and hasattr(v, "numpy"):
        return json_value(v.detach().cpu().numpy())
    if v != v:  # pandas NA / NaT
        return None
    raise SchemaError(f"Cannot write a value of type {type(v).__name__} as JSON.")


def _is_missing(v: Any) -> bool:
    try:
        return bool(v != v) or v is None
    except (TypeError, ValueError):
        return False


def encode_input(data: Any) -> dict[str, Any]:
    """The scoring-protocol body that carries ``data``."""
    module = type(data).__module__
    if module.startswith("pandas") and hasattr(data, "columns"):
        columns = [str(c) for c in data.columns]
        rows = [
            [None if _is_missing(x) else json_value(x) for x in row]
            for row in data.itertuples(index=False, name=None)
        ]
        return {"dataframe_split": {"columns": columns, "data": rows}}
    if module.startswith("pyarrow") and hasattr(data, "column_names"):
        return {"dataframe_records": json_value(data.to_pylist())}
    if isinstance(data, list | tuple) and data and isinstance(data[0], Mapping):
        return {"dataframe_records": json_value(list(data))}
    if isinstance(data, Mapping):
        return {"inputs": {str(k): json_value(v) for k, v in data.items()}}
    return {"inputs": json_value(data)}


def decode_input(body: Any, signature: Signature | None) -> tuple[Any, Mapping[str, Any] | None]:
    """Split a scoring-protocol body into (data, params); raise ``SchemaError`` if malformed.

    Column values stay Python lists here; the signature's plan casts them.
    """
    if not isinstance(body, Mapping):
        raise SchemaError(
            f"The body must be a JSON object with one of the keys {', '.join(DATA_KEYS)}; "
            f"got a {type(body).__name__}."
        )
    keys = [k for k in DATA_KEYS if k in body]
    extra = sorted(set(body) - set(DATA_KEYS) - {"params"})
    if len(keys) != 1 or extra:
        found = _quoted([*keys, *extra]) or "none"
        raise SchemaError(
            f"The body must have exactly one of the keys {', '.join(DATA_KEYS)} (and optionally "
            f"'params'); found: {found}."
        )
    params = body.get("params")
    if params is not None and not isinstance(params, Mapping):
        raise SchemaError("'params' must be an object of name -> value.")
    key = keys[0]
    value = body[key]
    binary = _binary_columns(signature)
    # Without an input signature nothing says what a column is: a table arrives as a pandas
    # DataFrame, its columns named and ordered as the request has them (as MLflow does).
    unsigned = signature is None or signature.inputs is None
    if key == "dataframe_split":
        if not isinstance(value, Mapping) or not isinstance(value.get("data"), list):
            raise SchemaError(
                "'dataframe_split' must be an object with 'columns' and 'data' (a list of rows)."
            )
        rows = value["data"]
        columns = value.get("columns")
        if columns is None:
            if signature is None or signature.inputs is None:
                return _frame(rows, None), params
            if not isinstance(signature.inputs, ColumnSchema):
                return rows, params
            columns = signature.inputs.names
        if not isinstance(columns, list) or not set(map(type, columns)) <= {str}:
            raise SchemaError("'dataframe_split.columns' must be a list of column names.")
        # One C call reads well-formed numeric rows; only other data is checked row by row.
        matrix = _numeric_matrix(rows, len(columns))
        if matrix is None:
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(columns):
                    raise SchemaError(
                        f"'dataframe_split.data' row {i} must be a list of {len(columns)} values "
                        f"(one per column)."
                    )
        if signature is not None and isinstance(signature.inputs, TensorSchema):
            # A tensor model reads the frame as one matrix, in the order the columns came.
            return (matrix if matrix is not None else rows), params
        if unsigned:
            return _frame(matrix if matrix is not None else rows, columns), params
        if matrix is not None:
            return {c: matrix[:, i] for i, c in enumerate(columns)}, params
        data: Any = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
        return _decode_binary(data, binary), params
    if key == "dataframe_records" or (
        key == "instances" and isinstance(value, list) and value and isinstance(value[0], Mapping)
    ):
        if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
            raise SchemaError(f"'{key}' must be a list of objects (one per row).")
        if unsigned:
            return _frame(value, None), params
        if binary:
            value = [_decode_binary(dict(r), binary) for r in value]
        return value, params
    if isinstance(value, Mapping):
        if unsigned and _is_columns(value):
            return _frame(dict(value), None), params
        return _decode_binary(dict(value), binary), params
    if not isinstance(value, list):
        raise SchemaError(f"'{key}' must be a list or an object, got {type(value).__name__}.")
    return value, params


def _quoted(values: list[Any], most: int = 10) -> str:
    """Names a client sent, as a message lists them: a few, each cut to 40 characters."""
    cut = [r if len(r := repr(v)) <= 40 else r[:37] + "..." for v in values[:most]]
    return ", ".join(cut) + (", ..." if len(values) > most else "")


def _is_columns(value: Mapping[str, Any]) -> bool:
    """Named lists of scalars, all of one length: a table sent column by column."""
    lengths = set()
    for column in value.values():
        if not isinstance(column, list) or (column and isinstance(column[0], list | Mapping)):
            return False
        lengths.add(len(column))
    return len(lengths) == 1


def _frame(data: Any, columns: list[str] | None) -> Any:
    """A pandas DataFrame of rows (lists, or records when ``columns`` is None)."""
    try:
        import pandas as pd
    except ImportError:
        raise MissingDependency(
            "A table for a package without a signature is read as a pandas DataFrame, and "
            "pandas is not installed. Install it with: pip install 'modelpack[sklearn]'",
            "sklearn",
            "sklearn",
        ) from None
    return pd.DataFrame(data, columns=columns)


def _numeric_matrix(rows: list[Any], width: int) -> Any:
    """Rows of plain numbers as one 2-D array (one C call), or None if they are anything else."""
    import numpy as np

    if not rows:
        return None
    try:
        matrix = np.asarray(rows)
    except (ValueError, TypeError):
        return None
    if matrix.ndim != 2 or matrix.shape[1] != width or matrix.dtype.kind not in "iuf":
        return None
    return matrix


def _binary_columns(signature: Signature | None) -> set[str]:
    if signature is None or not isinstance(signature.inputs, ColumnSchema):
        return set()
    return {c.name for c in signature.inputs.columns if c.type == "binary"}


def _decode_binary(data: dict[str, Any], binary: set[str]) -> dict[str, Any]:
    for name in binary & set(data):
        value = data[name]
        try:
            if isinstance(value, list):
                data[name] = [
                    base64.b64decode(v, validate=True) if isinstance(v, str) else v for v in value
                ]
            elif isinstance(value, str):
                data[name] = base64.b64decode(value, validate=True)
        except ValueError:
            message = f"Column {name!r}: binary values must be base64 text."
            raise SchemaError(message, name) from None
    return data
