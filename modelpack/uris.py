"""Model URIs (DESIGN.md §5): the one place that parses, builds and redacts them.

| URI | parsed as |
|---|---|
| ``path/to/dir``, ``file:///abs/dir`` | a ``Path`` |
| ``runs:/<run_id>/<artifact_path>`` | ``RunURI`` |
| ``models:/<name>/<version|stage|latest>``, ``models:/<name>@<alias>`` | ``ModelURI`` |
| ``s3://bucket/prefix`` | ``S3URI`` |

Turning one into a local package folder is ``modelpack.resolution``'s work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelpack.errors import InvalidArgument

__all__ = [
    "ModelURI",
    "RunURI",
    "S3URI",
    "model_uri",
    "parse",
    "redact",
    "registered_model",
    "resolve_local",
    "run_uri",
]

STAGES = ("None", "Staging", "Production", "Archived")
_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<ref>[^/]+)|@(?P<alias>[^/]+))/?$")
_NAME = re.compile(r"^models:/(?P<name>[^/@]+)/?$")
_RUNS = re.compile(r"^runs:/(?P<run_id>[0-9A-Za-z_-]+)/(?P<path>.+?)/?$")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^/\s]*)@")
SUPPORTED = (
    "a local path, file://, runs:/<run_id>/<path>, models:/<name>/<version|stage|latest>, "
    "models:/<name>@<alias>, s3://bucket/prefix"
)


@dataclass(frozen=True)
class RunURI:
    """``runs:/<run_id>/<path>``: a package a run logged."""

    run_id: str
    path: str

    def __str__(self) -> str:
        return run_uri(self.run_id, self.path)


@dataclass(frozen=True)
class ModelURI:
    """``models:/...``: a registered version, by number, stage, alias, or the newest."""

    name: str
    version: int | None = None
    stage: str | None = None
    alias: str | None = None

    @property
    def moving(self) -> bool:
        """Whether the version it names can change (a stage, an alias, ``latest``)."""
        return self.version is None

    @property
    def latest(self) -> bool:
        return self.version is None and self.stage is None and self.alias is None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version or self.stage or 'latest'}"


@dataclass(frozen=True)
class S3URI:
    """``s3://bucket/prefix``: a package in object storage."""

    uri: str

    def __str__(self) -> str:
        return self.uri


def model_uri(name: str, version: int | str) -> str:
    """``models:/<name>/<version>``."""
    return f"models:/{name}/{version}"


def run_uri(run_id: str, path: str) -> str:
    """``runs:/<run_id>/<path>``."""
    return f"runs:/{run_id}/{path}"


MODELS_PREFIX = "models:/"
RUNS_PREFIX = "runs:/"
_LOGGED_MODEL = re.compile(r"m-[0-9a-f]{32}")


def logged_model_uri(model_id: str) -> str:
    """``models:/<model_id>``: an MLflow 3 LoggedModel, as its client names it in a source."""
    return f"models:/{model_id}"


def logged_model_id(uri: str) -> str | None:
    """The LoggedModel id (``m-`` + 32 hex) in ``models:/<id>[/]``, else None."""
    if uri.startswith(MODELS_PREFIX):
        rest = uri[len(MODELS_PREFIX) :].rstrip("/")
        if _LOGGED_MODEL.fullmatch(rest):
            return rest
    return None


def parse(uri: str | os.PathLike[str]) -> Path | RunURI | ModelURI | S3URI:
    """What ``uri`` names: a local ``Path``, or the store URI it is.

    Raises:
        InvalidArgument: a malformed ``runs:/`` or ``models:/`` URI, or an unknown scheme.
    """
    if isinstance(uri, str):
        if uri.startswith("models:"):
            return _model(uri)
        if uri.startswith("runs:"):
            m = _RUNS.match(uri)
            if not m:
                raise InvalidArgument(f"Malformed run URI {uri!r}. Use runs:/<run_id>/<path>.")
            return RunURI(m["run_id"], m["path"])
        if uri.startswith("s3://"):
            return S3URI(uri)
    return resolve_local(uri)


def _model(uri: str) -> ModelURI:
    m = _MODELS.match(uri)
    if not m:
        raise InvalidArgument(
            f"Malformed model URI {uri!r}. Use models:/<name>/<version>, models:/<name>/<stage>,"
            f" models:/<name>@<alias> or models:/<name>/latest."
        )
    name, ref, alias = m["name"], m["ref"], m["alias"]
    if alias is not None:
        return ModelURI(name, alias=alias)
    if ref.isdigit():
        return ModelURI(name, version=int(ref))
    if ref.lower() == "latest":
        return ModelURI(name)
    for stage in STAGES:
        if ref.lower() == stage.lower():
            return ModelURI(name, stage=stage)
    raise InvalidArgument(
        f"Model URI {uri!r}: {ref!r} is not a version number, a stage "
        f"({', '.join(STAGES)}) or 'latest'; for an alias write models:/{name}@{ref}."
    )


def registered_model(uri: str | os.PathLike[str]) -> str | None:
    """The name in ``models:/<name>`` (a registered model, no version), else None.

    Raises:
        InvalidArgument: ``uri`` is a ``models:/`` URI of another form or malformed.
    """
    if not isinstance(uri, str) or not uri.startswith("models:"):
        return None
    m = _NAME.match(uri)
    if not m:
        raise InvalidArgument(
            f"Expected models:/<name> (a registered model to add a version to), got {uri!r}."
        )
    return m["name"]


def resolve_local(uri: str | os.PathLike[str]) -> Path:
    """The local directory a path or ``file://`` URI names.

    Raises:
        InvalidArgument: a scheme that is not local.
    """
    if isinstance(uri, os.PathLike):
        return Path(uri)
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"Expected a model URI or path, got {uri!r}.")
    if uri.startswith("file:"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(
                f"file URI {uri!r} names host {parsed.netloc!r}; only local files are supported."
            )
        return Path(unquote(parsed.path))
    if "://" in uri or uri.split(":", 1)[0] in ("runs", "models", "s3"):
        raise InvalidArgument(f"Unsupported URI {redact(uri)!r}. Supported: {SUPPORTED}.")
    return Path(uri)


def redact(text: object) -> str:
    """``text`` with the password of every URL in it hidden: ``user:password@`` becomes
    ``user:***@`` (as SQLAlchemy shows URLs), for messages, logs and reprs."""

    def hide(m: re.Match[str]) -> str:
        user, colon, _ = m[2].partition(":")
        return f"{m[1]}{user}:***@" if colon else m[0]

    return _USERINFO.sub(hide, str(text))
