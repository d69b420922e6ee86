"""The formats batch scoring reads and writes, how a path's format is guessed, and pyarrow.

``-`` stands for stdin or stdout, which take CSV and JSON lines (Parquet needs a file). pyarrow
is an optional dependency (``modelpack[batch]``): ``pyarrow()`` imports it, or says how to
install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelpack.errors import InvalidArgument, MissingDependency

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
STDIO = "-"


def pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise MissingDependency(
            "Batch scoring needs pyarrow. Install it with: pip install 'modelpack[batch]'",
            "batch",
            "batch",
        ) from None
    return pyarrow


def guess_format(path: str, given: str | None, role: str, fallback: str | None = None) -> str:
    """The format named by ``given``, else by ``path``'s extension, else ``fallback``."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidArgument(
                f"Unknown {role} format {given!r}. Supported: {', '.join(FORMATS)}."
            )
        fmt = given
    elif path == STDIO:
        if fallback is None:
            raise InvalidArgument(
                f"Cannot guess the format of {'stdin' if role == 'input' else 'stdout'}: pass "
                f"--{role}-format csv or jsonl."
            )
        fmt = fallback
    else:
        fmt = EXTENSIONS.get(Path(path).suffix.lower(), "")
        if not fmt:
            known = ", ".join(EXTENSIONS)
            raise InvalidArgument(
                f"Cannot guess the {role} format of {path!r} from its extension (known: {known}). "
                f"Pass --{role}-format with one of: {', '.join(FORMATS)}."
            )
    if path == STDIO and fmt == "parquet":
        raise InvalidArgument(
            f"Parquet cannot be streamed through {'stdin' if role == 'input' else 'stdout'}; "
            f"use a file, or csv or jsonl."
        )
    return fmt
