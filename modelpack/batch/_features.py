"""How the columns of a file become a model's input, checked against its signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelpack import enforcement
from modelpack.batch._readers import Chunk, arrow_type
from modelpack.errors import SchemaError
from modelpack.signature import ColumnSchema, Signature, TensorSchema

# The most columns read when the file, not the signature, says how many the model takes (no
# input signature, or a tensor of shape (-1, -1)), as the server's max_columns: each one read
# costs about 100 us and 10 KiB in every batch, however few its rows. Columns the model does
# not take are only counted, so a signature that names its columns takes any width of file.
MAX_OPEN_COLUMNS = 10_000


class Features:
    """Which input columns feed the model, read as what, and how a batch becomes its input.

    Column signatures take their columns by name. A tensor of shape ``(-1, k)`` takes ``k``
    columns in file order (the file's columns, less ``keep_columns`` if it has more than ``k``);
    a ``(-1,)`` tensor one column; several named tensors one column each, by name. A package
    without an input signature gets a pandas DataFrame of the columns not kept. Where the file
    decides how many columns the model takes, at most ``MAX_OPEN_COLUMNS``.
    """

    def __init__(
        self, signature: Signature | None, columns: list[str], keep: list[str], where: str
    ) -> None:
        self.where, self.keep = where, keep
        # Sets for every "in": a header may have 100,000 columns, and a signature 10,000.
        present, kept = set(columns), set(keep)
        missing = [c for c in keep if c not in present]
        if missing:
            raise SchemaError(
                f"{where}: no column {missing[0]!r} to keep. Its columns: {_list(columns)}.",
                missing[0],
            )
        inputs = signature.inputs if signature is not None else None
        self.kind = "frame"
        self.plan: Any = None
        self.types: dict[str, Any] = {}
        self.specs: list[tuple[str, np.dtype, str]] = []  # (column, dtype, type name) to cast
        if isinstance(inputs, ColumnSchema):
            self.kind = "columns"
            absent = [c for c in inputs.columns if c.required and c.name not in present]
            if absent:
                names = ", ".join(repr(c.name) for c in absent)
                expected = ", ".join(f"{c.name} ({c.type})" for c in inputs.columns)
                raise SchemaError(
                    f"{where}: missing required column{'s' if len(absent) > 1 else ''} {names}. "
                    f"The model takes: {expected}; the input has: {_list(columns)}.",
                    absent[0].name,
                )
            self.names = [c.name for c in inputs.columns if c.name in present]
            self.types = {c.name: arrow_type(c.type) for c in inputs.columns if c.name in present}
            self.specs = [
                (c.name, enforcement.COLUMN_DTYPES[c.type], c.type)
                for c in inputs.columns
                if c.name in present
            ]
            self.plan = enforcement.input_plan(inputs)
        elif isinstance(inputs, TensorSchema):
            self.kind = "matrix" if inputs.single else "tensors"
            self.names = self._tensor_columns(inputs, columns, present, kept)
            self.types = {c: arrow_type(dtype) for c, dtype in self._tensor_dtypes(inputs)}
            self.specs = [
                (c, enforcement.tensor_dtype(dtype), dtype)
                for c, dtype in self._tensor_dtypes(inputs)
            ]
            if inputs.single and len(inputs.tensors[0].shape) == 1:
                self.kind = "vector"
        else:
            self.names = [c for c in columns if c not in kept] or list(columns)
        if len(self.names) > MAX_OPEN_COLUMNS and not isinstance(inputs, ColumnSchema):
            self._check_width(inputs)
        self.tensor_names = (
            [t.name for t in inputs.tensors] if isinstance(inputs, TensorSchema) else []
        )
        named = set(self.names)
        self.read = self.names + [c for c in keep if c not in named]

    def _check_width(self, inputs: TensorSchema | None) -> None:
        if isinstance(inputs, TensorSchema):
            if not inputs.single or inputs.tensors[0].shape[-1] != -1:
                return  # the signature says how many
            why, name = "takes a tensor of shape (-1, -1), so every column", inputs.tensors[0].name
        else:
            why, name = "has no input signature, so the model takes every column", None
        besides = " besides --keep-columns" if self.keep else ""
        raise SchemaError(
            f"{self.where}: the input has {len(self.names):,} columns{besides}; the package "
            f"{why}, and at most {MAX_OPEN_COLUMNS:,} are read that way. Save the package with "
            f"an input_example of the columns it takes (its signature then names them, and a "
            f"file may have any number of others), or drop the other columns from the file.",
            name,
        )

    def _tensor_dtypes(self, inputs: TensorSchema) -> list[tuple[str, str]]:
        if inputs.single:
            return [(c, inputs.tensors[0].dtype) for c in self.names]
        return [(c, t.dtype) for c, t in zip(self.names, inputs.tensors, strict=True)]

    def _tensor_columns(
        self, inputs: TensorSchema, columns: list[str], present: set[str], kept: set[str]
    ) -> list[str]:
        where = self.where
        if not inputs.single:
            for t in inputs.tensors:
                if len(t.shape) != 1:
                    raise SchemaError(
                        f"The model takes several tensors; tensor {t.name!r} has shape "
                        f"{list(t.shape)}, which cannot be read from the columns of a file. "
                        f"Score it with Package.predict.",
                        t.name,
                    )
            absent = [t.name for t in inputs.tensors if t.name not in present]
            if absent:
                raise SchemaError(
                    f"{where}: no column {absent[0]!r} for the model's tensor of that name. The "
                    f"model takes: {', '.join(str(t.name) for t in inputs.tensors)}; the input "
                    f"has: {_list(columns)}.",
                    absent[0],
                )
            return [str(t.name) for t in inputs.tensors]
        spec = inputs.tensors[0]
        if len(spec.shape) == 1:
            if spec.name in present:
                return [str(spec.name)]
            rest = [c for c in columns if c not in kept]
            if len(rest) == 1:
                return rest
            raise SchemaError(
                f"{where}: the model takes one column of values; the input has "
                f"{len(rest)} columns besides --keep-columns ({_list(rest)}).",
                spec.name,
            )
        if len(spec.shape) != 2:
            raise SchemaError(
                f"The model takes a tensor of shape {list(spec.shape)}, which cannot be read "
                f"from the columns of a file. Score it with Package.predict.",
                spec.name,
            )
        width = spec.shape[1]
        if width == len(columns):
            return list(columns)
        rest = [c for c in columns if c not in kept]
        if width in (-1, len(rest)) and rest:
            return rest
        raise SchemaError(
            f"{where}: the model takes {width} feature columns (a tensor of shape (-1, {width})); "
            f"the input has {len(rest)} besides --keep-columns: {_list(rest)}. Keep the other "
            f"columns with --keep-columns, or drop them from the file.",
            spec.name,
        )

    def model_input(self, chunk: Chunk) -> Any:
        """The batch as the model takes it, checked against the signature."""
        table = chunk.table
        if self.kind == "frame":
            return table.select(self.names).to_pandas()
        raw = {c: table.column(c).to_numpy() for c in self.names}
        if self.kind == "columns":
            try:
                return self.plan(raw)
            except SchemaError as exc:
                raise self._locate(exc, raw, chunk) from None
        cast = {}
        for column, dtype, type_name in self.specs:
            try:
                cast[column] = enforcement.cast(raw[column], dtype, f"Column {column!r}", type_name)
            except SchemaError as exc:
                raise self._locate(exc, raw, chunk, column) from None
        if self.kind == "tensors":
            return {t: cast[c] for t, c in zip(self.tensor_names, self.names, strict=True)}
        if self.kind == "vector":
            return cast[self.names[0]]
        dtype = self.specs[0][1]
        matrix = np.empty((table.num_rows, len(self.names)), dtype=dtype)
        for i, column in enumerate(self.names):
            matrix[:, i] = cast[column]
        return matrix

    def _locate(
        self,
        exc: SchemaError,
        raw: Mapping[str, np.ndarray],
        chunk: Chunk,
        column: str | None = None,
    ) -> SchemaError:
        """The signature's error, told as the file's row, column and value."""
        column = column or exc.field
        spec = next((s for s in self.specs if s[0] == column), None)
        if spec is None or column is None or column not in raw:
            end = chunk.start + chunk.table.num_rows - 1
            return SchemaError(f"{self.where}: rows {chunk.start}-{end}: {exc}", exc.field)
        values, (_, dtype, type_name) = raw[column], spec
        row = _first_bad_row(values, dtype, type_name)
        if row is None:
            end = chunk.start + chunk.table.num_rows - 1
            return SchemaError(f"{self.where}: rows {chunk.start}-{end}: {exc}", exc.field)
        value = values[row]
        line = chunk.line(row)
        where = f"{self.where}: row {chunk.start + row}" + (f" (line {line})" if line else "")
        if isinstance(value, float) and value != value and dtype.kind in "iu":
            problem = (
                f"a missing value, but {type_name} cannot hold missing values; fill them, or "
                f"declare the column as double"
            )
        else:
            got = (
                enforcement.describe_dtype(values.dtype)
                if values.dtype.kind != "O"
                else type(value).__name__
            )
            shown = repr(value.item() if hasattr(value, "item") else value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            problem = f"cannot cast {shown} ({got}) to {type_name}"
        return SchemaError(f"{where}: column {column!r}: {problem}.", column)


def _first_bad_row(values: np.ndarray, dtype: np.dtype, type_name: str) -> int | None:
    """The first row whose value the signature's cast rejects (a binary search over prefixes)."""

    def fails(n: int) -> bool:
        try:
            enforcement.cast(values[:n], dtype, "column", type_name)
        except SchemaError:
            return True
        return False

    if not fails(len(values)):
        return None
    good, bad = 0, len(values)
    while good + 1 < bad:
        mid = (good + bad) // 2
        if fails(mid):
            bad = mid
        else:
            good = mid
    return bad - 1


def _list(names: Sequence[str]) -> str:
    return (", ".join(names[:20]) + (", ..." if len(names) > 20 else "")) or "no columns"
