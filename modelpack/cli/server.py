"""``modelpack server``: the team's tracking and registry server (MLflow's REST API), and,
as subcommands, its administration (``modelpack server token ...``, ``... permission ...``,
from ``modelpack.cli.server_admin``).

MLflow's spellings are accepted, so that a team's start script keeps working:
``--default-artifact-root`` and ``--artifacts-destination`` (both are the artifact root here:
the server stores artifacts where it proxies them from), ``--cors-allowed-origins``, ``-p``
and ``-w``. (MLflow's ``-h`` for the host is not: here it is help, as everywhere else.)
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from modelpack.cli.common import positive_int, store_errors, usage
from modelpack.cli.serve import _check_port, port
from modelpack.errors import InvalidArgument, MissingDependency

__all__ = ["add_parsers", "cmd_server"]

SERVER_MODULES = ("starlette", "uvicorn", "orjson", "sqlalchemy")
LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "server",
        help="run the tracking and registry server (MLflow's REST API) for a team",
        description="Run the tracking and registry server: MLflow's REST API over the modelpack "
        "store, so modelpack and unmodified mlflow clients can share one store. Point them at "
        "it with MODELPACK_TRACKING_URI or MLFLOW_TRACKING_URI=http://HOST:PORT.",
    )
    store = p.add_argument_group("store")
    store.add_argument(
        "--backend-store-uri",
        "--tracking-uri",
        dest="backend_store_uri",
        metavar="URI",
        help="sqlite:///path or postgresql://user@host/db "
        "(default: $MODELPACK_TRACKING_URI, else ./modelpack-store/modelpack.db)",
    )
    store.add_argument(
        "--artifact-root",
        dest="artifact_root",
        metavar="URI",
        help="directory or s3://bucket/prefix for artifacts and packages "
        "(default: $MODELPACK_ARTIFACT_ROOT, else beside the SQLite file)",
    )
    for alias in ("--default-artifact-root", "--artifacts-destination"):
        store.add_argument(
            alias,
            dest=alias[2:].replace("-", "_"),
            metavar="URI",
            help="MLflow's spelling of --artifact-root",
        )
    store.add_argument(
        "--serve-artifacts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="proxy artifacts through the server, so clients need no artifact-store "
        "credentials (default: on)",
    )
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    net.add_argument("-p", "--port", type=port, default=5000, help="(default: %(default)s)")
    net.add_argument(
        "-w", "--workers", type=positive_int, default=1, help="processes (default: %(default)s)"
    )
    net.add_argument(
        "--allowed-hosts",
        metavar="H,...",
        help="Host names requests may carry (name, name:port, *.domain, *); default: the "
        "loopback names when bound to loopback, else the bound name, this machine's names, "
        "the loopback names and IP addresses",
    )
    net.add_argument(
        "--cors-origins",
        "--cors-allowed-origins",
        dest="cors_origins",
        metavar="O,...",
        help="exact origins (https://ui.example) whose pages may call the API; default: none",
    )
    net.add_argument(
        "--max-body-bytes",
        default="16MiB",
        help="largest JSON request body, bytes or with KiB/MiB suffix (default: %(default)s)",
    )
    net.add_argument(
        "--max-artifact-bytes",
        default="64GiB",
        help="largest artifact upload (default: %(default)s)",
    )
    auth = p.add_argument_group("authentication")
    auth.add_argument(
        "--auth",
        choices=["none", "token"],
        default="none",
        help="token: every call needs a bearer token (see 'modelpack server token create')",
    )
    auth.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="listen on a non-loopback address without authentication (only behind a gateway "
        "that authenticates)",
    )
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    p.set_defaults(handler=cmd_server)
    subcommands = p.add_subparsers(
        dest="server_command",
        required=False,
        metavar="COMMAND",
        help="administer the server (token, permission); without one, the server runs",
    )
    admin = _admin()
    if admin is not None:
        admin.add_parsers(subcommands)


def _admin() -> Any:
    """``modelpack.cli.server_admin`` when it is there (token and permission commands)."""
    try:
        return importlib.import_module("modelpack.cli.server_admin")
    except ModuleNotFoundError as exc:
        if exc.name != "modelpack.cli.server_admin":
            raise
        return None


def _require_server() -> None:
    missing = []
    for module in SERVER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingDependency(
            f"modelpack server needs {', '.join(missing)}, which is not installed. Install it "
            f"with: pip install 'modelpack[server]'",
            "server",
            "serve",
        )


def artifact_root(args: argparse.Namespace) -> str | None:
    """The one artifact root of --artifact-root and MLflow's two spellings of it."""
    given = {
        flag: value
        for flag, value in (
            ("--artifact-root", args.artifact_root),
            ("--default-artifact-root", args.default_artifact_root),
            ("--artifacts-destination", args.artifacts_destination),
        )
        if value
    }
    if len(set(given.values())) > 1:
        raise InvalidArgument(
            f"{' and '.join(given)} name different places ({', '.join(given.values())}); "
            f"modelpack keeps artifacts in one root, which the server proxies. Give one of them."
        )
    return next(iter(given.values()), None)


def options_of(args: argparse.Namespace) -> Any:
    """The ``ServerOptions`` the command line names (validated)."""
    from modelpack.server.config import ServerOptions

    return ServerOptions.build(
        backend_store_uri=args.backend_store_uri,
        artifact_root=artifact_root(args),
        host=args.host,
        port=args.port,
        workers=args.workers,
        serve_artifacts=args.serve_artifacts,
        auth=args.auth,
        insecure_no_auth=args.insecure_no_auth,
        allowed_hosts=args.allowed_hosts,
        cors_origins=args.cors_origins,
        max_body_bytes=args.max_body_bytes,
        max_artifact_bytes=args.max_artifact_bytes,
        log_level=args.log_level,
    )


def cmd_server(args: argparse.Namespace) -> int:
    if getattr(args, "server_command", None):  # a group of server_admin run without a verb
        return usage(args._parser)
    _require_server()
    args.tracking_uri = args.backend_store_uri  # what store_errors names in its message
    return store_errors(_serve)(args)


def _serve(args: argparse.Namespace) -> int:
    from modelpack.server.main import check_exposure, serve

    options = options_of(args)
    check_exposure(options)  # before anything is opened
    _check_port(options.host, options.port)
    serve(options)
    return 0
