"""``modelpack serve URI``: the REST server."""

from __future__ import annotations

import argparse
import errno
import socket
from typing import Any

from modelpack.cli.common import URI_HELP, add_store_options, open_client, store_errors
from modelpack.errors import InvalidArgument, MissingDependency

SERVE_MODULES = ("starlette", "uvicorn", "orjson", "prometheus_client")


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("serve", help="serve a model over REST (MLflow and Open Inference v2)")
    p.add_argument("uri", help=URI_HELP + "; models:/Name/Production follows the registry")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--flavor", help="serve another stored representation (e.g. onnx)")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-batch-delay-ms", type=float, default=2.0)
    p.add_argument("--max-queue", type=int, default=1024)
    p.add_argument("--request-timeout-s", type=float, default=60.0)
    p.add_argument("--max-body-bytes", default="16MiB", help="bytes, or with KiB/MiB suffix")
    p.add_argument("--poll-interval-s", type=float, default=10.0)
    p.add_argument(
        "--read-timeout-s",
        type=float,
        default=30.0,
        help="a request's head, and its body, must each arrive within this (0: no limit)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        help="connections open at once per worker; more are answered 503",
    )
    p.add_argument(
        "--allowed-hosts",
        help="comma-separated Host names requests may carry (name, name:port, *.domain, *); "
        "default: 127.0.0.1, localhost, ::1 when bound to loopback, any otherwise",
    )
    p.add_argument("--name", help="the model's name on /v2 and in metrics")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    add_store_options(p, json=False)
    p.set_defaults(handler=cmd_serve)


def _require_serving() -> None:
    import importlib

    missing = []
    for module in SERVE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module.replace("_", "-"))
    if missing:
        raise MissingDependency(
            f"modelpack serve needs {', '.join(missing)}, which is not installed. Install the "
            f"serving extras with: pip install 'modelpack[serve]'",
            "serve",
            "serve",
        )


def _check_model(args: argparse.Namespace) -> None:
    """Fail before the server starts if the URI names nothing servable: an unknown model,
    stage, alias or run, a folder that is no package, or a flavor it does not store."""
    from modelpack.manifest import read_manifest
    from modelpack.package import stored_flavor
    from modelpack.resolution import resolve

    # NotFound names what the registry or the run has.
    stored_flavor(read_manifest(resolve(args.uri, open_client(args))), args.flavor)


def _check_port(host: str, number: int) -> None:
    """Fail now, with a sentence, if the address cannot be listened on (uvicorn would say so
    only after the model has loaded)."""
    try:
        infos = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidArgument(f"Cannot listen on {host!r}: {exc.strerror}. Check --host.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidArgument(
                    f"Port {number} on {host} is already in use by another process. Stop it, "
                    f"or choose another port with --port."
                ) from None
            raise InvalidArgument(
                f"Cannot listen on {host}:{number}: {exc.strerror}. Check --host and --port."
            ) from None


@store_errors
def cmd_serve(args: argparse.Namespace) -> int:
    _require_serving()
    _check_model(args)
    _check_port(args.host, args.port)
    from modelpack.serving import serve

    serve(
        args.uri,
        host=args.host,
        port=args.port,
        workers=args.workers,
        flavor=args.flavor,
        max_batch_size=args.max_batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout_s,
        max_body_bytes=args.max_body_bytes,
        poll_interval_s=args.poll_interval_s,
        read_timeout_s=args.read_timeout_s,
        max_connections=args.max_connections,
        allowed_hosts=args.allowed_hosts,
        tracking_uri=args.tracking_uri,
        artifact_root=args.artifact_root,
        name=args.name,
        log_level=args.log_level,
    )
    return 0
