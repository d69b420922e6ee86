"""Hashes and sizes of a package's files, and their verification."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from modelpack.errors import FormatError, IntegrityError
from modelpack.paths import resolve_inside

# The manifest's file name: the one file of a package no manifest can hash.
MANIFEST_NAME = "modelpack.yaml"
# Everything under these folders must be listed; elsewhere an unlisted file is tolerated
# (a README a person added, say), but still never loaded.
STRICT_DIRS = ("model", "code", "artifacts")
_CHUNK = 1 << 20
_MODIFIED = "The package was modified after it was saved."


class FileTable(Mapping[str, str]):
    """The manifest's ``files``: sha256 by relative path, plus each file's size where recorded.

    It reads as the plain mapping of hashes it always was; ``sizes`` is ``None`` for packages
    saved before sizes were recorded.
    """

    def __init__(self, hashes: Mapping[str, str], sizes: Mapping[str, int] | None = None) -> None:
        self._hashes = dict(hashes)
        self.sizes: Mapping[str, int] | None = None if sizes is None else dict(sizes)

    def __getitem__(self, rel: str) -> str:
        return self._hashes[rel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileTable) and self.sizes != other.sizes:
            return False
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]  # a mapping: mutable-looking, unhashable

    def __repr__(self) -> str:
        return f"FileTable({self._hashes!r}, sizes={self.sizes!r})"


def sha256_file(path: Path) -> str:
    return _hash_and_size(path)[0]


def _hash_and_size(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


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


def _hard_links(st: os.stat_result) -> int:
    """How many names the file has, when it is a regular file with more than one; else 0."""
    return st.st_nlink if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 else 0


def _linked(rel: str, count: int) -> str:
    # Another name for the same bytes can sit outside the package, where whoever holds it
    # can change the file after it was verified: refused like a symlink.
    return f"{rel}: has {count} hard links; packages may not contain links."


def hash_tree(root: Path) -> FileTable:
    """sha256 and size of every file under ``root`` except the manifest; links are refused."""
    files, links = walk_files(root)
    if links:
        raise FormatError(f"{links[0]}: is a symlink; packages may not contain links.")
    hashes: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for rel in files:
        path = root / rel
        count = _hard_links(os.lstat(path))
        if count:
            raise FormatError(_linked(rel, count))
        if rel != MANIFEST_NAME:
            hashes[rel], sizes[rel] = _hash_and_size(path)
    return FileTable(hashes, sizes)


def verify_files(root: Path, files: Mapping[str, str]) -> None:
    """Raise ``IntegrityError`` naming every file that is modified, missing, unlisted or linked.

    What costs no reading is checked first: links (symbolic or hard), missing and unlisted
    files, and sizes (when ``files`` is a ``FileTable`` that has them). If any of those fails,
    nothing is hashed, so a file grown to gigabytes fails at once.
    """
    sizes = files.sizes if isinstance(files, FileTable) else None
    problems: list[tuple[str, str]] = []
    details: list[str] = []

    def fail(rel: str, what: str, detail: str) -> None:
        problems.append((rel, what))
        details.append(detail)

    present, links = walk_files(root)
    for rel in links:
        fail(rel, "symlink", f"{rel}: is a symlink; packages may not contain links.")
    to_hash: list[tuple[str, Path, str]] = []
    for rel, expected in files.items():
        try:
            path = resolve_inside(root, rel, "manifest file")
        except FormatError as exc:
            fail(rel, "unsafe", str(exc))
            continue
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            fail(rel, "missing", f"{rel}: is missing; the manifest lists it.")
        elif count := _hard_links(st):
            fail(rel, "hardlink", _linked(rel, count))
        elif sizes is not None and st.st_size != sizes[rel]:
            fail(
                rel,
                "modified",
                f"{rel}: size differs: {st.st_size} bytes, the manifest says {sizes[rel]}. "
                + _MODIFIED,
            )
        else:
            to_hash.append((rel, path, expected))
    for rel in present:
        if rel in files:
            continue
        if rel.split("/", 1)[0] in STRICT_DIRS:
            fail(
                rel, "unlisted", f"{rel}: is not listed in the manifest; it was added after saving."
            )
        elif count := _hard_links(os.lstat(root / rel)):
            fail(rel, "hardlink", _linked(rel, count))
    if not problems:
        for rel, path, expected in to_hash:
            actual = sha256_file(path)
            if actual != expected:
                fail(
                    rel,
                    "modified",
                    f"{rel}: sha256 is {actual[:12]}..., the manifest says {expected[:12]}.... "
                    + _MODIFIED,
                )
    if problems:
        head = (
            details[0]
            if len(details) == 1
            else (f"{len(details)} files fail verification:\n  " + "\n  ".join(details))
        )
        raise IntegrityError(head, problems)
