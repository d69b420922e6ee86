"""MLflow's signature and input example (MLFLOW_COMPAT.md §3.1) as a manifest states them.

MLflow stores each part of a signature as a JSON string of column or tensor specs; the input
example as ``serving_input_example.json`` (the scoring protocol's form, which is ours) and as
``input_example.json`` in a form of its own. Parts modelpack cannot state are left out, named.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.errors import FormatError
from modelpack.paths import resolve_inside
from modelpack.signature import (
    COLUMN_TYPES,
    TENSOR_DTYPES,
    ColSpec,
    ColumnSchema,
    ParamSpec,
    Signature,
    TensorSchema,
    TensorSpec,
)

# The file our converted input example is written to when MLflow's own is not in the scoring
# protocol's form (MLflow's input_example.json keeps its name: MLflow reads it).
EXAMPLE_NAME = "modelpack_input_example.json"
# MLflow column types as tensor dtypes, for unnamed columns (an output MLflow inferred from a
# prediction array is one unnamed column).
_COLUMN_DTYPES = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "str",
}
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- signature


def _schema(text: Any, where: str) -> tuple[Any, str | None]:
    """``(schema, None)``, or ``(None, why)`` for a schema modelpack cannot state."""
    if text is None:
        return None, None
    try:
        specs = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise FormatError(f"MLmodel signature.{where}: not JSON ({exc}).") from None
    if not isinstance(specs, list) or not specs:
        return None, f"{where}: expected a list of column or tensor specs"
    if all(isinstance(s, Mapping) and s.get("type") == "tensor" for s in specs):
        tensors = []
        for s in specs:
            spec = s.get("tensor-spec") or {}
            dtype = str(spec.get("dtype"))
            if dtype not in TENSOR_DTYPES:
                return None, f"{where}: tensor dtype {dtype!r}"
            shape = spec.get("shape")
            if not isinstance(shape, list) or len(specs) > 1 and not s.get("name"):
                return None, f"{where}: a tensor without a shape or name"
            tensors.append(TensorSpec(dtype, tuple(shape), s.get("name")))
        return TensorSchema(tuple(tensors)), None
    types = [s.get("type") if isinstance(s, Mapping) else None for s in specs]
    if any(t not in COLUMN_TYPES for t in types):
        bad = next(t for t in types if t not in COLUMN_TYPES)
        return None, f"{where}: column type {bad!r}"
    names = [s.get("name") for s in specs]
    if all(isinstance(n, str) and n for n in names):
        return ColumnSchema(
            tuple(ColSpec(s["name"], s["type"], bool(s.get("required", True))) for s in specs)
        ), None
    if any(n for n in names) or len(set(types)) != 1 or types[0] not in _COLUMN_DTYPES:
        return None, f"{where}: unnamed columns of several types"
    dtype = _COLUMN_DTYPES[types[0]]
    return TensorSchema((TensorSpec(dtype, (-1,) if len(specs) == 1 else (-1, len(specs))),)), None


def _params(text: Any) -> tuple[tuple[ParamSpec, ...], str | None]:
    if text is None:
        return (), None
    try:
        specs = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise FormatError(f"MLmodel signature.params: not JSON ({exc}).") from None
    if not isinstance(specs, list):
        return (), "params: expected a list"
    out = []
    for s in specs:
        if not isinstance(s, Mapping) or s.get("type") not in COLUMN_TYPES or s.get("shape"):
            return (), f"params: {s!r}"
        out.append(ParamSpec(str(s.get("name")), s["type"], s.get("default")))
    return tuple(out), None


def signature(mlmodel: Mapping[str, Any]) -> tuple[Signature | None, list[str]]:
    """The MLflow signature as ours, and what of it could not be carried over (and why).

    Parts modelpack's signature cannot state (array, object and map columns, list params)
    are left out, so nothing claims to check what it does not; each is named in the list.
    """
    sig = mlmodel.get("signature")
    if not sig:
        return None, []
    if not isinstance(sig, Mapping):
        raise FormatError("MLmodel signature: expected a mapping.")
    inputs, why_in = _schema(sig.get("inputs"), "inputs")
    outputs, why_out = _schema(sig.get("outputs"), "outputs")
    params, why_params = _params(sig.get("params"))
    dropped = [w for w in (why_in, why_out, why_params) if w is not None]
    for why in dropped:
        log.warning("The MLflow signature's %s cannot be stated in modelpack's; left out.", why)
    if inputs is None and outputs is None and not params:
        return None, dropped
    return Signature(inputs, outputs, params), dropped


# ---------------------------------------------------------------------------- input example


def _decodes(body: Any, sig: Signature | None) -> bool:
    from modelpack import enforcement
    from modelpack.errors import ModelpackError
    from modelpack.payload import decode_input

    try:
        data, params = decode_input(body, sig)
        plan, param_plan = enforcement.signature_plans(sig)
        if plan is not None:
            plan(data)
        if params:
            param_plan(params)
    except (ModelpackError, ValueError, TypeError):
        return False
    return True


def example(
    mlmodel: Mapping[str, Any], root: Path, files: Mapping[str, str], sig: Signature | None
) -> tuple[str | None, bytes | None]:
    """``(relative path, bytes to write there or None)`` of the input example in the
    scoring protocol's form (ours): MLflow's ``serving_input_example.json`` as it is where it
    checks against the signature, else its ``input_example.json`` rewritten; ``(None, None)``
    when there is none that fits."""
    info = mlmodel.get("saved_input_example_info")
    if not isinstance(info, Mapping):
        return None, None
    serving = info.get("serving_input_path") or "serving_input_example.json"
    body = _read_json(root, serving, files)
    if body is not None and _decodes(body, sig):
        return serving, None
    raw = _read_json(root, info.get("artifact_path") or "input_example.json", files)
    if raw is None:
        return None, None
    params = None
    if info.get("params") in (True, "true") and isinstance(raw, Mapping) and "inputs" in raw:
        raw, params = raw["inputs"], raw.get("params")
    if isinstance(raw, Mapping) and any(k in raw for k in ("dataframe_split", "inputs")):
        converted: dict[str, Any] = dict(raw)
    elif info.get("type") == "dataframe":
        key = "dataframe_records" if info.get("pandas_orient") == "records" else "dataframe_split"
        converted = {key: raw}
    else:
        converted = {"inputs": raw}
    if params:
        converted["params"] = params
    if not _decodes(converted, sig):
        log.warning("The MLflow input example does not fit the signature; left out.")
        return None, None
    return EXAMPLE_NAME, json.dumps(converted).encode("utf-8")


def _read_json(root: Path, rel: Any, files: Mapping[str, str]) -> Any:
    if not isinstance(rel, str) or rel not in files:
        return None
    try:
        return json.loads(resolve_inside(root, rel, "input example").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, FormatError):
        return None
