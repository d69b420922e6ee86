"""Running the server under uvicorn: one process, or ``--workers N`` processes sharing the
port (each builds its app from the options the parent passes in ``MODELPACK_SERVER_OPTIONS``,
through the factory ``app_from_environment``).

The parent opens the store first, once (migrating it and creating experiment "Default"), so
that workers starting together never race to migrate it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

import uvicorn

from modelpack.errors import InvalidArgument
from modelpack.server.config import ServerOptions, is_loopback, wildcard, with_default_hosts

__all__ = [
    "ENV",
    "app_from_environment",
    "check_exposure",
    "is_loopback",
    "ready_line",
    "resolved",
    "Server",
    "serve",
    "with_default_hosts",
]

ENV = "MODELPACK_SERVER_OPTIONS"
HEAD_LIMIT = 16 * 1024  # bytes of a request head (h11's buffer before a head is refused)
log = logging.getLogger("modelpack.server")


def check_exposure(options: ServerOptions) -> None:
    """Refuse to serve other machines without authentication, unless told to."""
    if is_loopback(options.host) or options.auth != "none" or options.insecure_no_auth:
        return
    raise InvalidArgument(
        f"Refusing to listen on {options.host} without authentication: anyone who can reach "
        f"this machine could read and change every run and model. Add --auth token (create "
        f"tokens with 'modelpack server token create'), or --insecure-no-auth if a gateway in "
        f"front of the server authenticates."
    )


def resolved(options: ServerOptions) -> ServerOptions:
    """``options`` with the store and the artifact root made absolute (the defaults are
    relative to the working directory), so that every worker opens the same ones."""
    from modelpack.client import Client

    client = Client(options.backend_store_uri, options.artifact_root)
    return dataclasses.replace(
        options, backend_store_uri=client.tracking_uri, artifact_root=client.artifact_root
    )


def prepare_store(options: ServerOptions) -> None:
    """Open the store once (migrations run here, under the store's lock) and make sure
    experiment "Default" exists; then let go of the connections before workers start."""
    from modelpack.server.state import ServerState
    from modelpack.store import engines

    state = ServerState(options)
    _ = state.default_experiment_id
    engines.dispose(options.backend_store_uri)


def to_environment(options: ServerOptions) -> str:
    return json.dumps(dataclasses.asdict(options))


def from_environment(text: str) -> ServerOptions:
    data = json.loads(text)
    for key in ("allowed_hosts", "cors_origins"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    return ServerOptions(**data)


def app_from_environment() -> Any:
    """The app of a worker process (uvicorn calls it by name, ``factory=True``)."""
    from modelpack.server.app import create_app

    text = os.environ.get(ENV)
    if not text:
        raise InvalidArgument(
            f"{ENV} is not set: this factory is for the workers 'modelpack server --workers N' "
            f"starts. To run the server, use 'modelpack server'."
        )
    options = from_environment(text)
    configure_logging(options.log_level)
    return create_app(options)


def configure_logging(level: str) -> None:
    """Show the server's own messages beside uvicorn's."""
    logger = logging.getLogger("modelpack")
    logger.setLevel("DEBUG" if level == "trace" else level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)


def ready_line(options: ServerOptions) -> str:
    host = options.host
    if wildcard(host):
        host = socket.gethostname() or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{options.port}"
    return (
        f"modelpack server ready at {url} (store: {_redact(options.backend_store_uri)}); "
        f"point clients at it with MODELPACK_TRACKING_URI={url} or MLFLOW_TRACKING_URI={url}"
    )


def _redact(uri: str | None) -> str:
    from modelpack.uris import redact

    return redact(uri or "")


def serve(options: ServerOptions) -> None:
    """Serve until SIGTERM or Ctrl-C; in-flight requests finish first."""
    check_exposure(options)
    options = resolved(with_default_hosts(options))
    configure_logging(options.log_level)
    prepare_store(options)
    common: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "log_level": options.log_level,
        "access_log": options.log_level in ("debug", "trace"),  # each request, when asked
        "lifespan": "on",
        "http": "h11",
        "h11_max_incomplete_event_size": HEAD_LIMIT,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    if options.workers > 1:
        from uvicorn.supervisors import Multiprocess

        os.environ[ENV] = to_environment(options)
        config = uvicorn.Config(
            "modelpack.server.main:app_from_environment",
            factory=True,
            workers=options.workers,
            **common,
        )
        try:
            sock = config.bind_socket()  # the workers share it
            sock.listen(config.backlog)  # from now on, connections wait for a worker
            print(ready_line(options), flush=True)
            Multiprocess(config, sockets=[sock]).run()
        finally:
            os.environ.pop(ENV, None)
        return
    from modelpack.server.app import create_app

    config = uvicorn.Config(create_app(options), **common)
    server = Server(config, ready=ready_line(options))
    if threading.current_thread() is not threading.main_thread():
        server.run()
    else:
        # uvicorn re-raises SIGTERM once it has drained, which would end the process with -15;
        # after a graceful shutdown the exit is a clean one.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            server.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
    if not server.started:
        sys.exit(1)


class Server(uvicorn.Server):
    """uvicorn's server, printing one line once it listens."""

    def __init__(self, config: uvicorn.Config, ready: str | None = None) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.ready:
            print(self.ready, flush=True)
