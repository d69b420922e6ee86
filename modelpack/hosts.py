"""Which Host headers the server answers: the defence against DNS rebinding.

A web page can make a browser send requests to 127.0.0.1 by giving its own name
(``evil.example``) the address 127.0.0.1; the browser then treats the local server as part of
the page's site and lets the page read its answers. The page cannot change the Host header,
which stays ``evil.example``: refusing Hosts that are not the server's own names defeats it.

It also parses the options that name hosts and sizes, which the model server and the tracking
server share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from modelpack.errors import InvalidArgument

__all__ = ["LOOPBACK_NAMES", "HostCheck", "host_header", "parse_hosts", "parse_size", "split_host"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_CACHE = 256  # distinct Host values remembered; beyond that each is checked afresh


def split_host(value: str) -> tuple[str, str | None]:
    """``"[::1]:8080"`` -> ``("::1", "8080")``; ``"Example.com."`` -> ``("example.com", None)``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, (rest[1:] if rest.startswith(":") else None)
    if value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""  # a name, or a bare IPv6 address
    return host.rstrip("."), port or None


class HostCheck:
    """Answers whether a request's Host header is one of ``patterns``: a name (any port), a
    ``name:port``, ``*.domain`` (its subdomains, any port) or ``*`` (anything)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self.anything = "*" in self.patterns
        self._names: set[str] = set()
        self._with_port: set[tuple[str, str]] = set()
        self._suffixes: list[str] = []
        for pattern in self.patterns:
            host, port = split_host(pattern)
            if host.startswith("*."):
                self._suffixes.append(host[1:])  # ".domain"
            elif port is None:
                self._names.add(host)
            else:
                self._with_port.add((host, port))
        self._seen: dict[bytes, bool] = {}

    def allows(self, value: bytes | None) -> bool:
        if self.anything:
            return True
        if value is None:
            return False
        verdict = self._seen.get(value)
        if verdict is None:
            host, port = split_host(value.decode("latin-1"))
            verdict = (
                host in self._names
                or (port is not None and (host, port) in self._with_port)
                or any(host.endswith(suffix) for suffix in self._suffixes)
            )
            if len(self._seen) < _CACHE:
                self._seen[value] = verdict
        return verdict


def host_header(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"host":
            return value
    return None


_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|mib|gib|kb|mb|gb)?\s*$", re.IGNORECASE)
_UNITS = {
    None: 1,
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}


def parse_size(value: int | str) -> int:
    """``16MiB`` -> 16777216; plain integers are bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidArgument(f"A size must be positive, got {value}.")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise InvalidArgument(f"Not a size: {value!r}. Use bytes or a suffix: 512KiB, 16MiB.")
    size = int(m[1]) * _UNITS[m[2].lower() if m[2] else None]
    if size <= 0:
        raise InvalidArgument(f"A size must be positive, got {value!r}.")
    return size


_HOST = re.compile(
    "|".join(
        (
            r"\*",  # any
            r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?(:\d{1,5})?",  # name[:port], *.domain[:port]
            r"\[[0-9a-f:.]+\](:\d{1,5})?",  # [IPv6][:port]
            r"[0-9a-f:.]*:[0-9a-f:.]*",  # a bare IPv6 address
        )
    )
)


def parse_hosts(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"a.example, *.corp.example:8080"`` (or a list) -> the checked, lower-cased names."""
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgument(f"allowed_hosts must be host names, got {item!r}.")
        host = item.strip().lower()
        if not host:
            continue
        if not _HOST.fullmatch(host):
            raise InvalidArgument(
                f"Not a host name for --allowed-hosts: {item.strip()!r}. Use names like "
                f"models.internal, models.internal:8080, *.corp.example, [::1], or * for any."
            )
        hosts.append(host)
    if not hosts:
        raise InvalidArgument("allowed_hosts is empty; give at least one name, or * for any.")
    return tuple(hosts)
