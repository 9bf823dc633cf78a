"""Queries on segments (the versioned store) and on what refers to them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.pinpoint.versioned import VersionedRepository
from pointcast.store import models as m

segments = VersionedRepository(m.segments, m.segment_versions, "segment_id", "Segment")


def segments_using(conn: sa.Connection, app_id: str, segment_id: str) -> list[str]:
    """Segments (``ID`` or ``ID version N``) one of whose versions that may still be evaluated takes this one as a
    source segment (SegmentGroups): a current version, a version a campaign is written against (its SegmentVersion,
    the latest when it was written), and, through them, the versions their own sources name (a source without a
    Version is its current one)."""
    current: dict[str, dict[str, Any]] = {}
    for segment in conn.execute(sa.select(m.segments.c.id, m.segments.c.doc).where(m.segments.c.app_id == app_id)):
        current[segment.id] = segment.doc
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    v = m.segment_versions
    for version in conn.execute(sa.select(v.c.segment_id, v.c.version, v.c.doc).where(v.c.app_id == app_id)):
        versions[(version.segment_id, version.version)] = version.doc

    def doc_of(key: tuple[str, int | None]) -> dict[str, Any] | None:
        if key[1] is None or (key[0] in current and current[key[0]].get("Version") == key[1]):
            return current.get(key[0])
        return versions.get((key[0], key[1]))

    pending: list[tuple[str, int | None]] = [(sid, None) for sid in current]
    for campaign in conn.execute(sa.select(m.campaigns.c.doc).where(m.campaigns.c.app_id == app_id)):
        if campaign.doc.get("SegmentId"):
            pending.append((campaign.doc["SegmentId"], campaign.doc.get("SegmentVersion")))
    seen: set[tuple[str, int | None]] = set()
    users: list[str] = []
    while pending:
        key = pending.pop()
        doc = doc_of(key)
        if key in seen or doc is None:
            continue
        seen.add(key)
        groups = (doc.get("SegmentGroups") or {}).get("Groups") or []
        for source in (s for group in groups for s in group.get("SourceSegments") or []):
            if source.get("Id") == segment_id and key[0] != segment_id:
                is_current = doc is current.get(key[0])
                name = key[0] if is_current else f"{key[0]} version {doc.get('Version')}"
                if name not in users:
                    users.append(name)
            pending.append((source.get("Id", ""), source.get("Version")))
    return users


def campaigns_using(conn: sa.Connection, app_id: str, segment_id: str) -> list[str]:
    """Ids of campaigns (not deleted) whose SegmentId is this segment."""
    rows = conn.execute(sa.select(m.campaigns.c.id, m.campaigns.c.doc).where(m.campaigns.c.app_id == app_id))
    return [row.id for row in rows if row.doc.get("SegmentId") == segment_id]
