"""``modelpack import-model SRC DEST``: a modelpack package from an MLflow model.

SRC is an MLflow model directory, or a ``runs:/`` or ``s3://`` URI of one; DEST a folder (the
package is written there, verified) or ``models:/<name>`` (the package is registered as that
model's next version).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelpack.cli.common import add_store_options, open_client, print_json, store_errors


def add_parsers(commands: Any) -> None:
    cmd = commands.add_parser(
        "import-model",
        help="write (or register) a modelpack package made from an MLflow model",
        description="Convert an MLflow model (a directory with an MLmodel file, or a runs:/ or "
        "s3:// URI of one) into a verified modelpack package: its files as they are, a "
        "manifest with the sha256 of each, the signature, input example and pinned "
        "requirements carried over.",
    )
    cmd.add_argument("src", metavar="SRC", help="MLflow model directory, runs:/... or s3://...")
    cmd.add_argument(
        "dest", metavar="DEST", help="folder to write the package to, or models:/<name>"
    )
    cmd.add_argument(
        "--overwrite", action="store_true", help="replace a package already at DEST (a folder)"
    )
    add_store_options(cmd)
    cmd.set_defaults(handler=cmd_import_model)


def _summary(manifest: Any) -> dict[str, Any]:
    origin = (manifest.metadata or {}).get("mlflow") or {}
    return {
        "flavor": manifest.flavor,
        "mlflow_flavor": origin.get("flavor"),
        "files": len(manifest.files) + 1,
        "model_id": manifest.model_id,
        "signature": manifest.signature is not None,
        "input_example": manifest.input_example,
    }


def _describe(out: dict[str, Any]) -> str:
    flavor = out["flavor"] + (f" (MLflow {out['mlflow_flavor']})" if out["mlflow_flavor"] else "")
    lines = [
        f"flavor:     {flavor}",
        f"files:      {out['files']} (sha256 of each in modelpack.yaml, verified)",
        f"model_id:   {out['model_id']}",
        f"signature:  {'yes' if out['signature'] else 'none'}",
        f"example:    {out['input_example'] or 'none'}",
    ]
    return "\n".join(lines)


@store_errors
def cmd_import_model(args: argparse.Namespace) -> int:
    from modelpack import mlflow_models, uris
    from modelpack.manifest import MANIFEST_NAME, read_manifest
    from modelpack.resolution import resolve

    name = uris.registered_model(args.dest)
    if name is not None:
        if args.overwrite:
            from modelpack.errors import InvalidArgument

            raise InvalidArgument(
                "--overwrite replaces a folder; a registered model gets a new version instead."
            )
        client = open_client(args, create=True)
        version = client.register_model(args.src, name)
        out = _summary(read_manifest(resolve(version, client)))
        out.update({"registered_model": name, "version": version.version})
        if args.json:
            print_json(out)
        else:
            print(f"registered {name} version {version.version} from {args.src}")
            print(_describe(out))
        return 0
    parsed = uris.parse(args.src)
    if isinstance(parsed, Path) and not (parsed / MANIFEST_NAME).is_file():
        # convert says what is wrong with a folder that is no MLflow model either.
        manifest = mlflow_models.convert(parsed, args.dest, overwrite=args.overwrite)
    else:
        # A runs:/ or s3:// URI (or a folder that is a package already): resolution converts
        # an MLflow model into the cache, verified; that package is what DEST receives.
        root = resolve(args.src, open_client(args))
        manifest = mlflow_models.copy_package(root, args.dest, overwrite=args.overwrite)
    out = {"path": str(args.dest), **_summary(manifest)}
    if args.json:
        print_json(out)
    else:
        print(f"wrote {args.dest} from {args.src}")
        print(_describe(out))
    return 0
