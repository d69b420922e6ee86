"""The ``modelpack`` command: one module per command group, each with ``add_parser``.

``main(argv)`` returns the exit code; errors print ``error: <message>`` and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modelpack._version import __version__
from modelpack.errors import ModelpackError


def build_parser() -> argparse.ArgumentParser:
    from modelpack.cli import db, models, package, runs, serve
    from modelpack.cli import predict as predict_cmd

    parser = argparse.ArgumentParser(
        prog="modelpack",
        description="Package, inspect and verify machine-learning models.",
    )
    parser.add_argument("--version", action="version", version=f"modelpack {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    package.add_parsers(commands)
    runs.add_parsers(commands)
    models.add_parsers(commands)
    db.add_parsers(commands)
    predict_cmd.add_parsers(commands)
    serve.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except ModelpackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
