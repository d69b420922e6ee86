"""Atomic, durable writes: the one home of fsync and of publishing by rename.

``write_durably`` writes a file inside a staging folder; ``publish`` moves a finished temp file
into place (readers see all of it or none) and makes the rename durable; ``fsync_tree`` and
``fsync_dir`` flush a staged folder before it is renamed into place.

Replacing a package directory with ``rename`` alone takes two steps (old aside, new in), and a
kill between them leaves nothing at the path. ``exchange`` swaps two paths in one system
call, so the path always names a whole package. Where the system or the file system cannot
(another OS, an old kernel, a file system answering EINVAL), ``exchange`` returns False and
the caller falls back to two renames, which the next access repairs (``modelpack.gc``).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["exchange", "fsync_dir", "fsync_file", "fsync_tree", "publish", "write_durably"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_SYS_RENAMEAT2 = {"x86_64": 316, "amd64": 316, "aarch64": 276, "arm64": 276}
# The answers of a kernel or file system that cannot exchange: fall back, do not fail.
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


@functools.cache
def _renameat2() -> Callable[[bytes, bytes], int] | None:
    """``f(a, b) -> errno`` (0 on success), from libc or the raw system call; None if absent."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn: Any = getattr(libc, "renameat2", None)  # glibc >= 2.28, musl >= 1.2.5
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int

        def call(a: bytes, b: bytes) -> int:
            ok = fn(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE) == 0
            return 0 if ok else ctypes.get_errno()

        return call
    number = _SYS_RENAMEAT2.get(os.uname().machine.lower())
    syscall: Any = getattr(libc, "syscall", None)
    if number is None or syscall is None:
        return None
    syscall.restype = ctypes.c_long

    def call_raw(a: bytes, b: bytes) -> int:
        args = (ctypes.c_int(_AT_FDCWD), a, ctypes.c_int(_AT_FDCWD), b, ctypes.c_uint(2))
        ok = syscall(ctypes.c_long(number), *args) == 0
        return 0 if ok else ctypes.get_errno()

    return call_raw


def rename_exchange(a: Path, b: Path) -> int:
    """The system call itself: 0, or the errno it failed with (-1: not available here)."""
    fn = _renameat2()
    if fn is None:
        return -1
    return fn(os.fsencode(a), os.fsencode(b))


def exchange(a: Path, b: Path) -> bool:
    """Swap the directory entries ``a`` and ``b`` atomically; both must exist.

    Returns False, having changed nothing, where this system or file system cannot exchange.

    Raises:
        OSError: any other failure (a missing path, permissions).
    """
    code = rename_exchange(a, b)
    if code == 0:
        return True
    if code == -1 or code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush the file (or directory) at ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of the directory ``path`` durable (renames into or out of it)."""
    fsync_file(path)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """Flush every file and folder under ``root`` (a staging folder about to be published)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_file(os.path.join(dirpath, name))
        fsync_file(dirpath)


def write_durably(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it (a file in a staging folder: no rename here)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def publish(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move the finished file ``tmp`` to ``target`` in one rename, durably: readers of
    ``target`` see the old file or the whole new one, and a crash keeps one of them."""
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_dir(os.path.dirname(os.path.abspath(target)))
