"""The manifest, ``modelpack.yaml``: what a package holds and how to run it (format_version 1).

Reading is strict: the file is at most 1 MiB, YAML anchors, aliases and duplicate keys are
refused, every section has a fixed set of keys (an unknown one is named with the nearest known
one), ids and digests have their exact form, and versions parse. Nothing read from a manifest
touches a path before it has been checked.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpack import atomic
from modelpack.errors import FormatError, IntegrityError, NotFound
from modelpack.integrity import MANIFEST_NAME, FileTable
from modelpack.paths import check_relative
from modelpack.signature import Signature, _check_keys, _check_type, nearest

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "check_model_id",
    "check_recorded",
    "check_sha256",
    "parse_manifest",
    "read_manifest",
    "read_manifest_bytes",
    "write_manifest",
]

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MAX_MANIFEST_BYTES = 1 << 20

_REQUIRED = (
    "format_version",
    "model_id",
    "created_at",
    "modelpack_version",
    "flavor",
    "flavors",
    "files",
)
_OPTIONAL = ("signature", "input_example", "environment", "code", "sizes", "source", "metadata")
ENVIRONMENT_KEYS = ("python", "requirements", "python_env")
SOURCE_KEYS = ("run_id", "artifact_path")
_MODEL_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_model_id(value: Any, where: str = "model_id") -> str:
    """``value`` if it is a model id (32 lowercase hex characters, a uuid4 hex), else raise.

    Raises:
        FormatError: naming ``where`` and the value.
    """
    if not isinstance(value, str) or not _MODEL_ID.fullmatch(value):
        raise FormatError(f"{where}: expected 32 lowercase hex characters, got {value!r}.")
    return value


def check_sha256(value: Any, where: str) -> str:
    """``value`` if it is a sha256 hex digest (64 lowercase hex characters), else raise."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise FormatError(f"{where}: expected a sha256 hex digest, got {value!r}.")
    return value


def _check_version(value: Any, where: str) -> str:
    from packaging.version import InvalidVersion, Version

    _check_type(value, str, where, "a version string")
    try:
        Version(value)
    except InvalidVersion:
        raise FormatError(f"{where}: {value!r} is not a version number.") from None
    return str(value)


@dataclass(frozen=True)
class Manifest:
    """Everything ``modelpack.yaml`` says, as checked, frozen data.

    ``files`` maps each file to its sha256; read from disk it is a ``FileTable`` that also
    holds each file's size (``sizes``), which verification checks before hashing.
    """

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

    @property
    def sizes(self) -> Mapping[str, int] | None:
        """Each file's size in bytes, or ``None`` for a package saved before sizes were kept."""
        return self.files.sizes if isinstance(self.files, FileTable) else None

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
        if self.sizes is not None:
            d["sizes"] = dict(self.sizes)
        if self.source is not None:
            d["source"] = dict(self.source)
        d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Check ``d`` against the format_version 1 schema and build the manifest.

        Raises:
            FormatError: naming the first key or value that does not fit.
        """
        if not isinstance(d, Mapping):
            raise FormatError(f"The manifest must be a mapping, got {type(d).__name__}.")
        version = d.get("format_version")
        # Exactly the integer: YAML's `true` and `1.0` compare equal to 1 but are not it.
        if type(version) is not int or version not in SUPPORTED_FORMAT_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
            raise FormatError(
                f"Unknown format_version {version!r}; this modelpack reads format_version "
                f"{supported}. Upgrade modelpack to read newer packages."
            )
        _check_keys(d, "manifest", _REQUIRED, _OPTIONAL)
        check_model_id(d["model_id"])
        _check_version(d["modelpack_version"], "manifest 'modelpack_version'")
        _check_type(d["flavor"], str, "manifest 'flavor'", "a string")
        files = _files(d["files"], d.get("sizes"))
        flavors = _flavors(d["flavors"], files)
        created = d["created_at"]
        if isinstance(created, str):
            try:
                created = _dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                raise FormatError(f"created_at: not an ISO-8601 time: {created!r}.") from None
        _check_type(created, _dt.datetime, "manifest 'created_at'", "an ISO-8601 time")
        if created.tzinfo is None:
            created = created.replace(tzinfo=_dt.UTC)
        if d.get("metadata") is not None:
            _check_type(d["metadata"], Mapping, "manifest 'metadata'", "a mapping")
        environment = _section(d.get("environment"), "environment", ENVIRONMENT_KEYS)
        if "python" in environment:
            _check_version(environment["python"], "environment 'python'")
        for key in ("requirements", "python_env"):
            if key in environment:
                _listed(environment[key], files, f"environment.{key}")
        source = d.get("source")
        if source is not None:
            source = _section(source, "source", SOURCE_KEYS)
        code = d.get("code", [])
        _check_type(code, list, "manifest 'code'", "a list")
        for i, rel in enumerate(code):
            _check_type(rel, str, f"code[{i}]", "a path")
        example = d.get("input_example")
        if example is not None:
            _listed(example, files, "input_example")
        signature = d.get("signature")
        return cls(
            format_version=version,
            model_id=d["model_id"],
            created_at=created,
            modelpack_version=d["modelpack_version"],
            flavor=d["flavor"],
            flavors=flavors,
            files=files,
            # `signature: {}` is what a signature without inputs, outputs or params writes.
            signature=Signature.from_dict(signature) if signature not in (None, {}) else None,
            input_example=example,
            environment=environment,
            code=tuple(code),
            source=source,
            metadata=dict(d.get("metadata") or {}),
        )


def _section(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, str]:
    """A mapping of string values whose keys are among ``keys`` (``None`` reads as empty)."""
    if value is None:
        return {}
    _check_keys(value, f"manifest '{where}'", (), keys)
    for key, item in value.items():
        _check_type(item, str, f"{where}.{key}", "a string")
    return dict(value)


def _files(hashes: Any, sizes: Any) -> FileTable:
    _check_type(hashes, Mapping, "manifest 'files'", "a mapping")
    for rel, digest in hashes.items():
        _check_type(rel, str, "files entry", "a path")
        check_sha256(digest, f"files.{rel}")
    if sizes is None:
        return FileTable(hashes)
    _check_type(sizes, Mapping, "manifest 'sizes'", "a mapping")
    # Every size belongs to a listed file; a listed file without one is only hashed.
    for rel, size in sizes.items():
        if rel not in hashes:
            raise FormatError(f"sizes.{rel}: is not listed in files{_nearest(rel, hashes)}.")
        if type(size) is not int or size < 0:
            raise FormatError(f"sizes.{rel}: expected a size in bytes, got {size!r}.")
    return FileTable(hashes, sizes)


def _listed(rel: Any, files: Mapping[str, str], where: str) -> None:
    """A path the manifest names must be safe, and a file it lists or a folder holding one."""
    check_relative(rel, where)
    if rel not in files and not any(f.startswith(rel + "/") for f in files):
        raise FormatError(
            f"{where} {rel!r}: is not among the files the manifest lists{_nearest(rel, files)}."
        )


def _nearest(word: str, choices: Any) -> str:
    return nearest(word, [c for c in choices if isinstance(c, str)])


def _flavors(flavors: Any, files: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    _check_type(flavors, Mapping, "manifest 'flavors'", "a mapping")
    out: dict[str, dict[str, Any]] = {}
    for name, config in flavors.items():
        _check_type(name, str, "flavor name", "a string")
        where = f"flavors.{name}"
        schema = _config_schema(name)
        if schema is None:
            _check_type(config, Mapping, where, "a mapping")
        else:
            _check_keys(config, where, ("path",), tuple(k for k in schema if k != "path"))
        if "path" not in config:
            raise FormatError(f"{where}: expected a mapping with a 'path' key.")
        _listed(config["path"], files, f"{where}.path")
        for key, value in config.items():
            allowed = schema.get(key) if schema is not None else None
            if allowed is not None and value not in allowed:
                raise FormatError(
                    f"{where}.{key}: {value!r} is not one of {', '.join(map(str, allowed))}"
                    f"{nearest(value, [str(a) for a in allowed])}."
                )
            if isinstance(key, str) and key.endswith("_version"):
                _check_version(value, f"{where}.{key}")
        out[name] = dict(config)
    return out


def _config_schema(name: str) -> Mapping[str, Any] | None:
    """Flavor ``name``'s ``CONFIG_KEYS``: key -> allowed values (``None``: any).

    ``None`` when the flavor is not installed or does not say: then only ``path`` is checked.
    """
    from modelpack.errors import ModelpackError
    from modelpack.flavor import get_flavor

    try:
        module = get_flavor(name)
    except (ModelpackError, ImportError):  # reading a package never needs its flavor installed
        return None
    keys = getattr(module, "CONFIG_KEYS", None)
    if keys is None:
        return None
    return keys if isinstance(keys, Mapping) else dict.fromkeys(keys)


# ---------------------------------------------------------------------------- reading


def read_manifest_bytes(package: Path) -> bytes:
    """The raw bytes of ``package/modelpack.yaml``, refusing links and files over 1 MiB.

    Raises:
        NotFound: the directory does not exist.
        FormatError: there is no manifest, it is a link, or it is too large.
    """
    if not package.exists():
        raise NotFound(f"No model package at {str(package)!r}: the path does not exist.")
    path = package / MANIFEST_NAME
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise FormatError(f"{path}: is a symlink; packages may not contain links.")
    if st is None or not stat.S_ISREG(st.st_mode):
        raise FormatError(
            f"{str(package)!r} is not a model package: it has no {MANIFEST_NAME}. "
            f"Create one with modelpack.save(model, path)."
        )
    if st.st_nlink > 1:
        raise FormatError(f"{path}: has {st.st_nlink} hard links; packages may not contain links.")
    too_big = (
        f"{path}: is larger than {MAX_MANIFEST_BYTES} bytes (1 MiB), the most a manifest may "
        f"be. Keep large metadata in a file of the package instead."
    )
    if st.st_size > MAX_MANIFEST_BYTES:
        raise FormatError(too_big)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise FormatError(f"{path}: cannot be read ({exc}).") from None
    if len(data) > MAX_MANIFEST_BYTES:  # it grew after the stat
        raise FormatError(too_big)
    return data


def check_recorded(package: Path, data: bytes, recorded: str, what: str, by: str) -> str:
    """The sha256 of the manifest bytes ``data``, which must be the ``recorded`` one.

    Args:
        package: where the package lies, for the message.
        data: the manifest's bytes, as read for use.
        recorded: the sha256 a store recorded when the package was logged or registered.
        what: the package, for the message (e.g. ``"models:/Churn/1"``).
        by: who recorded it, for the message (e.g. ``"the registry"``).

    Raises:
        IntegrityError: the manifest differs from what was recorded.
    """
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise IntegrityError(
            f"{what} ({package}): modelpack.yaml differs from what {by} recorded (sha256 "
            f"{actual[:12]}..., recorded {recorded[:12]}...). The package was modified after "
            f"it was stored; do not load it. Register or log it again from a trusted copy.",
            [(MANIFEST_NAME, "modified")],
        )
    return actual


def parse_manifest(data: bytes, path: Path) -> Manifest:
    """Parse and check manifest bytes read from ``path`` (named in errors).

    Raises:
        FormatError: the bytes are not UTF-8 YAML, use anchors, aliases or duplicate keys, or
            do not fit the schema.
    """
    import yaml

    try:
        text = data.decode("utf-8")
        loaded = yaml.load(text, Loader=_loader())
    except _Refused as exc:
        raise FormatError(f"{path}: line {exc.line}: {exc.reason}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FormatError(f"{path}: cannot be read as YAML ({exc}).") from None
    return Manifest.from_dict(loaded)


def read_manifest(package: Path) -> Manifest:
    """Read and check ``package/modelpack.yaml``.

    Raises:
        NotFound: the directory does not exist.
        FormatError: there is no manifest, or it is unreadable, too large or invalid.
    """
    return parse_manifest(read_manifest_bytes(package), package / MANIFEST_NAME)


@functools.cache
def _loader() -> Any:
    """A safe YAML loader that refuses anchors, aliases and duplicate keys.

    Aliases make a few bytes expand into gigabytes (a "billion laughs"); duplicate keys make two
    readers see two manifests. libyaml parses; the composer, which sees each event, is Python.
    """
    import yaml
    from yaml.composer import Composer
    from yaml.events import AliasEvent
    from yaml.nodes import ScalarNode

    class Strict(Composer):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[attr-defined]  # the parser's, mixed in
            if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _Refused(event, "YAML anchors and aliases are not allowed in a manifest.")
            return super().compose_node(parent, index)

        def compose_mapping_node(self, anchor: Any) -> Any:
            node = super().compose_mapping_node(anchor)
            seen: set[tuple[str, str]] = set()
            for key, _ in node.value:
                if isinstance(key, ScalarNode):
                    if (key.tag, key.value) in seen:
                        raise _Refused(key, f"the key {key.value!r} appears twice.")
                    seen.add((key.tag, key.value))
            return node

    if hasattr(yaml, "CSafeLoader"):

        class Loader(Strict, yaml.CSafeLoader):
            def __init__(self, stream: Any) -> None:
                yaml.CSafeLoader.__init__(self, stream)
                Composer.__init__(self)

        return Loader

    class PyLoader(Strict, yaml.SafeLoader):
        pass

    return PyLoader


class _Refused(Exception):
    """Raised inside the YAML composer; becomes a ``FormatError`` naming the line."""

    def __init__(self, at: Any, reason: str) -> None:
        super().__init__(reason)
        mark = getattr(at, "start_mark", None)
        self.line = mark.line + 1 if mark is not None else 0
        self.reason = reason


# ---------------------------------------------------------------------------- writing


def dump_yaml(data: Any) -> str:
    """YAML in block style, except short lists of scalars (shapes) which stay on one line."""
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        def ignore_aliases(self, data: Any) -> bool:
            # Never anchors: an object met twice (a shared list) is written out twice, so
            # every manifest modelpack writes is one it reads.
            return True

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
    atomic.write_durably(package / MANIFEST_NAME, dump_yaml(manifest.to_dict()).encode("utf-8"))
