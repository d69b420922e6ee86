"""scikit-learn -> ONNX conversion for ``save(..., also=("onnx",))``, with skl2onnx."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelpack.errors import InvalidArgument
from modelpack.flavor import require

NAME = "onnx"
_METHODS = ("predict", "predict_proba", "transform")


def convert(model: Any, example: Any, *, predict_method: str = "predict") -> tuple[Any, dict]:
    """Convert a scikit-learn estimator to ONNX with skl2onnx, typed from the input example.

    The graph takes one tensor ``input`` of shape ``[None, n_features]``: double for a float64
    or integer example (doubles keep tree thresholds exact), float for a float32 one. A column
    example (``Columns``, DataFrame or dict of 1-D arrays, numeric only) becomes that tensor
    with its columns in the estimator's ``feature_names_in_`` order. Classifiers output
    ``label`` and ``probabilities`` (no ZipMap).

    Returns:
        ``(proto, save_options)``; store it with ``save(proto, dest, **save_options)``.
        ``save_options["output_names"]`` is the output ``predict_method`` returns: the first
        output for ``predict`` and ``transform``, ``probabilities`` for ``predict_proba``;
        ``save_options["columns"]`` (column examples only) is the tensor's column order.

    Raises:
        InvalidArgument: a non-numeric or non-2-D example, an unsupported ``predict_method``,
            or an estimator skl2onnx cannot convert (with its reason).
    """
    import numpy as np

    if predict_method not in _METHODS:
        raise InvalidArgument(
            f"Cannot serve {predict_method!r} from an ONNX conversion. "
            f"Supported: {', '.join(_METHODS)}."
        )
    skl2onnx = require("skl2onnx", NAME, "onnx")
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from sklearn.base import is_classifier

    options: dict[str, Any] = {}
    if isinstance(example, Mapping) or hasattr(example, "columns"):
        names = [str(c) for c in (example.columns if hasattr(example, "columns") else example)]
        known = [str(c) for c in getattr(model, "feature_names_in_", ())]
        options["columns"] = known if known and set(known) <= set(names) else names
        arrays = [np.asarray(example[c]) for c in options["columns"]]
        for column, arr in zip(options["columns"], arrays, strict=True):
            if arr.dtype.kind not in "biuf":
                raise InvalidArgument(f"Cannot convert to ONNX: column {column!r} is not numeric.")
        single = {a.dtype for a in arrays} == {np.dtype(np.float32)}
        matrix = np.stack(arrays, 1).astype(np.float32 if single else np.float64)
    else:
        matrix = np.asarray(example)
        if matrix.dtype.kind not in "biuf":
            raise InvalidArgument(
                f"Cannot convert to ONNX: the example is {matrix.dtype}, not numeric."
            )
    if matrix.ndim != 2:
        raise InvalidArgument(
            f"Cannot convert to ONNX: expected a 2-D example (rows x "
            f"features), got shape {matrix.shape}."
        )
    final = model
    while hasattr(final, "steps"):
        final = final.steps[-1][1]
    zipmap = {"options": {id(final): {"zipmap": False}}} if is_classifier(final) else {}
    types = [FloatTensorType] if matrix.dtype == np.float32 else [DoubleTensorType, FloatTensorType]
    ort = require("onnxruntime", NAME, "onnx")
    tree = type(final).__module__.startswith(("sklearn.ensemble._forest", "sklearn.tree"))
    errors = []
    for tensor_type in types:
        initial = [("input", tensor_type([None, matrix.shape[1]]))]
        try:
            proto = skl2onnx.to_onnx(
                model, initial_types=initial, target_opset={"": 17, "ai.onnx.ml": 3}, **zipmap
            )
            outputs = [o.name for o in proto.graph.output]
            if tree:
                _first_max_label(proto, getattr(final, "classes_", None), outputs)
            # skl2onnx can emit graphs onnxruntime rejects (double in, float declared out).
            ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
            break
        except Exception as exc:  # noqa: BLE001 - skl2onnx and onnxruntime raise many types
            errors.append(f"{type(exc).__name__}: {exc}")
    else:
        raise InvalidArgument(f"Cannot convert {type(model).__name__} to ONNX: {errors[0]}")
    if predict_method != "predict_proba":
        options["output_names"] = outputs[:1]
    elif "probabilities" in outputs:
        options["output_names"] = ["probabilities"]
    else:
        raise InvalidArgument(
            f"Cannot serve 'predict_proba' from the ONNX conversion of "
            f"{type(model).__name__}: its outputs are {', '.join(outputs)}."
        )
    return proto, options


def _first_max_label(proto: Any, classes: Any, outputs: list[str]) -> None:
    """Compute ``label`` as ``classes[argmax(probabilities)]``, in place.

    sklearn's trees and forests break an exact tie (5 of 10 trees each way) toward the first
    class, onnxruntime's tree ensembles toward the last; ONNX ArgMax picks the first.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    classes = np.asarray(classes if classes is not None else [])
    if (
        classes.ndim != 1
        or classes.dtype.kind not in "iuUO"
        or outputs[:2] != ["label", "probabilities"]
    ):
        return
    graph = proto.graph
    for node in graph.node:
        node.output[:] = ["label_unbroken_ties" if o == "label" else o for o in node.output]
        node.input[:] = ["label_unbroken_ties" if i == "label" else i for i in node.input]
    values = classes.astype(np.int64 if classes.dtype.kind in "iu" else object)
    graph.initializer.append(numpy_helper.from_array(values, "label_classes"))
    graph.node.extend(
        [
            helper.make_node("ArgMax", ["probabilities"], ["label_index"], axis=1, keepdims=0),
            helper.make_node("Gather", ["label_classes", "label_index"], ["label"], axis=0),
        ]
    )
