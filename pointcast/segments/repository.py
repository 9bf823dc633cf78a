"""Queries on segments (the versioned store) and on what refers to them."""

from __future__ import annotations

import sqlalchemy as sa

from pointcast.pinpoint.versioned import VersionedRepository
from pointcast.store import models as m

segments = VersionedRepository(m.segments, m.segment_versions, "segment_id", "Segment")


def segments_using(conn: sa.Connection, app_id: str, segment_id: str) -> list[str]:
    """Ids of segments whose current version takes this one as a source segment (SegmentGroups)."""
    rows = conn.execute(sa.select(m.segments.c.id, m.segments.c.doc).where(m.segments.c.app_id == app_id))
    return [
        row.id
        for row in rows
        if row.id != segment_id
        and any(
            source.get("Id") == segment_id
            for group in ((row.doc.get("SegmentGroups") or {}).get("Groups") or [])
            for source in group.get("SourceSegments") or []
        )
    ]


def campaigns_using(conn: sa.Connection, app_id: str, segment_id: str) -> list[str]:
    """Ids of campaigns (not deleted) whose SegmentId is this segment."""
    rows = conn.execute(sa.select(m.campaigns.c.id, m.campaigns.c.doc).where(m.campaigns.c.app_id == app_id))
    return [row.id for row in rows if row.doc.get("SegmentId") == segment_id]
