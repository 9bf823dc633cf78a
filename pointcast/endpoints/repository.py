"""Every query on ``endpoints``: bulk reads by id and one bulk upsert, so a batch of 100 is two statements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from pointcast.store import models as m

t = m.endpoints


def docs_by_id(
    conn: sa.Connection, app_id: str, ids: Sequence[str], *, for_update: bool = False
) -> dict[str, tuple[str, str | None]]:
    """The stored JSON text (and last RequestId) of each endpoint in ``ids`` that exists; ``for_update`` locks the
    rows (PostgreSQL) until the transaction ends.

    On PostgreSQL the ids are probed one by one through the primary key (``unnest`` + ``LATERAL``): with an
    ``IN`` list the planner may pick the user index and scan the whole app while the table is not yet analyzed.
    """
    if conn.dialect.name == "postgresql":
        lock = " FOR UPDATE" if for_update else ""
        rows = conn.exec_driver_sql(
            "SELECT e.id, e.doc, e.request_id FROM unnest(%s::text[]) AS u(id) CROSS JOIN LATERAL "
            f"(SELECT id, doc, request_id FROM endpoints WHERE app_id = %s AND id = u.id{lock}) AS e",
            (list(ids), app_id),
        )
        return {row[0]: (row[1], row[2]) for row in rows}
    rows = conn.execute(sa.select(t.c.id, t.c.doc, t.c.request_id).where(t.c.app_id == app_id, t.c.id.in_(ids)))
    return {row.id: (row.doc, row.request_id) for row in rows}


def sendable_docs(conn: sa.Connection, app_id: str, ids: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The stored JSON text of each endpoint in ``ids`` that exists and may still be sent to, and the reason for
    each one that exists but may not (``ENDPOINT_INACTIVE``, ``OPTED_OUT``): what a batch planned earlier than it is
    sent checks again (``docs_by_id``'s access path)."""
    if conn.dialect.name == "postgresql":
        rows: Any = conn.exec_driver_sql(
            "SELECT e.id, e.doc, e.endpoint_status, e.opt_out FROM unnest(%s::text[]) AS u(id) CROSS JOIN LATERAL "
            "(SELECT id, doc, endpoint_status, opt_out FROM endpoints WHERE app_id = %s AND id = u.id) AS e",
            (list(ids), app_id),
        )
    else:
        columns = (t.c.id, t.c.doc, t.c.endpoint_status, t.c.opt_out)
        rows = conn.execute(sa.select(*columns).where(t.c.app_id == app_id, t.c.id.in_(ids)))
    docs: dict[str, str] = {}
    not_now: dict[str, str] = {}
    for endpoint_id, doc, status, opt_out in rows:
        if status != "ACTIVE":
            not_now[endpoint_id] = "ENDPOINT_INACTIVE"
        elif opt_out != "NONE":
            not_now[endpoint_id] = "OPTED_OUT"
        else:
            docs[endpoint_id] = doc
    return docs, not_now


UPSERT_COLUMNS = (
    "app_id",
    "id",
    "user_id",
    "channel_type",
    "endpoint_status",
    "opt_out",
    "request_id",
    "doc",
    "timezone",
    "last_active",
)
_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in UPSERT_COLUMNS[2:-1]) + (
    ", last_active = CASE WHEN endpoints.last_active IS NULL OR excluded.last_active > endpoints.last_active "
    "THEN excluded.last_active ELSE endpoints.last_active END"
)


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


def touch(conn: sa.Connection, app_id: str, moments: dict[str, str]) -> None:
    """Move each endpoint's ``last_active`` forward to the given ISO time (never back)."""
    if not moments:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"UPDATE endpoints SET last_active = {mark} WHERE app_id = {mark} AND id = {mark} "
        f"AND (last_active IS NULL OR last_active < {mark})"
    )
    conn.exec_driver_sql(sql, [(at, app_id, endpoint_id, at) for endpoint_id, at in moments.items()])


def by_user(conn: sa.Connection, app_id: str, user_id: str) -> list[sa.Row[Any]]:
    query = sa.select(t.c.id, t.c.doc, t.c.request_id).where(t.c.app_id == app_id, t.c.user_id == user_id)
    return list(conn.execute(query.order_by(t.c.id)))


def delete(conn: sa.Connection, app_id: str, ids: Iterable[str]) -> None:
    conn.execute(sa.delete(t).where(t.c.app_id == app_id, t.c.id.in_(list(ids))))


def user_rows(conn: sa.Connection, app_id: str, user_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(endpoint id, user id, stored JSON text) of every endpoint of these users."""
    rows = conn.execute(sa.select(t.c.id, t.c.user_id, t.c.doc).where(t.c.app_id == app_id, t.c.user_id.in_(user_ids)))
    return [(row.id, row.user_id, row.doc) for row in rows]
