"""``modelpack serve URI``: the REST server."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("serve", help="serve a model over REST (MLflow and Open Inference v2)")
    p.add_argument("uri", help="package path or URI (models:/Name/Production follows the registry)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--flavor", help="serve another stored representation (e.g. onnx)")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-batch-delay-ms", type=float, default=2.0)
    p.add_argument("--max-queue", type=int, default=1024)
    p.add_argument("--request-timeout-s", type=float, default=60.0)
    p.add_argument("--max-body-bytes", default="16MiB", help="bytes, or with KiB/MiB suffix")
    p.add_argument("--poll-interval-s", type=float, default=10.0)
    p.add_argument("--tracking-uri")
    p.add_argument("--name", help="the model's name on /v2 and in metrics")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
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
        tracking_uri=args.tracking_uri,
        name=args.name,
        log_level=args.log_level,
    )
    return 0
