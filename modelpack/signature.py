"""Signatures: what a model takes and returns, as plain frozen data.

A signature has inputs, outputs and params. Inputs and outputs are either a
``ColumnSchema`` (named, typed columns, for tabular models) or a ``TensorSchema`` (one or more
tensors with a dtype and a shape where ``-1`` is any size). Enforcing a signature on data lives
in ``modelpack.enforcement`` and inferring one from examples in ``modelpack.inference``, so
that this module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpack.errors import FormatError

__all__ = [
    "COLUMN_TYPES",
    "TENSOR_DTYPES",
    "ColSpec",
    "ColumnSchema",
    "ParamSpec",
    "Schema",
    "Signature",
    "TensorSchema",
    "TensorSpec",
]

COLUMN_TYPES = ("boolean", "integer", "long", "float", "double", "string", "binary", "datetime")
TENSOR_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "str",
)


def _check_keys(d: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> None:
    if not isinstance(d, Mapping):
        raise FormatError(f"{where}: expected a mapping, got {type(d).__name__}.")
    known = [*required, *optional]
    unknown = sorted((k for k in d if k not in known), key=str)
    if unknown:
        raise FormatError(
            f"{where}: unknown key {unknown[0]!r}{nearest(unknown[0], known)}. "
            f"Allowed keys: {', '.join(known)}."
        )
    missing = [k for k in required if k not in d]
    if missing:
        raise FormatError(f"{where}: missing key {missing[0]!r}.")


def nearest(word: Any, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``word``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_type(value: Any, types: type | tuple[type, ...], where: str, expected: str) -> None:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise FormatError(f"{where}: expected {expected}, got {value!r}.")


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


@dataclass(frozen=True)
class ColSpec:
    """One column: its name, its type (one of ``COLUMN_TYPES``) and whether it must be present."""

    name: str
    type: str
    required: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FormatError(f"Column name must be a non-empty string, got {self.name!r}.")
        if self.type not in COLUMN_TYPES:
            raise FormatError(
                f"Column {self.name!r}: unknown type {self.type!r}. "
                f"Supported: {', '.join(COLUMN_TYPES)}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColSpec:
        _check_keys(d, "column", ["name", "type"], ["required"])
        required = d.get("required", True)
        _check_type(required, bool, f"column {d['name']!r} 'required'", "true or false")
        return cls(name=d["name"], type=d["type"], required=required)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: dtype (one of ``TENSOR_DTYPES``), shape (``-1`` for any size), optional name."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        label = f"Tensor {self.name!r}" if self.name else "Tensor"
        if self.dtype not in TENSOR_DTYPES:
            raise FormatError(
                f"{label}: unknown dtype {self.dtype!r}. Supported: {', '.join(TENSOR_DTYPES)}."
            )
        shape = tuple(self.shape)
        if any(isinstance(s, bool) or not isinstance(s, int) or s < -1 for s in shape):
            raise FormatError(f"{label}: shape must be a list of sizes >= 0 or -1, got {shape}.")
        object.__setattr__(self, "shape", shape)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape)}
        if self.name is not None:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        _check_keys(d, "tensor", ["dtype", "shape"], ["name"])
        _check_type(d["shape"], (list, tuple), "tensor 'shape'", "a list")
        name = d.get("name")
        if name is not None:
            _check_type(name, str, "tensor 'name'", "a string")
        return cls(dtype=d["dtype"], shape=tuple(d["shape"]), name=name)


@dataclass(frozen=True)
class ColumnSchema:
    """Named, typed columns: the input or output of a tabular model."""

    columns: tuple[ColSpec, ...]

    kind = "columns"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FormatError(f"Column {dupes[0]!r} appears more than once in the schema.")
        if not self.columns:
            raise FormatError("A column schema needs at least one column.")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "columns", "columns": [c.to_dict() for c in self.columns]}


@dataclass(frozen=True)
class TensorSchema:
    """One tensor, or several named tensors."""

    tensors: tuple[TensorSpec, ...]

    kind = "tensor"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tensors", tuple(self.tensors))
        if not self.tensors:
            raise FormatError("A tensor schema needs at least one tensor.")
        if len(self.tensors) > 1:
            names = [t.name for t in self.tensors]
            if None in names or len(set(names)) != len(names):
                raise FormatError("Each of several tensors needs a distinct name.")

    @property
    def single(self) -> bool:
        return len(self.tensors) == 1

    @property
    def names(self) -> list[str]:
        return [t.name or "" for t in self.tensors]

    def to_dict(self) -> dict[str, Any]:
        if self.single:
            return {"kind": "tensor", **self.tensors[0].to_dict()}
        return {"kind": "tensors", "tensors": [t.to_dict() for t in self.tensors]}


Schema = ColumnSchema | TensorSchema


def schema_from_dict(d: Any, where: str) -> Schema:
    """Read a schema written by ``to_dict``; raises ``FormatError`` naming the bad key."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise FormatError(f"{where}: expected a mapping with a 'kind' key, got {d!r}.")
    kind = d["kind"]
    if kind == "columns":
        _check_keys(d, where, ["kind", "columns"])
        _check_type(d["columns"], list, f"{where} 'columns'", "a list")
        return ColumnSchema(tuple(ColSpec.from_dict(c) for c in d["columns"]))
    if kind == "tensor":
        _check_keys(d, where, ["kind", "dtype", "shape"], ["name"])
        return TensorSchema((TensorSpec.from_dict({k: v for k, v in d.items() if k != "kind"}),))
    if kind == "tensors":
        _check_keys(d, where, ["kind", "tensors"])
        _check_type(d["tensors"], list, f"{where} 'tensors'", "a list")
        return TensorSchema(tuple(TensorSpec.from_dict(t) for t in d["tensors"]))
    raise FormatError(f"{where}: unknown kind {kind!r}. Supported: columns, tensor, tensors.")


@dataclass(frozen=True)
class ParamSpec:
    """An inference parameter: name, type (one of ``COLUMN_TYPES``) and default value."""

    name: str
    type: str
    default: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FormatError(f"Param name must be a non-empty string, got {self.name!r}.")
        if self.type not in COLUMN_TYPES:
            raise FormatError(
                f"Param {self.name!r}: unknown type {self.type!r}. "
                f"Supported: {', '.join(COLUMN_TYPES)}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParamSpec:
        _check_keys(d, "param", ["name", "type"], ["default"])
        return cls(name=d["name"], type=d["type"], default=d.get("default"))


@dataclass(frozen=True)
class Signature:
    """What a model takes (``inputs``), returns (``outputs``) and accepts as ``params``."""

    inputs: Schema | None = None
    outputs: Schema | None = None
    params: tuple[ParamSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise FormatError("Each param needs a distinct name.")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.inputs is not None:
            d["inputs"] = self.inputs.to_dict()
        if self.outputs is not None:
            d["outputs"] = self.outputs.to_dict()
        if self.params:
            d["params"] = [p.to_dict() for p in self.params]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Signature:
        _check_keys(d, "signature", [], ["inputs", "outputs", "params"])
        params = d.get("params", [])
        _check_type(params, list, "signature 'params'", "a list")
        # A key that is present must hold a schema: a damaged one never reads as "no schema".
        return cls(
            inputs=schema_from_dict(d["inputs"], "signature inputs") if "inputs" in d else None,
            outputs=schema_from_dict(d["outputs"], "signature outputs") if "outputs" in d else None,
            params=tuple(ParamSpec.from_dict(p) for p in params),
        )
