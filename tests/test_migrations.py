"""Migrations carry existing rows forward: a store at an older revision, upgraded, reads as a new one would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pointcast.settings import Settings
from pointcast.store import Database
from pointcast.store import models as m
from pointcast.store.db import MIGRATIONS
from tests.conftest import postgres_url
from tests.support.server import PostgresSchema


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Database]:
    schema = PostgresSchema(postgres_url()) if backend == "postgres" else None
    settings = Settings(data_dir=tmp_path, database_url=schema.url if schema else None)
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
