"""Campaigns: create, update (a new version each time), read, list, delete; activities as they exist."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.arns import child_arn
from pointcast.aws.errors import BadRequest
from pointcast.aws.wire import new_id, now_iso
from pointcast.campaigns import checks
from pointcast.campaigns.repository import campaigns, delete_activities, delete_runs, with_state
from pointcast.segments.repository import segments
from pointcast.store import lock

_MEMBERS = (
    "CustomDeliveryConfiguration",
    "Description",
    "HoldoutPercent",
    "Hook",
    "IsPaused",
    "Limits",
    "MessageConfiguration",
    "Name",
    "Schedule",
    "SegmentId",
    "SegmentVersion",
    "TemplateConfiguration",
    "TreatmentDescription",
    "TreatmentName",
    "Priority",
)


def _resolve_segment(conn: sa.Connection, app_id: str, doc: dict[str, Any], request: dict[str, Any]) -> None:
    segment_id = doc["SegmentId"]
    if not segments.exists(conn, app_id, segment_id):
        raise BadRequest(f"WriteCampaignRequest.SegmentId: segment '{segment_id}' does not exist in this application")
    latest = segments.get(conn, app_id, segment_id)["Version"]
    version = request.get("SegmentVersion")
    if version is None:
        if "SegmentId" in request:
            doc["SegmentVersion"] = latest
    elif not 1 <= version <= latest:
        raise BadRequest(f"WriteCampaignRequest.SegmentVersion: segment '{segment_id}' has no version {version}")


def _lock(conn: sa.Connection, app_id: str, campaign_id: str, request: dict[str, Any]) -> None:
    """Hold the campaign and the segment the request names (``pointcast.store.lock``): the next ``Version`` is
    computed from the stored one, and the segment must not be deleted before the campaign naming it commits."""
    keys = [campaigns.lock_key(app_id, campaign_id)]
    if request.get("SegmentId"):
        keys.append(segments.lock_key(app_id, request["SegmentId"]))
    lock(conn, *keys)


def _status(doc: dict[str, Any]) -> dict[str, str]:
    """PAUSED when paused; SCHEDULED when new or resumed; otherwise the state the engine gave it."""
    previous = (doc.get("State") or {}).get("CampaignStatus")
    if doc.get("IsPaused"):
        return {"CampaignStatus": "PAUSED"}
    if previous in (None, "PAUSED", "INVALID"):  # INVALID: the engine could not read it (engine.runner)
        return {"CampaignStatus": "SCHEDULED"}
    return {"CampaignStatus": previous}


def _apply(doc: dict[str, Any], request: dict[str, Any], *, creating: bool) -> None:
    doc.update({k: request[k] for k in _MEMBERS if k in request})
    state = _status(doc)
    if "AdditionalTreatments" in request:
        doc["AdditionalTreatments"] = [
            {"Id": str(index + 1), "State": state, **treatment}
            for index, treatment in enumerate(request["AdditionalTreatments"])
        ]
    if creating and "tags" in request:  # an update's tags are not processed (botocore's model): TagResource's job
        doc["tags"] = request["tags"]
    changed = with_state(doc, state["CampaignStatus"])  # State, DefaultState and the treatments' together
    doc.clear()
    doc.update(changed)


def create(
    conn: sa.Connection,
    app_id: str,
    request: dict[str, Any],
    region: str,
    account: str,
    *,
    campaign_id: str | None = None,
) -> dict[str, Any]:
    """A new campaign; ``campaign_id`` is given when the caller needed the ARN first (to check function policies)."""
    apps.require(conn, app_id)
    campaign_id, now = campaign_id or new_id(), now_iso()
    _lock(conn, app_id, campaign_id, request)
    doc: dict[str, Any] = {
        "ApplicationId": app_id,
        "Arn": child_arn(region, account, app_id, "campaigns", campaign_id),
        "CreationDate": now,
        "Id": campaign_id,
        "LastModifiedDate": now,
        "tags": {},
        "Version": 1,
    }
    _apply(doc, request, creating=True)
    _resolve_segment(conn, app_id, doc, request)
    campaigns.insert(conn, app_id, doc)
    return doc


def update(conn: sa.Connection, app_id: str, campaign_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """Members given replace the stored ones; members left out are kept (docs/contract.md)."""
    _lock(conn, app_id, campaign_id, request)
    doc = dict(campaigns.get(conn, app_id, campaign_id, for_update=True))
    checks.check_request(request, stored=doc)  # again, on the campaign as it is now: the rules that tie members
    # together (HoldoutPercent + SizePercent <= 100, ...) must hold for what concurrent updates left
    if doc["State"]["CampaignStatus"] == "COMPLETED":
        raise BadRequest(f"Campaign '{campaign_id}' is COMPLETED and cannot be changed; create a new campaign")
    _apply(doc, request, creating=False)
    _resolve_segment(conn, app_id, doc, request)
    doc["Version"] += 1
    doc["LastModifiedDate"] = now_iso()
    campaigns.replace(conn, app_id, doc)
    return doc


def delete(conn: sa.Connection, app_id: str, campaign_id: str) -> dict[str, Any]:
    lock(conn, campaigns.lock_key(app_id, campaign_id))
    doc = campaigns.delete(conn, app_id, campaign_id)
    delete_activities(conn, app_id, campaign_id)
    delete_runs(conn, app_id, campaign_id)
    return doc
