"""The server's options: one frozen, validated set, shared by the CLI and ``create_app``."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from dataclasses import dataclass, field, fields
from typing import Any

from modelpack.errors import InvalidArgument
from modelpack.hosts import LOOPBACK_NAMES

__all__ = ["AUTH_MODES", "ServerOptions", "is_loopback", "wildcard", "with_default_hosts"]

AUTH_MODES = ("none", "token")


def _size(value: int | str) -> int:
    from modelpack.hosts import parse_size

    return parse_size(value)


@dataclass(frozen=True)
class ServerOptions:
    """What ``modelpack server`` and ``create_app`` take.

    Args:
        backend_store_uri: the store (``sqlite:///...``, ``postgresql://...``); default: the
            embedded one, ``./modelpack-store``.
        artifact_root: where runs' artifacts and registered packages live (a directory or
            ``s3://bucket/prefix``); default: the store's.
        serve_artifacts: proxy artifacts (``/api/2.0/mlflow-artifacts``), so clients need no
            credentials of the artifact store; runs then report ``mlflow-artifacts:/`` URIs.
        auth: ``none`` or ``token`` (bearer tokens, see ``modelpack server token``).
        allowed_hosts: the Host names requests may carry; default: loopback names when bound
            to loopback.
        cors_origins: origins allowed to read the API from a browser; default: none.
        max_body_bytes: the largest JSON request body (artifact uploads are streamed and
            bounded by ``max_artifact_bytes``).
    """

    backend_store_uri: str | None = None
    artifact_root: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    serve_artifacts: bool = True
    auth: str = "none"
    insecure_no_auth: bool = False
    allowed_hosts: tuple[str, ...] | None = None
    cors_origins: tuple[str, ...] = field(default=())
    max_body_bytes: int = 16 * 1024**2
    max_artifact_bytes: int = 64 * 1024**3
    log_level: str = "info"

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_body_bytes", _size(self.max_body_bytes))
        object.__setattr__(self, "max_artifact_bytes", _size(self.max_artifact_bytes))
        if self.auth not in AUTH_MODES:
            raise InvalidArgument(
                f"Unknown --auth {self.auth!r}; choose one of: {', '.join(AUTH_MODES)}."
            )
        if isinstance(self.cors_origins, str):
            object.__setattr__(
                self,
                "cors_origins",
                tuple(o.strip() for o in self.cors_origins.split(",") if o.strip()),
            )
        if self.allowed_hosts is not None:
            from modelpack.hosts import parse_hosts

            object.__setattr__(self, "allowed_hosts", parse_hosts(self.allowed_hosts))
        for name in ("port", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (name == "workers"):
                raise InvalidArgument(f"{name} must be a positive integer, got {value!r}.")

    @classmethod
    def build(cls, **options: Any) -> ServerOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidArgument(
                f"Unknown server option {unknown[0]!r}. Options: {', '.join(sorted(known))}."
            )
        return cls(**{k: v for k, v in options.items() if v is not None})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]")


def with_default_hosts(options: ServerOptions) -> ServerOptions:
    """``options`` with the Host allowlist decided when none was given.

    Bound to loopback: the loopback names only, so that no DNS-rebinding page can drive the
    server. Bound elsewhere: the bound name (unless a wildcard), this machine's host names,
    the loopback names, and any IP address (``ip``): a rebinding page's Host is always its
    own name, never an address. A server reached by another name (a load balancer's) needs
    ``--allowed-hosts``.
    """
    if options.allowed_hosts is not None:
        return options
    if is_loopback(options.host):
        return dataclasses.replace(options, allowed_hosts=LOOPBACK_NAMES)
    names = [] if wildcard(options.host) else [options.host]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name.lower() not in names and name.lower() != "localhost":
            names.append(name.lower())
    return dataclasses.replace(options, allowed_hosts=(*names, *LOOPBACK_NAMES, "ip"))
