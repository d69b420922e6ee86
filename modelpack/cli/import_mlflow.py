"""``modelpack import-mlflow --from URI [--to URI]``: copy an MLflow store into a modelpack one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelpack.cli.common import print_json, store_errors


def add_parsers(commands: Any) -> None:
    cmd = commands.add_parser(
        "import-mlflow",
        help="copy an MLflow tracking store and registry into a modelpack store",
        description="Copy experiments, runs (params, tags, the full metric history, artifacts), "
        "registered models, versions (converted to packages), stages, aliases, tags and "
        "descriptions from an MLflow store. Run ids and version numbers are kept. Running it "
        "again copies only what is missing, so a killed import is finished by the next one.",
    )
    cmd.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URI",
        help="the MLflow store: ./mlruns (or file:///...), sqlite:///mlflow.db, "
        "postgresql://user@host/db, or a tracking server http://host:port",
    )
    cmd.add_argument(
        "--to",
        dest="tracking_uri",
        metavar="URI",
        help="the modelpack store: sqlite:///path or postgresql://user@host/db "
        "(default: $MODELPACK_TRACKING_URI, else ./modelpack-store/modelpack.db)",
    )
    cmd.add_argument(
        "--artifact-root",
        metavar="ROOT",
        help="directory or s3://bucket/prefix for the copied artifacts and packages "
        "(default: $MODELPACK_ARTIFACT_ROOT, else beside the SQLite file)",
    )
    cmd.add_argument(
        "--artifacts-destination",
        metavar="URI",
        help="the MLflow server's --artifacts-destination, to read mlflow-artifacts:/ URIs "
        "from its database or folder without the server",
    )
    bar = cmd.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show a bar"
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show one")
    cmd.add_argument("--json", action="store_true", help="print the counts as JSON for scripts")
    cmd.set_defaults(handler=cmd_import)


@store_errors
def cmd_import(args: argparse.Namespace) -> int:
    from modelpack.client import Client
    from modelpack.mlflow_store import import_mlflow

    client = Client(args.tracking_uri, args.artifact_root, create=True)
    report = import_mlflow(
        args.source,
        client,
        artifacts_destination=args.artifacts_destination,
        progress=args.progress,
        stream=sys.stderr,
    )
    if args.json:
        print_json(
            {
                "source": report.source,
                "counts": {
                    kind: {
                        "source": c.source,
                        "copied": c.copied,
                        "already_there": c.existing,
                        "failed": c.failed,
                    }
                    for kind, c in report.counts.items()
                },
                "failures": [
                    {"kind": kind, "what": what, "reason": why}
                    for kind, what, why in report.failures
                ],
                "metric_points": report.metric_points,
                "artifact_files": report.artifact_files,
            }
        )
    else:
        print(f"From {report.source} into {client!r}:")
        print(report.table())
    return 1 if report.failures else 0
