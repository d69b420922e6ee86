"""Keeping a framework's console output off the console while a flavor tries a format.

When ``torch.export`` gives up on a module it prints the partial graph to ``sys.stderr`` and
logs through handlers of its own (``torch`` loggers do not propagate to the root): ~40 lines
for a module the flavor then saves another way, and says so in one line. ``silenced`` drops,
for the calling thread only, the framework's log records, its writes to ``sys.stderr`` and
its warnings; other threads log and print as before.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

# sys.stderr is swapped by one ``silenced`` at a time, or two could not both be undone.
_SWAP = threading.RLock()


class _DropThread(logging.Filter):
    """Drops the records one thread makes through ``prefix`` and its child loggers."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix, self.dotted = prefix, prefix + "."
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == self.prefix or record.name.startswith(self.dotted)
        return not (ours and record.thread == self.thread)


class _MutedForThread:
    """A stream that discards one thread's writes and passes on every other thread's."""

    def __init__(self, stream: Any, thread: int) -> None:
        self._stream, self._thread = stream, thread

    def write(self, text: str) -> int:
        if threading.get_ident() == self._thread:
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def silenced(logger: str) -> Iterator[None]:
    """In this thread: no records from ``logger`` or its children, no stderr, no warnings.

    Records are dropped at every handler they could reach: those of ``logger`` and its
    children, the root's, and the last-resort one.
    """
    drop = _DropThread(logger)
    with _SWAP:
        loggers = [logging.getLogger()] + [
            lg
            for name, lg in list(logging.Logger.manager.loggerDict.items())
            if isinstance(lg, logging.Logger) and (name == logger or name.startswith(drop.dotted))
        ]
        handlers = {h for lg in loggers for h in lg.handlers}
        if logging.lastResort is not None:
            handlers.add(logging.lastResort)
        for handler in handlers:
            handler.addFilter(drop)
        stderr = sys.stderr
        muted = sys.stderr = _MutedForThread(stderr, drop.thread)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            if sys.stderr is muted:
                sys.stderr = stderr
            for handler in handlers:
                handler.removeFilter(drop)
