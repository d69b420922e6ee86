"""Authentication and authorization: one check for every route.

PLACEHOLDER written by the lead; the auth helper replaces it with tokens and permissions,
keeping ``authorizer(state)``, ``Authorizer.authenticate`` and ``Authorizer.authorize``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelpack.server.endpoints import Call, Principal

if TYPE_CHECKING:
    from modelpack.server.state import ServerState

__all__ = ["ANONYMOUS", "Authorizer", "authorizer"]

ANONYMOUS = Principal(user=None, role="admin", authenticated=False)

ENDPOINTS: list[Any] = []


class Authorizer:
    """Without ``--auth token``: everyone may do everything."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def authenticate(self, headers: Any, path: str) -> Principal:
        """The caller of a request with these headers (raises ``Unauthenticated``)."""
        return ANONYMOUS

    def authorize(self, call: Call) -> None:
        """Raise ``PermissionDenied`` unless ``call.principal`` may make ``call``."""


def authorizer(state: ServerState) -> Authorizer:
    return Authorizer(state)
