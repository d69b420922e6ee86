"""Putting a finished package folder in place: a kill at any instant leaves the old package at
the target or the new one (DESIGN.md §9 rule 7). ``modelpack.save`` and the MLflow conversion
both stage a whole package beside the target, then call ``publish``."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from modelpack import atomic
from modelpack.errors import AlreadyExists
from modelpack.integrity import MANIFEST_NAME

__all__ = ["check_target", "publish"]


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a ``target`` that exists and may not be replaced (a file, a non-empty folder
    without ``overwrite``, or a folder that is not a package).

    Raises:
        AlreadyExists: saying which, and what to do instead.
    """
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise AlreadyExists(f"{str(target)!r} exists and is not a directory; choose another path.")
    if not any(target.iterdir()):
        return
    if not overwrite:
        raise AlreadyExists(
            f"{str(target)!r} exists and is not empty. Pass overwrite=True (--overwrite) to "
            f"replace the package there, or choose another path."
        )
    if not (target / MANIFEST_NAME).is_file():
        raise AlreadyExists(
            f"{str(target)!r} is not empty and is not a model package; overwrite only replaces "
            f"packages. Empty it yourself or choose another path."
        )


def publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Put the finished directory ``staging`` at ``target`` (checked again here: another writer
    may have got there since the caller's check)."""
    from modelpack import gc

    check_target(target, overwrite)
    if not target.is_dir():
        try:
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # a writer that got there first
                raise AlreadyExists(
                    f"{str(target)!r} was created while this package was being written; "
                    f"choose another path, or pass overwrite=True."
                ) from None
            raise
        atomic.fsync_dir(target.parent)
        return
    # An empty folder or a package overwrite=True replaces: swap it with the new one in one
    # system call, then delete it (under the staging name, which says whose it was).
    if atomic.exchange(staging, target):
        atomic.fsync_dir(target.parent)
        shutil.rmtree(staging, ignore_errors=True)
        return
    # No exchange here: two renames. A kill between them leaves no package at ``target``
    # but the old one aside under a name saying whose it is; the next access puts it back.
    old = target.parent / gc.old_name(target.name)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    atomic.fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
