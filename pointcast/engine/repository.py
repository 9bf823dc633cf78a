"""Every query the engine makes: runs, activities, batches, outcomes, attempts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from pointcast.endpoints.repository import sendable_docs
from pointcast.store import models as m
from pointcast.store.db import storable

# --- runs and activities ---------------------------------------------------------------------------------------


def last_run_time(conn: sa.Connection, app_id: str, campaign_id: str) -> str | None:
    r = m.runs
    query = sa.select(sa.func.max(r.c.scheduled_time)).where(r.c.app_id == app_id, r.c.campaign_id == campaign_id)
    value: str | None = conn.execute(query).scalar()
    return value


def has_open_run(conn: sa.Connection, app_id: str, campaign_id: str) -> bool:
    r = m.runs
    query = sa.select(r.c.pk).where(r.c.app_id == app_id, r.c.campaign_id == campaign_id, r.c.state != "COMPLETED")
    return conn.execute(query.limit(1)).first() is not None


def insert_run(conn: sa.Connection, row: dict[str, Any]) -> None:
    conn.execute(sa.insert(m.runs).values(**row))


def runs_in_state(conn: sa.Connection, state: str) -> list[sa.Row[Any]]:
    return list(conn.execute(sa.select(m.runs).where(m.runs.c.state == state).order_by(m.runs.c.pk)))


def existing_runs(conn: sa.Connection, run_ids: list[str]) -> set[str]:
    """Which of these runs still exist (a deleted campaign's are gone)."""
    return set(conn.execute(sa.select(m.runs.c.id).where(m.runs.c.id.in_(run_ids))).scalars())


def get_run(conn: sa.Connection, run_id: str) -> sa.Row[Any]:
    return conn.execute(sa.select(m.runs).where(m.runs.c.id == run_id)).one()


def get_run_if_any(conn: sa.Connection, run_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(m.runs).where(m.runs.c.id == run_id)).first()


def kept_settings(plan_state: str | None) -> dict[str, Any] | None:
    """The application settings a run keeps (plan.RUN_SETTINGS, under ``settings`` in its ``plan_state``), or None
    if it keeps none (a run not yet planned, or one started by a version that did not keep them)."""
    if plan_state is None:
        return None
    settings: dict[str, Any] | None = orjson.loads(plan_state).get("settings")
    return settings


def _past_planning(conn: sa.Connection, run_id: str) -> str | None:
    """The run's ``plan_state`` once it is past PLANNING: its planning cursor goes, the settings it keeps stay."""
    text = conn.execute(sa.select(m.runs.c.plan_state).where(m.runs.c.id == run_id)).scalar()
    settings = kept_settings(text)
    return None if settings is None else orjson.dumps({"settings": settings}).decode()


def set_run_state(conn: sa.Connection, run_id: str, state: str) -> None:
    """Move a run on; a run past PLANNING has no use for its planning cursor (but keeps its settings)."""
    kept = _past_planning(conn, run_id)
    conn.execute(sa.update(m.runs).where(m.runs.c.id == run_id).values(state=state, plan_state=kept))


def end_planning_with_error(conn: sa.Connection, run_id: str, error: str) -> None:
    kept = _past_planning(conn, run_id)
    conn.execute(
        sa.update(m.runs).where(m.runs.c.id == run_id).values(state="EXECUTING", plan_state=kept, error=storable(error))
    )


def save_plan_state(conn: sa.Connection, run_id: str, state: str, previous: str | None) -> bool:
    """Where planning got to, if it was still at ``previous``; False if the run is no longer PLANNING (or was
    deleted), or another planner moved it on meanwhile (then this one must not write what it planned)."""
    r = m.runs
    where = (r.c.id == run_id, r.c.state == "PLANNING", r.c.plan_state.is_not_distinct_from(previous))
    result = conn.execute(sa.update(r).where(*where).values(plan_state=state))
    return result.rowcount == 1


def insert_activity(conn: sa.Connection, doc: dict[str, Any], run_id: str) -> None:
    conn.execute(
        sa.insert(m.activities).values(
            app_id=doc["ApplicationId"],
            campaign_id=doc["CampaignId"],
            id=doc["Id"],
            treatment_id=doc["TreatmentId"],
            state=doc["State"],
            doc=doc,
            run_id=run_id,
        )
    )


def activities_of_run(conn: sa.Connection, run_id: str) -> list[sa.Row[Any]]:
    a = m.activities
    return list(conn.execute(sa.select(a).where(a.c.run_id == run_id).order_by(a.c.treatment_id)))


def save_activity(conn: sa.Connection, doc: dict[str, Any]) -> None:
    a = m.activities
    conn.execute(sa.update(a).where(a.c.id == doc["Id"]).values(state=doc["State"], doc=doc))


# --- plan: batches and skipped outcomes ------------------------------------------------------------------------


def clear_plan(conn: sa.Connection, run_id: str) -> None:
    """Forget a partial plan so planning can start over (planning is idempotent per run)."""
    conn.execute(sa.delete(m.batches).where(m.batches.c.run_id == run_id))
    conn.execute(sa.delete(m.outcomes).where(m.outcomes.c.run_id == run_id))


def insert_batches(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(m.batches), rows)


def insert_outcomes(conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows are (activity_id, endpoint_id, run_id, status, reason, batch_id, at); existing ones are kept."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        "INSERT INTO outcomes (activity_id, endpoint_id, run_id, status, reason, batch_id, at) "
        f"VALUES ({', '.join([mark] * 7)}) ON CONFLICT (activity_id, endpoint_id) DO NOTHING"
    )
    conn.exec_driver_sql(sql, list(rows))


def insert_outcome_sets(conn: sa.Connection, sets: Sequence[tuple[Any, ...]]) -> None:
    """One outcome for many endpoints: each set is (activity_id, run_id, status, reason, batch_id, at, endpoint ids
    as a JSON array), expanded into one row per endpoint by the store (the same rows ``insert_outcomes`` writes)."""
    if not sets:
        return
    if conn.dialect.name == "postgresql":
        values, expand = "%s, e.value, %s, %s, %s, %s, %s", "jsonb_array_elements_text(CAST(%s AS jsonb)) AS e(value)"
    else:
        values, expand = "?, e.value, ?, ?, ?, ?, ?", "json_each(?) AS e"
    # The parameters bind in the order they appear: the six members, then the ids in FROM.
    conn.exec_driver_sql(
        "INSERT INTO outcomes (activity_id, endpoint_id, run_id, status, reason, batch_id, at) "
        f"SELECT {values} FROM {expand} WHERE true ON CONFLICT (activity_id, endpoint_id) DO NOTHING",
        [(*row[:3], storable(row[3]), *row[4:]) for row in sets],
    )


def endpoints_after(
    conn: sa.Connection,
    app_id: str,
    after: str | None,
    limit: int,
    *,
    where: sa.ColumnElement[bool],
    sure: sa.ColumnElement[bool],
) -> Sequence[Any]:
    """The next ``limit`` endpoints of the app where ``where`` holds, in id order, after ``after`` (from the first
    if None): id, doc, last_active, channel_type, endpoint_status, opt_out, timezone and ``sure`` (labelled)."""
    e = m.endpoints
    query = sa.select(
        e.c.id,
        e.c.doc,
        e.c.last_active,
        e.c.channel_type,
        e.c.endpoint_status,
        e.c.opt_out,
        e.c.timezone,
        sure.label("sure"),
    ).where(e.c.app_id == app_id, where)
    if after is not None:
        query = query.where(e.c.id > after)
    result = conn.execute(query.order_by(e.c.id).limit(limit))
    try:
        # The driver's plain tuples: no Row object per endpoint (a million of them for a large segment, a fifth of
        # planning's time; bench/webhook_campaign.py). The columns need no result processing: text, and ``sure``
        # as the driver gives it (SQLite's 0/1 are as true or false as PostgreSQL's booleans).
        return result.cursor.fetchall()
    finally:
        result.close()


def sent_counts(
    conn: sa.Connection, app_id: str, campaign_id: str, endpoint_ids: list[str], since: str | None
) -> dict[str, int]:
    """How many SENT outcomes this campaign has per endpoint: for Total; for Daily, those whose batch was due after
    ``since`` (its scheduled send time, not when it was delivered: a daily occurrence whose delivery took a second
    longer yesterday must not count against today's)."""
    o, r, b = m.outcomes, m.runs, m.batches
    joined = o.join(r, r.c.id == o.c.run_id)
    if since is not None:
        joined = joined.join(b, b.c.id == o.c.batch_id)
    query = (
        sa.select(o.c.endpoint_id, sa.func.count())
        .select_from(joined)
        .where(
            r.c.app_id == app_id,
            r.c.campaign_id == campaign_id,
            o.c.status == "SENT",
            o.c.endpoint_id.in_(endpoint_ids),
        )
        .group_by(o.c.endpoint_id)
    )
    if since is not None:
        query = query.where(b.c.not_before > since)
    return {row[0]: int(row[1]) for row in conn.execute(query)}


# --- execution -------------------------------------------------------------------------------------------------


def due_batches(
    conn: sa.Connection,
    now: str,
    exclude: set[str],
    limit: int,
    exclude_runs: Iterable[str] = (),
    exclude_lanes: Iterable[tuple[str, str]] = (),
) -> list[sa.Row[Any]]:
    """Pending batches that are due, oldest first, but for the batches in ``exclude``, the runs in ``exclude_runs``
    and the (run, treatment) pairs in ``exclude_lanes``."""
    b = m.batches
    query = sa.select(b.c.id).where(b.c.state == "PENDING", b.c.not_before <= now).order_by(b.c.not_before, b.c.pk)
    if runs := list(exclude_runs):
        query = query.where(b.c.run_id.not_in(runs))
    for run_id, treatment_id in exclude_lanes:
        query = query.where(sa.or_(b.c.run_id != run_id, b.c.treatment_id != treatment_id))
    return _first(conn, query, exclude, limit)


def _first(conn: sa.Connection, query: sa.Select[Any], exclude: set[str], limit: int) -> list[sa.Row[Any]]:
    """The first ``limit`` rows of a query of batch ids that are not in ``exclude`` (batches in flight are still
    PENDING: the query looks past them)."""
    return [row for row in conn.execute(query.limit(limit + len(exclude))) if row.id not in exclude][:limit]


def lane_batches(
    conn: sa.Connection, lane: tuple[str, str], through: str, now: str, exclude: set[str], limit: int
) -> list[str]:
    """The ids of a lane's (run, treatment) pending batches that are due, in planning order, up to and including the
    batch ``through`` (none if it is gone), but for those in ``exclude``."""
    b = m.batches
    bound = sa.select(b.c.pk).where(b.c.id == through).scalar_subquery()
    query = (
        sa.select(b.c.id)
        .where(b.c.run_id == lane[0], b.c.state == "PENDING", b.c.treatment_id == lane[1])
        .where(b.c.pk <= bound, b.c.not_before <= now)
        .order_by(b.c.pk)
    )
    return [row.id for row in _first(conn, query, exclude, limit)]


def get_batch_if_any(conn: sa.Connection, batch_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(m.batches).where(m.batches.c.id == batch_id)).first()


def batches_with_docs(
    conn: sa.Connection, batch_ids: list[str]
) -> list[tuple[sa.Row[Any], list[str], dict[str, str], dict[str, str]]]:
    """Pending batches (in the order asked), their endpoint ids, the stored definitions of those endpoints that
    still exist and may be sent to, and why each of the others that exist may not be (now inactive or opted out:
    a local-time batch is read up to a day after it was planned), in two queries.

    Batches that are gone (their campaign was deleted) or no longer pending are left out.
    """
    if not batch_ids:
        return []
    b, r = m.batches, m.runs
    rows = conn.execute(
        sa.select(b, r.c.app_id.label("app_id")).join(r, r.c.id == b.c.run_id).where(b.c.id.in_(batch_ids))
    ).all()
    pending = {row.id: (row, orjson.loads(row.endpoint_ids)) for row in rows if row.state == "PENDING"}
    wanted: dict[str, list[str]] = {}
    for row, ids in pending.values():
        wanted.setdefault(row.app_id, []).extend(ids)
    docs: dict[tuple[str, str], str] = {}
    not_now: dict[tuple[str, str], str] = {}
    for app_id, ids in wanted.items():
        sendable, refused = sendable_docs(conn, app_id, ids)
        docs.update(((app_id, k), v) for k, v in sendable.items())
        not_now.update(((app_id, k), v) for k, v in refused.items())
    found = [pending[batch_id] for batch_id in batch_ids if batch_id in pending]
    return [
        (
            batch,
            ids,
            {i: docs[(batch.app_id, i)] for i in ids if (batch.app_id, i) in docs},
            {i: not_now[(batch.app_id, i)] for i in ids if (batch.app_id, i) in not_now},
        )
        for batch, ids in found
    ]


def finish_batches(conn: sa.Connection, done: Sequence[tuple[str, str, int, str | None]]) -> set[str]:
    """Mark many PENDING batches done or failed, from (id, state, attempts, error), in two statements; return the
    ids this call finished (a batch another worker finished first is left as it is)."""
    if not done:
        return set()
    b = m.batches
    query = sa.select(b.c.id).where(b.c.id.in_([d[0] for d in done]), b.c.state == "PENDING")
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    pending = set(conn.execute(query).scalars())
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    rows = [
        (state, attempts, storable(error), batch_id) for batch_id, state, attempts, error in done if batch_id in pending
    ]
    if rows:
        conn.exec_driver_sql(
            f"UPDATE batches SET state = {mark}, attempts = {mark}, last_error = {mark} WHERE id = {mark}", rows
        )
    return pending


def insert_attempts(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Each row's ``error`` and ``response`` (an answer's text, a function's message) as the store can hold them."""
    if rows:
        rows = [dict(row, error=storable(row["error"]), response=storable(row["response"])) for row in rows]
        conn.execute(sa.insert(m.attempts), rows)


def save_zone_sends(conn: sa.Connection, activity_id: str, sends: dict[str, int]) -> None:
    a = m.activities
    conn.execute(sa.update(a).where(a.c.id == activity_id).values(zone_sends=orjson.dumps(sends).decode()))


def pending_send_times(conn: sa.Connection, activity_id: str) -> set[str]:
    """The send times (``not_before``) of the activity's batches still to send."""
    b = m.batches
    query = sa.select(b.c.not_before).where(b.c.activity_id == activity_id, b.c.state == "PENDING").distinct()
    return set(conn.scalars(query))


def pending_batches(conn: sa.Connection, activity_id: str) -> int:
    b = m.batches
    query = sa.select(sa.func.count()).where(b.c.activity_id == activity_id, b.c.state == "PENDING")
    return int(conn.execute(query).scalar() or 0)


def outcome_counts(conn: sa.Connection, activity_id: str) -> dict[str, int]:
    o = m.outcomes
    query = sa.select(o.c.status, sa.func.count()).where(o.c.activity_id == activity_id).group_by(o.c.status)
    return {row[0]: int(row[1]) for row in conn.execute(query)}


def batch_endpoint_count(conn: sa.Connection, activity_id: str) -> int:
    b = m.batches
    rows = conn.execute(sa.select(b.c.endpoint_ids).where(b.c.activity_id == activity_id))
    return sum(len(orjson.loads(row.endpoint_ids)) for row in rows)


def run_outcomes(conn: sa.Connection, run_ids: list[str], limit: int, after: str | None) -> list[sa.Row[Any]]:
    o = m.outcomes
    query = sa.select(o).where(o.c.run_id.in_(run_ids))
    if after:
        query = query.where(o.c.endpoint_id > after)
    return list(conn.execute(query.order_by(o.c.endpoint_id, o.c.activity_id).limit(limit)))


def run_ids(conn: sa.Connection, app_id: str, campaign_id: str) -> list[str]:
    r = m.runs
    query = sa.select(r.c.id).where(r.c.app_id == app_id, r.c.campaign_id == campaign_id).order_by(r.c.pk)
    return [row.id for row in conn.execute(query)]


def fail_pending(conn: sa.Connection, batch_ids: Iterable[str], reason: str) -> None:
    b = m.batches
    conn.execute(
        sa.update(b)
        .where(b.c.id.in_(list(batch_ids)), b.c.state == "PENDING")
        .values(state="FAILED", last_error=storable(reason))
    )
