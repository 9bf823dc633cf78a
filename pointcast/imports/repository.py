"""Every query on import jobs, the endpoints they wrote, and the segment versions they define."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from pointcast.aws.errors import NotFound
from pointcast.pinpoint.paging import Page, page_response
from pointcast.store import models as m

jobs, members, versions = m.import_jobs, m.import_members, m.segment_imports
UNFINISHED = ("CREATED", "PROCESSING")


def insert(conn: sa.Connection, doc: dict[str, Any], segment_id: str | None, owner: str, lease_until: str) -> None:
    conn.execute(
        sa.insert(jobs).values(
            id=doc["Id"],
            app_id=doc["ApplicationId"],
            segment_id=segment_id,
            state=doc["JobStatus"],
            owner=owner,
            lease_until=lease_until,
            records_done=0,
            doc=doc,
        )
    )


def get(conn: sa.Connection, app_id: str, job_id: str) -> dict[str, Any]:
    row = conn.execute(sa.select(jobs.c.doc).where(jobs.c.app_id == app_id, jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"Import job '{job_id}' not found in application '{app_id}'")
    doc: dict[str, Any] = row.doc
    return doc


def row(conn: sa.Connection, job_id: str) -> sa.Row[Any]:
    """Every column of one job (it must exist)."""
    return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()


def page(conn: sa.Connection, app_id: str, page: Page, segment_id: str | None = None) -> dict[str, Any]:
    query = sa.select(jobs.c.pk, jobs.c.doc).where(jobs.c.app_id == app_id)
    if segment_id is not None:
        query = query.where(jobs.c.segment_id == segment_id)
    rows, token = page.fetch(conn, query, jobs.c.pk)
    return page_response([r.doc for r in rows], token)


def has_segment_jobs(conn: sa.Connection, app_id: str, segment_id: str) -> bool:
    query = sa.select(jobs.c.pk).where(jobs.c.app_id == app_id, jobs.c.segment_id == segment_id).limit(1)
    return conn.execute(query).first() is not None


def unfinished(conn: sa.Connection) -> list[sa.Row[Any]]:
    """Jobs not yet COMPLETED or FAILED, with who runs them until when."""
    query = sa.select(jobs.c.id, jobs.c.owner, jobs.c.lease_until).where(jobs.c.state.in_(UNFINISHED))
    return list(conn.execute(query.order_by(jobs.c.pk)))


def claim(conn: sa.Connection, job_id: str, expected: str | None, owner: str, lease_until: str) -> bool:
    """Take the job over from ``expected`` (compare-and-set); False when someone else did first."""
    held = jobs.c.owner.is_(None) if expected is None else jobs.c.owner == expected
    query = (
        sa.update(jobs)
        .where(jobs.c.id == job_id, held, jobs.c.state.in_(UNFINISHED))
        .values(owner=owner, lease_until=lease_until)
    )
    return conn.execute(query).rowcount == 1


def renew(conn: sa.Connection, job_id: str, owner: str, lease_until: str, records_done: int | None = None) -> bool:
    """Extend ``owner``'s lease (and, on PostgreSQL, lock the row); False when the job is no longer ``owner``'s or
    (given ``records_done``) its committed progress is not what the caller thinks."""
    query = sa.update(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner, jobs.c.state.in_(UNFINISHED))
    if records_done is not None:
        query = query.where(jobs.c.records_done == records_done)
    return conn.execute(query.values(lease_until=lease_until)).rowcount == 1


def save(conn: sa.Connection, job_id: str, doc: dict[str, Any], records_done: int | None = None) -> None:
    """Store the job's document (and state); a finished job lets go of its owner."""
    values: dict[str, Any] = {"doc": doc, "state": doc["JobStatus"]}
    if records_done is not None:
        values["records_done"] = records_done
    if doc["JobStatus"] not in UNFINISHED:
        values.update(owner=None, lease_until=None)
    conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**values))


def add_members(conn: sa.Connection, app_id: str, job_id: str, endpoint_ids: Iterable[str]) -> None:
    rows = [(job_id, endpoint_id, app_id) for endpoint_id in endpoint_ids]
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO import_members (job_id, endpoint_id, app_id) VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT (job_id, endpoint_id) DO NOTHING",
        rows,
    )


def existing_endpoints(conn: sa.Connection, app_id: str, ids: Sequence[str]) -> set[str]:
    e = m.endpoints
    return set(conn.scalars(sa.select(e.c.id).where(e.c.app_id == app_id, e.c.id.in_(ids))))


def channel_counts(conn: sa.Connection, app_id: str, job_id: str) -> tuple[int, dict[str, int]]:
    """How many of the job's endpoints exist, and how many of them per ChannelType."""
    e = m.endpoints
    query = (
        sa.select(e.c.channel_type, sa.func.count())
        .select_from(members.join(e, sa.and_(e.c.app_id == members.c.app_id, e.c.id == members.c.endpoint_id)))
        .where(members.c.job_id == job_id, members.c.app_id == app_id)
        .group_by(e.c.channel_type)
    )
    counts = {channel: int(n) for channel, n in conn.execute(query)}
    return sum(counts.values()), {k: v for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])) if k}


def record_segment_version(conn: sa.Connection, app_id: str, segment_id: str, version: int, job_id: str) -> None:
    conn.execute(sa.insert(versions).values(app_id=app_id, segment_id=segment_id, version=version, job_id=job_id))


def defined_before(conn: sa.Connection, app_id: str, segment_id: str) -> bool:
    """Whether an import job has defined a version of this segment (so it existed, and is now deleted)."""
    query = sa.select(versions.c.version).where(versions.c.app_id == app_id, versions.c.segment_id == segment_id)
    return conn.execute(query.limit(1)).first() is not None


def defining_job(conn: sa.Connection, app_id: str, segment_id: str, version: int) -> str | None:
    """The import job whose endpoints are the members of one version of an IMPORT segment: the newest import at or
    before that version (None: no import defined it)."""
    job_id: str | None = conn.scalar(
        sa.select(versions.c.job_id)
        .where(versions.c.app_id == app_id, versions.c.segment_id == segment_id, versions.c.version <= version)
        .order_by(versions.c.version.desc())
        .limit(1)
    )
    return job_id


def forget_members(
    conn: sa.Connection, app_id: str, *, segment_id: str | None = None, job_id: str | None = None
) -> int:
    """Delete the endpoint ids that import jobs wrote: those of every job that defined a version of a (deleted)
    segment, or those of one (failed) job. The jobs themselves stay, as their history; so do the segment's version
    rows, by which a job still running learns that its segment was deleted. Returns the rows deleted."""
    if segment_id is not None:
        defining = sa.select(versions.c.job_id).where(versions.c.app_id == app_id, versions.c.segment_id == segment_id)
        condition: sa.ColumnElement[bool] = members.c.job_id.in_(defining)
    else:
        condition = members.c.job_id == job_id
    return conn.execute(sa.delete(members).where(members.c.app_id == app_id, condition)).rowcount


def member_query(job_id: str) -> sa.Select[Any]:
    """The endpoint ids an import job wrote."""
    return sa.select(members.c.endpoint_id).where(members.c.job_id == job_id)


def member_ids(conn: sa.Connection, app_id: str, segment_id: str, version: int) -> set[str]:
    """The endpoint ids of one version of an IMPORT segment: those of the newest import at or before it."""
    job_id = defining_job(conn, app_id, segment_id, version)
    if job_id is None:
        return set()
    result = conn.execution_options(yield_per=10_000).execute(member_query(job_id))
    ids: set[str] = set()
    for chunk in result.partitions():
        ids.update(row[0] for row in chunk)
    return ids
