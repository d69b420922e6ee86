"""What a route of the server is: an ``Endpoint`` (methods, path, handler, the access it needs)
and the ``Call`` its handler gets. Each handler module lists its endpoints in ``ENDPOINTS``;
``app.py`` mounts them all, and every one passes the same authentication and authorization
check before its handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from modelpack.server.state import ServerState

__all__ = [
    "ADMIN",
    "LEVELS",
    "LOGIN",
    "PUBLIC",
    "Access",
    "Call",
    "Endpoint",
    "Principal",
    "on_experiment",
    "on_model",
]

# Permission levels, weakest first (MLflow's): each includes the ones before it.
LEVELS = ("NO_PERMISSIONS", "READ", "EDIT", "MANAGE")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's user and role (reader | editor | admin), or, without
    ``--auth token``, the anonymous caller (role admin: every check passes)."""

    user: str | None
    role: str
    authenticated: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Access:
    """What a call needs.

    ``kind``: ``public`` (no token needed: /health, /version), ``login`` (any valid token),
    ``admin``, or ``permission`` (``level`` on the experiment or registered model that
    ``locate(call)`` names; ``locate`` returning None means "a new resource": creating needs
    the role editor or admin).
    """

    kind: str
    resource: str | None = None  # "experiment" | "registered_model"
    level: str | None = None  # one of LEVELS
    locate: Callable[[Call], str | None] | None = None


PUBLIC = Access("public")
LOGIN = Access("login")
ADMIN = Access("admin")


def on_experiment(level: str, locate: Callable[[Call], str | None]) -> Access:
    """``level`` on the experiment whose id ``locate(call)`` returns."""
    return Access("permission", "experiment", level, locate)


def on_model(level: str, locate: Callable[[Call], str | None]) -> Access:
    """``level`` on the registered model whose name ``locate(call)`` returns."""
    return Access("permission", "registered_model", level, locate)


Handler = Callable[["Call"], Any]
RawHandler = Callable[["Call"], Awaitable["Response"]]


@dataclass(frozen=True)
class Endpoint:
    """One route.

    Args:
        methods: HTTP methods.
        path: under ``/api/<version>`` and ``/ajax-api/<version>`` (``/mlflow/runs/create``),
            path parameters as ``{name}`` or ``{name:path}``; or, with ``absolute``, the whole path.
        handler: ``handler(call) -> dict`` (run in a worker thread; the dict is the JSON
            answer); with ``raw``, ``async handler(call) -> Response`` that reads the request
            itself (streamed artifact bodies).
        access: what the caller needs (see ``Access``).
        summary: one line for the OpenAPI document.
        versions: the API versions it is mounted under.
    """

    methods: tuple[str, ...]
    path: str
    handler: Handler | RawHandler
    access: Access
    summary: str
    versions: tuple[str, ...] = ("2.0",)
    raw: bool = False
    absolute: bool = False
    request_fields: tuple[str, ...] = field(default=())

    def paths(self) -> list[str]:
        if self.absolute:
            return [self.path]
        return [
            f"{prefix}/{v}{self.path}" for v in self.versions for prefix in ("/api", "/ajax-api")
        ]


@dataclass
class Call:
    """One request as a handler sees it.

    ``params``: the query parameters (GET, DELETE without a body) merged with the JSON object
    body and the path parameters; a repeated query parameter is a list.
    """

    request: Request
    params: dict[str, Any]
    state: ServerState
    principal: Principal
    endpoint: Endpoint

    @property
    def user(self) -> str:
        """The name recorded as the actor: the token's user, else what the client said, else
        ``"unknown"``."""
        if self.principal.user:
            return self.principal.user
        claimed = self.params.get("user_id")
        return claimed if isinstance(claimed, str) and claimed else "unknown"
