"""Every query on ``endpoints``: bulk reads by id and one bulk upsert, so a batch of 100 is two statements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pointcast.store import models as m

t = m.endpoints


def docs_by_id(conn: sa.Connection, app_id: str, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """The stored JSON text (and last RequestId) of each endpoint in ``ids`` that exists."""
    rows = conn.execute(sa.select(t.c.id, t.c.doc, t.c.request_id).where(t.c.app_id == app_id, t.c.id.in_(ids)))
    return {row.id: (row.doc, row.request_id) for row in rows}


def upsert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(t)
    columns = ("user_id", "channel_type", "endpoint_status", "opt_out", "request_id", "doc")
    stmt = insert.on_conflict_do_update(
        index_elements=[t.c.app_id, t.c.id], set_={c: insert.excluded[c] for c in columns}
    )
    conn.execute(stmt, rows)


def by_user(conn: sa.Connection, app_id: str, user_id: str) -> list[sa.Row[Any]]:
    query = sa.select(t.c.id, t.c.doc, t.c.request_id).where(t.c.app_id == app_id, t.c.user_id == user_id)
    return list(conn.execute(query.order_by(t.c.id)))


def delete(conn: sa.Connection, app_id: str, ids: Iterable[str]) -> None:
    conn.execute(sa.delete(t).where(t.c.app_id == app_id, t.c.id.in_(list(ids))))
