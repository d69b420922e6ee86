"""``modelpack predict``: score a Parquet, CSV or JSON-lines file with a package, in batches."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelpack.cli.common import URI_HELP, add_store_options, resolve_package, store_errors


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "predict",
        help="score a file (Parquet, CSV, JSON lines) with a package, in batches",
        description=(
            "Stream INPUT through the package's predict with bounded memory and write the "
            "predictions to OUTPUT, atomically. Use - for stdin or stdout (CSV or JSON lines)."
        ),
    )
    p.add_argument("uri", help=URI_HELP)
    p.add_argument("-i", "--input", required=True, help="input file, or - for stdin")
    p.add_argument("-o", "--output", required=True, help="output file, or - for stdout")
    p.add_argument("--input-format", choices=("csv", "parquet", "jsonl"), help="default: from -i")
    p.add_argument("--output-format", choices=("csv", "parquet", "jsonl"), help="default: from -o")
    p.add_argument("--batch-size", type=int, default=50_000, help="rows per batch (default 50000)")
    p.add_argument(
        "--max-line-bytes",
        type=int,
        default=16 * 1024**2,
        metavar="N",
        help="refuse a CSV or JSON line longer than N bytes (default 16777216, 16 MiB)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes scoring batches in parallel")
    p.add_argument(
        "--keep-columns",
        default="",
        metavar="COLS",
        help="comma-separated input columns to copy to the output, e.g. id,ts",
    )
    p.add_argument(
        "--prediction-column",
        metavar="NAME",
        help="name of the prediction column (default: the signature's output name or 'prediction')",
    )
    p.add_argument("--flavor", help="run another flavor stored in the package, e.g. onnx")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_store_options(p, json=False)
    p.set_defaults(handler=cmd_predict)


@store_errors
def cmd_predict(args: argparse.Namespace) -> int:
    from modelpack.batch import predict_file

    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()]
    result = predict_file(
        resolve_package(args),
        args.input,
        args.output,
        input_format=args.input_format,
        output_format=args.output_format,
        batch_size=args.batch_size,
        max_line_bytes=args.max_line_bytes,
        workers=args.workers,
        keep_columns=keep,
        prediction_column=args.prediction_column,
        flavor=args.flavor,
        overwrite=args.overwrite,
    )
    print(result.summary(), file=sys.stderr)
    return 0
