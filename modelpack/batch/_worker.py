"""One worker process of ``predict_file(..., workers=N)``: ``python -m modelpack.batch._worker``.

It reads the package's folder, flavor and prediction column from its stdin, loads the package
once and answers whether it could; then it scores each pickled batch it reads, writing a
pickled ``(ok, columns or error)`` to its stdout per batch, in order. The parent's side, which
starts it, is ``modelpack.batch._workers``; nothing imports this module.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Any

from modelpack.batch._scorer import Scorer
from modelpack.errors import ModelpackError
from modelpack.package import load


def _describe(exc: Exception) -> tuple[str, str, bool]:
    return type(exc).__name__, str(exc), isinstance(exc, ModelpackError)


def main() -> None:
    # The protocol owns the real stdout; a model that prints writes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    source = sys.stdin.buffer
    root, flavor, prediction_column = pickle.load(source)
    try:
        scorer = Scorer(load(root, flavor=flavor), prediction_column)
        ready: tuple[bool, Any] = (True, None)
    except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it
        ready = (False, _describe(exc))
    pickle.dump(ready, out)
    out.flush()
    if not ready[0]:
        return
    while True:
        try:
            x = pickle.load(source)
        except EOFError:
            return
        try:
            result: tuple[bool, Any] = (True, scorer(x))
        except Exception as exc:  # noqa: BLE001 - told to the parent with the batch's rows
            result = (False, _describe(exc))
        pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    main()
