"""How a package's predictions become named output columns, one or several per output.

A ``Scorer`` runs in the process that calls ``predict_file`` (one worker) or in each worker
process (``modelpack.batch._worker``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelpack.errors import InvalidArgument
from modelpack.signature import TensorSchema


class Scorer:
    """A loaded package, and how its output becomes named columns."""

    def __init__(self, pack: Any, prediction_column: str | None) -> None:
        self.pack = pack
        self.given = prediction_column
        outputs = pack.signature.outputs if pack.signature is not None else None
        named = (
            outputs.tensors[0].name
            if isinstance(outputs, TensorSchema) and outputs.single
            else None
        )
        self.base = prediction_column or named or "prediction"
        config = pack.manifest.flavors.get(pack.flavor, {})
        classes = getattr(pack.unwrap(), "classes_", None)
        self.classes = (
            [str(c) for c in classes]
            if config.get("predict_method") == "predict_proba" and classes is not None
            else None
        )

    def __call__(self, x: Any) -> list[tuple[str, np.ndarray]]:
        out = self.pack.predict(x)
        if isinstance(out, np.ndarray):
            return _split(self.base, out, self.classes)
        if isinstance(out, Mapping):
            parts = [(str(k), np.asarray(v)) for k, v in out.items()]
        else:  # a DataFrame
            parts = [(str(c), out[c].to_numpy()) for c in out.columns]
        if len(parts) == 1:
            return _split(self.given or parts[0][0], parts[0][1], self.classes)
        if self.given is not None:
            raise InvalidArgument(
                f"--prediction-column names a single output, but this model returns "
                f"{len(parts)} ({', '.join(n for n, _ in parts)}), each in a column of its "
                f"own name. Leave --prediction-column out."
            )
        return [col for name, arr in parts for col in _split(name, arr, None)]


def _split(base: str, arr: np.ndarray, classes: list[str] | None) -> list[tuple[str, np.ndarray]]:
    """One column for a value per row; ``base_<class>`` or ``base_<i>`` for several."""
    if arr.ndim <= 1:
        return [(base, arr.reshape(-1))]
    flat = arr.reshape(arr.shape[0], -1)
    if flat.shape[1] == 1:
        return [(base, flat[:, 0])]
    labels = classes if classes and len(classes) == flat.shape[1] else range(flat.shape[1])
    return [(f"{base}_{label}", flat[:, j]) for j, label in enumerate(labels)]
