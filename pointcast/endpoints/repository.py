"""Every query on ``endpoints``: bulk reads by id and one bulk upsert, so a batch of 100 is two statements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from pointcast.store import models as m

t = m.endpoints


def docs_by_id(conn: sa.Connection, app_id: str, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """The stored JSON text (and last RequestId) of each endpoint in ``ids`` that exists."""
    rows = conn.execute(sa.select(t.c.id, t.c.doc, t.c.request_id).where(t.c.app_id == app_id, t.c.id.in_(ids)))
    return {row.id: (row.doc, row.request_id) for row in rows}


UPSERT_COLUMNS = ("app_id", "id", "user_id", "channel_type", "endpoint_status", "opt_out", "request_id", "doc")
_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in UPSERT_COLUMNS[2:])


def upsert(conn: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert or replace rows given as tuples in ``UPSERT_COLUMNS`` order.

    This is the ingest hot path: the statement goes straight to the driver's executemany (SQLite and
    PostgreSQL both speak ``ON CONFLICT ... DO UPDATE``), skipping per-row parameter processing.
    """
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO endpoints ({', '.join(UPSERT_COLUMNS)}) VALUES ({', '.join([mark] * len(UPSERT_COLUMNS))}) "
        f"ON CONFLICT (app_id, id) DO UPDATE SET {_UPDATED}"
    )
    conn.exec_driver_sql(sql, rows)


def by_user(conn: sa.Connection, app_id: str, user_id: str) -> list[sa.Row[Any]]:
    query = sa.select(t.c.id, t.c.doc, t.c.request_id).where(t.c.app_id == app_id, t.c.user_id == user_id)
    return list(conn.execute(query.order_by(t.c.id)))


def delete(conn: sa.Connection, app_id: str, ids: Iterable[str]) -> None:
    conn.execute(sa.delete(t).where(t.c.app_id == app_id, t.c.id.in_(list(ids))))
