"""Leftovers of killed operations: finding them, removing them, putting packages back.

Every temporary a save, an overwrite or ``modelpack predict`` makes is named after its owner
(``modelpack._owner``) so that whoever comes next can tell a live operation from a dead one:

``.NAME.modelpack-staging-<owner>-<rand>``
    a package being saved (or, after an exchange, the package it replaced, being deleted);
``.NAME.modelpack-old-<owner>-<rand>``
    a package moved aside by an overwrite on a system without an atomic exchange;
``.NAME.<owner>-<rand>.modelpack-tmp``
    the output of ``modelpack predict`` being written.

The next save into a folder removes the dead owners' staging and old folders there (and puts an
old package back where its overwrite died before the new one arrived); the next ``predict``
into a folder removes dead owners' partial outputs. ``modelpack gc`` does it on demand, and
also removes leftovers whose owner cannot be known (names from older versions, other hosts)
once they are older than a grace period, and registry folders no version refers to.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack import _owner

__all__ = [
    "DEFAULT_GRACE_S",
    "Leftover",
    "collect",
    "old_name",
    "registry_leftovers",
    "remove",
    "restore_interrupted",
    "scan",
    "staging_name",
    "tmp_name",
]

DEFAULT_GRACE_S = 3600.0
STAGING, OLD, TMP_SUFFIX = "modelpack-staging", "modelpack-old", ".modelpack-tmp"
KINDS = ("staging", "old", "predict")
# The owner token and a random part; names from before owners were recorded have hex only.
_OWNED = rf"(?P<owner>{_owner.OWNER})-[0-9a-f]{{6}}"
_PACKAGE = re.compile(rf"^\.(?P<name>.+)\.(?P<kind>{STAGING}|{OLD})-(?:{_OWNED}|[0-9a-f]{{8}})$")
_TMP = re.compile(rf"^\.(?P<name>.+)\.(?:{_OWNED}|[0-9a-f]{{12}}){re.escape(TMP_SUFFIX)}$")
_REGISTRY_ID = re.compile(r"(?:^|/)registry/(?P<id>[0-9a-f]{32})/*$")
_TOKEN = re.compile(_owner.OWNER)
_WAIT_S = 2.0  # how long a reader waits for a live overwrite to put the new package in


def _stamp() -> str:
    return f"{_owner.token()}-{uuid.uuid4().hex[:6]}"


def staging_name(target: str) -> str:
    """The name of a staging folder for a package called ``target``."""
    return f".{target}.{STAGING}-{_stamp()}"


def old_name(target: str) -> str:
    """The name an overwrite without exchange moves the package ``target`` to."""
    return f".{target}.{OLD}-{_stamp()}"


def tmp_name(output: str) -> str:
    """The name of the partial output of ``modelpack predict`` for the file ``output``."""
    return f".{output}.{_stamp()}{TMP_SUFFIX}"


@dataclass(frozen=True)
class Leftover:
    """One thing a killed operation left behind.

    Attributes:
        path: where it is.
        kind: ``staging``, ``old``, ``predict`` or ``registry``.
        action: ``delete``, or ``restore`` for an old package whose target is missing.
        reason: why it is a leftover, for people.
        size: bytes it holds (0 unless asked for).
        target: for ``restore``, the path the package goes back to.
    """

    path: Path
    kind: str
    action: str
    reason: str
    size: int = 0
    target: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "action": self.action,
            "reason": self.reason,
            "bytes": self.size,
            "target": None if self.target is None else str(self.target),
        }


def _walk_stats(path: Path) -> tuple[int, float]:
    """``(bytes, newest mtime)`` of a file or a tree (links not followed)."""
    try:
        st = path.lstat()
    except OSError:
        return 0, 0.0
    if not path.is_dir() or path.is_symlink():
        return st.st_size, st.st_mtime
    size, newest = 0, st.st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            newest = max(newest, s.st_mtime)
            if name in filenames:
                size += s.st_size
    return size, newest


def _why_dead(owner: str | None, path: Path, grace: float | None, now: float) -> str | None:
    """Why ``path`` is a leftover (``None``: it is not, or may still be in use)."""
    state = _owner.alive(owner) if owner else None
    if state is False:
        m = _TOKEN.fullmatch(owner or "")
        return f"its process ({m['pid'] if m else '?'}) is gone"
    if state is True or grace is None:
        return None
    age = now - _walk_stats(path)[1]
    if age < grace:
        return None
    unknown = "made on another host" if owner else "from an older modelpack"
    return f"{unknown}, untouched for {age / 3600:.1f} h"


def scan(
    folder: Path,
    kinds: Sequence[str] = KINDS,
    grace: float | None = None,
    measure: bool = False,
) -> list[Leftover]:
    """The leftovers directly inside ``folder``.

    Args:
        kinds: which to look for: ``staging``, ``old``, ``predict``.
        grace: also count those whose owner is unknown once untouched this long (seconds);
            None: only those whose owner is known to be gone.
        measure: fill in ``size``.
    """
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    out: list[Leftover] = []
    restoring: set[str] = set()
    for name in names:
        path = folder / name
        m = _PACKAGE.match(name)
        if m is not None:
            kind = "staging" if m["kind"] == STAGING else "old"
        elif (m := _TMP.match(name)) is not None:
            kind = "predict"
        else:
            continue
        if kind not in kinds:
            continue
        why = _why_dead(m["owner"], path, grace, now)
        if why is None:
            continue
        action, target = "delete", None
        home = folder / m["name"]
        if kind == "old" and not os.path.lexists(home) and m["name"] not in restoring:
            # The overwrite died between moving this aside and moving the new one in.
            action, target = "restore", home
            restoring.add(m["name"])
        size = _walk_stats(path)[0] if measure else 0
        out.append(Leftover(path, kind, action, why, size, target))
    return out


def remove(leftover: Leftover) -> bool:
    """Delete (or put back) one leftover; False if it was gone already."""
    if not os.path.lexists(leftover.path):
        return False
    if leftover.action == "restore" and leftover.target is not None:
        try:
            os.rename(leftover.path, leftover.target)
            return True
        except OSError:
            if not os.path.lexists(leftover.target):
                raise
            # Someone put a package there meanwhile: this one is now just old.
    if leftover.path.is_dir() and not leftover.path.is_symlink():
        shutil.rmtree(leftover.path, ignore_errors=True)
    else:
        try:
            os.unlink(leftover.path)
        except FileNotFoundError:
            return False
    return True


def collect(folder: Path, kinds: Sequence[str] = KINDS) -> list[Leftover]:
    """Remove the leftovers in ``folder`` whose owners are gone; return what was removed.

    Never raises: cleaning up after someone else must not fail the caller's own operation.
    """
    done = []
    for leftover in scan(folder, kinds):
        try:
            if remove(leftover):
                done.append(leftover)
        except OSError:
            continue
    return done


def restore_interrupted(target: Path) -> bool:
    """Put back a package an overwrite moved aside and died before replacing; True if one is
    at ``target`` now. An overwrite in progress gets a moment to finish first."""
    folder, name = target.parent, target.name
    deadline = time.monotonic() + _WAIT_S
    while True:
        if os.path.lexists(target):
            return True
        pending = False
        for entry in sorted(os.listdir(folder)) if folder.is_dir() else []:
            m = _PACKAGE.match(entry)
            if m is None or m["name"] != name or m["kind"] != OLD:
                continue
            state = _owner.alive(m["owner"]) if m["owner"] else None
            if state is False:
                try:
                    os.rename(folder / entry, target)
                    return True
                except OSError:
                    continue
            pending = pending or state is True
        if not pending or time.monotonic() > deadline:
            return os.path.lexists(target)
        time.sleep(0.01)


def registry_leftovers(client: Any, grace: float, measure: bool = False) -> list[Leftover]:
    """``registry/<id>`` folders of ``client``'s artifact root that no model version refers
    to and nothing has touched for ``grace`` seconds: copies of killed registrations and of
    deletions that did not finish. A local artifact root only.

    Raises:
        InvalidArgument: the artifact root is not a local folder.
    """
    from modelpack.artifacts import artifact_store
    from modelpack.errors import InvalidArgument

    client.store  # noqa: B018 - opened first: a store that does not exist is an error
    local = artifact_store(client.artifact_root).local_path("registry")
    if local is None:
        raise InvalidArgument(
            f"modelpack gc removes registry leftovers from a local artifact root only; "
            f"{client.artifact_root} is not one."
        )
    if not local.is_dir():
        return []
    now = time.time()
    candidates = []
    for entry in sorted(os.listdir(local)):
        path = local / entry
        is_copy = re.fullmatch(r"[0-9a-f]{32}", entry) is not None
        if not is_copy and not entry.startswith(".modelpack-tmp-"):
            continue
        age = now - _walk_stats(path)[1]
        if age >= grace:
            candidates.append((path, entry, is_copy, age))
    if not candidates:
        return []
    # Read the versions after listing the folders: a registration that commits meanwhile
    # copied its folder just now, so the grace period protects it.
    referenced = set(_referenced_ids(client))
    out = []
    for path, entry, is_copy, age in candidates:
        if is_copy and entry in referenced:
            continue
        why = (
            f"no model version refers to it, untouched for {age / 3600:.1f} h"
            if is_copy
            else f"a partial copy or deletion, untouched for {age / 3600:.1f} h"
        )
        size = _walk_stats(path)[0] if measure else 0
        out.append(Leftover(path, "registry", "delete", why, size))
    return out


def _referenced_ids(client: Any) -> Iterable[str]:
    token = None
    while True:
        versions, token = client.store.search_model_versions(None, 50_000, None, token)
        for version in versions:
            m = _REGISTRY_ID.search(str(version.storage_location or ""))
            if m is not None:
                yield m["id"]
        if token is None:
            return


OWNER_SUFFIX = ".modelpack-owner"


def mark_registration(client: Any, relative: str) -> Path | None:
    """Mark ``registry/<id>`` (about to be copied, local roots only) as this process's, so the
    next registration can tell a killed one's copy from one still running; the marker is
    removed once the version is committed or the copy deleted."""
    from modelpack import _owner
    from modelpack.artifacts import artifact_store

    local = artifact_store(client.artifact_root).local_path(relative)
    if local is None:
        return None
    local.parent.mkdir(parents=True, exist_ok=True)
    marker = local.with_name(local.name + OWNER_SUFFIX)
    marker.write_text(_owner.token())
    return marker


def collect_registrations(client: Any) -> list[Path]:
    """Remove the copies of registrations whose process is gone (marked, not referenced by
    any version); returns the folders removed."""
    from modelpack import _owner
    from modelpack.artifacts import artifact_store

    registry = artifact_store(client.artifact_root).local_path("registry")
    if registry is None or not registry.is_dir():
        return []
    dead = []
    for marker in registry.glob(f"*{OWNER_SUFFIX}"):
        try:
            owner = marker.read_text().strip()
        except OSError:
            continue
        if _owner.alive(owner) is False:
            dead.append(marker)
    if not dead:
        return []
    referenced = set(_referenced_ids(client))
    removed = []
    for marker in dead:
        folder = marker.with_name(marker.name[: -len(OWNER_SUFFIX)])
        if folder.name not in referenced:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        marker.unlink(missing_ok=True)
    return removed
