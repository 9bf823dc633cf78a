"""Migrations carry existing rows forward: a store at an older revision, upgraded, reads as a new one would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from pointcast.settings import Settings
from pointcast.store import Database
from pointcast.store import models as m
from pointcast.store.db import MIGRATIONS
from tests.conftest import postgres_url
from tests.support.server import PostgresSchema


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Database]:
    yield from _store(backend, tmp_path / "store")


@pytest.fixture
def fresh(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A second store, migrated from nothing to head: the schema every other store must end with."""
    for db in _store(backend, tmp_path / "fresh"):
        upgrade(db, "head")
        yield db


def _store(backend: str, directory: Path) -> Iterator[Database]:
    schema = PostgresSchema(postgres_url()) if backend == "postgres" else None
    settings = Settings(data_dir=directory, database_url=schema.url if schema else None)
    db = Database(settings.resolved_database_url())
    try:
        yield db
    finally:
        db.dispose()
        if schema:
            schema.drop()


def upgrade(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_0006_fills_the_timezone_column_from_stored_endpoints(store: Database) -> None:
    upgrade(store, "0005")
    docs = {
        "zoned": {"ChannelType": "SMS", "Demographic": {"Timezone": "Europe/Paris", "Platform": "ios"}},
        "unzoned": {"ChannelType": "SMS", "Demographic": {"Platform": "ios"}},
        "bare": {"ChannelType": "SMS", "Attributes": {"Timezone": ["not a demographic"]}},
    }
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO endpoints (app_id, id, endpoint_status, opt_out, doc) "
                "VALUES (:a, :i, 'ACTIVE', 'NONE', :d)"
            ),
            [{"a": "app", "i": i, "d": orjson.dumps(doc).decode()} for i, doc in docs.items()],
        )
    upgrade(store, "head")
    e = m.endpoints
    with store.read() as conn:
        zones = dict(conn.execute(sa.select(e.c.id, e.c.timezone)).all())
    assert zones == {"zoned": "Europe/Paris", "unzoned": None, "bare": None}


def schema_of(db: Database) -> dict[str, object]:
    """Every table's columns, indexes, primary key and unique constraints, as the database reports them."""
    inspector = sa.inspect(db.engine)
    out: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        out[table] = {
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in inspector.get_columns(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in inspector.get_indexes(table)
            ),
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
        }
    return out


def _f1a82b1(ops: Operations) -> None:
    """0002 as f1a82b1 ran it: batches without treatment_id, not_before and either index on them."""
    ops.drop_index("ix_batches_state_due", table_name="batches")
    ops.drop_index("ix_batches_activity_state", table_name="batches")
    with ops.batch_alter_table("batches") as batch_op:
        batch_op.drop_column("not_before")
        batch_op.drop_column("treatment_id")


def _63878e4(ops: Operations) -> None:
    """0002 as 63878e4..427ade4 ran it: ix_batches_state_due without pk, no ix_batches_activity_state."""
    ops.drop_index("ix_batches_state_due", table_name="batches")
    ops.drop_index("ix_batches_activity_state", table_name="batches")
    ops.create_index("ix_batches_state_due", "batches", ["state", "not_before"])
    ops.bulk_insert(
        sa.table("batches", *(sa.column(c.name) for c in m.batches.c if c.name != "pk")),
        [
            {
                "id": "b1",
                "run_id": "r1",
                "activity_id": "a1",
                "treatment_id": "0",
                "endpoint_ids": "[]",
                "not_before": "2026-11-23T06:30:00.000Z",
                "state": "PENDING",
                "attempts": 0,
                "last_error": None,
            }
        ],
    )


def _3df307f(ops: Operations) -> None:
    """0008 as 3df307f ran it: ix_batches_activity_state on (activity_id, state), without not_before."""
    ops.drop_index("ix_batches_activity_state", table_name="batches")
    ops.create_index("ix_batches_activity_state", "batches", ["activity_id", "state"])


@pytest.mark.parametrize(
    ("revision", "as_it_was"),
    [("0002", _f1a82b1), ("0002", _63878e4), ("0008", _3df307f)],
    ids=["0002 at f1a82b1", "0002 at 63878e4", "0008 at 3df307f"],
)
def test_a_store_that_ran_an_edited_revision_ends_with_a_fresh_stores_schema(
    store: Database, fresh: Database, revision: str, as_it_was: object
) -> None:
    # Migrations 0002 and 0008 were edited after stores had run them; such a store is stamped with the revision but
    # lacks what the edit added. Upgraded, it must read exactly as a store created at head does.
    upgrade(store, revision)
    with store.engine.begin() as conn:
        as_it_was(Operations(MigrationContext.configure(conn)))  # type: ignore[operator]
    assert schema_of(store) != schema_of(fresh)
    store.migrate()
    assert schema_of(store) == schema_of(fresh)
    with store.read() as conn:
        rows = conn.execute(sa.select(m.batches.c.id, m.batches.c.not_before)).all()
    if as_it_was is _63878e4:
        assert rows == [("b1", "2026-11-23T06:30:00.000Z")]


def test_a_store_written_by_a_newer_pointcast_is_refused_saying_so(store: Database) -> None:
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(RuntimeError) as caught:
        store.migrate()
    assert str(caught.value) == (
        "this store was written by a newer version of pointcast (revision 0099); run that version or newer"
    )
    with store.read() as conn:  # left as it was
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0099"
