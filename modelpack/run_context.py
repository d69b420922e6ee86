"""Where a run or a dataset comes from: the user's script, its user and its git commit."""

from __future__ import annotations

import functools
import getpass
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["current_user", "git_commit", "source_tags", "user_source"]


def current_user() -> str:
    user = os.environ.get("MODELPACK_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@functools.cache
def _installation_roots() -> tuple[str, ...]:
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib", "scripts")}
    roots |= {site.getusersitepackages(), os.path.join(site.getuserbase(), "bin")}
    return tuple(root for root in roots if root)


def _installed(path: Path) -> bool:
    """Whether ``path`` belongs to a Python installation (a runner like pytest or ipykernel,
    the standard library, a console script) rather than to the user's own code."""
    return any(path.is_relative_to(root) for root in _installation_roots())


def user_source() -> Path | None:
    """The user's script: ``__main__``'s file, unless a runner installed with Python is the
    main module (``python -m pytest``, a notebook kernel), then the innermost caller's file
    outside modelpack and the installation."""
    main = getattr(sys.modules.get("__main__"), "__file__", None) or (sys.argv[:1] or [""])[0]
    if main and Path(main).is_file() and not _installed(Path(main).resolve()):
        return Path(main).resolve()
    ours = Path(__file__).resolve().parent
    frame = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_file():
            path = path.resolve()
            if not path.is_relative_to(ours) and not _installed(path):
                return path
        frame = frame.f_back  # type: ignore[assignment]
    return None


def source_tags() -> dict[str, str]:
    source = user_source()
    tags = {
        "modelpack.user": current_user(),
        "modelpack.source.name": str(source) if source else "<interactive>",
    }
    commit = git_commit(source.parent if source else Path.cwd())
    if commit:
        tags["modelpack.source.git.commit"] = commit
    return tags


@functools.lru_cache(maxsize=64)
def git_commit(folder: Path) -> str | None:
    """The commit checked out where ``folder`` is, once per folder and process (asking git is
    a subprocess: several milliseconds, which a sweep of many runs would pay each run)."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None
