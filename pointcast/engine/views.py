"""What a user can see of campaign runs beyond Pinpoint's API: progress, per-endpoint outcomes, send events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.errors import BadRequest
from pointcast.campaigns.repository import campaigns
from pointcast.store import models as m

# Outcome reason -> campaign_send_status in the event stream record.
SEND_STATUS = {
    "HOLDOUT": "HOLDOUT",
    "QUIET_TIME": "QUIET_TIME",
    "DAILY_LIMIT": "DAILY_CAP",
    "TOTAL_LIMIT": "CAMPAIGN_CAP",
    "OPTED_OUT": "OPTED_OUT",
    "ENDPOINT_INACTIVE": "ENDPOINT_INACTIVE",
    "CHANNEL_NOT_TARGETED": "CHANNEL_NOT_TARGETED",
    "ENDPOINT_DELETED": "ENDPOINT_DELETED",
}


def _check(conn: sa.Connection, app_id: str, campaign_id: str) -> None:
    apps.require(conn, app_id)
    campaigns.get(conn, app_id, campaign_id)


def progress(conn: sa.Connection, app_id: str, campaign_id: str) -> dict[str, Any]:
    """Counts across every run of the campaign: planned (in batches), sent, failed, skipped, filtered."""
    _check(conn, app_id, campaign_id)
    r, b, o = m.runs, m.batches, m.outcomes
    run_rows = list(
        conn.execute(
            sa.select(r.c.id, r.c.state, r.c.scheduled_time)
            .where(r.c.app_id == app_id, r.c.campaign_id == campaign_id)
            .order_by(r.c.pk)
        )
    )
    run_ids = [row.id for row in run_rows]
    status: dict[str, int] = dict(
        conn.execute(sa.select(o.c.status, sa.func.count()).where(o.c.run_id.in_(run_ids)).group_by(o.c.status)).all()
    )
    batch_states: dict[str, int] = dict(
        conn.execute(sa.select(b.c.state, sa.func.count()).where(b.c.run_id.in_(run_ids)).group_by(b.c.state)).all()
    )
    lists = conn.execute(sa.select(b.c.endpoint_ids).where(b.c.run_id.in_(run_ids))).scalars()
    planned = sum(len(orjson.loads(ids)) for ids in lists)
    return {
        "Runs": [{"Id": row.id, "State": row.state, "ScheduledTime": row.scheduled_time} for row in run_rows],
        "Sent": int(status.get("SENT", 0)),
        "Failed": int(status.get("FAILED", 0)),
        "Skipped": int(status.get("SKIPPED", 0)),
        "Filtered": int(status.get("FILTERED", 0)),
        "PendingBatches": int(batch_states.get("PENDING", 0)),
        "Batches": int(sum(batch_states.values())),
        "Planned": planned,
    }


def _page(token: str | None, size: str | None) -> tuple[int, int]:
    try:
        after = int(token[1:]) if token else 0
        limit = int(size) if size else 1000
    except ValueError:
        raise BadRequest("token and page-size must come from this server and be whole numbers") from None
    if not 1 <= limit <= 10_000:
        raise BadRequest("page-size must be from 1 to 10000")
    return after, limit


def outcomes(conn: sa.Connection, app_id: str, campaign_id: str, token: str | None, size: str | None) -> dict[str, Any]:
    """Every endpoint outcome of the campaign's runs, with its treatment and reason; paginated."""
    _check(conn, app_id, campaign_id)
    after, limit = _page(token, size)
    o, a, r = m.outcomes, m.activities, m.runs
    rows = conn.execute(
        sa.select(
            o.c.endpoint_id, o.c.activity_id, o.c.run_id, o.c.status, o.c.reason, o.c.batch_id, o.c.at, a.c.treatment_id
        )
        .select_from(o.join(a, a.c.id == o.c.activity_id).join(r, r.c.id == o.c.run_id))
        .where(r.c.app_id == app_id, r.c.campaign_id == campaign_id)
        .order_by(o.c.run_id, o.c.activity_id, o.c.endpoint_id)
        .offset(after)
        .limit(limit + 1)
    ).all()
    items = [
        {
            "EndpointId": row.endpoint_id,
            "ActivityId": row.activity_id,
            "RunId": row.run_id,
            "TreatmentId": row.treatment_id,
            "Status": row.status,
            "Reason": row.reason,
            "BatchId": row.batch_id,
            "Time": row.at,
        }
        for row in rows[:limit]
    ]
    result: dict[str, Any] = {"Item": items}
    if len(rows) > limit:
        result["NextToken"] = f"o{after + limit}"
    return result


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
