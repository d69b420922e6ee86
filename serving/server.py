"""Running the app under uvicorn: one process, or several workers sharing the port."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import asdict, replace
from typing import Any

from modelpack.serving.config import ServeOptions

_ENV = "MODELPACK_SERVE_CONFIG"
log = logging.getLogger("modelpack.serving")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_default_hosts(opts: ServeOptions) -> ServeOptions:
    """``opts`` with the Host allowlist decided when none was given: the loopback names when
    the server binds a loopback address (so a DNS-rebinding page cannot drive it), any Host
    when it binds another (it is meant to be reached by names it cannot know)."""
    if opts.allowed_hosts is not None:
        return opts
    from modelpack.hosts import LOOPBACK_NAMES

    return replace(opts, allowed_hosts=LOOPBACK_NAMES if _loopback(opts.host) else ("*",))


def _configure_logging(level: str) -> None:
    """Show the server's own messages (loads, swaps, failed reloads) beside uvicorn's."""
    logger = logging.getLogger("modelpack")
    logger.setLevel("DEBUG" if level == "trace" else level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)


def worker_app() -> Any:
    """App factory for worker processes (uvicorn imports it by name)."""
    from modelpack.serving.app import create_app

    config = json.loads(os.environ[_ENV])
    _configure_logging(config["log_level"])
    uri, metrics_dir = config.pop("uri"), config.pop("metrics_dir")
    return create_app(uri, _options=ServeOptions(**config), _metrics_dir=metrics_dir)


def serve(uri: str, **options: Any) -> None:
    """Serve ``uri`` until SIGTERM or Ctrl-C; in-flight requests finish first.

    Example:
        >>> modelpack.serving.serve("models:/Churn/Production", port=8080)
    """
    import uvicorn

    opts = with_default_hosts(ServeOptions.build(**options))
    _configure_logging(opts.log_level)
    if not _loopback(opts.host):
        print(
            f"warning: serving on {opts.host}, which other machines can reach. This server "
            f"has no authentication: put it behind a gateway that has.",
            file=sys.stderr,
        )
    common: dict[str, Any] = {
        "host": opts.host,
        "port": opts.port,
        "log_level": opts.log_level,
        "timeout_graceful_shutdown": max(opts.request_timeout_s, 1),
        "access_log": False,
        "lifespan": "on",
        # h11 with read deadlines, an early request-line check and a connection cap; by name,
        # so that worker processes can import it.
        "http": "modelpack.serving.protocol:Protocol",
    }
    if opts.workers > 1:
        # The workers' metrics meet in a directory of this server's own, so that /metrics adds
        # up over them whichever one answers (mkdtemp makes it 0700).
        metrics_dir = tempfile.mkdtemp(prefix="modelpack-metrics-")
        os.environ[_ENV] = json.dumps({"uri": uri, "metrics_dir": metrics_dir, **asdict(opts)})
        try:
            uvicorn.run(
                "modelpack.serving.server:worker_app", factory=True, workers=opts.workers, **common
            )
        finally:
            os.environ.pop(_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    from modelpack.serving.app import create_app

    app = create_app(uri, _options=opts)
    if threading.current_thread() is not threading.main_thread():
        uvicorn.run(app, **common)
        return
    # uvicorn re-raises SIGTERM once it has drained, which would end the process with -15
    # (143); after a graceful shutdown the exit is a clean one.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(app, **common)
    finally:
        signal.signal(signal.SIGTERM, previous)
