"""Save and serve scikit-learn estimators (and anything with their API: pipelines, xgboost and
lightgbm wrappers), pickled with cloudpickle or, pickle-free, with skops."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.errors import InvalidArgument, SchemaError
from modelpack.flavor import Columns, Predict, check_options, require

NAME = "sklearn"
SERIALIZATIONS = ("cloudpickle", "skops")
PREDICT_METHODS = ("predict", "predict_proba", "decision_function", "transform")
# The keys save() writes into the manifest's flavors.sklearn, each with the values it may take
# (None: any). Reading a manifest refuses other keys and values.
CONFIG_KEYS = {
    "path": None,
    "serialization": SERIALIZATIONS,
    "predict_method": PREDICT_METHODS,
    "sklearn_version": None,
}


def matches(obj: Any) -> bool:
    sklearn_base = sys.modules.get("sklearn.base")
    if sklearn_base is not None and isinstance(obj, sklearn_base.BaseEstimator):
        return True
    return callable(getattr(obj, "get_params", None)) and any(
        callable(getattr(obj, m, None)) for m in PREDICT_METHODS
    )


def save(model: Any, dest: Path, *, example: Any = None, **options: Any) -> dict:
    check_options(NAME, "save", options, ("serialization", "predict_method"))
    serialization = options.get("serialization", "cloudpickle")
    method = options.get("predict_method", "predict")
    if serialization not in SERIALIZATIONS:
        raise InvalidArgument(
            f"Unknown serialization {serialization!r}. Choose one of: {', '.join(SERIALIZATIONS)}."
        )
    if method not in PREDICT_METHODS:
        raise InvalidArgument(
            f"Unknown predict_method {method!r}. Choose one of: {', '.join(PREDICT_METHODS)}."
        )
    if not callable(getattr(model, method, None)):
        raise InvalidArgument(
            f"{type(model).__name__} has no {method}() method; choose a predict_method it has."
        )
    sklearn = require("sklearn", NAME, "sklearn", "scikit-learn")
    if serialization == "skops":
        sio = require("skops.io", NAME, "skops", "skops")
        rel = "model/model.skops"
        sio.dump(model, dest / rel)
    else:
        import cloudpickle

        rel = "model/model.pkl"
        with open(dest / rel, "wb") as f:
            cloudpickle.dump(model, f)
    return {
        "path": rel,
        "serialization": serialization,
        "predict_method": method,
        "sklearn_version": sklearn.__version__,
    }


def load(src: Path, config: Mapping[str, Any], **options: Any) -> Any:
    check_options(NAME, "load", options, ())
    require("sklearn", NAME, "sklearn", "scikit-learn")
    path = src / config["path"]
    if config.get("serialization") == "skops":
        sio = require("skops.io", NAME, "skops", "skops")
        # Hashes were verified before this runs; skops still refuses unknown types unless
        # they are listed, so trust exactly the types this file declares.
        return sio.load(path, trusted=sio.get_untrusted_types(file=path))
    import cloudpickle

    with open(path, "rb") as f:
        return cloudpickle.load(f)


def predictor(native: Any, config: Mapping[str, Any]) -> Predict:
    method = getattr(native, config.get("predict_method", "predict"))
    # A model fitted on a DataFrame knows its column names and warns on bare arrays, and the
    # reverse: give each the shape it was fitted on.
    wants_frame = hasattr(native, "feature_names_in_")

    def predict(data: Any, params: Mapping[str, Any]) -> Any:
        given = data
        if isinstance(data, Columns):
            data = data.to_frame() if wants_frame else data.to_matrix()
        elif not wants_frame and hasattr(data, "columns") and hasattr(data, "to_numpy"):
            data = data.to_numpy()  # a frame for a model fitted on an array: its values
        try:
            return method(data)
        except ValueError as exc:
            refused = _refused_value(given, str(exc), type(native).__name__)
            if refused is None:
                raise
            raise refused from None

    return predict


def _refused_value(data: Any, message: str, model: str) -> SchemaError | None:
    """sklearn's own check refused NaN, an infinity, or a number beyond the float32 that trees
    compute in: the input's fault, named by column. None if the input holds no such value (the
    model itself made it, and failed)."""
    import numpy as np

    if "contains NaN" in message:
        what = "nan"
    elif "contains infinity or a value too large" in message:
        what = "float32" if "float32" in message else "inf"
    else:
        return None
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):
        columns = [(f"Column {str(c)!r}", str(c), data[c].to_numpy()) for c in data.columns]
    elif isinstance(data, Mapping):
        columns = [(f"Column {str(c)!r}", str(c), np.asarray(v)) for c, v in data.items()]
    else:
        matrix = np.asarray(data)
        if matrix.ndim != 2:
            return None
        columns = [(f"Input column {j}", str(j), matrix[:, j]) for j in range(matrix.shape[1])]
    limit = float(np.finfo(np.float32).max)
    for label, name, values in columns:
        if values.dtype.kind != "f":
            continue
        if what == "nan":
            bad = np.isnan(values)
        elif what == "inf":
            bad = np.isinf(values)
        else:
            bad = ~np.isnan(values) & (np.abs(values) > limit)
        rows = np.flatnonzero(bad)
        if not rows.size:
            continue
        row = int(rows[0])
        value = float(values[row])
        if what == "nan":
            text = (
                f"expected a number, got a missing value (NaN) at row {row}; {model} does not "
                f"take missing values."
            )
        elif np.isinf(value):
            text = (
                f"expected a finite number, got {value!r} at row {row}; {model} does not take "
                f"infinities."
            )
        else:
            text = (
                f"expected a number within float32's range ({-limit:.8g}..{limit:.8g}), got "
                f"{value!r} at row {row}; {model} computes in float32."
            )
        return SchemaError(f"{label}: {text}", name)
    return None


def requirements(model: Any, config: Mapping[str, Any]) -> list[str]:
    """Distributions loading needs: scikit-learn and the serializer ``save`` used."""
    return ["scikit-learn", config.get("serialization", "cloudpickle"), "numpy"]
