"""Enforcing signatures on real data (numpy; pandas and pyarrow only if given).

Enforcement is compiled once per loaded package (``ColumnPlan``, ``TensorPlan``, ``ParamPlan``),
so the predict hot path does a few type checks and, when the data already has the right dtype
and shape, no copy at all. ``Columns``, what a column plan hands a flavor, is part of the flavor
contract (``modelpack.flavor`` exports it). Inferring a signature from examples is in
``modelpack.inference``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelpack.errors import SchemaError
from modelpack.signature import (
    ColumnSchema,
    ParamSpec,
    Schema,
    Signature,
    TensorSchema,
    TensorSpec,
)

COLUMN_DTYPES: dict[str, np.dtype] = {
    "boolean": np.dtype(bool),
    "integer": np.dtype(np.int32),
    "long": np.dtype(np.int64),
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "string": np.dtype(object),
    "binary": np.dtype(object),
    "datetime": np.dtype("datetime64[ns]"),
}


def tensor_dtype(name: str) -> np.dtype:
    return np.dtype(object) if name == "str" else np.dtype(name)


class Columns(dict[str, np.ndarray]):
    """Columns checked against a column signature: name -> 1-D numpy array, in signature order.

    Flavors turn it into what their framework wants with ``to_frame()`` or ``to_matrix()``.
    """

    def __init__(self, columns: Mapping[str, np.ndarray], n_rows: int) -> None:
        super().__init__(columns)
        self.n_rows = n_rows

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(dict(self), copy=False)

    def to_matrix(self, dtype: Any = None) -> np.ndarray:
        arrays = list(self.values())
        if not arrays:
            return np.empty((self.n_rows, 0), dtype=dtype)
        return (
            np.stack(arrays, axis=1).astype(dtype, copy=False)
            if dtype
            else np.stack(arrays, axis=1)
        )


# ---------------------------------------------------------------------------- type names


def describe_dtype(dtype: np.dtype) -> str:
    """The signature type name a numpy dtype reads as, for messages and inference."""
    kind = dtype.kind
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return (
            "long" if dtype.itemsize >= 8 or (kind == "u" and dtype.itemsize >= 4) else ("integer")
        )
    if kind == "f":
        return "double" if dtype.itemsize >= 8 else "float"
    if kind in "US":
        return "string" if kind == "U" else "binary"
    if kind == "M":
        return "datetime"
    return dtype.name


def describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | np.integer):
        return "long"
    if isinstance(value, float | np.floating):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary"
    return type(value).__name__


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(-1))[0])


# ---------------------------------------------------------------------------- casting


def cast(values: np.ndarray, target: np.dtype, label: str, type_name: str) -> np.ndarray:
    """Cast ``values`` to ``target`` if that loses nothing, else raise ``SchemaError``.

    ``label`` names the field in messages ("Column 'age'"); ``type_name`` is the expected type
    as the signature spells it.
    """
    if values.dtype == target and target.kind != "O":
        return values
    if values.size == 0:
        return np.empty(values.shape, dtype=target)
    src = values.dtype.kind
    tk = target.kind
    if src == "O" and tk in "biuf":
        values = _objects_to_numeric(values, label, type_name, target)
        src = values.dtype.kind
        if values.dtype == target:
            return values

    def wrong(extra: str = "") -> SchemaError:
        got = describe_dtype(values.dtype)
        if not extra and values.dtype.kind in "US" and values.size:
            extra = f" at row 0 ({_short(values.reshape(-1)[0].item())})"
        return SchemaError(f"{label}: expected {type_name}, got {got}{extra}.", label_field(label))

    if tk in "iu":
        if src in "iu":
            return _checked_int(values, target, label, type_name)
        if src == "f":
            bad = np.isnan(values)
            if bad.any():
                row = _first(bad)
                raise SchemaError(
                    f"{label}: expected {type_name}, got a missing value (NaN) at row {row}. "
                    f"Integer types cannot hold missing values: fill them, or declare the "
                    f"field as double.",
                    label_field(label),
                )
            frac = values != np.floor(values)
            if frac.any():
                row = _first(frac)
                value = float(values.reshape(-1)[row])
                raise wrong(f" with fractional values (row {row}: {value})")
            return _checked_int(values, target, label, type_name)
        raise wrong()
    if tk == "f":
        if src in "iuf":
            _check_float_range(values, target, label, type_name)
            return values.astype(target)
        raise wrong()
    if tk == "b":
        raise wrong()
    if tk == "M":
        if src == "M":
            return values.astype(target)
        if src in "OU":
            try:
                return np.array(
                    [_to_datetime64(v) for v in values.reshape(-1)], dtype=target
                ).reshape(values.shape)
            except (TypeError, ValueError) as exc:
                raise SchemaError(
                    f"{label}: expected datetime (ISO-8601 text or datetime values), {exc}",
                    label_field(label),
                ) from None
        raise wrong()
    # Object targets: string and binary columns.
    want = (str,) if type_name in ("string", "str") else (bytes, bytearray, memoryview)
    if src == "U" and type_name in ("string", "str"):
        return values.astype(object)
    if src == "S" and type_name == "binary":
        return values.astype(object)
    if src == "O":
        flat = values.reshape(-1)
        for i, v in enumerate(flat):
            if not isinstance(v, want) and v is not None:
                raise SchemaError(
                    f"{label}: expected {type_name}, got {describe_value(v)} at row {i} "
                    f"({_short(v)}).",
                    label_field(label),
                )
        if type_name == "binary":
            values = np.array([bytes(v) if v is not None else None for v in flat], dtype=object)
        return values
    raise wrong()


def label_field(label: str) -> str:
    return label.split("'", 2)[1] if "'" in label else label


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _clip(text: str) -> str:
    """A name a client sent, cut to 40 characters for a message."""
    return text if len(text) <= 40 else text[:37] + "..."


def _checked_int(values: np.ndarray, target: np.dtype, label: str, type_name: str) -> np.ndarray:
    if values.size and not np.can_cast(values.dtype, target, "safe"):
        info = np.iinfo(target)
        lo, hi = values.min(), values.max()
        if lo < info.min or hi > info.max:
            bad = (values < info.min) | (values > info.max)
            row = _first(bad)
            raise SchemaError(
                f"{label}: expected {type_name}, got {values.reshape(-1)[row]} at row {row}, "
                f"outside the range {info.min}..{info.max}.",
                label_field(label),
            )
    return values.astype(target)


def _check_float_range(values: np.ndarray, target: np.dtype, label: str, type_name: str) -> None:
    """Refuse finite numbers beyond a narrower float type: the cast would make them inf.
    (NaN and infinities stay what they are, and pass.)"""
    limit = float(np.finfo(target).max)
    if values.dtype.kind == "f":
        if values.dtype.itemsize <= target.itemsize:
            return
        if not np.fmax.reduce(np.abs(values), axis=None) > limit:  # one pass, NaN ignored
            return
        bad = np.isfinite(values) & (np.abs(values) > limit)
    else:
        info = np.iinfo(values.dtype)
        if max(-int(info.min), int(info.max)) <= limit:
            return
        bad = np.abs(values.astype(np.float64)) > limit
    if bad.any():
        i = _first(bad)
        row = i // max(values.size // max(values.shape[0], 1), 1) if values.ndim > 1 else i
        raise SchemaError(
            f"{label}: expected {type_name}, got {float(values.reshape(-1)[i])!r} at row {row}, "
            f"outside the range {-limit:.8g}..{limit:.8g}.",
            label_field(label),
        )


def _objects_to_numeric(
    values: np.ndarray, label: str, type_name: str, target: np.dtype
) -> np.ndarray:
    flat = values.reshape(-1)
    want_bool = target.kind == "b"
    out = np.empty(flat.shape, dtype=np.float64 if not want_bool else bool)
    is_int = True
    for i, v in enumerate(flat):
        if want_bool:
            if isinstance(v, bool | np.bool_):
                out[i] = v
                continue
        elif v is None:
            out[i] = np.nan
            is_int = False
            continue
        elif isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_):
            out[i] = v
            continue
        elif isinstance(v, float | np.floating):
            out[i] = v
            is_int = False
            continue
        raise SchemaError(
            f"{label}: expected {type_name}, got {describe_value(v)} at row {i} ({_short(v)}).",
            label_field(label),
        )
    out = out.reshape(values.shape)  # type: ignore[assignment]
    if not want_bool and is_int and target.kind in "iu":
        # Python ints beyond float64's exact range must not round through a float.
        return np.array(values.tolist(), dtype=np.int64) if values.size else out.astype(np.int64)
    return out


def _to_datetime64(v: Any) -> np.datetime64:
    if v is None:
        return np.datetime64("NaT")
    if isinstance(v, str):
        text = v[:-1] + "+00:00" if v.endswith("Z") else v
        try:
            parsed = _dt.datetime.fromisoformat(text)
        except ValueError:
            # Python's own message quotes the whole text
            raise ValueError(f"Invalid isoformat string: {_short(str(v))}") from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(_dt.UTC).replace(tzinfo=None)
        return np.datetime64(parsed, "ns")
    if isinstance(v, _dt.datetime | _dt.date | np.datetime64):
        if isinstance(v, _dt.datetime) and v.tzinfo is not None:
            v = v.astimezone(_dt.UTC).replace(tzinfo=None)
        return np.datetime64(v, "ns")
    raise TypeError(f"got {describe_value(v)} ({_short(v)})")


# ---------------------------------------------------------------------------- input kinds


def is_frame(data: Any) -> bool:
    return type(data).__module__.startswith("pandas") and hasattr(data, "columns")


def is_arrow_table(data: Any) -> bool:
    return type(data).__module__.startswith("pyarrow") and hasattr(data, "column_names")


def column_array(values: Any) -> np.ndarray:
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        if type(values).__module__.startswith("pyarrow"):
            return values.to_numpy(zero_copy_only=False)
        try:
            return values.to_numpy()
        except TypeError:
            return np.asarray(values, dtype=object)
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, list | tuple):
        try:
            arr = np.asarray(values)
        except ValueError:
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
        # numpy turns [1, "a"] into strings: keep mixed values as they came, for the cast to
        # name the odd one out.
        if (arr.dtype.kind == "U" and not all(isinstance(v, str) for v in values)) or (
            arr.dtype.kind == "S"  # fixed-width bytes would drop trailing NUL bytes
        ):
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
        if arr.ndim != 1:
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
        return arr
    arr = np.empty(1, dtype=object)
    arr[0] = values
    return arr


def raw_columns(data: Any, names: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Split any accepted input into (column -> values, all column names present)."""
    if is_frame(data):
        present = [str(c) for c in data.columns]
        return {c: data[c] for c in names if c in data.columns}, present
    if is_arrow_table(data):
        present = list(data.column_names)
        return {c: data.column(c) for c in names if c in present}, present
    if isinstance(data, Mapping):
        present = [str(k) for k in data]
        return {c: data[c] for c in names if c in data}, present
    if isinstance(data, np.ndarray):
        if data.dtype.names:
            present = list(data.dtype.names)
            return {c: data[c] for c in names if c in present}, present
        matrix = data.reshape(-1, 1) if data.ndim == 1 and len(names) == 1 else data
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise SchemaError(
                f"Expected {len(names)} columns ({', '.join(names)}); got an array of shape "
                f"{data.shape}. Pass a DataFrame or dict with named columns, or an array with "
                f"one column per signature column in that order."
            )
        return {c: matrix[:, i] for i, c in enumerate(names)}, list(names)
    if isinstance(data, list | tuple):
        if not data:
            raise SchemaError(
                "Input is an empty list: there are no rows to predict. Pass at least one "
                "record, or a 0-row DataFrame to get an empty prediction."
            )
        first = data[0]
        if isinstance(first, Mapping):
            keys: list[str] = []
            for i, row in enumerate(data):
                if not isinstance(row, Mapping):
                    raise SchemaError(
                        f"Record {i} is a {type(row).__name__}; every record must be an object "
                        f"mapping column names to values."
                    )
            for row in data:
                for k in row:
                    if k not in keys:
                        keys.append(k)
            return {c: [row.get(c) for row in data] for c in names if c in keys}, keys
        if isinstance(first, list | tuple):
            for i, row in enumerate(data):
                if not isinstance(row, list | tuple) or len(row) != len(names):
                    got = len(row) if isinstance(row, list | tuple) else type(row).__name__
                    raise SchemaError(
                        f"Row {i} has {got} values; expected {len(names)} ({', '.join(names)})."
                    )
            return {c: [row[i] for row in data] for i, c in enumerate(names)}, list(names)
        if len(names) == 1:
            return {names[0]: list(data)}, list(names)
    raise SchemaError(
        f"Cannot read columns from {type(data).__name__}. Pass a pandas DataFrame, a numpy "
        f"array, a dict of column -> values, a list of records or rows, or a pyarrow Table."
    )


class ColumnPlan:
    """Checks and casts input against a column signature."""

    def __init__(self, schema: ColumnSchema) -> None:
        self.specs = schema.columns
        self.names = [c.name for c in schema.columns]
        self.dtypes = [COLUMN_DTYPES[c.type] for c in schema.columns]

    def __call__(self, data: Any) -> Columns:
        raw, present = raw_columns(data, self.names)
        missing = [s for s in self.specs if s.required and s.name not in raw]
        if missing:
            expected = ", ".join(f"{s.name} ({s.type})" for s in self.specs)
            got = ", ".join(_clip(p) for p in present[:20]) + (", ..." if len(present) > 20 else "")
            got = got or "none"
            names = ", ".join(repr(s.name) for s in missing)
            plural = "s" if len(missing) > 1 else ""
            raise SchemaError(
                f"Missing required column{plural} {names}. Expected columns: {expected}; "
                f"got: {got}.",
                missing[0].name,
            )
        out: dict[str, np.ndarray] = {}
        n_rows: int | None = None
        for spec, dtype in zip(self.specs, self.dtypes, strict=True):
            if spec.name not in raw:
                continue
            values = column_array(raw[spec.name])
            if values.ndim != 1:
                raise SchemaError(
                    f"Column {spec.name!r}: expected one value per row, got shape {values.shape}.",
                    spec.name,
                )
            if n_rows is None:
                n_rows = len(values)
            elif len(values) != n_rows:
                raise SchemaError(
                    f"Column {spec.name!r} has {len(values)} values; the columns before it have "
                    f"{n_rows}. Every column needs one value per row.",
                    spec.name,
                )
            out[spec.name] = cast(values, dtype, f"Column {spec.name!r}", spec.type)
        n = n_rows or 0
        if len(out) != len(self.specs):
            for spec, dtype in zip(self.specs, self.dtypes, strict=True):
                if spec.name not in out:
                    filler = np.nan if dtype.kind == "f" else None
                    fill_dtype = dtype if dtype.kind in "fM" else np.dtype(object)
                    out[spec.name] = np.full(
                        n, filler if dtype.kind != "M" else "NaT", dtype=fill_dtype
                    )
            out = {name: out[name] for name in self.names}
        return Columns(out, n)


def _tensor_array(data: Any, spec: TensorSpec, label: str) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    if is_frame(data):
        return data.to_numpy()
    if is_arrow_table(data):
        return np.stack([column_array(data.column(c)) for c in data.column_names], axis=1)
    if hasattr(data, "numpy") and type(data).__module__.startswith("torch"):
        return data.detach().cpu().numpy()
    if isinstance(data, list | tuple):
        if not data:
            raise SchemaError(
                "Input is an empty list: there are no rows to predict. Pass at least one row, "
                "or an array with 0 rows to get an empty prediction."
            )
        try:
            arr = np.asarray(data)
        except ValueError:
            raise SchemaError(
                f"{label}: the nested lists are ragged (rows of different lengths); "
                f"expected shape {_shape_text(spec.shape)}.",
                spec.name,
            ) from None
        if arr.dtype == object and spec.dtype != "str":
            raise SchemaError(
                f"{label}: the nested lists are ragged or mix types; expected {spec.dtype} "
                f"values in shape {_shape_text(spec.shape)}.",
                spec.name,
            )
        return arr
    if isinstance(data, int | float | bool | str):
        return np.asarray([data])
    raise SchemaError(
        f"{label}: cannot read a tensor from {type(data).__name__}. Pass a numpy array, nested "
        f"lists, or a DataFrame."
    )


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class TensorPlan:
    """Checks and casts input against a tensor signature."""

    def __init__(self, schema: TensorSchema) -> None:
        self.specs = schema.tensors
        self.single = schema.single
        self.dtypes = [tensor_dtype(t.dtype) for t in schema.tensors]
        self.labels = [f"Tensor {t.name!r}" if t.name else "Input tensor" for t in schema.tensors]
        spec = self.specs[0]
        self._fast_dtype = self.dtypes[0]
        self._fast_shape = spec.shape

    def _check(self, arr: np.ndarray, i: int) -> np.ndarray:
        spec, dtype, label = self.specs[i], self.dtypes[i], self.labels[i]
        if arr.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, arr.shape, strict=True)
        ):
            raise SchemaError(
                f"{label}: expected shape {_shape_text(spec.shape)}, got {_shape_text(arr.shape)}.",
                spec.name,
            )
        return cast(arr, dtype, label, spec.dtype)

    def __call__(self, data: Any) -> np.ndarray | dict[str, np.ndarray]:
        if self.single:
            if (
                type(data) is np.ndarray
                and data.dtype == self._fast_dtype
                and data.ndim == len(self._fast_shape)
                and data.dtype.kind != "O"
            ):
                for want, got in zip(self._fast_shape, data.shape, strict=True):
                    if want != -1 and want != got:
                        break
                else:
                    return data
            name = self.specs[0].name
            if isinstance(data, Mapping):
                if name is not None and name in data:
                    data = data[name]
                elif len(data) == 1:
                    data = next(iter(data.values()))
                else:
                    keys = list(data)
                    raise SchemaError(
                        f"The model takes one tensor{f' named {name!r}' if name else ''}; got "
                        f"a mapping with keys {', '.join(map(_short, keys[:10]))}"
                        f"{', ...' if len(keys) > 10 else ''}."
                    )
            return self._check(_tensor_array(data, self.specs[0], self.labels[0]), 0)
        if not isinstance(data, Mapping):
            names = ", ".join(repr(t.name) for t in self.specs)
            raise SchemaError(
                f"The model takes several named tensors ({names}); pass a dict of name -> "
                f"array, got {type(data).__name__}."
            )
        out: dict[str, np.ndarray] = {}
        for i, spec in enumerate(self.specs):
            assert spec.name is not None
            if spec.name not in data:
                raise SchemaError(
                    f"Missing tensor {spec.name!r}. Expected tensors: "
                    f"{', '.join(t.name or '' for t in self.specs)}; got: "
                    f"{', '.join(_clip(str(k)) for k in list(data)[:20]) or 'none'}.",
                    spec.name,
                )
            out[spec.name] = self._check(_tensor_array(data[spec.name], spec, self.labels[i]), i)
        return out


def n_rows(data: Any) -> int:
    """Rows in checked input (-1 when unknown: data passed through without a signature)."""
    if type(data) is np.ndarray:
        return data.shape[0] if data.ndim else 1
    if isinstance(data, Columns):
        return data.n_rows
    if isinstance(data, np.ndarray):
        return data.shape[0] if data.ndim else 1
    if isinstance(data, Mapping):
        first = next(iter(data.values()), None)
        return n_rows(first) if first is not None else 0
    if is_frame(data):
        return len(data)
    return -1


def normalize_output(out: Any) -> Any:
    """A model's output as numpy, a DataFrame, or a dict of arrays."""
    if type(out) is np.ndarray or isinstance(out, np.ndarray | dict):
        return out
    module = type(out).__module__
    if module.startswith("pandas"):
        return out if hasattr(out, "columns") else out.to_numpy()
    if module.startswith("torch") and hasattr(out, "numpy"):
        return out.detach().cpu().numpy()
    return np.asarray(out)


def input_plan(schema: Schema | None) -> Any:
    if schema is None:
        return None
    return ColumnPlan(schema) if isinstance(schema, ColumnSchema) else TensorPlan(schema)


def empty_output(schema: Schema | None) -> Any:
    """The prediction for 0 rows, shaped and typed by the output schema."""
    if schema is None:
        return np.empty((0,))
    if isinstance(schema, ColumnSchema):
        import pandas as pd

        return pd.DataFrame(
            {c.name: np.empty(0, dtype=COLUMN_DTYPES[c.type]) for c in schema.columns}
        )
    arrays = {
        t.name or "": np.empty((0, *[max(s, 0) for s in t.shape[1:]]), dtype=tensor_dtype(t.dtype))
        for t in schema.tensors
    }
    return next(iter(arrays.values())) if schema.single else arrays


# ---------------------------------------------------------------------------- params

_PARAM_PY = {
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "string": (str,),
    "binary": (bytes,),
    "datetime": (str, _dt.datetime),
}


class ParamPlan:
    """Checks inference params: known names, right types, defaults filled in."""

    def __init__(self, specs: Sequence[ParamSpec]) -> None:
        self.specs = {p.name: p for p in specs}
        self.defaults = {p.name: p.default for p in specs}

    def __call__(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if not params:
            return dict(self.defaults)
        if not isinstance(params, Mapping):
            raise SchemaError(f"params must be a mapping of name -> value, got {_short(params)}.")
        out = dict(self.defaults)
        for name, value in params.items():
            spec = self.specs.get(name)
            if spec is None:
                accepted = ", ".join(
                    f"{p.name} ({p.type}, default {p.default!r})" for p in self.specs.values()
                )
                raise SchemaError(
                    f"Unknown param {_short(name)}. "
                    + (
                        f"This model accepts: {accepted}."
                        if accepted
                        else "This model accepts no params."
                    ),
                    name,
                )
            out[name] = _cast_param(spec, value)
        return out


def _cast_param(spec: ParamSpec, value: Any) -> Any:
    if value is None:
        return None
    allowed = _PARAM_PY[spec.type]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        raise SchemaError(
            f"Param {spec.name!r}: expected {spec.type}, got {describe_value(value)} "
            f"({_short(value)}).",
            spec.name,
        )
    if spec.type in ("float", "double"):
        number: Any = value  # an int or a float, checked above
        return float(number)
    return value


def signature_plans(sig: Signature | None) -> tuple[Any, ParamPlan]:
    if sig is None:
        return None, ParamPlan(())
    return input_plan(sig.inputs), ParamPlan(sig.params)
