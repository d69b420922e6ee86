"""The manifest, ``modelpack.yaml``: what a package holds and how to run it (format_version 1)."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpack._paths import check_relative
from modelpack.errors import FormatError, NotFound
from modelpack.signature import Signature, _check_keys, _check_type

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "Manifest", "read_manifest", "write_manifest"]

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST_NAME = "modelpack.yaml"

_REQUIRED = (
    "format_version",
    "model_id",
    "created_at",
    "modelpack_version",
    "flavor",
    "flavors",
    "files",
)
_OPTIONAL = ("signature", "input_example", "environment", "code", "source", "metadata")


@dataclass(frozen=True)
class Manifest:
    """Everything ``modelpack.yaml`` says, as checked, frozen data."""

    model_id: str
    created_at: _dt.datetime
    modelpack_version: str
    flavor: str
    flavors: Mapping[str, Mapping[str, Any]]
    files: Mapping[str, str]
    signature: Signature | None = None
    input_example: str | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)
    code: tuple[str, ...] = ()
    source: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise FormatError("created_at must be timezone-aware (UTC).")
        if self.flavor not in self.flavors:
            raise FormatError(
                f"flavor {self.flavor!r} is not among the stored flavors "
                f"({', '.join(self.flavors) or 'none'})."
            )
        for name, config in self.flavors.items():
            if not isinstance(config, Mapping) or "path" not in config:
                raise FormatError(f"flavors.{name}: expected a mapping with a 'path' key.")
            check_relative(config["path"], f"flavors.{name}.path")
        for rel in self.files:
            check_relative(rel, "files entry")
        for rel in self.code:
            check_relative(rel, "code entry")
        if self.input_example is not None:
            check_relative(self.input_example, "input_example")
        for key in ("requirements", "python_env"):
            if key in self.environment:
                check_relative(self.environment[key], f"environment.{key}")

    @property
    def flavor_names(self) -> list[str]:
        return list(self.flavors)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format_version": self.format_version,
            "model_id": self.model_id,
            "created_at": self.created_at.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "modelpack_version": self.modelpack_version,
            "flavor": self.flavor,
            "flavors": {k: dict(v) for k, v in self.flavors.items()},
        }
        if self.signature is not None:
            d["signature"] = self.signature.to_dict()
        if self.input_example is not None:
            d["input_example"] = self.input_example
        d["environment"] = dict(self.environment)
        if self.code:
            d["code"] = list(self.code)
        d["files"] = dict(self.files)
        if self.source is not None:
            d["source"] = dict(self.source)
        d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        if not isinstance(d, Mapping):
            raise FormatError(f"The manifest must be a mapping, got {type(d).__name__}.")
        version = d.get("format_version")
        if version not in SUPPORTED_FORMAT_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
            raise FormatError(
                f"Unknown format_version {version!r}; this modelpack reads format_version "
                f"{supported}. Upgrade modelpack to read newer packages."
            )
        _check_keys(d, "manifest", _REQUIRED, _OPTIONAL)
        for key in ("model_id", "modelpack_version", "flavor"):
            _check_type(d[key], str, f"manifest {key!r}", "a string")
        for key in ("flavors", "files"):
            _check_type(d[key], Mapping, f"manifest {key!r}", "a mapping")
        for rel, digest in d["files"].items():
            if not isinstance(digest, str) or len(digest) != 64:
                raise FormatError(f"files.{rel}: expected a sha256 hex digest, got {digest!r}.")
        created = d["created_at"]
        if isinstance(created, str):
            try:
                created = _dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                raise FormatError(f"created_at: not an ISO-8601 time: {created!r}.") from None
        _check_type(created, _dt.datetime, "manifest 'created_at'", "an ISO-8601 time")
        if created.tzinfo is None:
            created = created.replace(tzinfo=_dt.UTC)
        for key in ("environment", "metadata"):
            if d.get(key) is not None:
                _check_type(d[key], Mapping, f"manifest {key!r}", "a mapping")
        if d.get("source") is not None:
            _check_type(d["source"], Mapping, "manifest 'source'", "a mapping")
        code = d.get("code") or []
        _check_type(code, list, "manifest 'code'", "a list")
        example = d.get("input_example")
        if example is not None:
            _check_type(example, str, "manifest 'input_example'", "a path")
        return cls(
            format_version=version,
            model_id=d["model_id"],
            created_at=created,
            modelpack_version=d["modelpack_version"],
            flavor=d["flavor"],
            flavors={str(k): dict(v) for k, v in d["flavors"].items()},
            files=dict(d["files"]),
            signature=Signature.from_dict(d["signature"]) if d.get("signature") else None,
            input_example=example,
            environment=dict(d.get("environment") or {}),
            code=tuple(code),
            source=dict(d["source"]) if d.get("source") is not None else None,
            metadata=dict(d.get("metadata") or {}),
        )


def read_manifest(package: Path) -> Manifest:
    """Read and check ``package/modelpack.yaml``.

    Raises:
        NotFound: the directory does not exist.
        FormatError: there is no manifest, or it is unreadable or invalid.
    """
    import yaml

    if not package.exists():
        raise NotFound(f"No model package at {str(package)!r}: the path does not exist.")
    path = package / MANIFEST_NAME
    if path.is_symlink():
        raise FormatError(f"{path}: is a symlink; packages may not contain links.")
    if not path.is_file():
        raise FormatError(
            f"{str(package)!r} is not a model package: it has no {MANIFEST_NAME}. "
            f"Create one with modelpack.save(model, path)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FormatError(f"{path}: cannot be read as YAML ({exc}).") from None
    return Manifest.from_dict(data)


def dump_yaml(data: Any) -> str:
    """YAML in block style, except short lists of scalars (shapes) which stay on one line."""
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        pass

    def represent_list(dumper: Any, items: list) -> Any:
        flow = all(isinstance(x, int | float | bool | str) or x is None for x in items)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)

    Dumper.add_representer(list, represent_list)
    # Version strings are often str subclasses (torch.__version__): write them as text.
    Dumper.add_multi_representer(str, lambda dumper, text: dumper.represent_str(str(text)))
    return yaml.dump(
        data, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def write_manifest(package: Path, manifest: Manifest) -> None:
    write_file(package / MANIFEST_NAME, dump_yaml(manifest.to_dict()).encode("utf-8"))


def write_file(path: Path, data: bytes) -> None:
    """Write and fsync ``data`` to ``path`` (inside a staging directory, so no rename here)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
