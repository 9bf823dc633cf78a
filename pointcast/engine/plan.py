"""Planning a run: resolve the segment, split treatments, filter, and write batches of at most 50 before sending.

Planning reads, in id order and a chunk at a time (memory does not grow with the segment), the endpoints the
segment's SQL selection may hold (:mod:`pointcast.segments.query`: the store leaves out those outside it, and the
segment's Python predicate is asked only about rows SQL cannot decide); it writes each chunk's batches and skipped
outcomes in its own transaction, together with where it got to (the run's ``plan_state``: the last endpoint id
planned, the batches not yet full, the time zones seen). The batches of a chunk can be sent as soon as it commits,
while the rest is planned; a run still PLANNING after a crash or a stop resumes from its ``plan_state``, so nothing
planned (and perhaps sent) is planned again. Activities stay open until the plan is whole
(``progress.finish_activity``). The first write also keeps, in ``plan_state``, the application settings that shape the
run (``RUN_SETTINGS``), which outlive planning: every later load of the run's spec (a restart, another node, a
local-time run's later zone) uses them, not the application's settings of the moment.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import orjson
import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.errors import AwsError
from pointcast.aws.wire import iso_ms, new_id
from pointcast.campaigns.repository import campaigns
from pointcast.engine import repository as repo
from pointcast.engine import schedule
from pointcast.engine.hooks import effective_hook, endpoints_json
from pointcast.engine.progress import finish_activity
from pointcast.engine.treatments import Treatment, assign, bucket, treatments_of
from pointcast.imports.audience import ImportedSegments, is_imported
from pointcast.segments.evaluate import EndpointView, Predicate, compile_segment
from pointcast.segments.query import Selection, select_segment
from pointcast.segments.repository import segments
from pointcast.store import Database

log = logging.getLogger("pointcast.engine")
BATCH_SIZE = 50  # seed 000: "Each payload can contain up to 50 endpoints"
CHUNK = 5_000
MAX_CACHED_ZONES = 10_000  # distinct Demographic.Timezone values whose send time is kept while planning
# The application settings that shape a run: the project-default hook, quiet time and limits. A run takes them when
# it is first planned and keeps them (repository.kept_settings); a change to them reaches the runs started after it.
RUN_SETTINGS = ("CampaignHook", "QuietTime", "Limits")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything about a run that planning and delivery need, read once."""

    app_id: str
    campaign_id: str
    run_id: str
    scheduled: datetime
    campaign: dict[str, Any]
    holdout: float
    treatments: list[Treatment]
    activity_ids: dict[str, str]  # treatment id -> activity id
    quiet_time: dict[str, Any] | None
    limits: dict[str, Any]
    hook: dict[str, Any] | None = None  # the CampaignHook that acts: the campaign's own, else the project's
    settings: dict[str, Any] | None = None  # the application's RUN_SETTINGS this run keeps (load_spec)

    @property
    def arn(self) -> str:
        return str(self.campaign["Arn"])

    def following(self) -> datetime | None:
        """The campaign's occurrence after this run's (None if there is none): where it is already due, this run's
        send is missed for good (schedule.superseded)."""
        plan = self.campaign.get("Schedule") or {}
        return schedule.following(plan, schedule.parse_time(self.campaign["CreationDate"]), self.scheduled)

    def treatment(self, treatment_id: str) -> Treatment:
        return next(t for t in self.treatments if t.id == treatment_id)


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A batch as planning wrote it: the members of its ``batches`` row (and the run's app) that delivery reads."""

    id: str
    run_id: str
    activity_id: str
    treatment_id: str
    not_before: str
    attempts: int
    app_id: str


class Prepared(NamedTuple):
    """A pending batch ready to deliver: its row (a ``batches`` row read with its run's app, or the ``BatchRow``
    planning wrote), its endpoint ids, and the stored definitions of those that still exist; or, from planning,
    ``endpoints``: the definitions of all of them already joined as the payload's ``Endpoints`` (``docs`` empty)."""

    batch: Any
    ids: list[str]
    docs: dict[str, str]
    endpoints: bytes | None = None
    not_now: dict[str, str] | None = None  # read for sending: endpoints now inactive or opted out, and which


def load_spec(conn: sa.Connection, run_id: str) -> RunSpec:
    """The run's spec: its campaign as the run pinned it (``campaign_version``) and the application settings it
    keeps. Those are read from the application only when the run has none kept: on its first planning (whose first
    write keeps them) or for a run started by a version that kept none."""
    run = repo.get_run(conn, run_id)
    campaign = campaigns.version(conn, run.app_id, run.campaign_id, str(run.campaign_version))
    settings = repo.kept_settings(run.plan_state)
    if settings is None:
        current = apps.get(conn, run.app_id).settings
        settings = {key: current[key] for key in RUN_SETTINGS if key in current}
    holdout, treatments = treatments_of(campaign)
    activities = {row.treatment_id: row.id for row in repo.activities_of_run(conn, run_id)}
    quiet = (campaign.get("Schedule") or {}).get("QuietTime") or settings.get("QuietTime") or None
    limits = {**(settings.get("Limits") or {}), **(campaign.get("Limits") or {})}
    return RunSpec(
        run.app_id,
        run.campaign_id,
        run_id,
        schedule.parse_time(run.scheduled_time),
        campaign,
        holdout,
        treatments,
        activities,
        quiet,
        limits,
        effective_hook(campaign, settings),
        settings,
    )


@dataclass(frozen=True)
class Audience:
    """Who a run's segment holds: a SQL selection the store applies while planning reads, and the Python predicate
    asked about the rows the selection is not sure of (None when it is exact)."""

    selection: Selection
    check: Predicate | None


def audience(conn: sa.Connection, spec: RunSpec, now: datetime) -> Audience:
    campaign = spec.campaign
    loaded: dict[tuple[str, int | None], dict[str, Any]] = {}

    def load(segment_id: str, version: int | None) -> dict[str, Any]:
        key = (segment_id, version)
        if key not in loaded:
            if version is None:
                loaded[key] = segments.get(conn, spec.app_id, segment_id)
            else:
                loaded[key] = segments.version(conn, spec.app_id, segment_id, str(version))
        return loaded[key]

    segment = load(campaign["SegmentId"], campaign.get("SegmentVersion"))
    # IMPORT segments are fixed lists of endpoints (pointcast.imports.audience): in SQL a subquery on their members;
    # for the predicate, a membership test or, as a SourceSegment, a stand-in dimension the members are marked with.
    imported = ImportedSegments(conn, spec.app_id)
    if is_imported(segment):
        return Audience(Selection.of(imported.condition(segment)), None)
    predicate = compile_segment(segment, now=now, load_segment=imported.loader(load))  # refuses a broken segment
    dialect = conn.dialect.name
    selection = select_segment(segment, dialect=dialect, now=now, load_segment=load, imported=imported.condition)
    return Audience(selection, None if selection.exact else imported.marking(predicate))


def _last_active(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class _Planner:
    def __init__(self, spec: RunSpec, now: datetime) -> None:
        self.spec = spec
        self.now = now
        self.now_iso = iso_ms(now)
        # A rate under 50 a second makes batches that size: 50 at once would be over it for that second.
        rate = spec.limits.get("MessagesPerSecond")
        self.batch_size = max(1, min(BATCH_SIZE, int(rate))) if rate else BATCH_SIZE
        self.groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.outcomes: list[tuple[Any, ...]] = []
        self.batches: list[dict[str, Any]] = []
        self.zones: dict[str, set[str]] = defaultdict(set)
        self.first_activity = spec.activity_ids["0"]
        self.zone_times: dict[str | None, tuple[str | None, str | None]] = {}
        # Local time: the occurrence after this run's, which may already be due in a zone (schedule.superseded).
        self.following = spec.following() if (spec.campaign.get("Schedule") or {}).get("IsLocalTime") else None
        # One treatment and no holdout: every endpoint is in treatment "0", no need to hash its id.
        self.only = spec.treatments[0] if len(spec.treatments) == 1 and not spec.holdout else None
        self.after: str | None = None  # the last endpoint id planned
        self.saved: str | None = None  # the run's plan_state as this planner last read or wrote it
        self.docs: dict[str, str] = {}  # the stored definitions of the endpoints in part-filled batches
        self.planned: list[Prepared] = []  # batches of this chunk that can go to delivery without a store read

    def state(self) -> str:
        """Where planning got to, as the run's ``plan_state``: enough to go on from the next endpoint, with the
        application settings the run keeps (``settings``, which outlive planning: repository.set_run_state)."""
        return orjson.dumps(
            {
                "settings": self.spec.settings,
                "after": self.after,
                "groups": [[treatment_id, due_at, ids] for (treatment_id, due_at), ids in self.groups.items()],
                "zones": {treatment_id: sorted(zones) for treatment_id, zones in self.zones.items()},
            }
        ).decode()

    def restore(self, text: str) -> None:
        self.saved = text
        state = orjson.loads(text)
        self.after = state["after"]
        for treatment_id, due_at, ids in state["groups"]:
            self.groups[(treatment_id, due_at)] = ids
        for treatment_id, zones in state["zones"].items():
            self.zones[treatment_id] = set(zones)

    def send_time(self, zone: str | None) -> str | None:
        """When an endpoint in ``zone`` is due (``iso_ms``), or None when it is skipped (``zone_plan``)."""
        return self.zone_plan(zone)[0]

    def zone_plan(self, zone: str | None) -> tuple[str | None, str | None]:
        """When an endpoint in ``zone`` is due (``iso_ms``), or None and why it is skipped: ``MISSED_OCCURRENCE``
        when a local-time run is late there and the next occurrence is due there too (only the latest missed one is
        sent), ``QUIET_TIME`` inside quiet time when it is actually sent (its due time, or now if that has passed).
        Worked out once per zone."""
        try:
            return self.zone_times[zone]
        except KeyError:
            spec = self.spec
            plan = spec.campaign.get("Schedule") or {}
            send_at = schedule.local_send_time(spec.scheduled, plan, zone)
            fallback = plan.get("Timezone") if plan.get("IsLocalTime") else None  # where a zoneless endpoint is sent
            # A send time already past (a run resumed, or started late) is sent now: quiet time is judged then.
            sent_at = max(send_at, self.now)
            verdict: tuple[str | None, str | None] = (iso_ms(send_at), None)
            if send_at < self.now and schedule.superseded(self.following, plan, zone, self.now):
                verdict = (None, "MISSED_OCCURRENCE")
            elif schedule.in_quiet_time(sent_at, spec.quiet_time, zone, fallback):
                verdict = (None, "QUIET_TIME")
            if len(self.zone_times) < MAX_CACHED_ZONES:
                self.zone_times[zone] = verdict
            return verdict

    def skip(self, treatment: Treatment | None, endpoint_id: str, reason: str) -> None:
        activity = self.spec.activity_ids[treatment.id] if treatment else self.first_activity
        self.outcomes.append((activity, endpoint_id, self.spec.run_id, "SKIPPED", reason, None, self.now_iso))

    def consider(self, rows: Any, check: Predicate | None, counts: Any) -> None:
        """Plan a chunk read by :func:`repo.endpoints_after` (rows the segment's selection may hold, its columns in
        that function's order)."""
        spec = self.spec
        docs = self.docs
        candidates: list[tuple[str, Treatment, str, str | None]] = []
        for endpoint_id, doc, last_active, channel_type, status, opt_out, zone, sure in rows:  # no Row lookups
            if check is not None and not sure:
                view = EndpointView(endpoint_id, orjson.loads(doc), _last_active(last_active))
                if not check(view):
                    continue  # not in the segment: not part of this campaign
            treatment = self.only or assign(spec.treatments, spec.holdout, bucket(spec.campaign_id, endpoint_id))
            if status != "ACTIVE":
                self.skip(treatment, endpoint_id, "ENDPOINT_INACTIVE")
            elif opt_out != "NONE":
                self.skip(treatment, endpoint_id, "OPTED_OUT")
            elif treatment is None:
                self.skip(None, endpoint_id, "HOLDOUT")
            elif channel_type not in treatment.endpoint_types:
                self.skip(treatment, endpoint_id, "CHANNEL_NOT_TARGETED")
            else:
                due_at, reason = self.zone_plan(zone)
                if due_at is None:
                    self.skip(treatment, endpoint_id, reason or "QUIET_TIME")
                else:
                    candidates.append((endpoint_id, treatment, due_at, zone))
                    docs[endpoint_id] = doc
        over = counts([(c[0], c[2]) for c in candidates]) if candidates else {}
        for endpoint_id, treatment, due_at, zone in candidates:
            if endpoint_id in over:
                self.skip(treatment, endpoint_id, over[endpoint_id])
                del docs[endpoint_id]
                continue
            self.zones[treatment.id].add(zone or "")
            group = self.groups[(treatment.id, due_at)]
            group.append(endpoint_id)
            if len(group) == self.batch_size:
                self.flush(treatment.id, due_at)

    def flush(self, treatment_id: str, send_at: str) -> None:
        ids = self.groups.pop((treatment_id, send_at))
        spec = self.spec
        row = BatchRow(new_id(), spec.run_id, spec.activity_ids[treatment_id], treatment_id, send_at, 0, spec.app_id)
        self.batches.append(
            {
                "id": row.id,
                "run_id": row.run_id,
                "activity_id": row.activity_id,
                "treatment_id": treatment_id,
                "endpoint_ids": orjson.dumps(ids).decode(),
                "not_before": send_at,
                "state": "PENDING",
                "attempts": 0,
            }
        )
        docs = {i: self.docs.pop(i) for i in ids if i in self.docs}
        if len(docs) == len(ids):  # else part of it was planned before a restart: delivery reads it from the store
            self.planned.append(Prepared(row, ids, {}, endpoints_json(docs, ids)))

    def write(self, conn: sa.Connection) -> None:
        """Commit what was planned since the last write with the state it leaves planning in."""
        state = self.state()
        if not repo.save_plan_state(conn, self.spec.run_id, state, self.saved):
            raise RunGone(self.spec.run_id)
        self.saved = state
        repo.insert_outcomes(conn, self.outcomes)
        repo.insert_batches(conn, self.batches)
        self.outcomes, self.batches = [], []

    def take_planned(self) -> list[Prepared]:
        planned, self.planned = self.planned, []
        return planned


class Stop(Protocol):
    """Something that says when planning should stop (a ``threading.Event``, say)."""

    def is_set(self) -> bool: ...


class RunGone(Exception):
    """The run is not this planner's to plan any more: it was deleted (with its campaign or app), or another planner
    moved its plan on (the transaction that would have written this planner's batches is rolled back)."""


def _limit_counter(db: Database, spec: RunSpec) -> Any:
    """``counts(candidates)``: ``over_limits`` in a read transaction of its own."""

    def counts(candidates: list[tuple[str, str]]) -> dict[str, str]:
        if not spec.limits.get("Daily") and not spec.limits.get("Total"):
            return {}
        with db.read() as conn:
            return over_limits(conn, spec, candidates)

    return counts


def over_limits(conn: sa.Connection, spec: RunSpec, candidates: list[tuple[str, str]]) -> dict[str, str]:
    """Which of the (endpoint id, send time) pairs are over the campaign's Total, or over its Daily in the 24 hours
    before their own send time (sends scheduled exactly 24 hours before do not count, so a DAILY campaign with Daily
    1 sends every day; with local time each zone's window ends at its own send time, and is 23 hours long, the
    shortest day a daylight-saving change makes). Asked when a run is planned,
    and again when a batch planned for later is sent: by then another run of the campaign (local-time runs
    overlap) may have sent to the same endpoints."""
    daily, total = spec.limits.get("Daily"), spec.limits.get("Total")
    over: dict[str, str] = {}
    if total:
        ids = [endpoint_id for endpoint_id, _ in candidates]
        for endpoint_id, n in repo.sent_counts(conn, spec.app_id, spec.campaign_id, ids, None).items():
            if n >= total:
                over[endpoint_id] = "TOTAL_LIMIT"
    if daily:
        by_time: dict[str, list[str]] = defaultdict(list)
        for endpoint_id, due_at in candidates:
            by_time[due_at].append(endpoint_id)
        # With local time a day on the endpoint's wall clock may be 23 hours (a spring daylight-saving change): a
        # DAILY campaign at 09:00 with Daily 1 would skip that day with a 24-hour window.
        window = timedelta(hours=23) if (spec.campaign.get("Schedule") or {}).get("IsLocalTime") else timedelta(days=1)
        for due_at, ids in by_time.items():
            since = iso_ms(datetime.fromisoformat(due_at) - window)
            for endpoint_id, n in repo.sent_counts(conn, spec.app_id, spec.campaign_id, ids, since).items():
                if n >= daily:
                    over.setdefault(endpoint_id, "DAILY_LIMIT")
    return over


def end_unplanned(db: Database, run_id: str, error: str, now: datetime) -> None:
    """End a run's planning with ``error``: what it planned before is sent, and its activities FAIL with it."""
    with db.write() as conn:
        repo.end_planning_with_error(conn, run_id, error)
        for row in repo.activities_of_run(conn, run_id):
            finish_activity(conn, row.id, now)  # each FAILs, with what was planned before (if anything)


def plan_run(
    db: Database,
    run_id: str,
    now: datetime,
    *,
    planned: Callable[[list[Prepared]], None] | None = None,
    stop: Stop | None = None,
    max_chunks: int | None = None,
) -> bool:
    """Plan a PLANNING run from where it got to, a chunk per transaction, then mark it EXECUTING.

    After each chunk commits, ``planned`` gets its batches with the endpoint definitions planning read (delivery
    need not read them again; it may block to hold planning back); ``stop`` ends planning after the chunk under
    way; ``max_chunks`` ends it after that many chunks. Returns True when the plan is whole (or there is nothing to
    plan), False when it stopped early.
    """
    error: str | None = None
    with db.read() as conn:
        run = repo.get_run_if_any(conn, run_id)
        if run is None or run.state != "PLANNING":
            return True
        spec = load_spec(conn, run_id)
        try:
            who = audience(conn, spec, now)
        except (ValueError, AwsError) as exc:  # the segment cannot be evaluated: planning again would fail again
            error = f"the segment cannot be evaluated: {exc}"
    if error is not None:
        log.error("run %s of campaign %s ends unplanned: %s", run_id, spec.campaign.get("Id"), error)
        end_unplanned(db, run_id, error, now)
        return True
    # An exact selection holds only rows it is sure of: no need to work the condition out a second time per row.
    sure = sa.true() if who.selection.exact else who.selection.sure
    planner = _Planner(spec, now)
    try:
        if run.plan_state is None:
            with db.write() as conn:
                # Batches without a plan_state were left by a version that planned the whole run before sending any.
                repo.clear_plan(conn, run_id)
                planner.write(conn)
                for row in repo.activities_of_run(conn, run_id):
                    repo.save_activity(conn, {**row.doc, "State": "RUNNING", "Start": iso_ms(now)})
        else:
            planner.restore(run.plan_state)
        counts = _limit_counter(db, spec)
        chunks = 0
        while True:
            with db.read() as conn:  # a short read per chunk: no snapshot is held while the chunk is sent
                rows = repo.endpoints_after(
                    conn,
                    spec.app_id,
                    planner.after,
                    CHUNK,
                    where=who.selection.maybe,
                    sure=sure,
                )
            if not rows:
                break
            planner.consider(rows, who.check, counts)
            planner.after = rows[-1][0]  # the id: rows are plain tuples
            with db.write() as conn:
                planner.write(conn)
            if planned:
                planned(planner.take_planned())
            chunks += 1
            if stop is not None and stop.is_set():
                return False
            if len(rows) < CHUNK:
                break  # that was the last
            if chunks == max_chunks:
                return False
        for treatment_id, send_at in list(planner.groups):
            planner.flush(treatment_id, send_at)
        with db.write() as conn:
            planner.write(conn)
            activities = repo.activities_of_run(conn, run_id)
            for row in activities:
                doc = dict(row.doc)
                zones = planner.zones.get(row.treatment_id, set())
                doc.update(
                    TotalEndpointCount=repo.batch_endpoint_count(conn, row.id),
                    TimezonesTotalCount=max(1, len(zones)),
                )
                repo.save_activity(conn, doc)
                sends = Counter(planner.send_time(zone or None) for zone in zones)
                if len(sends) > 1:  # local time: the zones end at different times (TimezonesCompletedCount)
                    repo.save_zone_sends(conn, row.id, {str(at): n for at, n in sends.items()})
            repo.set_run_state(conn, run_id, "EXECUTING")
            for row in activities:
                finish_activity(conn, row.id, now)  # those whose batches were all sent while planning
    except RunGone:
        return True
    if planned:
        planned(planner.take_planned())
    return True


def utcnow() -> datetime:
    return datetime.now(UTC)
