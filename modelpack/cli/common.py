"""What every ``modelpack`` command that reads a store or a package shares: the store options,
opening the store, resolving a package URI, turning driver errors into one line, and printing
tables and JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

URI_HELP = "package path or URI (runs:/..., models:/Name/1, models:/Name@alias, s3://...)"


def add_store_options(
    parser: argparse.ArgumentParser, artifact_root: bool = True, json: bool = True
) -> None:
    """``--tracking-uri``, ``--artifact-root`` and ``--json``: every store command takes them."""
    group = parser.add_argument_group("store")
    group.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="sqlite:///path or postgresql://user@host/db "
        "(default: $MODELPACK_TRACKING_URI, else ./modelpack-store/modelpack.db)",
    )
    if artifact_root:
        group.add_argument(
            "--artifact-root",
            metavar="ROOT",
            help="directory or s3://bucket/prefix for artifacts "
            "(default: $MODELPACK_ARTIFACT_ROOT, else beside the SQLite file)",
        )
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def usage(parser: argparse.ArgumentParser) -> int:
    """A command group run without a command: its help, and exit code 2."""
    parser.print_help()
    return 2


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def open_client(args: argparse.Namespace, create: bool = False) -> Any:
    """The store the command names; reading commands never create one (``create=False``
    raises ``NotFound`` naming the store instead)."""
    from modelpack.client import Client

    return Client(args.tracking_uri, getattr(args, "artifact_root", None), create=create)


def resolve_package(args: argparse.Namespace) -> Any:
    """The local folder of ``args.uri`` (a path, or a runs:/, models:/ or s3:// URI read
    from the store the command's --tracking-uri and --artifact-root name)."""
    from modelpack.resolution import resolve

    return resolve(args.uri, open_client(args))


def store_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Turn a database driver's error into a ``ModelpackError`` naming the store, password
    hidden, so ``main`` prints ``error: ...`` instead of a traceback."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "sqlite3"):
                raise
            from modelpack.errors import ModelpackError
            from modelpack.store import default_tracking_uri
            from modelpack.uris import redact

            uri = args.tracking_uri or default_tracking_uri()
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise ModelpackError(
                f"The tracking store at {redact(uri)} failed: "
                f"{redact(reason[0]) if reason else type(exc).__name__}"
            ) from None

    return wrapper


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[Any]], indent: str = "") -> str:
    """Rows (under ``headers`` when given), each column as wide as its widest cell;
    ``(none)`` when there are no rows."""
    cells = [["" if c is None else str(c) for c in r] for r in rows]
    if not cells:
        return f"{indent}(none)"
    if headers is not None:
        cells.insert(0, list(headers))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def pairs(mapping: Any, indent: str = "  ") -> str:
    """``key  value`` lines, sorted by key; ``(none)`` when empty."""
    return table(None, sorted((str(k), fmt(v)) for k, v in (mapping or {}).items()), indent)


def when(moment: dt.datetime | None) -> str:
    """UTC, to the second: the store keeps milliseconds, a table needs no more."""
    if moment is None:
        return "-"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(start: dt.datetime, end: dt.datetime | None) -> str:
    if end is None:
        return "-"
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
