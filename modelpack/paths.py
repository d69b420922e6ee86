"""The one check for every relative path that comes from outside (DESIGN.md §9 rule 2).

It rejects rather than repairs, and checks containment on the real path, so it is run again
wherever the path is used.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from modelpack.errors import FormatError


def check_relative(rel: str, what: str = "path") -> PurePosixPath:
    """Return ``rel`` as a POSIX path if it is relative, clean and names something inside.

    Raises:
        FormatError: for an empty, absolute, drive-letter, backslash, ``..`` or NUL path.
    """
    if not isinstance(rel, str) or not rel:
        raise FormatError(f"{what}: expected a non-empty relative path, got {rel!r}.")
    if "\x00" in rel or "\\" in rel:
        raise FormatError(f"{what} {rel!r}: contains a NUL or backslash character.")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or (len(rel) > 1 and rel[1] == ":"):
        raise FormatError(f"{what} {rel!r}: must be relative to the package, not absolute.")
    if any(part in ("..", ".") for part in rel.split("/")) or rel.endswith("/"):
        raise FormatError(f"{what} {rel!r}: must not contain '..' or '.' segments.")
    return pure


def resolve_inside(root: Path, rel: str, what: str = "path") -> Path:
    """Join ``rel`` to ``root`` and prove the result is inside it with no symlink on the way.

    Raises:
        FormatError: if the path is unsafe, leaves the root, or passes through a symlink.
    """
    pure = check_relative(rel, what)
    root_real = Path(os.path.realpath(root))
    candidate = root_real.joinpath(*pure.parts)
    real = Path(os.path.realpath(candidate))
    if real != candidate:
        raise FormatError(
            f"{what} {rel!r}: is or passes through a symlink; packages may not contain links."
        )
    if root_real != real and root_real not in real.parents:
        raise FormatError(f"{what} {rel!r}: resolves outside the package.")
    return real


# S3's limit on a key, and what the tracking store's artifact-path column holds.
MAX_PATH_BYTES = 1024
# The longest file or directory name that Linux, macOS and Windows file systems store.
MAX_NAME_BYTES = 255


def check_length(rel: str, what: str = "path") -> None:
    """Refuse a path longer than ``MAX_PATH_BYTES``, or with a name longer than
    ``MAX_NAME_BYTES``, in UTF-8: no store can hold it, so it is refused before any I/O.

    Raises:
        FormatError: naming the limit and the length.
    """
    size = len(rel.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise FormatError(
            f"{what} {_shortened(rel)} is {size} bytes long; the limit is {MAX_PATH_BYTES}."
        )
    for part in rel.split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            name = "" if part == rel else f": the name {_shortened(part)}"
            raise FormatError(
                f"{what} {_shortened(rel)}{name} is {size} bytes long; file systems allow "
                f"{MAX_NAME_BYTES} bytes per name."
            )


def _shortened(text: str, keep: int = 40) -> str:
    return repr(text) if len(text) <= keep else f"{text[:keep]!r}..."
