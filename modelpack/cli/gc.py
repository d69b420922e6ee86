"""``modelpack gc``: remove what killed saves, overwrites, predictions and registrations left."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelpack.cli.common import add_store_options, open_client, print_json, store_errors
from modelpack.integrity import MANIFEST_NAME


def add_parsers(commands: Any) -> None:
    from modelpack.gc import DEFAULT_GRACE_S

    p = commands.add_parser(
        "gc",
        help="remove leftovers of killed saves, predictions and registrations",
        description=(
            "Remove the staging folders of killed saves, packages an interrupted overwrite "
            "left aside (put back where the new one never arrived), partial outputs of killed "
            "`modelpack predict` runs, and registry folders no model version refers to. "
            "Leftovers of a process that is still running are never touched; those whose "
            "owner cannot be known (another host, an older modelpack) are removed once "
            "untouched for the grace period. Without PATH, cleans the store's registry."
        ),
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="folder packages or outputs are saved in (a package's path: the folder it is in)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        metavar="SECONDS",
        help=f"remove leftovers of unknown owner once this old (default {DEFAULT_GRACE_S:g})",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be freed; change nothing"
    )
    add_store_options(p)
    p.set_defaults(handler=cmd_gc)


def _folder(path: str) -> Path:
    from modelpack.errors import NotFound

    p = Path(path)
    if not p.exists() or (p / MANIFEST_NAME).is_file():
        p = p.parent  # a package (or where one should be): its leftovers lie beside it
    if not p.is_dir():
        raise NotFound(f"{path!r} is not a folder; give the folder packages are saved in.")
    return p


@store_errors
def cmd_gc(args: argparse.Namespace) -> int:
    from modelpack import gc
    from modelpack.errors import InvalidArgument

    if args.grace < 0:
        raise InvalidArgument(f"--grace must be 0 or more seconds, got {args.grace:g}.")
    found: list[gc.Leftover] = []
    for folder in dict.fromkeys(_folder(p) for p in args.paths):
        found += gc.scan(folder, grace=args.grace, measure=True)
    if not args.paths or args.tracking_uri or args.artifact_root:
        found += gc.registry_leftovers(open_client(args), args.grace, measure=True)
    done = found if args.dry_run else [item for item in found if gc.remove(item)]
    freed = sum(item.size for item in done if item.action == "delete")
    if args.json:
        print_json(
            {
                "dry_run": args.dry_run,
                "leftovers": [item.to_dict() for item in done],
                "freed_bytes": freed,
            }
        )
        return 0
    verb = "would free" if args.dry_run else "freed"
    for item in done:
        if item.action == "restore":
            again = "would restore" if args.dry_run else "restored"
            print(f"{again} {item.target} from {item.path} ({item.reason})")
        else:
            print(f"{verb} {item.path}: {item.size} bytes ({item.kind}: {item.reason})")
    removed = [item for item in done if item.action == "delete"]
    print(f"{verb} {len(removed)} leftover{'s' if len(removed) != 1 else ''}, {freed} bytes")
    return 0
