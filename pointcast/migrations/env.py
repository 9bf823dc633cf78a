"""Alembic environment: migrations run on the connection pointcast hands over (see store.db.Database.migrate).

A migration, once committed, is frozen: stores exist that ran it as it was, and Alembic never runs it again, so an
edit reaches only fresh stores and leaves the others stamped with a schema they lack (0002 and 0008 were edited so,
and 0010 repairs the stores that ran them before). Change the schema with a new revision, never by editing one.
"""

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
