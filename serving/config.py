"""Server options: one frozen, validated set, shared by the CLI, ``create_app`` and ``serve``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from modelpack.errors import InvalidArgument
from modelpack.hosts import parse_hosts, parse_size


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``modelpack serve`` takes besides the URI."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    flavor: str | None = None
    max_batch_size: int = 64
    max_batch_delay_ms: float = 2.0
    max_queue: int = 1024
    request_timeout_s: float = 60.0
    max_body_bytes: int = 16 * 1024**2
    poll_interval_s: float = 10.0
    tracking_uri: str | None = None
    artifact_root: str | None = None
    name: str | None = None
    log_level: str = "info"
    max_rows: int = 100_000
    max_columns: int = 10_000
    max_json_depth: int = 32
    max_elements: int = 50_000_000
    read_timeout_s: float = 30.0  # for a request's head, and for its body; 0: no limit
    max_connections: int = 1000  # open at once, per worker process
    # Host names (optionally :port; *.domain; * for any) requests may carry. None: decided by
    # serve() from the address it binds (loopback names on loopback, any elsewhere); an app
    # made by create_app() with None checks no Host.
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_body_bytes", parse_size(self.max_body_bytes))
        if self.allowed_hosts is not None:
            object.__setattr__(self, "allowed_hosts", parse_hosts(self.allowed_hosts))
        for name in (
            "port",
            "workers",
            "max_batch_size",
            "max_queue",
            "max_rows",
            "max_columns",
            "max_json_depth",
            "max_elements",
            "max_connections",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if name == "port" else 1)
            ):
                raise InvalidArgument(f"{name} must be a positive integer, got {value!r}.")
        for name in (
            "max_batch_delay_ms",
            "request_timeout_s",
            "poll_interval_s",
            "read_timeout_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidArgument(f"{name} must be a number >= 0, got {value!r}.")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise InvalidArgument(f"Unknown log level {self.log_level!r}.")

    @classmethod
    def build(cls, **options: Any) -> ServeOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidArgument(
                f"Unknown serve option {unknown[0]!r}. Options: {', '.join(sorted(known))}."
            )
        return cls(**{k: v for k, v in options.items() if v is not None})
