"""Every query on ``apps`` and the cascade when one is deleted."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.aws.errors import NotFound
from pointcast.pinpoint.paging import Page
from pointcast.store import models as m


def insert(conn: sa.Connection, row: dict[str, Any]) -> None:
    conn.execute(sa.insert(m.apps).values(**row))


def get(conn: sa.Connection, app_id: str) -> sa.Row[Any]:
    row = conn.execute(sa.select(m.apps).where(m.apps.c.id == app_id)).first()
    if row is None:
        raise NotFound(f"Application '{app_id}' not found")
    return row


def require(conn: sa.Connection, app_id: str) -> None:
    """Raise NotFound unless the application exists (a cheap indexed probe)."""
    if conn.execute(sa.select(m.apps.c.pk).where(m.apps.c.id == app_id)).first() is None:
        raise NotFound(f"Application '{app_id}' not found")


def page(conn: sa.Connection, page: Page) -> tuple[list[Any], str | None]:
    return page.fetch(conn, sa.select(m.apps), m.apps.c.pk)


def update(conn: sa.Connection, app_id: str, **values: Any) -> None:
    conn.execute(sa.update(m.apps).where(m.apps.c.id == app_id).values(**values))


def delete_cascade(conn: sa.Connection, app_id: str) -> None:
    """Delete the application and everything in it, campaign runs included (a deleted app sends nothing more)."""
    run_ids = sa.select(m.runs.c.id).where(m.runs.c.app_id == app_id).scalar_subquery()
    batch_ids = sa.select(m.batches.c.id).where(m.batches.c.run_id.in_(run_ids)).scalar_subquery()
    conn.execute(sa.delete(m.attempts).where(m.attempts.c.batch_id.in_(batch_ids)))
    conn.execute(sa.delete(m.outcomes).where(m.outcomes.c.run_id.in_(run_ids)))
    conn.execute(sa.delete(m.batches).where(m.batches.c.run_id.in_(run_ids)))
    for table in (
        m.runs,
        m.activities,
        m.endpoints,
        m.segments,
        m.segment_versions,
        m.campaigns,
        m.campaign_versions,
        m.events,
        m.import_members,
        m.segment_imports,
        m.import_jobs,
    ):
        conn.execute(sa.delete(table).where(table.c.app_id == app_id))
    conn.execute(sa.delete(m.apps).where(m.apps.c.id == app_id))
