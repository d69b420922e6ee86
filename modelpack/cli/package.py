"""``modelpack info`` and ``modelpack verify``: look inside a package."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelpack.cli.common import URI_HELP, add_store_options, resolve_package, store_errors
from modelpack.errors import IntegrityError


def add_parsers(commands: Any) -> None:
    info = commands.add_parser("info", help="describe a model package")
    info.add_argument("uri", help=URI_HELP)
    add_store_options(info)
    info.set_defaults(handler=cmd_info)
    verify = commands.add_parser("verify", help="check every file's sha256 against the manifest")
    verify.add_argument("uri", help=URI_HELP)
    add_store_options(verify, json=False)
    verify.set_defaults(handler=cmd_verify)


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _schema_rows(schema: Any) -> list[tuple[str, str, str]]:
    if schema is None:
        return []
    if schema.kind == "columns":
        return [(c.name, c.type, "required" if c.required else "optional") for c in schema.columns]
    return [(t.name or "(tensor)", t.dtype, str(list(t.shape))) for t in schema.tensors]


def _table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> str:
    if not rows:
        return f"{indent}(none)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


@store_errors
def cmd_info(args: argparse.Namespace) -> int:
    from modelpack.integrity import verify_files
    from modelpack.manifest import read_manifest

    root = resolve_package(args)
    manifest = read_manifest(root)
    try:
        verify_files(root, manifest.files)
        verified, problems = True, []
    except IntegrityError as exc:
        verified, problems = False, exc.problems
    req_path = root / manifest.environment.get("requirements", "requirements.txt")
    reqs = req_path.read_text().split() if req_path.is_file() else []
    sig = manifest.signature
    if args.json:
        out = {
            "path": str(root),
            "manifest": manifest.to_dict(),
            "requirements": reqs,
            "size_bytes": _size(root),
            "verified": verified,
            "problems": [{"file": f, "problem": p} for f, p in problems],
        }
        print(json.dumps(out, indent=2, default=str))
        return 0 if verified else 1
    lines = [
        f"package:     {root}",
        f"model_id:    {manifest.model_id}",
        f"created_at:  {manifest.created_at.isoformat()}",
        f"flavor:      {manifest.flavor}"
        + (
            f" (also: {', '.join(n for n in manifest.flavors if n != manifest.flavor)})"
            if len(manifest.flavors) > 1
            else ""
        ),
        f"python:      {manifest.environment.get('python', 'unknown')}",
        f"size:        {_human(_size(root))} in {len(manifest.files) + 1} files",
        "files:       "
        + (
            "verified (sha256)"
            if verified
            else f"FAILED: {', '.join(f'{f} ({p})' for f, p in problems)}"
        ),
        "inputs:" + (f" ({sig.inputs.kind})" if sig and sig.inputs else ""),
        _table(_schema_rows(sig.inputs if sig else None)),
        "outputs:" + (f" ({sig.outputs.kind})" if sig and sig.outputs else ""),
        _table(_schema_rows(sig.outputs if sig else None)),
        "params:",
        _table([(p.name, p.type, f"default {p.default!r}") for p in (sig.params if sig else ())]),
        "requirements:",
        _table([(r,) for r in reqs]),
    ]
    if manifest.metadata:
        lines += ["metadata:", _table([(str(k), str(v)) for k, v in manifest.metadata.items()])]
    print("\n".join(lines))
    return 0 if verified else 1


@store_errors
def cmd_verify(args: argparse.Namespace) -> int:
    from modelpack.package import verify

    try:
        manifest = verify(resolve_package(args))
    except IntegrityError as exc:
        print(f"FAILED: {args.uri}", file=sys.stderr)
        for path, problem in exc.problems:
            print(f"  {path}: {problem}", file=sys.stderr)
        return 1
    print(f"OK: {len(manifest.files)} files match their sha256 in {args.uri}")
    return 0
