"""Segments: create, update (a new version each time), read, list, delete."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.arns import child_arn
from pointcast.aws.errors import BadRequest
from pointcast.aws.wire import new_id, now_iso
from pointcast.imports import repository as imports
from pointcast.pinpoint import limits
from pointcast.segments.repository import campaigns_using, segments

_MEMBERS = ("Dimensions", "Name", "SegmentGroups")


def _check(conn: sa.Connection, app_id: str, request: dict[str, Any], own_id: str | None) -> None:
    limits.check_tags(request.get("tags"), "WriteSegmentRequest.tags")
    groups = (request.get("SegmentGroups") or {}).get("Groups") or []
    for g, group in enumerate(groups):
        for s, source in enumerate(group.get("SourceSegments") or []):
            path = f"WriteSegmentRequest.SegmentGroups.Groups[{g}].SourceSegments[{s}]"
            if source["Id"] == own_id:
                raise BadRequest(f"{path}.Id refers to the segment itself")
            if not segments.exists(conn, app_id, source["Id"]):
                raise BadRequest(f"{path}.Id: segment '{source['Id']}' does not exist in this application")
            version = source.get("Version")
            if version is not None and not 1 <= version <= segments.get(conn, app_id, source["Id"])["Version"]:
                raise BadRequest(f"{path}.Version: segment '{source['Id']}' has no version {version}")


def create(conn: sa.Connection, app_id: str, request: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    apps.require(conn, app_id)
    _check(conn, app_id, request, None)
    segment_id, now = new_id(), now_iso()
    doc: dict[str, Any] = {
        "ApplicationId": app_id,
        "Arn": child_arn(region, account, app_id, "segments", segment_id),
        "CreationDate": now,
        "Id": segment_id,
        "LastModifiedDate": now,
        "SegmentType": "DIMENSIONAL",
        "tags": request.get("tags") or {},
        "Version": 1,
    }
    doc.update({k: request[k] for k in _MEMBERS if k in request})
    segments.insert(conn, app_id, doc)
    return doc


def update(conn: sa.Connection, app_id: str, segment_id: str, request: dict[str, Any]) -> dict[str, Any]:
    doc = dict(segments.get(conn, app_id, segment_id))
    _check(conn, app_id, request, segment_id)
    doc.update({k: request[k] for k in _MEMBERS if k in request})
    if "tags" in request:
        doc["tags"] = request["tags"]
    doc["Version"] += 1
    doc["LastModifiedDate"] = now_iso()
    segments.replace(conn, app_id, doc)
    return doc


def delete(conn: sa.Connection, app_id: str, segment_id: str) -> dict[str, Any]:
    segments.get(conn, app_id, segment_id)
    users = campaigns_using(conn, app_id, segment_id)
    if users:
        raise BadRequest(f"Segment '{segment_id}' is used by campaign(s) {', '.join(users)}; delete those first")
    doc = segments.delete(conn, app_id, segment_id)
    if doc.get("SegmentType") == "IMPORT":  # its members (a row per imported endpoint) go with it
        imports.forget_members(conn, app_id, segment_id=segment_id)
    return doc
