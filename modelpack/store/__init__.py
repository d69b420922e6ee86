"""The tracking store: experiments, runs and the model registry, in SQL (SQLite or PostgreSQL),
or behind a ``modelpack server`` (``http://host:port``, spoken to by ``rest.RestStore``).

This module says where the store is (``default_tracking_uri``, ``default_artifact_root``) and
opens it (``open_store``); the SQL itself (``sql.py``, ``registry.py``) imports SQLAlchemy, so
it is imported only when a store is opened, never by ``import modelpack``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelpack.store.defaults import DEFAULT_DIR, default_artifact_root, default_tracking_uri

if TYPE_CHECKING:
    from modelpack.store.rest import RestStore
    from modelpack.store.sql import SqlStore

__all__ = [
    "DEFAULT_DIR",
    "default_artifact_root",
    "default_tracking_uri",
    "is_remote",
    "is_server_uri",
    "open_store",
]


def is_server_uri(uri: str) -> bool:
    """Whether the tracking URI names a ``modelpack server`` (``http://`` or ``https://``)."""
    return isinstance(uri, str) and uri.lower().startswith(("http://", "https://"))


def is_remote(store: object) -> bool:
    """Whether ``store`` is a server's (``RestStore``): its registry storage is the server's
    to write and delete, not the client's."""
    return bool(getattr(store, "remote", False))


def open_store(
    tracking_uri: str | None = None, artifact_root: str | None = None, create: bool = True
) -> SqlStore | RestStore:
    """The store at ``tracking_uri`` (default: ``default_tracking_uri()``): a ``SqlStore``, or
    for ``http(s)://host:port`` the ``RestStore`` of that ``modelpack server`` (no request is
    made here; a server that is down is named by the first call).

    Args:
        create: make the store if there is none; when False, a store that does not exist
            raises ``NotFound`` naming it (readers never create one). A server's store always
            exists.

    Raises:
        MissingDependency: the ``store`` extras are not installed (SQL stores only).
    """
    from modelpack.flavor import require

    uri = tracking_uri or default_tracking_uri()
    if is_server_uri(uri):
        from modelpack.store.rest import RestStore

        return RestStore(uri, artifact_root)
    require("sqlalchemy", "tracking store", "store", "SQLAlchemy")
    require("alembic", "tracking store", "store")
    if uri.startswith(("postgresql", "postgres")):
        require("psycopg", "tracking store", "store", "psycopg")
    from modelpack.store.sql import SqlStore

    return SqlStore.open(uri, artifact_root or default_artifact_root(uri), create)
