"""Alembic environment: run migrations on the connection modelpack hands over."""

from __future__ import annotations

from alembic import context

from modelpack.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - modelpack always passes a connection
    raise RuntimeError("Run migrations through `modelpack db upgrade URI`.")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
