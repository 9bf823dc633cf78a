"""Alembic environment: migrations run on the connection pointcast hands over (see store.db.Database.migrate)."""

from alembic import context

from pointcast.store.models import metadata

target_metadata = metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for `alembic revision --autogenerate` during development
    import os

    import sqlalchemy as sa

    engine = sa.create_engine(os.environ.get("POINTCAST_MIGRATE_URL", "sqlite:///:memory:"))
    connection = engine.connect()

context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
