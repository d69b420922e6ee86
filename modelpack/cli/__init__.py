"""The ``modelpack`` command: one module per command group, each with ``add_parsers``.

``main(argv)`` returns the exit code. Every failure prints one line, ``error: <message>``, and
exits 1 (2 for a command line argparse refuses, with the nearest command or option suggested);
``--debug`` (anywhere on the line, or ``MODELPACK_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from modelpack._version import __version__
from modelpack.errors import ModelpackError

__all__ = ["build_parser", "main", "run"]

DEBUG_FLAG = "--debug"


class Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a mistyped command, choice or option."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        if not hasattr(parsed, "_parser"):  # the innermost (sub)command's parser keeps it
            parsed._parser = self
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice[2]) or [
                c.strip() for c in choice[2].split(",")
            ]
            message = _suggest(f"invalid choice: {choice[1]!r}", choice[1], options)
            message += f" (choose from {', '.join(options)})"
        super().error(message)

    def unrecognized(self, extras: Sequence[str]) -> NoReturn:
        known = [s for action in self._actions for s in action.option_strings]
        first = next((e for e in extras if e.startswith("-")), extras[0])
        text = f"unrecognized arguments: {' '.join(extras)}"
        if first.startswith("-"):
            text = _suggest(text, first.split("=", 1)[0], known)
        self.error(text)


def _suggest(message: str, typed: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(typed, options, n=1, cutoff=0.6)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def build_parser() -> Parser:
    from modelpack.cli import db, gc, import_mlflow, import_model, models, package, runs, serve
    from modelpack.cli import predict as predict_cmd
    from modelpack.cli import server as server_cmd

    parser = Parser(
        prog="modelpack",
        description="Package, inspect and verify machine-learning models.",
    )
    parser.add_argument("--version", action="version", version=f"modelpack {__version__}")
    parser.add_argument(
        DEBUG_FLAG,
        action="store_true",
        help="print the traceback of an error (anywhere on the line)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    package.add_parsers(commands)
    runs.add_parsers(commands)
    models.add_parsers(commands)
    db.add_parsers(commands)
    gc.add_parsers(commands)
    predict_cmd.add_parsers(commands)
    serve.add_parsers(commands)
    server_cmd.add_parsers(commands)
    import_model.add_parsers(commands)
    import_mlflow.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("MODELPACK_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        getattr(args, "_parser", parser).unrecognized(extras)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # The reader went away (`modelpack predict ... -o - | head`): nothing more to say.
        # Point stdout at /dev/null so the interpreter's own flush at exit stays quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool a pipe cut short
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if debug:
            traceback.print_exc()
        print(f"error: {describe(exc)}", file=sys.stderr)
        if not debug and not isinstance(exc, ModelpackError):
            print("(run with --debug to see where it failed)", file=sys.stderr)
        return 1


def describe(exc: BaseException) -> str:
    """One line for a user: our own errors as written, anything else with its type."""
    if isinstance(exc, ModelpackError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
