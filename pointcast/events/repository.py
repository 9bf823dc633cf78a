"""Queries on ``events``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.store import models as m


def insert_many(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(m.events), rows)
