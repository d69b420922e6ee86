"""Model URIs: where a package lives (DESIGN.md §5).

This release resolves local paths and ``file://`` URIs; the tracking store adds ``runs:/``,
``models:/`` and ``s3://``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelpack.errors import InvalidArgument

__all__ = ["resolve_local"]

_STORE_SCHEMES = ("runs", "models", "s3")


def resolve_local(uri: str | os.PathLike[str]) -> Path:
    """The local directory ``uri`` names.

    Raises:
        InvalidArgument: a scheme this release cannot resolve.
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
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme in _STORE_SCHEMES:
        raise InvalidArgument(
            f"Cannot resolve {uri!r}: {scheme}: URIs need the tracking store, which this version "
            f"of modelpack does not include yet. Use a local path or a file:// URI."
        )
    if "://" in uri:
        raise InvalidArgument(
            f"Unsupported URI scheme in {uri!r}. Supported: a local path or a file:// URI."
        )
    return Path(uri)
