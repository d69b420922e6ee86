"""Model URIs: where a package lives (DESIGN.md §5).

Local paths and ``file://`` URIs resolve here; ``runs:/``, ``models:/`` and ``s3://`` go
through the tracking store (``modelpack.Client``), imported only when such a URI is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from modelpack.errors import InvalidArgument

__all__ = ["resolve", "resolve_local"]

STORE_SCHEMES = ("runs", "models", "s3")


def resolve(uri: str | os.PathLike[str], client: Any = None) -> Path:
    """The local directory of the package ``uri`` names, downloading it if it is remote.

    ``client`` is the store ``runs:/`` and ``models:/`` URIs are read from (default: the
    ``MODELPACK_TRACKING_URI`` store, which must exist: resolving never creates one).
    """
    if isinstance(uri, str) and uri.split(":", 1)[0] in STORE_SCHEMES and ":" in uri:
        if client is None:
            from modelpack.client import Client

            client = Client(create=False)
        return Path(client.resolve(uri))
    return resolve_local(uri)


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
    if "://" in uri or uri.split(":", 1)[0] in STORE_SCHEMES:
        raise InvalidArgument(
            f"Unsupported URI {uri!r}. Supported: a local path, file://, runs:/<run_id>/<path>, "
            f"models:/<name>/<version|stage|latest>, models:/<name>@<alias>, s3://bucket/prefix."
        )
    return Path(uri)
