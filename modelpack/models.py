"""MLflow's ``mlflow.models`` calls: ``infer_signature``, ``ModelSignature``, ``predict``,
``get_model_info`` and ``Model`` (what a package's manifest says, under MLflow's names).

Example:
    >>> from modelpack.models import infer_signature
    >>> signature = infer_signature(X_train, model.predict(X_train))
    >>> modelpack.models.predict("runs:/<run_id>/model", X_test[:3])
    {"predictions": [0, 2, 1]}
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.entities import ModelInfo
from modelpack.errors import InvalidArgument, NotFound
from modelpack.manifest import Manifest
from modelpack.signature import Signature

__all__ = ["Model", "ModelSignature", "get_model_info", "infer_signature", "predict"]

ModelSignature = Signature


def infer_signature(
    model_input: Any = None, model_output: Any = None, params: Mapping[str, Any] | None = None
) -> Signature:
    """A signature from example input, the model's output on it and param defaults
    (``modelpack.infer_signature``)."""
    from modelpack.inference import infer_signature as infer

    return infer(model_input, model_output, params)


class Model:
    """A package's description with the names of MLflow's ``Model`` (its ``MLmodel`` file).

    ``Package.metadata`` (MLflow's ``PyFuncModel.metadata``) is one of these, and so is
    ``Model.load(uri)``. Read-only: the manifest is the package's record.
    """

    def __init__(
        self,
        manifest: Manifest,
        path: Path | None = None,
        run_id: str | None = None,
        artifact_path: str | None = None,
    ) -> None:
        self.manifest = manifest
        self.path = path
        self.run_id = run_id
        self.artifact_path = artifact_path

    @classmethod
    def load(cls, model_uri: str | os.PathLike[str]) -> Model:
        """The description of the package at ``model_uri``, verified."""
        from modelpack.package import verify
        from modelpack.resolution import resolve

        run_id, artifact_path = _origin(model_uri)
        return cls(verify(model_uri), resolve(model_uri), run_id, artifact_path)

    @property
    def signature(self) -> Signature | None:
        return self.manifest.signature

    @property
    def flavors(self) -> Mapping[str, Any]:
        return self.manifest.flavors

    @property
    def model_uuid(self) -> str:
        return self.manifest.model_id

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.manifest.metadata

    @property
    def utc_time_created(self) -> str:
        return self.manifest.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")

    @property
    def saved_input_example_info(self) -> dict[str, str] | None:
        example = self.manifest.input_example
        return None if example is None else {"artifact_path": example, "type": "json_object"}

    def get_input_schema(self) -> Any:
        return self.signature.inputs if self.signature is not None else None

    def get_output_schema(self) -> Any:
        return self.signature.outputs if self.signature is not None else None

    def get_params_schema(self) -> Any:
        return self.signature.params if self.signature is not None else None

    def load_input_example(self, path: str | os.PathLike[str] | None = None) -> Any:
        """The stored input example, decoded (``None`` if the package has none)."""
        from modelpack.paths import resolve_inside
        from modelpack.payload import decode_input

        root = Path(path) if path is not None else self.path
        if root is None:
            raise InvalidArgument("load_input_example: pass the package's path.")
        if self.manifest.input_example is None:
            return None
        where = resolve_inside(root, self.manifest.input_example, "input_example")
        with open(where, encoding="utf-8") as f:
            body = json.load(f)
        data, _ = decode_input(body, self.manifest.signature)
        if isinstance(body, Mapping) and ("dataframe_split" in body or "dataframe_records" in body):
            import pandas as pd

            return pd.DataFrame(data)  # as MLflow's load_input_example gives a frame back
        return data

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.manifest.to_dict(),
            "run_id": self.run_id,
            "artifact_path": self.artifact_path,
        }

    def __repr__(self) -> str:
        return f"<Model {self.manifest.flavor} model_id={self.model_id[:12]}>"


def _origin(model_uri: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """(run_id, artifact path in the run) of the package ``model_uri`` names, where known."""
    from modelpack import uris
    from modelpack.resolution import model_version

    parsed = uris.parse(model_uri)
    if isinstance(parsed, uris.RunURI):
        return parsed.run_id, parsed.path
    if isinstance(parsed, uris.ModelURI):
        from modelpack.client import Client

        version = model_version(Client(create=False), parsed)
        try:
            source = uris.parse(version.source)
        except InvalidArgument:  # a source no URI form names (an imported store's)
            source = None
        return version.run_id, source.path if isinstance(source, uris.RunURI) else None
    return None, None


def get_model_info(model_uri: str | os.PathLike[str]) -> ModelInfo:
    """What ``log_model`` returned for the package at ``model_uri``, read back (verified)."""
    model = Model.load(model_uri)
    return ModelInfo(
        model_uri=str(model_uri),
        run_id=model.run_id,  # type: ignore[arg-type]  # None for a package on disk
        artifact_path=model.artifact_path,  # type: ignore[arg-type]
        manifest=model.manifest,
    )


# ---------------------------------------------------------------------------- predict

_ENVIRONMENT_ARGS = {
    "install_mlflow": "there is no separate environment to install anything into",
    "pip_requirements_override": (
        "install the requirements into this environment yourself (pip install -r "
        "<modelpack.pyfunc.get_model_dependencies(uri)> plus your overrides)"
    ),
    "extra_envs": "set the variables in os.environ before calling predict",
}


def _read_input(input_data: Any, input_path: Any, content_type: str, signature: Any) -> Any:
    from modelpack.payload import DATA_KEYS, decode_input

    if input_data is not None and input_path is not None:
        raise InvalidArgument("predict: pass input_data or input_path, not both.")
    if input_data is None and input_path is None:
        raise InvalidArgument("predict: pass input_data (the data itself) or input_path.")
    if input_path is not None:
        path = Path(input_path)
        if not path.is_file():
            raise NotFound(f"predict: input_path {str(path)!r} is not a file.")
        if content_type == "csv":
            import pandas as pd

            return pd.read_csv(path), None
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"predict: {str(path)!r} is not JSON: {exc}.") from None
        return decode_input(body, signature)
    if isinstance(input_data, str):
        if content_type == "csv":
            import io

            import pandas as pd

            return pd.read_csv(io.StringIO(input_data)), None
        try:
            return decode_input(json.loads(input_data), signature)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"predict: input_data is not JSON: {exc}.") from None
    if (
        isinstance(input_data, Mapping)
        and input_data
        and set(input_data) <= {*DATA_KEYS, "params"}
        and any(k in input_data for k in DATA_KEYS)
    ):
        return decode_input(input_data, signature)  # a serving payload, as MLflow accepts
    return input_data, None


def predict(
    model_uri: str | os.PathLike[str],
    input_data: Any = None,
    input_path: str | os.PathLike[str] | None = None,
    content_type: str = "json",
    output_path: str | os.PathLike[str] | None = None,
    env_manager: str | None = None,
    install_mlflow: bool = False,
    pip_requirements_override: Any = None,
    extra_envs: Mapping[str, str] | None = None,
) -> Any:
    """Run the package at ``model_uri`` on data and write ``{"predictions": ...}`` as JSON to
    ``output_path`` (default: stdout), as ``mlflow.models.predict`` does; also returns the
    predictions.

    Args:
        input_data: the data itself (a DataFrame, array, list, dict of columns), a scoring
            payload (``{"dataframe_split": ...}``, ``{"inputs": ...}``), or its JSON or CSV
            text.
        input_path: a JSON (scoring payload) or CSV file, per ``content_type``.
        content_type: ``"json"`` or ``"csv"``.
        env_manager: only ``"local"`` (this Python environment; also the default here, where
            MLflow's is ``"virtualenv"``).

    Raises:
        InvalidArgument: an environment other than this one is asked for, or the input is
            missing or malformed.
    """
    from modelpack.package import load
    from modelpack.payload import json_value

    if env_manager not in (None, "local"):
        raise InvalidArgument(
            f"predict: env_manager={env_manager!r} is not supported: modelpack runs the model "
            f"in this Python environment (env_manager='local'). To use the model's own "
            f"environment, create it from its requirements.txt "
            f"(modelpack.pyfunc.get_model_dependencies(uri)) and call predict from there."
        )
    given = {
        "install_mlflow": install_mlflow or None,
        "pip_requirements_override": pip_requirements_override,
        "extra_envs": extra_envs,
    }
    for key, value in given.items():
        if value:
            raise InvalidArgument(
                f"predict: {key}= is not supported with env_manager='local': "
                f"{_ENVIRONMENT_ARGS[key]}."
            )
    if content_type not in ("json", "csv"):
        raise InvalidArgument(
            f"predict: content_type must be 'json' or 'csv', got {content_type!r}."
        )
    pack = load(model_uri)
    data, params = _read_input(input_data, input_path, content_type, pack.signature)
    predictions = pack.predict(data, params=params)
    if hasattr(predictions, "columns") and hasattr(predictions, "to_dict"):
        predictions_json = json_value(predictions.to_dict(orient="records"))  # as MLflow does
    else:
        predictions_json = json_value(predictions)
    text = json.dumps({"predictions": predictions_json})
    if output_path is None:
        sys.stdout.write(text + "\n")
    else:
        from modelpack.atomic import write_durably

        write_durably(Path(output_path), text.encode("utf-8"))
    return predictions
