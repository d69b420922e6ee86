"""Which Host headers the server answers: the defence against DNS rebinding.

A web page can make a browser send requests to 127.0.0.1 by giving its own name
(``evil.example``) the address 127.0.0.1; the browser then treats the local server as part of
the page's site and lets the page read its answers. The page cannot change the Host header,
which stays ``evil.example``: refusing Hosts that are not the server's own names defeats it.
"""

from __future__ import annotations

from collections.abc import Iterable

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
