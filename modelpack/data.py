"""Datasets for ``log_input``: ``from_pandas`` and ``from_numpy``, as ``mlflow.data`` has them.

A dataset carries a name, a digest (a hash of the data, computed the way MLflow computes it, so
the same data gets the same digest on both sides), a schema (modelpack's signature schema), a
profile (row and element counts, or shapes) and a source (where the data came from). Logging
one records these in the store; the data itself is not copied.

Example:
    >>> ds = modelpack.data.from_pandas(df, source="data/train.csv", targets="label")
    >>> with modelpack.start_run():
    ...     modelpack.log_input(ds, context="training")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

from modelpack.entities import Dataset as DatasetEntity
from modelpack.errors import InvalidArgument, MissingDependency

__all__ = [
    "CONTEXT_TAG",
    "Dataset",
    "DatasetSource",
    "NumpyDataset",
    "PandasDataset",
    "from_numpy",
    "from_pandas",
]

# The input tag that says what a run used a dataset for: MLflow's key, so ported code that
# reads ``dataset_input.tags`` and MLflow's UI both find it.
CONTEXT_TAG = "mlflow.data.context"
# Like MLflow, the digest hashes at most this many rows (or elements) and the full shape.
_DIGEST_ROWS = 10_000


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset came from: ``source_type`` ("local", "http", "s3", "code"...) and the
    JSON-able ``spec`` MLflow writes for that type (``{"uri": ...}``, ``{"url": ...}``)."""

    source_type: str
    spec: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.spec)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def resolve_source(source: Any) -> DatasetSource:
    """``source`` as a ``DatasetSource``: a URL or path names the data; ``None`` means the
    code that built the dataset (the user's script), as in MLflow."""
    if isinstance(source, DatasetSource):
        return source
    if source is None:
        from modelpack.run_context import user_source

        script = user_source()
        return DatasetSource(
            "code", {"tags": {"modelpack.source.name": str(script) if script else "<interactive>"}}
        )
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source:
        raise InvalidArgument(
            f"A dataset source is a path or URI (e.g. 'data/train.csv', 's3://bucket/x.parquet'), "
            f"got {source!r}."
        )
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        return DatasetSource("http", {"url": source})
    if scheme in ("", "file") or len(scheme) == 1:  # a Windows drive letter is a local path
        return DatasetSource("local", {"uri": source})
    return DatasetSource(scheme, {"uri": source})


def _md5(elements: list[Any]) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    for element in elements:
        md5.update(element)
    return md5.hexdigest()[:8]


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise MissingDependency(
            "Datasets need pandas. Install it with: pip install 'modelpack[sklearn]'",
            flavor="pandas",
            extra="sklearn",
        ) from None
    return pd


def pandas_digest(df: Any) -> str:
    """MLflow's digest of a DataFrame: string and numeric columns of its first 10,000 rows,
    its row count and its column names."""
    import numpy as np

    pd = _pandas()
    head = df.head(_DIGEST_ROWS)
    numbers = head.select_dtypes(include=[np.number]).columns
    # Columns whose every value (in the whole frame, as MLflow checks) is a str; a numeric
    # column cannot be one, so only the others are scanned.
    strings = pd.Index(
        [
            c
            for i, c in enumerate(df.columns)
            if c not in numbers and df.iloc[:, i].map(type).eq(str).all()
        ],
        dtype=object,
    )
    hashed = head[strings.union(numbers)]
    return _md5(
        [pd.util.hash_pandas_object(hashed).values, np.int64(len(df))]
        + [str(c).encode() for c in df.columns]
    )


def numpy_digest(features: Any, targets: Any = None) -> str:
    """MLflow's digest of arrays (or dicts of arrays): the first 10,000 elements of each,
    flattened, and every dimension of its shape."""
    import numpy as np

    pd = _pandas()
    elements: list[Any] = []

    def add(array: Any) -> None:
        flat = array.flatten()[:_DIGEST_ROWS]
        try:
            elements.append(pd.util.hash_array(flat))
        except TypeError:  # object arrays of unhashable values: their size stands in
            elements.append(np.int64(flat.size))
        elements.extend(np.int64(n) for n in array.shape)

    for item in (features, targets):
        if item is None:
            continue
        if isinstance(item, Mapping):
            for key in sorted(item):
                add(item[key])
        else:
            add(item)
    if not elements:
        raise InvalidArgument("Cannot compute a digest of an empty dataset.")
    return _md5(elements)


class Dataset:
    """A dataset to log with ``log_input``: ``name``, ``digest``, ``source``, ``schema``,
    ``profile``; ``to_dict()`` and ``to_json()`` give what the store records."""

    def __init__(self, source: DatasetSource, name: str | None, digest: str | None) -> None:
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidArgument(f"A dataset name is a non-empty string, got {name!r}.")
        if digest is not None and (not isinstance(digest, str) or not digest.strip()):
            raise InvalidArgument(f"A dataset digest is a non-empty string, got {digest!r}.")
        self._source = source
        self._name = name
        self._digest = digest

    @property
    def name(self) -> str:
        """The name given, else ``"dataset"`` (MLflow's default)."""
        return self._name if self._name is not None else "dataset"

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = self._compute_digest()
        return self._digest

    @property
    def source(self) -> DatasetSource:
        return self._source

    @property
    def profile(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def schema(self) -> Any:
        raise NotImplementedError

    def _compute_digest(self) -> str:
        raise NotImplementedError

    def _schema_dict(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Name, digest, source (JSON), source type, schema (JSON) and profile (JSON)."""
        schema = self._schema_dict()
        return {
            "name": self.name,
            "digest": self.digest,
            "source": self.source.to_json(),
            "source_type": self.source.source_type,
            "schema": None if schema is None else json.dumps(schema),
            "profile": json.dumps(self.profile),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_entity(self) -> DatasetEntity:
        """The record the store keeps for this dataset."""
        d = self.to_dict()
        return DatasetEntity(
            d["name"], d["digest"], d["source_type"], d["source"], d["schema"], d["profile"]
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} digest={self.digest}>"


class PandasDataset(Dataset):
    """A pandas DataFrame as a dataset (``from_pandas``)."""

    def __init__(
        self,
        df: Any,
        source: DatasetSource,
        targets: str | None = None,
        name: str | None = None,
        digest: str | None = None,
        predictions: str | None = None,
    ) -> None:
        for column, what in ((targets, "targets"), (predictions, "predictions")):
            if column is not None and column not in df.columns:
                raise InvalidArgument(
                    f"The DataFrame has no {what} column {column!r}. Columns: "
                    f"{', '.join(map(str, df.columns))}."
                )
        super().__init__(source, name, digest)
        self._df = df
        self._targets = targets
        self._predictions = predictions

    @property
    def df(self) -> Any:
        return self._df

    @property
    def targets(self) -> str | None:
        return self._targets

    @property
    def predictions(self) -> str | None:
        return self._predictions

    @property
    def profile(self) -> dict[str, Any]:
        return {"num_rows": len(self._df), "num_elements": int(self._df.size)}

    @cached_property
    def schema(self) -> Any:
        """The column schema (``modelpack.ColumnSchema``), or None if none can be inferred."""
        from modelpack.errors import ModelpackError
        from modelpack.inference import infer_schema

        try:
            return infer_schema(self._df)
        except ModelpackError:
            return None

    def _schema_dict(self) -> dict[str, Any] | None:
        return None if self.schema is None else self.schema.to_dict()

    def _compute_digest(self) -> str:
        return pandas_digest(self._df)


class NumpyDataset(Dataset):
    """A numpy array (or a dict of arrays) of features, and optional targets (``from_numpy``)."""

    def __init__(
        self,
        features: Any,
        source: DatasetSource,
        targets: Any = None,
        name: str | None = None,
        digest: str | None = None,
    ) -> None:
        super().__init__(source, name, digest)
        self._features = features
        self._targets = targets

    @property
    def features(self) -> Any:
        return self._features

    @property
    def targets(self) -> Any:
        return self._targets

    @property
    def profile(self) -> dict[str, Any]:
        def attribute(data: Any, name: str) -> Any:
            if isinstance(data, Mapping):
                return {k: _plain(getattr(a, name)) for k, a in data.items()}
            return _plain(getattr(data, name))

        profile = {
            f"features_{a}": attribute(self._features, a) for a in ("shape", "size", "nbytes")
        }
        if self._targets is not None:
            profile.update(
                {f"targets_{a}": attribute(self._targets, a) for a in ("shape", "size", "nbytes")}
            )
        return profile

    @cached_property
    def schema(self) -> dict[str, Any] | None:
        """``{"features": TensorSchema, "targets": TensorSchema or None}``, or None if a schema
        cannot be inferred."""
        from modelpack.errors import ModelpackError
        from modelpack.inference import infer_schema

        try:
            return {
                "features": infer_schema(self._features),
                "targets": None if self._targets is None else infer_schema(self._targets),
            }
        except ModelpackError:
            return None

    def _schema_dict(self) -> dict[str, Any] | None:
        if self.schema is None:
            return None
        return {k: None if v is None else v.to_dict() for k, v in self.schema.items()}

    def _compute_digest(self) -> str:
        return numpy_digest(self._features, self._targets)


def _plain(value: Any) -> Any:
    return [int(n) for n in value] if isinstance(value, tuple) else int(value)


def _check_arrays(data: Any, what: str) -> None:
    import numpy as np

    arrays = data.values() if isinstance(data, Mapping) else [data]
    if isinstance(data, Mapping) and not data:
        raise InvalidArgument(f"from_numpy: {what} is an empty dict; pass at least one array.")
    for array in arrays:
        if not isinstance(array, np.ndarray):
            raise InvalidArgument(
                f"from_numpy: {what} must be a numpy array or a dict of them, got "
                f"{type(array).__name__}. Use from_pandas for a DataFrame."
            )


def from_pandas(
    df: Any,
    source: str | os.PathLike[str] | DatasetSource | None = None,
    targets: str | None = None,
    name: str | None = None,
    digest: str | None = None,
    predictions: str | None = None,
) -> PandasDataset:
    """A dataset from a pandas DataFrame (``mlflow.data.from_pandas``).

    Args:
        df: the DataFrame.
        source: where the data came from: a path or URI; default: the script building it.
        targets: the name of the target column, if the frame holds one.
        name: the dataset's name (default ``"dataset"``).
        digest: a digest to record instead of the computed one.
        predictions: the name of a column of model predictions, if the frame holds one.
    """
    pd = _pandas()
    if not isinstance(df, pd.DataFrame):
        raise InvalidArgument(
            f"from_pandas needs a pandas DataFrame, got {type(df).__name__}. Use from_numpy for "
            f"arrays, or pandas.DataFrame(data) first."
        )
    return PandasDataset(df, resolve_source(source), targets, name, digest, predictions)


def from_numpy(
    features: Any,
    source: str | os.PathLike[str] | DatasetSource | None = None,
    targets: Any = None,
    name: str | None = None,
    digest: str | None = None,
) -> NumpyDataset:
    """A dataset from numpy arrays (``mlflow.data.from_numpy``): ``features`` and optional
    ``targets``, each an array or a dict of arrays."""
    _check_arrays(features, "features")
    if targets is not None:
        _check_arrays(targets, "targets")
    return NumpyDataset(features, resolve_source(source), targets, name, digest)
