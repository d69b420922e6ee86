"""``silenced``: one thread's framework logs, stderr writes and warnings dropped; others' kept."""

from __future__ import annotations

import logging
import sys
import threading
import warnings

from modelpack.flavors._quiet import silenced


def test_silenced_mutes_only_the_calling_thread(capfd, caplog):
    framework = logging.getLogger("framework")
    handler = logging.StreamHandler(sys.stderr)  # like torch's: its own, no propagation
    framework.addHandler(handler)
    framework.propagate = False
    child = logging.getLogger("framework.export")

    def other_thread():
        print("other thread prints", file=sys.stderr)
        child.warning("other thread logs")

    capfd_stderr = sys.stderr
    try:
        with silenced("framework"):
            print("graph dump", file=sys.stderr)
            child.warning("unable to find user code")
            warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
            logging.getLogger("mine").warning("not the framework's")
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
        child.warning("after")
    finally:
        framework.removeHandler(handler)
        framework.propagate = True
    assert capfd.readouterr().err.splitlines() == [
        "other thread prints",
        "other thread logs",
        "after",
    ]
    assert caplog.messages == ["not the framework's"]  # other loggers are left alone
    assert handler.filters == [] and sys.stderr is capfd_stderr  # all undone
