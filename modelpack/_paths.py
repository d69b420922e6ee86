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
