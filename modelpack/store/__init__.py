"""The tracking store: experiments, runs and the model registry, in SQL (SQLite or PostgreSQL).

This module says where the store is (``default_tracking_uri``, ``default_artifact_root``) and
opens it (``open_store``); the SQL itself (``sql.py``, ``registry.py``) imports SQLAlchemy, so
it is imported only when a store is opened, never by ``import modelpack``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelpack.store.defaults import DEFAULT_DIR, default_artifact_root, default_tracking_uri

if TYPE_CHECKING:
    from modelpack.store.sql import SqlStore

__all__ = ["DEFAULT_DIR", "default_artifact_root", "default_tracking_uri", "open_store"]


def open_store(
    tracking_uri: str | None = None, artifact_root: str | None = None, create: bool = True
) -> SqlStore:
    """The store at ``tracking_uri`` (default: ``default_tracking_uri()``).

    Args:
        create: make the store if there is none; when False, a store that does not exist
            raises ``NotFound`` naming it (readers never create one).

    Raises:
        MissingDependency: the ``store`` extras are not installed.
    """
    from modelpack.flavor import require

    uri = tracking_uri or default_tracking_uri()
    require("sqlalchemy", "tracking store", "store", "SQLAlchemy")
    require("alembic", "tracking store", "store")
    if uri.startswith(("postgresql", "postgres")):
        require("psycopg", "tracking store", "store", "psycopg")
    from modelpack.store.sql import SqlStore

    return SqlStore.open(uri, artifact_root or default_artifact_root(uri), create)
