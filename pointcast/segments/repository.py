"""Queries on segments (the versioned store) and on what refers to them."""

from __future__ import annotations

import sqlalchemy as sa

from pointcast.pinpoint.versioned import VersionedRepository
from pointcast.store import models as m

segments = VersionedRepository(m.segments, m.segment_versions, "segment_id", "Segment")


def campaigns_using(conn: sa.Connection, app_id: str, segment_id: str) -> list[str]:
    """Ids of campaigns (not deleted) whose SegmentId is this segment."""
    rows = conn.execute(sa.select(m.campaigns.c.id, m.campaigns.c.doc).where(m.campaigns.c.app_id == app_id))
    return [row.id for row in rows if row.doc.get("SegmentId") == segment_id]
