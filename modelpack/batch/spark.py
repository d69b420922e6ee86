"""Score Apache Spark DataFrames with a package: ``spark_udf`` returns a pandas UDF.

The package is resolved once, on the driver (registry and object-store URIs included), zipped
and shipped to the executors with ``SparkContext.addFile``: no executor needs access to the
registry or the store. Each Python worker unzips and loads it once, then reuses it for every
batch of every task it runs.

Example:
    >>> from pyspark.sql.functions import struct
    >>> from modelpack.batch.spark import spark_udf
    >>> predict = spark_udf(spark, "models:/Churn/Production")
    >>> df.withColumn("prediction", predict(*feature_columns))
    >>> df.withColumn("prediction", predict(struct(*feature_columns)))  # matched by name
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import typing
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.errors import MissingDependency, SchemaError
from modelpack.signature import ColumnSchema, Signature, TensorSchema

__all__ = ["spark_udf"]

_ARCHIVE_ROOT = "package"
_COLUMN_TYPES = {
    "boolean": "BooleanType",
    "integer": "IntegerType",
    "long": "LongType",
    "float": "FloatType",
    "double": "DoubleType",
    "string": "StringType",
    "binary": "BinaryType",
    "datetime": "TimestampType",
}
_TENSOR_TYPES = {
    "bool": "BooleanType",
    "int8": "ByteType",
    "int16": "ShortType",
    "int32": "IntegerType",
    "int64": "LongType",
    "uint8": "ShortType",
    "uint16": "IntegerType",
    "uint32": "LongType",
    "uint64": "LongType",
    "float16": "FloatType",
    "float32": "FloatType",
    "float64": "DoubleType",
    "str": "StringType",
}
_NUMPY_TYPES = {
    "BooleanType": "bool",
    "ByteType": "int8",
    "ShortType": "int16",
    "IntegerType": "int32",
    "LongType": "int64",
    "FloatType": "float32",
    "DoubleType": "float64",
}


def spark_udf(
    spark: Any, uri: str | os.PathLike[str], result_type: Any = None, flavor: str | None = None
) -> Any:
    """A pandas UDF that runs the package's ``predict`` on Spark columns.

    Call it with the feature columns, ``udf(*cols)`` (matched to the signature's inputs by
    position), or with one struct, ``udf(struct(*cols))`` (matched by name). The signature
    decides the column order and casts the values, as in ``Package.predict``.

    Args:
        spark: the active ``SparkSession``.
        uri: any model URI ``modelpack.load`` accepts; resolved here, on the driver.
        result_type: a Spark ``DataType`` or DDL string for the result. By default it follows
            the signature's outputs: a scalar type for one value per row, an array for several
            (``predict_proba``), a struct for several named outputs; double without outputs.
        flavor: run another representation stored in the package (e.g. ``"onnx"``).

    Returns:
        A pandas UDF for ``df.withColumn("prediction", udf(...))`` or ``df.select(...)``.

    Raises:
        NotFound, FormatError, IntegrityError: as ``modelpack.verify``.
        UnknownFlavor: ``flavor`` is not stored in the package.
        MissingDependency: pyspark is not installed.
    """
    try:
        from pyspark.sql.functions import pandas_udf
    except ImportError:
        raise MissingDependency(
            "spark_udf needs pyspark. Install it with: pip install 'modelpack[spark]'",
            "spark",
            "spark",
        ) from None
    import pandas as pd

    from modelpack.package import stored_flavor, verify
    from modelpack.resolution import resolve

    root = resolve(uri)
    manifest = verify(root)
    name = stored_flavor(manifest, flavor)
    archive = _archive(root, manifest.model_id)
    spark.sparkContext.addFile(str(archive))
    signature = manifest.signature
    rtype = _result_type(signature, result_type)
    key = (archive.name, name)

    def predict(batches: Any) -> Any:
        pack = _package(*key)
        for args in batches:
            # One column (or one struct) comes bare, several as a tuple.
            args = args if isinstance(args, tuple) else (args,)
            yield _to_spark(pack.predict(_model_input(args, signature)), rtype)

    # Real objects rather than strings: pyspark reads these hints to pick the UDF kind
    # (an iterator of batches, so the package is fetched once per task, not per batch).
    batch_type: Any = typing.Tuple[typing.Union[pd.Series, pd.DataFrame], ...]  # noqa: UP006, UP007
    result: Any = pd.DataFrame if _is_struct(rtype) else pd.Series
    predict.__annotations__ = {
        "batches": typing.Iterator[batch_type],
        "return": typing.Iterator[result],
    }
    return pandas_udf(predict, returnType=rtype)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------- the driver


def _archive(root: Path, model_id: str) -> Path:
    """Zip the package for the executors, under a name no other package can have."""
    folder = Path(tempfile.mkdtemp(prefix="modelpack-spark-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / f"modelpack-{model_id}-{uuid.uuid4().hex[:8]}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for file in sorted(root.rglob("*")):
            if file.is_file() and not file.is_symlink():
                z.write(file, f"{_ARCHIVE_ROOT}/{file.relative_to(root).as_posix()}")
    return path


def _spark_type(name: str) -> Any:
    from pyspark.sql import types

    return getattr(types, name)()


def _value_type(dtype: str, shape: tuple[int, ...]) -> Any:
    from pyspark.sql.types import ArrayType

    scalar = _spark_type(_TENSOR_TYPES[dtype])
    per_row = 1
    for size in shape[1:]:
        per_row = -1 if size == -1 or per_row == -1 else per_row * size
    return scalar if per_row == 1 else ArrayType(scalar)


def _result_type(signature: Signature | None, given: Any) -> Any:
    from pyspark.sql.types import DataType, StructField, StructType

    if given is not None:
        if isinstance(given, DataType):
            return given
        from pyspark.sql.types import _parse_datatype_string

        return _parse_datatype_string(given)
    outputs = signature.outputs if signature is not None else None
    if outputs is None:
        return _spark_type("DoubleType")
    if isinstance(outputs, ColumnSchema):
        fields = [(c.name, _spark_type(_COLUMN_TYPES[c.type])) for c in outputs.columns]
    else:
        fields = [(t.name or "", _value_type(t.dtype, t.shape)) for t in outputs.tensors]
    if len(fields) == 1:
        return fields[0][1]
    return StructType([StructField(n, t) for n, t in fields])


def _is_struct(rtype: Any) -> bool:
    from pyspark.sql.types import StructType

    return isinstance(rtype, StructType)


# ---------------------------------------------------------------------------- the executors

# Packages loaded in this Python worker, by (archive, flavor). A module-level cache is how a
# Spark Python worker keeps state between tasks (the worker process is reused; the UDF is
# unpickled afresh for each task): each worker loads a package once, however many batches and
# tasks it runs. Only executors fill it; the driver never does.
_LOADED: dict[tuple[str, str], Any] = {}
_LOAD_LOCK = threading.Lock()


def _package(archive: str, flavor: str) -> Any:
    with _LOAD_LOCK:
        pack = _LOADED.get((archive, flavor))
        if pack is None:
            from pyspark import SparkFiles

            from modelpack.package import load

            # Beside the archive, in the folder Spark removes when the application ends (a
            # worker may be killed without running exit handlers). One per process: workers
            # of one executor unzip side by side without racing.
            folder = Path(SparkFiles.getRootDirectory()) / f"{archive}.{os.getpid()}"
            if not (folder / _ARCHIVE_ROOT).is_dir():
                with zipfile.ZipFile(SparkFiles.get(archive)) as z:
                    z.extractall(folder)  # our own archive; extractall also refuses ".." names
            pack = load(folder / _ARCHIVE_ROOT, flavor=flavor)
            _LOADED[(archive, flavor)] = pack
    return pack


def _model_input(args: tuple[Any, ...], signature: Signature | None) -> Any:
    """The UDF's arguments as the model takes them: by name from a struct, else by position."""
    import numpy as np
    import pandas as pd

    inputs = signature.inputs if signature is not None else None
    by_name = len(args) == 1 and isinstance(args[0], pd.DataFrame)
    if by_name:
        columns = {str(c): args[0][c].to_numpy() for c in args[0].columns}
    else:
        positional = isinstance(inputs, ColumnSchema) or (
            isinstance(inputs, TensorSchema) and not inputs.single
        )
        names = inputs.names if positional else [f"_{i}" for i in range(len(args))]  # type: ignore[union-attr]
        if len(args) > len(names):
            raise SchemaError(
                f"The UDF got {len(args)} columns; the model takes {len(names)} "
                f"({', '.join(names)})."
            )
        columns = {n: s.to_numpy() for n, s in zip(names, args, strict=False)}
    if inputs is None:
        return pd.DataFrame(columns)
    if isinstance(inputs, ColumnSchema):
        return columns
    if not inputs.single:
        return columns
    values = list(columns.values())
    if len(values) == 1 and values[0].dtype == object and len(values[0]):
        first = values[0][0]
        if isinstance(first, np.ndarray | list):  # one array column holds the whole tensor
            return np.stack([np.asarray(v) for v in values[0]])
    if len(inputs.tensors[0].shape) == 1 and len(values) == 1:
        return values[0]
    return np.column_stack(values)


def _to_spark(out: Any, rtype: Any) -> Any:
    """The model's output as the pandas object a UDF of ``rtype`` returns."""
    import numpy as np
    import pandas as pd
    from pyspark.sql.types import StructType

    if isinstance(rtype, StructType):
        names = [f.name for f in rtype.fields]
        if isinstance(out, Mapping):
            parts = [np.asarray(out[n]) for n in names]
        elif isinstance(out, pd.DataFrame):
            parts = [out[n].to_numpy() for n in names]
        else:
            arr = np.asarray(out)
            parts = [arr[:, i] for i in range(len(names))]
        return pd.DataFrame(
            {f.name: _column(p, f.dataType) for f, p in zip(rtype.fields, parts, strict=True)}
        )
    if isinstance(out, Mapping):
        out = next(iter(out.values())) if len(out) == 1 else np.column_stack(list(out.values()))
    elif isinstance(out, pd.DataFrame):
        out = out.iloc[:, 0].to_numpy() if out.shape[1] == 1 else out.to_numpy()
    return _column(np.asarray(out), rtype)


def _column(arr: Any, dtype: Any) -> Any:
    import numpy as np
    import pandas as pd
    from pyspark.sql.types import ArrayType

    if isinstance(dtype, ArrayType):
        rows = arr.reshape(len(arr), -1)
        return pd.Series(list(rows))
    if arr.ndim > 1:
        if arr.size != len(arr):
            raise SchemaError(
                f"The model returns {arr.shape[1:]} values per row; the UDF's result type "
                f"{dtype.simpleString()} holds one. Pass result_type='array<double>', or leave "
                f"result_type out to follow the signature."
            )
        arr = arr.reshape(-1)
    target = _NUMPY_TYPES.get(type(dtype).__name__)
    if target is not None and arr.dtype != np.dtype(target):
        arr = arr.astype(target)
    return pd.Series(arr)
