"""Segments: create, update (a new version each time), read, list, delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.arns import child_arn
from pointcast.aws.errors import BadRequest, NotFound
from pointcast.aws.wire import new_id, now_iso, parse_instant
from pointcast.imports import repository as imports
from pointcast.imports.audience import is_imported
from pointcast.pinpoint import limits
from pointcast.segments.evaluate import compile_segment
from pointcast.segments.repository import campaigns_using, segments, segments_using
from pointcast.store import lock

_MEMBERS = ("Dimensions", "Name", "SegmentGroups")


def _lock(conn: sa.Connection, app_id: str, segment_id: str | None, request: dict[str, Any]) -> None:
    """Hold the segment and the source segments the request names (``pointcast.store.lock``), in one call: the next
    ``Version`` is computed from the stored one, and a source must not be deleted or changed into a cycle before
    this segment commits."""
    groups = (request.get("SegmentGroups") or {}).get("Groups") or []
    ids = {source.get("Id") for group in groups for source in group.get("SourceSegments") or []}
    ids.add(segment_id)
    lock(conn, *(segments.lock_key(app_id, i) for i in ids if isinstance(i, str)))


def _check(conn: sa.Connection, app_id: str, request: dict[str, Any], own_id: str | None) -> None:
    if own_id is None:  # on an update, tags are "not processed" (the model, since 2023-05-22): TagResource's job
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
        sources = group.get("SourceSegments") or []
        imported = [src["Id"] for src in sources if is_imported(segments.get(conn, app_id, src["Id"]))]
        if imported and len(sources) > 1:  # the model: "more than one dimensional segment or only one imported"
            raise BadRequest(
                f"WriteSegmentRequest.SegmentGroups.Groups[{g}].SourceSegments: an imported segment "
                f"('{imported[0]}') must be the group's only source segment"
            )


def _check_compiles(conn: sa.Connection, app_id: str, doc: dict[str, Any]) -> None:
    """The segment as it will be stored must compile, with its sources as they are (and itself as it will be):
    an unknown operator or a cycle through other segments would otherwise surface only when a campaign runs."""

    def load(segment_id: str, version: int | None) -> dict[str, Any]:
        if version is None:
            return doc if segment_id == doc["Id"] else segments.get(conn, app_id, segment_id)
        return segments.version(conn, app_id, segment_id, str(version))

    dimensions = [("Dimensions", doc.get("Dimensions"))] + [
        (f"SegmentGroups.Groups[{g}].Dimensions[{d}]", dims)
        for g, group in enumerate((doc.get("SegmentGroups") or {}).get("Groups") or [])
        for d, dims in enumerate(group.get("Dimensions") or [])
    ]
    for where, dims in dimensions:
        _check_dates(where, dims or {})
    try:
        compile_segment(doc, now=datetime.now(UTC), load_segment=load)
    except (ValueError, NotFound) as exc:
        message = exc.message if isinstance(exc, NotFound) else str(exc)
        raise BadRequest(f"WriteSegmentRequest: the segment cannot be evaluated: {message}") from None


_DATE_KINDS = {"BEFORE": 1, "AFTER": 1, "ON": 1, "BETWEEN": 2}


def _check_dates(where: str, dimensions: dict[str, Any]) -> None:
    """A date comparison's Values are ISO 8601 dates, one (two for BETWEEN, in order), and a GPS point is on the
    globe with a range that is not negative: evaluated, such a segment matches nobody, which is not what anyone
    writing it meant."""
    for member in ("Attributes", "UserAttributes"):
        for name, dimension in (dimensions.get(member) or {}).items():
            kind = dimension.get("AttributeType")
            if kind not in _DATE_KINDS:
                continue
            path = f"WriteSegmentRequest.{where}.{member}.{name}.Values"
            values = list(dimension.get("Values") or [])
            if len(values) != _DATE_KINDS[kind]:
                raise BadRequest(f"{path}: AttributeType {kind} takes {_DATE_KINDS[kind]} date(s) (got {len(values)})")
            moments = [parse_instant(value, path) for value in values]
            if len(moments) == 2 and moments[0] > moments[1]:
                raise BadRequest(f"{path}: BETWEEN takes the earlier date first (got {values[0]}, {values[1]})")
    point = (dimensions.get("Location") or {}).get("GPSPoint")
    if point:
        path = f"WriteSegmentRequest.{where}.Location.GPSPoint"
        coordinates = point.get("Coordinates") or {}
        latitude, longitude = coordinates.get("Latitude"), coordinates.get("Longitude")
        if latitude is None or longitude is None or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise BadRequest(
                f"{path}.Coordinates: Latitude must be from -90 to 90 and Longitude from -180 to 180 "
                f"(got {latitude}, {longitude})"
            )
        if point.get("RangeInKilometers") is not None and point["RangeInKilometers"] < 0:
            raise BadRequest(f"{path}.RangeInKilometers must not be negative (got {point['RangeInKilometers']})")


def _some(kind: str, ids: list[str], shown: int = 5) -> str:
    """``campaign(s) a, b, c`` or ``7 campaigns, among them a, b, c, d, e``: a message stays short."""
    if len(ids) <= shown:
        return f"{kind}(s) {', '.join(ids)}"
    return f"{len(ids)} {kind}s, among them {', '.join(ids[:shown])}"


def create(conn: sa.Connection, app_id: str, request: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    apps.require(conn, app_id)
    _lock(conn, app_id, None, request)
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
    _check_compiles(conn, app_id, doc)
    segments.insert(conn, app_id, doc)
    return doc


def update(conn: sa.Connection, app_id: str, segment_id: str, request: dict[str, Any]) -> dict[str, Any]:
    _lock(conn, app_id, segment_id, request)
    doc = dict(segments.get(conn, app_id, segment_id, for_update=True))
    if doc.get("SegmentType") == "IMPORT" and (request.get("Dimensions") or request.get("SegmentGroups")):
        raise BadRequest(
            f"WriteSegmentRequest: segment '{segment_id}' is an IMPORT segment: its members are the endpoints its "
            "import jobs wrote, and Dimensions or SegmentGroups cannot narrow them. Create a segment with "
            "SegmentGroups naming it as a SourceSegment, and Dimensions, instead"
        )
    _check(conn, app_id, request, segment_id)
    doc.update({k: request[k] for k in _MEMBERS if k in request})
    doc["Version"] += 1
    doc["LastModifiedDate"] = now_iso()
    _check_compiles(conn, app_id, doc)
    segments.replace(conn, app_id, doc)
    return doc


def delete(conn: sa.Connection, app_id: str, segment_id: str) -> dict[str, Any]:
    lock(conn, segments.lock_key(app_id, segment_id))
    segments.get(conn, app_id, segment_id)
    users = campaigns_using(conn, app_id, segment_id)
    if users:
        raise BadRequest(f"Segment '{segment_id}' is used by {_some('campaign', users)}; delete those first")
    sources = segments_using(conn, app_id, segment_id)
    if sources:
        raise BadRequest(
            f"Segment '{segment_id}' is a source segment of {_some('segment', sources)}; change those first"
        )
    doc = segments.delete(conn, app_id, segment_id)
    if doc.get("SegmentType") == "IMPORT":  # its members (a row per imported endpoint) go with it
        imports.forget_members(conn, app_id, segment_id=segment_id)
    return doc
