"""Queries on campaigns (the versioned store) and their activities (runs)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.pinpoint.paging import Page, page_response
from pointcast.pinpoint.versioned import VersionedRepository
from pointcast.store import models as m

campaigns = VersionedRepository(m.campaigns, m.campaign_versions, "campaign_id", "Campaign")


def activities_page(conn: sa.Connection, app_id: str, campaign_id: str, page: Page) -> dict[str, Any]:
    a = m.activities
    query = sa.select(a.c.pk, a.c.doc).where(a.c.app_id == app_id, a.c.campaign_id == campaign_id)
    rows, token = page.fetch(conn, query, a.c.pk)
    return page_response([row.doc for row in rows], token)


def delete_activities(conn: sa.Connection, app_id: str, campaign_id: str) -> None:
    a = m.activities
    conn.execute(sa.delete(a).where(a.c.app_id == app_id, a.c.campaign_id == campaign_id))
