"""Who made a temporary file or folder, and whether that process is still running.

Staging folders, swapped-out packages and partial outputs are named with an owner token,
``<host>-<pid>-<start>``: a hash of the host name, the process id and the process start time
(seconds since the epoch, from ``/proc``; 0 where there is no ``/proc``). A leftover whose
owner is gone can then be removed by the next operation of the same kind, and a pid that the
system has since given to another process is not mistaken for the owner.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket

__all__ = ["OWNER", "alive", "token"]

# The pattern of a token inside a name; groups host, pid and start.
OWNER = r"(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]{1,10})-(?P<start>[0-9]{1,12})"
_OWNER = re.compile(OWNER)
# /proc/stat's btime is derived from the clock and the uptime, and may move by a second.
_START_SLACK = 2


@functools.cache
def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


@functools.cache
def _boot_time() -> int | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks since boot)`` of ``pid`` from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode("ascii", "replace"), int(fields[19])
    except (IndexError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    boot, stat = _boot_time(), _stat(pid)
    if boot is None or stat is None:
        return None
    return boot + stat[1] // os.sysconf("SC_CLK_TCK")


def token() -> str:
    """This process's owner token (computed per call: a forked child has its own)."""
    pid = os.getpid()
    return f"{_host()}-{pid}-{_start_time(pid) or 0}"


def alive(owner: str) -> bool | None:
    """Whether the process of the token ``owner`` runs: True, False, or None when unknown.

    Unknown means a malformed token, or one another host made (a shared file system): only
    its age can tell then.
    """
    m = _OWNER.fullmatch(owner)
    if m is None or m["host"] != _host() or os.name == "nt":
        return None  # on Windows os.kill(pid, 0) would end the process, not probe it
    pid, start = int(m["pid"]), int(m["start"])
    if pid == os.getpid():
        return start == 0 or abs((_start_time(pid) or start) - start) <= _START_SLACK
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else
    except OSError:
        return None
    stat = _stat(pid)
    if stat is not None and stat[0] in ("Z", "X"):
        return False  # killed, not yet reaped
    if start == 0:
        return True
    actual = _start_time(pid)
    return actual is None or abs(actual - start) <= _START_SLACK
