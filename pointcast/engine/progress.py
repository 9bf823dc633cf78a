"""Closing activities and runs when their last batch ends, and moving the campaign's state along."""

from __future__ import annotations

from datetime import datetime

import orjson
import sqlalchemy as sa

from pointcast.aws.wire import iso_ms
from pointcast.campaigns.repository import campaigns, with_state
from pointcast.engine import repository as repo
from pointcast.engine import schedule
from pointcast.store import models as m


def finish_activity(conn: sa.Connection, activity_id: str, now: datetime) -> None:
    """If the plan is whole and no batch of the activity is pending, write its final counts; then close the run if
    it is done.

    Batches of one run finish in concurrent transactions; each takes the run's row lock first (PostgreSQL; SQLite
    has one writer anyway), so the last one to commit always sees every other batch finished. Batches are sent while
    the rest of the run is planned: until planning ends (it calls this too), none of them closes the activity.
    """
    row = conn.execute(sa.select(m.activities).where(m.activities.c.id == activity_id)).first()
    if row is None:
        return  # the campaign or its app was deleted meanwhile
    run = conn.execute(sa.select(m.runs.c.state, m.runs.c.error).where(m.runs.c.id == row.run_id).with_for_update())
    run_state, run_error = run.one_or_none() or (None, None)
    if run_state == "PLANNING":
        return
    if row.zone_sends is not None:  # local time over several send times: count the zones as they end
        waiting = repo.pending_send_times(conn, activity_id)
        if waiting:
            _count_zones(conn, activity_id, orjson.loads(row.zone_sends), waiting)
            return
    elif repo.pending_batches(conn, activity_id):
        return
    row = conn.execute(sa.select(m.activities).where(m.activities.c.id == activity_id)).one()  # read under the lock
    if row.state == "COMPLETED":
        return
    counts = repo.outcome_counts(conn, activity_id)
    doc = dict(row.doc)
    doc.update(
        State="COMPLETED",
        End=iso_ms(now),
        SuccessfulEndpointCount=counts.get("SENT", 0),
        TotalEndpointCount=repo.batch_endpoint_count(conn, activity_id),
        TimezonesCompletedCount=doc.get("TimezonesTotalCount", 1),
        Result="FAIL" if counts.get("FAILED") or run_error else "SUCCESS",
    )
    repo.save_activity(conn, doc)
    finish_run(conn, row.run_id, now)


def _count_zones(conn: sa.Connection, activity_id: str, sends: dict[str, int], waiting: set[str]) -> None:
    """TimezonesCompletedCount: the zones whose send time has no batch left to send (sent or failed)."""
    done = sum(n for at, n in sends.items() if at not in waiting)
    row = conn.execute(sa.select(m.activities).where(m.activities.c.id == activity_id)).one()  # under the lock
    if row.doc.get("TimezonesCompletedCount") != done:
        repo.save_activity(conn, {**row.doc, "TimezonesCompletedCount": done})


def finish_run(conn: sa.Connection, run_id: str, now: datetime) -> None:
    activities = repo.activities_of_run(conn, run_id)
    if any(a.state != "COMPLETED" for a in activities):
        return
    run = repo.get_run(conn, run_id)
    repo.set_run_state(conn, run_id, "COMPLETED")
    if not campaigns.exists(conn, run.app_id, run.campaign_id) or repo.has_open_run(conn, run.app_id, run.campaign_id):
        return  # gone, or another (local-time) run of it is still going: it stays EXECUTING
    doc = dict(campaigns.get(conn, run.app_id, run.campaign_id))
    last = repo.last_run_time(conn, run.app_id, run.campaign_id) or run.scheduled_time
    created = schedule.parse_time(doc["CreationDate"])
    done = schedule.finished(doc.get("Schedule") or {}, created, schedule.parse_time(last))
    state = "COMPLETED" if done else "PENDING_NEXT_RUN"
    campaigns.change_current(
        conn, run.app_id, run.campaign_id, doc["Version"], lambda d: d if d.get("IsPaused") else with_state(d, state)
    )
