"""The exceptions modelpack raises.

```
ModelpackError
  FormatError          a manifest is missing, unreadable, or of an unknown version
  IntegrityError       a file's hash does not match the manifest
  SchemaError          input does not match the signature
  FlavorError
    UnknownFlavor      no flavor of that name, or not stored in this package
    MissingDependency  the flavor's framework is not installed
  NotFound             nothing at that URI or name
  AlreadyExists        the target is taken
  InvalidArgument      an argument that cannot work, whatever the data
  Conflict             a concurrent write got in the way; the same call may succeed again
```

Every exception carries its values as attributes, so callers never parse messages.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AlreadyExists",
    "Conflict",
    "FlavorError",
    "FormatError",
    "IntegrityError",
    "InvalidArgument",
    "MissingDependency",
    "ModelpackError",
    "NotFound",
    "PermissionDenied",
    "SchemaError",
    "Unauthenticated",
    "UnknownFlavor",
    "Unavailable",
]


class ModelpackError(Exception):
    """Base class of every error modelpack raises on purpose."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class FormatError(ModelpackError):
    """A manifest is missing, unreadable, of an unknown version, or names an unsafe path."""


class IntegrityError(ModelpackError):
    """Files of a package differ from what its manifest recorded.

    Attributes:
        problems: one entry per file, ``(path, what)`` where ``what`` is ``"modified"``,
            ``"missing"``, ``"unlisted"`` or ``"symlink"``.
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    @property
    def files(self) -> list[str]:
        return [path for path, _ in self.problems]


class SchemaError(ModelpackError):
    """Input data or params do not match the model's signature.

    Attributes:
        field: the column, tensor or param at fault (``None`` when the input as a whole is).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class FlavorError(ModelpackError):
    """A flavor cannot be found or used."""


class UnknownFlavor(FlavorError):
    """No flavor of that name exists, or the package does not store it."""

    def __init__(self, message: str, name: str, available: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.available = list(available)


class MissingDependency(FlavorError):
    """A flavor's framework is not installed."""

    def __init__(self, message: str, flavor: str, extra: str) -> None:
        super().__init__(message)
        self.flavor = flavor
        self.extra = extra


class NotFound(ModelpackError):
    """Nothing exists at the given URI, path or name."""


class AlreadyExists(ModelpackError):
    """The target already exists and overwriting was not asked for."""


class InvalidArgument(ModelpackError, ValueError):
    """An argument that cannot work whatever the data (also a ``ValueError``)."""


class Conflict(ModelpackError):
    """A write lost to concurrent writes of the same records (a deadlock, a serialization
    failure, a lock held too long) even after the store retried it; nothing was changed, and
    running the same call again may succeed.

    Attributes:
        reason: what the database reported, e.g. ``"deadlock detected"``.
        attempts: how many times the store ran the write before giving up.
    """

    def __init__(self, message: str, reason: str, attempts: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts


class Unauthenticated(ModelpackError):
    """A server wants a valid token: none was sent, or the one sent is unknown or revoked."""


class PermissionDenied(ModelpackError):
    """The caller is known but lacks the permission the call needs."""


class Unavailable(ModelpackError):
    """A server could not be reached or answered that it cannot serve now; nothing was
    changed by the failed call, and running it again later may succeed."""
