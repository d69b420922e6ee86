"""Hashes of a package's files, and their verification."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from modelpack._paths import resolve_inside
from modelpack.errors import FormatError, IntegrityError

MANIFEST = "modelpack.yaml"
# Everything under these folders must be listed; elsewhere an unlisted file is tolerated
# (a README a person added, say), but still never loaded.
STRICT_DIRS = ("model", "code", "artifacts")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def walk_files(root: Path) -> tuple[list[str], list[str]]:
    """Relative POSIX paths of the regular files under ``root``, and of any symlinks."""
    files: list[str] = []
    links: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in list(dirnames):
            if (base / name).is_symlink():
                links.append((base / name).relative_to(root).as_posix())
                dirnames.remove(name)
        for name in filenames:
            p = base / name
            rel = p.relative_to(root).as_posix()
            (links if p.is_symlink() else files).append(rel)
    return sorted(files), sorted(links)


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest; symlinks are refused."""
    files, links = walk_files(root)
    if links:
        raise FormatError(f"{links[0]}: is a symlink; packages may not contain links.")
    return {rel: sha256_file(root / rel) for rel in files if rel != MANIFEST}


def verify_files(root: Path, files: Mapping[str, str]) -> None:
    """Raise ``IntegrityError`` naming every file that is modified, missing or unlisted."""
    problems: list[tuple[str, str]] = []
    details: list[str] = []
    present, links = walk_files(root)
    for rel in links:
        problems.append((rel, "symlink"))
        details.append(f"{rel}: is a symlink; packages may not contain links.")
    for rel, expected in files.items():
        try:
            path = resolve_inside(root, rel, "manifest file")
        except FormatError as exc:
            problems.append((rel, "unsafe"))
            details.append(str(exc))
            continue
        if not path.is_file():
            problems.append((rel, "missing"))
            details.append(f"{rel}: is missing; the manifest lists it.")
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems.append((rel, "modified"))
            details.append(
                f"{rel}: sha256 is {actual[:12]}..., the manifest says {expected[:12]}.... "
                f"The package was modified after it was saved."
            )
    for rel in present:
        if rel not in files and rel.split("/", 1)[0] in STRICT_DIRS:
            problems.append((rel, "unlisted"))
            details.append(f"{rel}: is not listed in the manifest; it was added after saving.")
    if problems:
        head = (
            details[0]
            if len(details) == 1
            else (f"{len(details)} files fail verification:\n  " + "\n  ".join(details))
        )
        raise IntegrityError(head, problems)
