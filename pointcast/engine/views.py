"""What a user can see of campaign runs beyond Pinpoint's API: progress, per-endpoint outcomes, send events."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.apps import service as apps_service
from pointcast.aws.errors import BadRequest, NotFound
from pointcast.campaigns.repository import campaigns
from pointcast.channels.webhook.breaker import destination_of
from pointcast.engine.hooks import FILTERED, effective_hook
from pointcast.engine.repository import kept_settings
from pointcast.engine.treatments import post_urls, treatments_of
from pointcast.store import models as m

# Outcome reason -> campaign_send_status in the event stream record.
SEND_STATUS = {
    "HOLDOUT": "HOLDOUT",
    "QUIET_TIME": "QUIET_TIME",
    "MISSED_OCCURRENCE": "MISSED_OCCURRENCE",
    "DAILY_LIMIT": "DAILY_CAP",
    "TOTAL_LIMIT": "CAMPAIGN_CAP",
    "OPTED_OUT": "OPTED_OUT",
    "ENDPOINT_INACTIVE": "ENDPOINT_INACTIVE",
    "CHANNEL_NOT_TARGETED": "CHANNEL_NOT_TARGETED",
    "ENDPOINT_DELETED": "ENDPOINT_DELETED",
}


def _check(conn: sa.Connection, app_id: str, campaign_id: str) -> dict[str, Any]:
    apps.require(conn, app_id)
    return campaigns.get(conn, app_id, campaign_id)


def progress(conn: sa.Connection, app_id: str, campaign_id: str, down: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Counts across every run of the campaign: planned (in batches), sent, failed, skipped, filtered; and of the
    destinations ``down`` (open circuit breakers), those the campaign POSTs to: its batches wait for them."""
    doc = _check(conn, app_id, campaign_id)
    r, b, o = m.runs, m.batches, m.outcomes
    run_rows = list(
        conn.execute(
            sa.select(r.c.id, r.c.state, r.c.scheduled_time, r.c.error, r.c.plan_state)
            .where(r.c.app_id == app_id, r.c.campaign_id == campaign_id)
            .order_by(r.c.pk)
        )
    )
    run_ids = [row.id for row in run_rows]
    status: dict[str, int] = dict(
        conn.execute(sa.select(o.c.status, sa.func.count()).where(o.c.run_id.in_(run_ids)).group_by(o.c.status)).all()
    )
    # A FILTER hook's leavings are SKIPPED with FILTERED_BY_HOOK: counted apart, since unlike the endpoints
    # skipped while planning they were in batches (Planned). (Counted from the SKIPPED rows alone: the counts
    # above come from the (run, status) index without reading a row, and watch asks for them twice a second.)
    if status.get("SKIPPED"):
        filtered = conn.execute(
            sa.select(sa.func.count()).where(o.c.run_id.in_(run_ids), o.c.status == "SKIPPED", o.c.reason == FILTERED)
        ).scalar_one()
        status["SKIPPED"] -= filtered
        status["FILTERED"] = filtered
    batch_states: dict[str, int] = dict(
        conn.execute(sa.select(b.c.state, sa.func.count()).where(b.c.run_id.in_(run_ids)).group_by(b.c.state)).all()
    )
    lists = conn.execute(sa.select(b.c.endpoint_ids).where(b.c.run_id.in_(run_ids))).scalars()
    planned = sum(len(orjson.loads(ids)) for ids in lists)
    mine: set[str] = set()
    if down:  # where the campaign's runs POST: each with the application settings it keeps (its project hook)
        current: dict[str, Any] | None = None
        for row in run_rows:
            kept = kept_settings(row.plan_state)
            if kept is None:
                kept = current = current if current is not None else apps_service.get_settings(conn, app_id)
            mine |= destinations(doc, kept)
    return {
        "Runs": [
            {"Id": row.id, "State": row.state, "ScheduledTime": row.scheduled_time}
            | ({"Error": row.error} if row.error else {})
            for row in run_rows
        ],
        "Sent": int(status.get("SENT", 0)),
        "Failed": int(status.get("FAILED", 0)),
        "Skipped": int(status.get("SKIPPED", 0)),
        "Filtered": int(status.get("FILTERED", 0)),
        "PendingBatches": int(batch_states.get("PENDING", 0)),
        "Batches": int(sum(batch_states.values())),
        "Planned": planned,
        "DestinationsDown": [d for d in down if d["Destination"] in mine],
    }


def destinations(doc: dict[str, Any], app_settings: dict[str, Any]) -> set[str]:
    """Where a campaign POSTs (``scheme://host:port/path``): what each of its treatments is sent to, as delivery sends
    it (``treatments.post_urls``, with the hook it runs: its own, else the project's default)."""
    hook = effective_hook(doc, app_settings)
    _, treatments = treatments_of(doc)
    return {destination_of(url) for treatment in treatments for url in post_urls(hook, treatment)}


def _page(token: str | None, size: str | None) -> tuple[tuple[str, str] | None, int]:
    """The page's start (the activity id and endpoint id of the last outcome on the page before) and its size."""
    try:
        limit = int(size) if size else 1000
        position = None
        if token:
            activity_id, endpoint_id = orjson.loads(base64.urlsafe_b64decode(token.encode("ascii")))
            position = (str(activity_id), str(endpoint_id))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("token must be a NextToken from this server, and page-size a whole number") from None
    if not 1 <= limit <= 10_000:
        raise BadRequest("page-size must be from 1 to 10000")
    return position, limit


def _token(activity_id: str, endpoint_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([activity_id, endpoint_id])).decode("ascii")


def outcomes(conn: sa.Connection, app_id: str, campaign_id: str, token: str | None, size: str | None) -> dict[str, Any]:
    """Every endpoint outcome of the campaign's runs, with its treatment and reason; paginated.

    In run order, then activity (treatment), then endpoint id. A page is read from the outcomes' primary key
    (activity, endpoint) onwards from where the last page ended, not by skipping the rows before it, so paging
    through a run of a million endpoints costs the same per page at the end as at the start."""
    _check(conn, app_id, campaign_id)
    position, limit = _page(token, size)
    o, a, r = m.outcomes, m.activities, m.runs
    activities = conn.execute(
        sa.select(a.c.id, a.c.treatment_id)
        .select_from(a.join(r, r.c.id == a.c.run_id))
        .where(r.c.app_id == app_id, r.c.campaign_id == campaign_id)
        .order_by(r.c.pk, a.c.treatment_id, a.c.pk)
    ).all()
    start, after = 0, None
    if position is not None:
        index = next((n for n, row in enumerate(activities) if row.id == position[0]), None)
        if index is None:
            raise BadRequest("token must be a NextToken of this campaign's outcomes")
        start, after = index, position[1]
    items: list[dict[str, Any]] = []
    for activity in activities[start:]:
        query = sa.select(o.c.endpoint_id, o.c.run_id, o.c.status, o.c.reason, o.c.batch_id, o.c.at).where(
            o.c.activity_id == activity.id
        )
        if after is not None:
            query = query.where(o.c.endpoint_id > after)
            after = None  # only within the activity the last page ended in
        for row in conn.execute(query.order_by(o.c.endpoint_id).limit(limit + 1 - len(items))):
            items.append(
                {
                    "EndpointId": row.endpoint_id,
                    "ActivityId": activity.id,
                    "RunId": row.run_id,
                    "TreatmentId": activity.treatment_id,
                    "Status": row.status,
                    "Reason": row.reason,
                    "BatchId": row.batch_id,
                    "Time": row.at,
                }
            )
        if len(items) > limit:
            break
    items = items[: limit + 1]
    failed = {item["BatchId"] for item in items[:limit] if item["Status"] == "FAILED" and item["BatchId"]}
    if failed:  # the last response, as the reason's words promise: what the destination said last
        last = _last_attempts(conn, failed)
        for item in items[:limit]:
            if item["Status"] == "FAILED" and item["BatchId"] in last:
                item["LastAttempt"] = last[item["BatchId"]]
    result: dict[str, Any] = {"Item": items[:limit]}
    if len(items) > limit:
        last_item = items[limit - 1]
        result["NextToken"] = _token(last_item["ActivityId"], last_item["EndpointId"])
    return result


def _attempt(row: Any) -> dict[str, Any]:
    return {
        "Attempt": row.attempt,
        "Time": row.at,
        "DurationMs": round(row.duration_ms, 1),
        "StatusCode": row.status_code,
        "Error": row.error,
        "Response": row.response,
        "RequestId": row.request_id,
    }


def _last_attempts(conn: sa.Connection, batch_ids: set[str]) -> dict[str, dict[str, Any]]:
    t = m.attempts
    last: dict[str, dict[str, Any]] = {}
    query = sa.select(t).where(t.c.batch_id.in_(sorted(batch_ids))).order_by(t.c.batch_id, t.c.attempt, t.c.pk)
    for row in conn.execute(query):
        last[row.batch_id] = _attempt(row)
    return last


def attempts(conn: sa.Connection, app_id: str, campaign_id: str, batch_id: str) -> dict[str, Any]:
    """Every attempt on one of the campaign's batches, in order: its hook's calls and its deliveries, each with the
    status, error and (the start of) the response."""
    _check(conn, app_id, campaign_id)
    b, r, t = m.batches, m.runs, m.attempts
    owner = conn.execute(
        sa.select(b.c.id)
        .select_from(b.join(r, r.c.id == b.c.run_id))
        .where(b.c.id == batch_id, r.c.app_id == app_id, r.c.campaign_id == campaign_id)
    ).first()
    if owner is None:
        raise NotFound(f"Campaign '{campaign_id}' has no batch '{batch_id}'")
    rows = conn.execute(sa.select(t).where(t.c.batch_id == batch_id).order_by(t.c.attempt, t.c.pk))
    return {"BatchId": batch_id, "Attempts": [_attempt(row) for row in rows]}


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def events(
    conn: sa.Connection, app_id: str, campaign_id: str, account: str, token: str | None, size: str | None
) -> dict[str, Any]:
    """``_campaign.send`` records in Pinpoint's event-stream format, one per endpoint outcome."""
    page = outcomes(conn, app_id, campaign_id, token, size)
    e = m.endpoints
    ids = list({item["EndpointId"] for item in page["Item"]})
    docs = dict(conn.execute(sa.select(e.c.id, e.c.doc).where(e.c.app_id == app_id, e.c.id.in_(ids))).all())
    campaign = campaigns.get(conn, app_id, campaign_id)
    custom = bool(campaign.get("CustomDeliveryConfiguration"))
    records = []
    for item in page["Item"]:
        status = {"SENT": "SUCCESS", "FAILED": "FAILURE"}.get(item["Status"]) or SEND_STATUS.get(
            str(item["Reason"]), str(item["Reason"])
        )
        doc = docs.get(item["EndpointId"], "{}")
        records.append(
            {
                "event_type": "_campaign.send",
                "event_timestamp": _ms(item["Time"]),
                "arrival_timestamp": _ms(item["Time"]),
                "event_version": "3.1",
                "application": {"app_id": app_id, "sdk": {}},
                "client": {"client_id": item["EndpointId"]},
                "device": {"platform": {}},
                "session": {},
                "attributes": {
                    "treatment_id": item["TreatmentId"],
                    "campaign_activity_id": item["ActivityId"],
                    "delivery_type": "CUSTOM" if custom else _channel(doc),
                    "campaign_id": campaign_id,
                    "campaign_send_status": status,
                },
                "client_context": {"custom": {"endpoint": doc}},
                "awsAccountId": account,
            }
        )
    result: dict[str, Any] = {"Item": records}
    if "NextToken" in page:
        result["NextToken"] = page["NextToken"]
    return result


def _channel(doc: str) -> str:
    return str(orjson.loads(doc).get("ChannelType", "UNKNOWN"))
