"""Import jobs: create one, read them, and the work of running one (in chunks, each its own transaction).

A job reads its file as a stream of records (:mod:`pointcast.imports.formats`) and writes them ``CHUNK`` at a time:
each chunk's endpoints, the job's membership rows and the job's counters commit together, so ``records_done`` always
says exactly how much of the file is in the store and an interrupted job resumes after it (re-reading the file and
skipping that many records). A record that fails (unreadable, not an EndpointBatchItem, over a limit) is counted in
TotalFailures with the reason (the first 100 in Failures) and the job goes on. A failure of the whole job (the file
cannot be read, the CSV header names an unknown column) ends it FAILED, with the reason first in Failures.

Counters, as the model describes them: TotalProcessed counts the records read (failed ones included), TotalFailures
the records that failed. A piece is a chunk; CompletedPieces counts chunks committed, FailedPieces is 1 when the job
FAILED (the piece it was on could not be processed), TotalPieces is their sum (it grows while the job runs, since a
streamed file's length in records is not known in advance).

With DefineSegment, the job defines its segment when it completes: a new IMPORT segment (its id is chosen when the
job is created and shown in Definition.SegmentId), or, with SegmentId, a new version of that IMPORT segment. The
segment's members are exactly the endpoints the job wrote; its ImportDefinition.Size counts them and ChannelCounts
counts them per ChannelType.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws import shapes
from pointcast.aws.arns import child_arn
from pointcast.aws.errors import AwsError, BadRequest, NotFound
from pointcast.aws.restjson import refuse_nul
from pointcast.aws.wire import new_id, now_iso
from pointcast.endpoints import service as endpoints
from pointcast.imports import formats, sources
from pointcast.imports import repository as repo
from pointcast.imports.formats import FileError, Record
from pointcast.pinpoint.paging import Page
from pointcast.segments.repository import segments
from pointcast.store import Database, lock

log = logging.getLogger("pointcast.imports")

CHUNK = 500
"""Records per transaction."""
MAX_FAILURES = 100
"""Failures lists at most this many messages (ImportJobResponse.Failures: "the first 100")."""

_DEFINITION = ("S3Url", "Format", "RoleArn", "ExternalId", "DefineSegment", "RegisterEndpoints", "SegmentName")
_ROOT = "ImportJobRequest"


class LostJob(Exception):
    """Another process took the job over (its lease ran out): stop without writing."""


@dataclass(frozen=True, slots=True)
class Job:
    """What running a job needs, read from its row."""

    id: str
    app_id: str
    definition: dict[str, Any]
    segment_id: str | None
    records_done: int
    region: str
    account: str

    @classmethod
    def load(cls, conn: sa.Connection, job_id: str, region: str, account: str) -> Job:
        row = repo.row(conn, job_id)
        return cls(row.id, row.app_id, row.doc["Definition"], row.segment_id, row.records_done, region, account)


# --- the API -------------------------------------------------------------------------------------------------------


def create(conn: sa.Connection, app_id: str, request: dict[str, Any], owner: str, lease_until: str) -> dict[str, Any]:
    """Check an ImportJobRequest and store the job, CREATED; the caller starts it."""
    apps.require(conn, app_id)
    sources.parse(request["S3Url"])
    if request.get("RegisterEndpoints") is False:
        raise BadRequest(
            f"{_ROOT}.RegisterEndpoints false is not supported: pointcast always registers the imported endpoints "
            "(an imported segment's members are endpoints of the application)"
        )
    define = bool(request.get("DefineSegment"))
    segment_id = request.get("SegmentId")
    if segment_id:
        if request.get("DefineSegment") is False:
            raise BadRequest(f"{_ROOT}.SegmentId names a segment to update, which needs DefineSegment true")
        define = True
        _import_segment(conn, app_id, segment_id)
    elif define:
        segment_id = new_id()
    else:
        segment_id = None
    definition = {k: request[k] for k in _DEFINITION if k in request}
    definition.update(DefineSegment=define, RegisterEndpoints=True)
    if segment_id:
        definition["SegmentId"] = segment_id
    doc: dict[str, Any] = {
        "ApplicationId": app_id,
        "CompletedPieces": 0,
        "CreationDate": now_iso(),
        "Definition": definition,
        "FailedPieces": 0,
        "Failures": [],
        "Id": new_id(),
        "JobStatus": "CREATED",
        "TotalFailures": 0,
        "TotalPieces": 0,
        "TotalProcessed": 0,
        "Type": "IMPORT",
    }
    repo.insert(conn, doc, segment_id, owner, lease_until)
    return doc


def get(conn: sa.Connection, app_id: str, job_id: str) -> dict[str, Any]:
    apps.require(conn, app_id)
    return repo.get(conn, app_id, job_id)


def page(conn: sa.Connection, app_id: str, page: Page) -> dict[str, Any]:
    apps.require(conn, app_id)
    return repo.page(conn, app_id, page)


def segment_page(conn: sa.Connection, app_id: str, segment_id: str, page: Page) -> dict[str, Any]:
    """The import jobs that define (or will define) a segment."""
    apps.require(conn, app_id)
    if not segments.exists(conn, app_id, segment_id) and not repo.has_segment_jobs(conn, app_id, segment_id):
        raise NotFound(f"Segment '{segment_id}' not found in application '{app_id}'")
    return repo.page(conn, app_id, page, segment_id)


def _import_segment(conn: sa.Connection, app_id: str, segment_id: str) -> dict[str, Any]:
    doc = segments.get(conn, app_id, segment_id)
    if doc.get("SegmentType") != "IMPORT":
        raise BadRequest(
            f"{_ROOT}.SegmentId: segment '{segment_id}' is a {doc.get('SegmentType')} segment; "
            "an import job can only update an IMPORT segment"
        )
    return doc


# --- running a job -------------------------------------------------------------------------------------------------


def start(conn: sa.Connection, job_id: str, owner: str, lease_until: str) -> bool:
    """Mark the job PROCESSING (it may already be, when resumed); False when it is not ``owner``'s to run."""
    if not repo.renew(conn, job_id, owner, lease_until):
        return False
    doc = dict(repo.row(conn, job_id).doc)
    if doc["JobStatus"] != "PROCESSING":
        doc["JobStatus"] = "PROCESSING"
        repo.save(conn, job_id, doc)
    return True


def process(
    db: Database, job: Job, stream: BinaryIO, owner: str, lease: Callable[[], str], stop: threading.Event
) -> None:
    """Run the job over ``stream`` to COMPLETED or FAILED; return quietly (leaving it to be resumed) when ``stop`` is
    set or another process has taken it over. ``lease()`` gives the lease expiry to write with each chunk."""
    try:
        done = job.records_done
        seen = 0
        chunk: list[Record] = []
        for record in formats.read(job.definition["Format"], stream):
            if stop.is_set():
                return
            seen += 1
            if seen <= job.records_done:
                continue  # committed before an interruption
            chunk.append(record)
            if len(chunk) == CHUNK:
                with db.write() as conn:
                    apply_chunk(conn, job, chunk, done, owner, lease())
                done += len(chunk)
                chunk = []
        if chunk:
            with db.write() as conn:
                apply_chunk(conn, job, chunk, done, owner, lease())
        with db.write() as conn:
            complete(conn, job, owner, lease())
    except (sources.Stopped, LostJob):
        return
    except Exception as exc:
        if stop.is_set():
            return
        message = reason(exc, job.id)
        with db.write() as conn:
            fail(conn, job.id, owner, message)


def reason(exc: Exception, job_id: str) -> str:
    """Why a job failed, for its Failures: the message of an expected error, else a pointer to the log."""
    if isinstance(exc, AwsError):
        return exc.message
    if isinstance(exc, FileError):
        return str(exc)
    log.error("import job %s failed", job_id, exc_info=exc)
    return f"Internal error ({type(exc).__name__}); the server log has the details"


def apply_chunk(conn: sa.Connection, job: Job, records: list[Record], done: int, owner: str, lease_until: str) -> None:
    """Write one chunk of records and the job's progress, in the caller's transaction."""
    if not repo.renew(conn, job.id, owner, lease_until, records_done=done):
        raise LostJob(job.id)
    failures: list[tuple[int, str]] = [(r.line, str(r.error)) for r in records if r.error is not None]
    candidates: list[tuple[int, str, dict[str, Any]]] = []
    for record in records:
        if record.item is None:
            continue
        try:
            candidates.append((record.line, *_checked(record.item)))
        except BadRequest as exc:
            failures.append((record.line, exc.message))
    # Held from before the existence check to the write: endpoints.write's merge and lock (pointcast.store.lock).
    ids = [endpoint_id for _, endpoint_id, _ in candidates]
    endpoints.lock_ids(conn, job.app_id, ids, endpoints.named_users(item for _, _, item in candidates))
    candidates = _require_new_channel(conn, job.app_id, candidates, failures)
    written = _write(conn, job.app_id, candidates, failures)
    if job.segment_id:
        repo.add_members(conn, job.app_id, job.id, written)
    doc = dict(repo.row(conn, job.id).doc)
    failures.sort()
    doc["TotalProcessed"] += len(records)
    doc["TotalFailures"] += len(failures)
    room = MAX_FAILURES - len(doc["Failures"])
    doc["Failures"] = doc["Failures"] + [f"Line {line}: {message}" for line, message in failures[: max(room, 0)]]
    doc["CompletedPieces"] += 1
    doc["TotalPieces"] = doc["CompletedPieces"] + doc["FailedPieces"]
    repo.save(conn, job.id, doc, done + len(records))


def _checked(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The endpoint id and definition of a record that is a valid EndpointBatchItem (BadRequest otherwise).

    A record without an Id is a new endpoint, given a new id (as Pinpoint does)."""
    shapes.validate("pinpoint", "EndpointBatchItem", item, root="Endpoint")
    refuse_nul(item, "Endpoint")
    endpoint_id = item.get("Id") or new_id()
    endpoints.check_id(endpoint_id, "Endpoint.Id")
    return endpoint_id, item


def _require_new_channel(
    conn: sa.Connection,
    app_id: str,
    candidates: list[tuple[int, str, dict[str, Any]]],
    failures: list[tuple[int, str]],
) -> list[tuple[int, str, dict[str, Any]]]:
    """Pinpoint's import rule: a record that creates an endpoint needs ChannelType and Address (one that updates an
    existing endpoint, or one an earlier record of the file created, needs only its Id)."""
    known = repo.existing_endpoints(conn, app_id, [endpoint_id for _, endpoint_id, _ in candidates])
    kept = []
    for line, endpoint_id, item in candidates:
        if endpoint_id not in known:
            missing = [member for member in ("ChannelType", "Address") if not item.get(member)]
            if missing:
                failures.append((line, f"Endpoint.{' and '.join(missing)} required to create an endpoint"))
                continue
            known.add(endpoint_id)
        kept.append((line, endpoint_id, item))
    return kept


_MARK = re.compile(r"^\x1f(\d+)\x1f")


def _write(
    conn: sa.Connection,
    app_id: str,
    candidates: list[tuple[int, str, dict[str, Any]]],
    failures: list[tuple[int, str]],
) -> list[str]:
    """Create or merge the candidates as UpdateEndpointsBatch does (endpoints.service.write, limits included); a
    candidate the limits refuse becomes a failure and the rest are written. Returns the ids written."""
    pending = candidates
    while pending:
        left_out: dict[int, str] = {}  # past a user's 15 endpoints: left out and reported, the rest written

        def refused(index: int, message: str, left_out: dict[int, str] = left_out) -> None:
            found = _MARK.match(message)
            left_out[index] = message[found.end() :] if found else message

        try:
            endpoints.write(
                conn,
                app_id,
                [(i, item) for _, i, item in pending],
                "\x1f{index}\x1fEndpoint",
                refused=refused,
                held=True,  # apply_chunk locked the chunk's endpoints and users
            )
        except BadRequest as exc:
            found = _MARK.match(exc.message)
            if found is None:
                raise
            index = int(found.group(1))
            failures.append((pending[index][0], exc.message[found.end() :]))
            pending = pending[:index] + pending[index + 1 :]
            continue
        failures.extend((pending[index][0], reason) for index, reason in sorted(left_out.items()))
        return [endpoint_id for index, (_, endpoint_id, _) in enumerate(pending) if index not in left_out]
    return []


def complete(conn: sa.Connection, job: Job, owner: str, lease_until: str) -> None:
    """Finish the job: define its segment (if asked) and mark it COMPLETED; FAILED when the file had no records."""
    if not repo.renew(conn, job.id, owner, lease_until):
        raise LostJob(job.id)
    doc = dict(repo.row(conn, job.id).doc)
    if doc["TotalProcessed"] == 0:
        where = job.definition["S3Url"]
        fail(conn, job.id, owner, f"{where[:200]} holds no endpoint definitions ({job.definition['Format']})")
        return
    if job.segment_id:
        _define_segment(conn, job)
    doc.update(JobStatus="COMPLETED", CompletionDate=now_iso())
    doc["TotalPieces"] = doc["CompletedPieces"] + doc["FailedPieces"]
    repo.save(conn, job.id, doc)


def _define_segment(conn: sa.Connection, job: Job) -> None:
    assert job.segment_id is not None
    size, channels = repo.channel_counts(conn, job.app_id, job.id)
    definition = job.definition
    imported: dict[str, Any] = {"ChannelCounts": channels, "ExternalId": definition.get("ExternalId", "")}  # required
    imported.update(Format=definition["Format"], RoleArn=definition["RoleArn"], S3Url=definition["S3Url"], Size=size)
    now = now_iso()
    lock(conn, segments.lock_key(job.app_id, job.segment_id))  # its next Version is computed from the stored one
    if segments.exists(conn, job.app_id, job.segment_id):
        doc = dict(_import_segment(conn, job.app_id, job.segment_id))
        doc.update(ImportDefinition=imported, LastModifiedDate=now, Version=doc["Version"] + 1)
        if definition.get("SegmentName"):
            doc["Name"] = definition["SegmentName"]
        segments.replace(conn, job.app_id, doc)
    elif repo.defined_before(conn, job.app_id, job.segment_id):
        raise FileError(f"Segment '{job.segment_id}' was deleted while the job ran")
    else:
        doc = {
            "ApplicationId": job.app_id,
            "Arn": child_arn(job.region, job.account, job.app_id, "segments", job.segment_id),
            "CreationDate": now,
            "Id": job.segment_id,
            "ImportDefinition": imported,
            "LastModifiedDate": now,
            "SegmentType": "IMPORT",
            "tags": {},
            "Version": 1,
        }
        if definition.get("SegmentName"):
            doc["Name"] = definition["SegmentName"]
        segments.insert(conn, job.app_id, doc)
    repo.record_segment_version(conn, job.app_id, job.segment_id, doc["Version"], job.id)


def fail(conn: sa.Connection, job_id: str, owner: str, reason: str) -> None:
    """End the job FAILED with ``reason`` first in Failures (unless another process has taken it over)."""
    if not repo.renew(conn, job_id, owner, now_iso()):
        return
    row = repo.row(conn, job_id)
    doc = dict(row.doc)
    doc.update(JobStatus="FAILED", CompletionDate=now_iso())
    repo.forget_members(conn, row.app_id, job_id=job_id)  # a failed job defines no segment: its members are no one's
    doc["FailedPieces"] += 1
    doc["TotalPieces"] = doc["CompletedPieces"] + doc["FailedPieces"]
    doc["Failures"] = [reason, *doc["Failures"]][:MAX_FAILURES]
    repo.save(conn, job_id, doc)
