"""The in-process runner: a scheduler loop that starts due runs, plans them, and sends due batches.

Runs are planned while the loop sends the batches each planned chunk committed: the first chunk on a worker thread,
the rest in a child process (``POINTCAST_PLANNING_PROCESS``, pointcast.engine.planner). Concurrency is
bounded (``POINTCAST_DELIVERY_CONCURRENCY`` batches being delivered, and at most as many delivered ones waiting for
the group commit that records them); everything durable lives in the store, so stopping the process at any point
loses nothing: on start, runs still PLANNING go on from where their planning got to, and PENDING batches are sent
(again, with the same batch id, if they were delivered but not recorded).

Runs share the slots: they take turns to start batches (pointcast.engine.readahead), and a batch holds a slot only
while it is being delivered. A run paced by MessagesPerSecond, or whose webhook's circuit breaker is open, is passed
over until it may go on; a batch that has to wait in the middle of its delivery (the breaker opened, a back-off, a
function's workers all busy) lends its slot to another run's batch that needs one, and takes one back, before any
new batch starts, when it goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import sqlalchemy as sa

from pointcast.aws.wire import iso_ms, new_id
from pointcast.campaigns.repository import campaigns, with_state
from pointcast.channels.webhook.breaker import Breaker, Breakers
from pointcast.channels.webhook.deliver import RetryPolicy, Transport, client_name, delivery_client
from pointcast.context import Context
from pointcast.engine import planner, schedule
from pointcast.engine import repository as repo
from pointcast.engine.clock import Clock
from pointcast.engine.execute import (
    ExecuteDeps,
    Prepared,
    Result,
    deliver,
    destinations,
    fail_batch,
    prepare,
    record,
    send_start,
)
from pointcast.engine.plan import RunSpec, end_unplanned, plan_run
from pointcast.engine.readahead import Lane, ReadAhead, lane_of
from pointcast.store import models as m
from pointcast.store.db import describe_error

log = logging.getLogger("pointcast.engine")
_RUNNABLE = ("SCHEDULED", "PENDING_NEXT_RUN", "EXECUTING")  # EXECUTING: local-time runs overlap
MAX_INTERNAL_ERRORS = 5
MAX_PLANNING_FAILURES = 5  # a run whose planning fails this many times in a row ends with the error
RECORD_GATHER_SECONDS = 0.01
BACK: Lane = ("", "")  # _lend: the slot went to a batch back from waiting, not to a lane
STOP_GRACE = 5.0  # seconds deliveries in flight may take to end when the server stops cleanly
PLANNING_THREADS = 1024  # runs planned at once (beyond that, a run's planning waits for a thread)
T = TypeVar("T")


def start_due_runs(conn: sa.Connection, now: datetime) -> list[str]:
    """Create a run (and one activity per treatment) for every campaign with a due occurrence.

    A campaign whose document the engine cannot read (a schedule stored before the API refused it, say) is marked
    INVALID and logged once, so that it does not stop every other campaign's runs at each tick."""
    started = []
    for row in conn.execute(sa.select(m.campaigns.c.app_id, m.campaigns.c.doc)):
        doc = row.doc
        if doc.get("IsPaused") or doc.get("State", {}).get("CampaignStatus") not in _RUNNABLE:
            continue
        try:
            with conn.begin_nested():
                run_id = _start_if_due(conn, row.app_id, doc, now)
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            log.error("campaign %s of application %s is INVALID: %r", doc.get("Id"), row.app_id, exc)
            campaigns.change_current(conn, row.app_id, doc["Id"], doc["Version"], lambda d: with_state(d, "INVALID"))
            continue
        if run_id is not None:
            started.append(run_id)
    return started


def _start_if_due(conn: sa.Connection, app_id: str, doc: dict[str, Any], now: datetime) -> str | None:
    """The run started for the campaign's due occurrence, if it has one (start_due_runs)."""
    sched = doc.get("Schedule") or {}
    open_run = repo.has_open_run(conn, app_id, doc["Id"])
    if open_run and not sched.get("IsLocalTime"):
        return None  # local-time runs overlap: one may wait for the west while the next starts in the east
    last = repo.last_run_time(conn, app_id, doc["Id"])
    created = schedule.parse_time(doc["CreationDate"])
    last_at = schedule.parse_time(last) if last else None
    moment = schedule.due(sched, created, last_at, now)
    if moment is None:
        if not open_run and last_at is not None and schedule.finished(sched, created, last_at):
            campaigns.change_current(conn, app_id, doc["Id"], doc["Version"], lambda d: with_state(d, "COMPLETED"))
        return None
    if not campaigns.change_current(conn, app_id, doc["Id"], doc["Version"], lambda d: with_state(d, "EXECUTING")):
        return None  # updated or deleted since it was read: the next tick reads it again
    run_id = new_id()
    repo.insert_run(
        conn,
        {
            "id": run_id,
            "app_id": app_id,
            "campaign_id": doc["Id"],
            "campaign_version": doc["Version"],
            "scheduled_time": iso_ms(moment),
            "state": "PLANNING",
            "created": iso_ms(now),
        },
    )
    for treatment_id in ["0"] + [t["Id"] for t in doc.get("AdditionalTreatments") or []]:
        repo.insert_activity(
            conn,
            {
                "ApplicationId": app_id,
                "CampaignId": doc["Id"],
                "Id": new_id(),
                "TreatmentId": treatment_id,
                "State": "INITIALIZING",
                "ScheduledStart": iso_ms(moment),
                "TotalEndpointCount": 0,
                "SuccessfulEndpointCount": 0,
                "TimezonesTotalCount": 1,
                "TimezonesCompletedCount": 0,
            },
            run_id,
        )
    return run_id


def _lane_items(
    lane: Lane, through: str, now: str, busy: set[str], limit: int, specs: dict[str, RunSpec], conn: sa.Connection
) -> list[Prepared]:
    """A lane's pending due batches up to ``through`` in planning order, read for sending (Runner._read_spilled)."""
    return prepare(conn, repo.lane_batches(conn, lane, through, now, busy, limit), specs, now)


class _Either:
    """Stop planning on this thread when the runner stops, or when the planning process is ready to take over."""

    def __init__(self, stopping: threading.Event, child: planner.Child) -> None:
        self.stopping = stopping
        self.child = child

    def is_set(self) -> bool:
        return self.stopping.is_set() or self.child.ready()


class Runner:
    """Runs campaigns inside the server process (asyncio), with ``concurrency`` batches in flight."""

    def __init__(self, ctx: Context, clock: Clock) -> None:
        self.ctx = ctx
        self.clock = clock
        settings = ctx.settings
        self.concurrency = settings.delivery_concurrency
        self.interval = settings.scheduler_interval
        self.policy = RetryPolicy(
            settings.delivery_attempts,
            settings.delivery_backoff_base,
            settings.delivery_backoff_cap,
            settings.delivery_timeout,
        )
        self._inflight: dict[str, asyncio.Task[None]] = {}  # being delivered: each holds a slot, unless away
        self._away: set[str] = set()  # in flight, waiting (a breaker, a back-off, a function) without a slot
        self._away_limit = 4 * self.concurrency
        self._lendable: dict[str, Lane] = {}  # batch id -> its lane: waiting with a slot it would lend if asked
        self._lanes: dict[str, Lane] = {}  # batch id -> its lane (run, treatment), for the batches in flight
        self._run_slots: Counter[str] = Counter()  # run id -> its batches in flight (_over_share)
        self._gone: set[str] = set()  # runs deleted with their campaign while batches of theirs were here
        self._returning: deque[tuple[str, asyncio.Future[None]]] = deque()  # away ones done waiting, for a slot
        self._unrecorded: set[str] = set()  # delivered, result not yet written (at most ``2 x concurrency``)
        self._ready = ReadAhead()  # due batches with their endpoints, not yet started, per run
        self._timer: asyncio.TimerHandle | None = None  # to look at the read-ahead again when a held run may go
        self._timer_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._session: Transport | None = None
        self._wake = asyncio.Event()
        # (app id, campaign id) -> monotonic time its next batch may start: MessagesPerSecond is the campaign's
        # rate, shared by its runs (local-time runs overlap)
        self._rates: dict[tuple[str, str], float] = {}
        self._specs: dict[str, RunSpec] = {}  # run id -> what delivery reads of it once (ExecuteDeps.spec)
        self._reschedule = True
        self._scheduled_at = 0.0
        self._errors: dict[str, int] = {}  # batch id -> unexpected errors so far
        self._results: list[Result] = []  # delivered, not yet recorded
        self._recorded = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._planning: dict[str, asyncio.Task[None]] = {}  # run id -> its planning (a thread, then a child process)
        self._stop_planning = threading.Event()
        self._planning_threads = concurrent.futures.ThreadPoolExecutor(  # one per run being planned, made as needed
            max_workers=PLANNING_THREADS, thread_name_prefix="pointcast-planning"
        )
        self._children: dict[str, BaseProcess] = {}  # run id -> the process planning it
        self._planning_failures: dict[str, int] = {}  # run id -> its planning's failures in a row
        self._spilled: dict[Lane, str] = {}  # a lane of a run being planned -> the last batch it left in the store
        self._planned_limit = 4 * self.concurrency  # a run's planned batches read ahead before its planning waits
        self._started = asyncio.Event()  # a batch left the look-ahead
        self.breakers = Breakers(  # per webhook destination (channels/webhook/breaker.py)
            settings.delivery_breaker_failures,
            settings.delivery_breaker_cooldown,
            max(settings.delivery_backoff_cap, settings.delivery_breaker_cooldown),
            settings.delivery_outage_limit,
        )
        self.breakers.on_change = self._breaker_changed

    async def start(self) -> None:
        settings = self.ctx.settings
        self._session = delivery_client(
            settings.delivery_client, self.ctx.ssl_context, settings.ca_bundle, self.concurrency, settings.data_dir
        )
        self.deps = ExecuteDeps(
            self.ctx.read,
            self.ctx.write,
            self._session,
            self.policy,
            self.clock.now,
            functions=self.ctx.functions,
            function_attempts=settings.function_attempts,
            hook_timeout=settings.hook_timeout,
            breakers=self.breakers,
            idle=self._idle,
            specs=self._specs,
        )
        self._task = asyncio.create_task(self._loop(), name="pointcast-runner")
        self._recorder = asyncio.create_task(self._record_loop(), name="pointcast-recorder")

    def wake(self) -> None:
        """Look for due runs now (a campaign was written, the clock moved)."""
        self._ready.wake()
        self._reschedule = True
        self._wake.set()

    async def stop(self) -> None:
        """Stop dispatching and planning (after the chunk under way), give the deliveries in flight up to
        ``STOP_GRACE`` seconds to end, cancel the rest (they stay PENDING, and are sent again after a restart),
        record what was delivered."""
        self._stop_planning.set()
        for process in list(self._children.values()):
            process.kill()
        for task in (self._task, self._recorder):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        await asyncio.gather(*self._planning.values(), return_exceptions=True)
        self._planning_threads.shutdown(wait=False)
        if self._inflight:  # a clean stop need not send them twice: most end within a round trip
            await asyncio.wait(list(self._inflight.values()), timeout=STOP_GRACE)
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self._flush()
        if self._session:
            await self._session.close()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("campaign runner tick failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)

    async def tick(self) -> None:
        """One pass: start due runs and plan them (every interval, or when woken), then dispatch due batches.

        A finished batch wakes the loop only to dispatch the next ones: scanning campaigns is not repeated per batch.
        """
        if self._reschedule or time.monotonic() - self._scheduled_at >= self.interval:
            self._reschedule = False
            self._scheduled_at = time.monotonic()
            await self._schedule()
        await self._dispatch()

    async def _schedule(self) -> None:
        await self._drop_deleted_runs()
        self._forget_idle_runs()
        now = self.clock.now()
        await self.ctx.write(lambda conn: start_due_runs(conn, now))
        planning = await self.ctx.read(lambda conn: repo.runs_in_state(conn, "PLANNING"))
        for run in planning:
            if run.id not in self._planning:
                self._planning[run.id] = asyncio.create_task(self._plan(run.id), name=f"plan-{run.id}")

    async def _drop_deleted_runs(self) -> None:
        """A campaign deleted (on any node) takes its runs with it: their batches read ahead or handed on by planning
        here are dropped, and none of them starts from now on (one being delivered ends). Checked every interval."""
        held = set(self._ready.runs()) | set(self._planning) | {run_id for run_id, _ in self._lanes.values()}
        if not held:
            return
        existing = await self.ctx.read(lambda conn: repo.existing_runs(conn, sorted(held)))
        for run_id in held - existing:
            if run_id not in self._gone:
                log.info("run %s is gone (its campaign was deleted): %d batch(es) dropped", run_id,
                         self._ready.drop_run(run_id))  # fmt: skip
                self._gone.add(run_id)
        self._gone &= held

    def _forget_idle_runs(self) -> None:
        """Drop what is kept per run (its spec, and its campaign's pace) for runs with nothing queued, in flight or
        being planned: a server that runs an hourly campaign for a year would otherwise keep 8,760 of each. A run
        that has more to send later (a local-time batch) reads its spec again then."""
        active = set(self._ready.runs()) | {run_id for run_id, _ in self._lanes.values()} | set(self._planning)
        for run_id in [r for r in self._specs if r not in active]:
            del self._specs[run_id]
        paced = {(spec.app_id, spec.campaign_id) for spec in self._specs.values()}
        for campaign in [c for c in self._rates if c not in paced]:
            del self._rates[campaign]

    async def _plan(self, run_id: str) -> None:
        """Plan a run on a worker thread. The batches each chunk commits go straight to the look-ahead, with the
        endpoint definitions planning read; planning waits while the look-ahead is full (memory stays bounded)."""
        loop = asyncio.get_running_loop()

        def planned(items: list[Prepared]) -> None:  # on the planning thread
            future = asyncio.run_coroutine_threadsafe(self._take_planned(run_id, items), loop)
            while not self._stop_planning.is_set():
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    return future.result(timeout=0.5)
            future.cancel()

        in_child = self.ctx.settings.planning_process
        try:
            whole = await self._on_planning_thread(
                plan_run,
                self.ctx.db,
                run_id,
                self.clock.now(),
                planned=planned,
                stop=self._stop_planning,
                max_chunks=1 if in_child else None,
            )
            if not whole and in_child and not self._stop_planning.is_set():
                child = planner.spawn(self.ctx.db.url, run_id, self.clock.now())
                self._children[run_id] = child.process
                try:
                    # Go on here while the child starts; hand over at the first chunk boundary after it is ready.
                    stop = _Either(self._stop_planning, child)
                    whole = await self._on_planning_thread(
                        plan_run, self.ctx.db, run_id, self.clock.now(), planned=planned, stop=stop
                    )
                finally:
                    await self._on_planning_thread(self._plan_in_child, run_id, child, planned, not whole)
        except Exception as exc:
            failures = self._planning_failures[run_id] = self._planning_failures.get(run_id, 0) + 1
            if failures < MAX_PLANNING_FAILURES:
                log.exception("planning run %s failed; it goes on from where it got to at the next tick", run_id)
                await asyncio.sleep(self.interval)
            else:  # five in a row: the same would most likely happen at every tick, for ever
                error = f"planning failed {failures} times in a row; the last time: {describe_error(exc)}"
                log.exception("run %s ends unplanned: %s", run_id, error)
                with contextlib.suppress(Exception):  # the store may be what fails: then the next tick tries again
                    await self._on_planning_thread(end_unplanned, self.ctx.db, run_id, error, self.clock.now())
                    self._planning_failures.pop(run_id, None)
        else:
            self._planning_failures.pop(run_id, None)
        finally:
            self._planning.pop(run_id, None)
            for lane in [lane for lane in self._spilled if lane[0] == run_id]:
                del self._spilled[lane]  # the store is read for the whole run again (_dispatch)

    async def _on_planning_thread(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``work`` on a thread of the runner's own for planning: planning waits there while its run's
        read-ahead is full (a paced run: for as long as it sends), so it must not take the threads of Python's
        default pool (``os.cpu_count() + 4`` of them), which every other run's planning would then wait for."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._planning_threads, functools.partial(work, *args, **kwargs))

    def _plan_in_child(
        self, run_id: str, child: planner.Child, planned: Callable[[list[Prepared]], None], go: bool
    ) -> None:
        """Tell the child whether to go on planning (on a worker thread), then hand on what it planned until its
        pipe ends."""
        go = go and not self._stop_planning.is_set()
        try:
            if go:
                with contextlib.suppress(EOFError, OSError):
                    if child.receive.recv() == planner.READY:
                        child.go.send(True)
            while go and not self._stop_planning.is_set():
                try:
                    items = planner.receive_chunk(child.receive)
                except EOFError:
                    break
                planned(items)
        finally:
            if self._stop_planning.is_set() or not go:
                child.process.kill()  # safe: it plans only when told to, and each chunk commits with the cursor
            child.process.join()
            child.receive.close()
            child.go.close()
            self._children.pop(run_id, None)
        if go and child.process.exitcode and not self._stop_planning.is_set():
            raise RuntimeError(f"the planning process of run {run_id} exited with {child.process.exitcode}")

    async def _take_planned(self, run_id: str, items: list[Prepared]) -> None:
        """Queue freshly planned batches that are due (a local-time batch for later is read when it is due), then
        hold the run's planning back until its read-ahead has room again. The batches of a treatment whose webhook
        is down do not count: they wait, and would hold the run's other treatments back (see ``_queue``)."""
        await self._queue(items, planned=True)
        self._wake.set()
        while self._ready.queued(run_id, unless=self._down) >= self._planned_limit:
            self._started.clear()
            await self._started.wait()

    async def _queue(self, items: list[Prepared], planned: bool = False) -> None:
        """Put due batches that are not already queued, in flight or waiting to be recorded into the read-ahead
        (their runs' specs read first: whether a run may start a batch is decided from it), and start what can.

        A lane that is down keeps at most a run's read-ahead here; the rest stay in the store. Of a run being planned
        (``planned``: handed on by its planning), the last batch so left is remembered, and the lane's later batches
        are left there too until it is read back (``_read_spilled``), so that the lane keeps planning order."""
        now = iso_ms(self.clock.now())
        due = [item for item in items if item.batch.not_before <= now]
        for run_id in dict.fromkeys(item.batch.run_id for item in due):
            with contextlib.suppress(Exception):  # unreadable (the campaign went away): sending it says so
                await self.deps.spec(run_id)
        taken = self._taken()  # after the reads above
        down: dict[Lane, bool] = {}
        for item in due:
            if item.batch.id in taken or item.batch.run_id in self._gone:
                continue
            lane = lane_of(item)
            if planned and lane in self._spilled:
                self._spilled[lane] = item.batch.id  # behind the lane's batches in the store, so there too
                continue
            if self._ready.in_lane(lane) >= self._planned_limit and down.setdefault(lane, self._down(lane)):
                if planned:
                    self._spilled[lane] = item.batch.id
                elif item.batch.run_id in self._planning:  # read back, and the lane went down again meanwhile
                    self._spilled.setdefault(lane, item.batch.id)  # (a later batch remembered stays)
                continue  # left in the store (it is PENDING there): read again once its lane has room
            self._ready.add(item)
        self._start_ready()

    def _down(self, lane: Lane) -> bool:
        """True while a destination of the lane (its webhook, the run's WebUrl hook) is down: its breaker holds the
        lane's batches back. Such a lane keeps at most a run's read-ahead of batches here; the rest stay in the
        store, so that the run's planning, and its other treatments, go on."""
        spec = self._specs.get(lane[0])
        return spec is not None and any(breaker.hold() > 0 for breaker in self._breakers(spec, lane[1]))

    def _breakers(self, spec: RunSpec, treatment_id: str) -> list[Breaker]:
        """The breakers of the URLs the treatment's batches are POSTed to (``execute.destinations``): a WebUrl
        hook's, the webhook's; none for functions, or with breakers turned off."""
        urls = destinations(spec, spec.treatment(treatment_id))
        return [breaker for url in urls if (breaker := self.breakers.for_url(url)) is not None]

    def _taken(self) -> set[str]:
        """The batches this runner holds: queued in the read-ahead, in flight, or waiting to be recorded."""
        return set(self._inflight) | self._unrecorded | self._ready.ids()

    def _free(self) -> int:
        """Slots to start batches in: a slot is held while a batch is delivered (not while it waits away); results
        waiting for the group commit hold none, but at most ``2 x concurrency`` of them may wait (what a crash can
        make be sent again): a commit's worth being written, and the next gathering meanwhile. With room for one
        only, sending stopped while each commit was written (the 1M fast phase: 7.4-7.5 s against 6.7-6.9 s)."""
        delivering = len(self._inflight) - len(self._away)
        return min(self.concurrency - delivering, 2 * self.concurrency - len(self._unrecorded))

    def _hold(self, item: Prepared) -> float:
        """Seconds before ``item`` may start: its run's MessagesPerSecond pace, its destinations' breakers; 0 once its
        run is past MaximumDuration (it then ends at once, with that reason)."""
        spec = self._specs.get(item.batch.run_id)
        if spec is None:
            return 0.0
        wait = 0.0
        if spec.limits.get("MessagesPerSecond"):
            wait = self._rates.get((spec.app_id, spec.campaign_id), 0.0) - time.monotonic()
        for breaker in self._breakers(spec, item.batch.treatment_id):
            wait = max(wait, breaker.hold())
        if wait > 0 and (max_duration := spec.limits.get("MaximumDuration")):
            left = (send_start(spec, item.batch) + timedelta(seconds=max_duration) - self.clock.now()).total_seconds()
            wait = min(wait, max(left, 0.0))
        return wait

    def _paced(self, item: Prepared) -> None:
        """A batch of n endpoints holds its campaign's next start (of any of its runs) back by n / MessagesPerSecond
        seconds."""
        spec = self._specs.get(item.batch.run_id)
        rate = spec.limits.get("MessagesPerSecond") if spec is not None else None
        if spec is not None and rate:
            campaign = (spec.app_id, spec.campaign_id)
            self._rates[campaign] = max(time.monotonic(), self._rates.get(campaign, 0.0)) + len(item.ids) / rate

    def _start_ready(self) -> None:
        """Fill the free slots: first with batches back from waiting away, then from the read-ahead, the runs in
        turn (and each run's lanes in turn); if every lane with batches queued must wait, look again when the first
        may go. With no slot free, a batch that waits (for a breaker, a back-off, a function's worker) lends its slot
        to one back from waiting, or to a batch of another lane."""
        while True:
            lent_to = None  # with no slot free: the lane a waiting batch lent its slot to
            if self._free() <= 0 and (lent_to := self._lend()) is None:
                return
            if self._returning:
                batch_id, back = self._returning.popleft()
                if not back.done():
                    self._away.discard(batch_id)
                    back.set_result(None)
                continue
            if self._stop_planning.is_set():
                return  # stopping: only the deliveries already under way go on
            took = self._ready.take(self._hold, None if lent_to == BACK else lent_to, self._over_share())
            if took is None:
                return
            if isinstance(took, float):  # seconds until a held run may go
                self._look_again(took)
                return
            self._paced(took)
            self._lanes[took.batch.id] = lane_of(took)
            self._run_slots[took.batch.run_id] += 1
            self._inflight[took.batch.id] = asyncio.create_task(self._send(took), name=f"batch-{took.batch.id}")
            self._started.set()

    def _over_share(self) -> set[str]:
        """Runs holding their share of the slots or more (the concurrency over the runs with batches in flight or
        read ahead): while another run's batch may start, theirs wait. Without it a receiver that answers slowly
        (seconds) filled every slot with its batches, and another campaign got one slot in two as they freed: 0.3 s
        alone, 14 s beside one answering in 5 s."""
        if not self._run_slots:
            return set()
        active = self._run_slots.keys() | set(self._ready.runs())
        if len(active) < 2:
            return set()
        share = -(-self.concurrency // len(active))  # rounded up
        return {run_id for run_id, held in self._run_slots.items() if held >= share}

    def _breaker_changed(self) -> None:
        """A destination's breaker opened, closed or ended a probe: a run held for it may go on."""
        self._ready.wake()
        self._started.set()  # a run's planning waiting on a lane that went down may go on
        self._start_ready()

    def _look_again(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + seconds
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(at, self._timer_fired), at

    def _timer_fired(self) -> None:
        self._timer = None
        self._start_ready()

    def _lend(self) -> Lane | None:
        """With no slot free: a waiting batch lends its slot to a batch back from waiting (always: the one back may
        hold what the lenders wait for, such as the function's worker), or to the next batch of another lane (a run's
        batches for one treatment) in the read-ahead, while fewer than ``4 * concurrency`` are away, so that what is
        in memory stays bounded. Never to the next batch of its own lane, which would only wait beside it: when every
        batch that could lend is of the lane whose turn it is, the slot goes to the next lane in turn. Returns the
        lane the slot goes to (``BACK`` for a batch back from waiting), or None if none was lent."""
        if not self._lendable:
            return None
        lender, wanting = None, None
        if any(not back.done() for _, back in self._returning):
            lender, wanting = next(iter(self._lendable)), BACK
        elif len(self._away) < self._away_limit:
            lenders = set(self._lendable.values())
            wanting = self._ready.next_lane(self._hold, exclude=lenders if len(lenders) == 1 else ())
            if wanting is not None:
                lender = next((b for b, lane in self._lendable.items() if lane != wanting), None)
        if lender is None or wanting is None:
            return None
        del self._lendable[lender]
        self._away.add(lender)
        return wanting

    @contextlib.asynccontextmanager
    async def _idle(self, batch_id: str) -> AsyncIterator[None]:
        """Around a wait in the middle of a batch's delivery: its slot may go to another batch meanwhile (``_lend``),
        and then it takes one back (before any new batch starts) when the wait is over."""
        lane = self._lanes.get(batch_id)
        if lane is None or batch_id in self._away or batch_id in self._lendable:
            yield
            return
        self._lendable[batch_id] = lane
        self._start_ready()  # a batch may be waiting for this slot
        try:
            yield
        except asyncio.CancelledError:
            self._lendable.pop(batch_id, None)
            self._away.discard(batch_id)  # the runner is stopping: no slot needed
            raise
        finally:
            if self._lendable.pop(batch_id, None) is None and batch_id in self._away:
                await self._take_back(batch_id)  # (after an error too: the delivery may go on to another attempt)

    async def _take_back(self, batch_id: str) -> None:
        """A batch that lent its slot goes on: a free slot, or the first one to free up (before any new batch)."""
        if self._free() > 0 and not self._returning:
            self._away.discard(batch_id)
            return
        back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._returning.append((batch_id, back))
        self._start_ready()  # a batch that waits may lend it its slot
        try:
            await back
        finally:
            self._away.discard(batch_id)

    async def _dispatch(self) -> None:
        """Start due batches in the free slots, from a look-ahead of prepared batches (due batches and their
        endpoints, read two queries at a time) that is refilled before it runs dry, so a freed slot does not wait
        for a store round trip."""
        self._start_ready()
        if self._spilled:
            await self._read_spilled()
        startable = self._ready.startable(self._hold)
        if startable >= max(1, self.concurrency // 2):
            return  # enough read ahead
        wanted = self.concurrency - startable
        now = iso_ms(self.clock.now())
        busy = self._taken()
        # A run being planned here gets its batches from planning (_take_planned), not from the store: a batch read
        # here, sent and recorded before planning handed it on would be sent again. What planning does not hand on
        # (a batch begun before a restart) is read once planning has ended; what _queue left in the store, by
        # _read_spilled. A run with a full read-ahead (one that is held) is not read further, so that the others'
        # batches are; nor is a treatment whose webhook is down and that has a full read-ahead of its own, so that
        # its run's other treatments' batches are.
        limit = self._planned_limit
        down = {lane for lane in self._ready.lanes() if self._down(lane)}
        held = {r for r in self._ready.runs() if self._ready.queued(r, down.__contains__) >= limit}
        skip = set(self._planning) | held
        full = [lane for lane in down if self._ready.in_lane(lane) >= limit]

        specs = self.deps.specs

        def work(conn: sa.Connection) -> list[Prepared]:
            return prepare(conn, [row.id for row in repo.due_batches(conn, now, busy, wanted, skip, full)], specs, now)

        await self._queue(await self.ctx.read(work))

    async def _read_spilled(self) -> None:
        """Read back, oldest first, the batches a lane of a run being planned left in the store while it was down
        (``_queue``), once the lane is up and has room for half a read-ahead: the store is not read for a run being
        planned otherwise, and the lane would wait for the end of its planning. Only batches planning has handed on
        are read (up to the one remembered), so none can be handed on again."""
        for lane in list(self._spilled):
            through = self._spilled.get(lane)  # gone if its run's planning ended meanwhile
            room = self._planned_limit - self._ready.in_lane(lane)
            if through is None or 2 * room < self._planned_limit or self._down(lane):
                continue
            read = functools.partial(
                _lane_items, lane, through, iso_ms(self.clock.now()), self._taken(), room, self.deps.specs
            )
            items = await self.ctx.read(read)
            if len(items) < room and self._spilled.get(lane) == through:
                del self._spilled[lane]  # caught up: the lane's next batches from planning go to the read-ahead
            await self._queue(items)

    async def _send(self, item: Prepared) -> None:
        try:
            await self._send_one(item)
        finally:
            self._lanes.pop(item.batch.id, None)
            run_id = item.batch.run_id
            self._run_slots[run_id] -= 1
            if self._run_slots[run_id] <= 0:
                del self._run_slots[run_id]

    async def _send_one(self, item: Prepared) -> None:
        batch_id = item.batch.id
        if item.batch.run_id in self._gone:  # its campaign was deleted since it was queued
            self._inflight.pop(batch_id, None)
            self._wake.set()
            return
        try:
            result = await deliver(self.deps, item)
            self._results.append(result)  # after the await: _flush may have swapped the list meanwhile
            self._unrecorded.add(batch_id)  # not due again until the recorder has written it
            self._inflight.pop(batch_id, None)
            self._recorded.set()
            self._start_ready()  # the slot is free: start the next batch read ahead now, not at the next tick
            self._wake.set()  # and let the loop top the look-ahead up
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            errors = self._errors[batch_id] = self._errors.get(batch_id, 0) + 1
            if errors >= MAX_INTERNAL_ERRORS:
                log.exception("batch %s failed inside pointcast %d times; its endpoints end FAILED", batch_id, errors)
                await fail_batch(self.deps, batch_id, f"INTERNAL_ERROR: {describe_error(exc)}"[:500])
            else:
                log.exception("batch %s failed unexpectedly; it stays pending and is retried", batch_id)
                await asyncio.sleep(1)
        self._inflight.pop(batch_id, None)
        self._wake.set()

    async def _record_loop(self) -> None:
        """Group commit: write the results of every batch delivered meanwhile in one transaction."""
        while True:
            await self._recorded.wait()
            await asyncio.sleep(RECORD_GATHER_SECONDS)
            await self._flush()

    async def _flush(self) -> None:
        self._recorded.clear()
        results, self._results = self._results, []
        if not results:
            return
        try:
            await self.ctx.write(lambda conn: record(conn, results, self.clock.now()))
        except Exception:
            # One bad result must not roll back the others: record them one by one.
            log.exception("recording %d delivered batches together failed; recording them one by one", len(results))
            for result in results:
                try:
                    await self.ctx.write(lambda conn, r=result: record(conn, [r], self.clock.now()))  # type: ignore[misc]
                except Exception as exc:
                    # Not recorded: the batch is still PENDING and is sent again (same id), up to a limit.
                    errors = self._errors[result.batch_id] = self._errors.get(result.batch_id, 0) + 1
                    log.exception("recording batch %s failed (%d time(s))", result.batch_id, errors)
                    if errors >= MAX_INTERNAL_ERRORS:
                        reason = f"INTERNAL_ERROR: {describe_error(exc)}"[:500]
                        with contextlib.suppress(Exception):
                            await fail_batch(self.deps, result.batch_id, reason)
        finally:
            for result in results:
                self._unrecorded.discard(result.batch_id)
            self._start_ready()
            self._wake.set()

    def status(self) -> dict[str, Any]:
        """What the runner is doing, for /pointcast/health."""
        loop_alive = bool(self._task) and not self._task.done()  # type: ignore[union-attr]
        return {
            "InFlight": len(self._inflight),
            "Waiting": len(self._away) + len(self._lendable),  # in flight, waiting (a breaker, a back-off, a function)
            "SlotsLent": len(self._away),  # of those, how many gave their slot to another batch
            "RunsKept": len(self._specs),  # runs whose spec is held in memory
            "Unrecorded": len(self._unrecorded),
            "ReadAhead": len(self._ready),
            "Running": loop_alive,
            "DestinationsDown": self.destinations_down(),
            "DeliveryClient": client_name(self._session) if self._session is not None else None,
        }

    def secret_changed(self, app_id: str) -> None:
        """The project's webhook signing secret was written: the next batch reads it again."""
        self.deps.secrets.pop(app_id, None)

    def destinations_down(self) -> list[dict[str, Any]]:
        """The destinations whose circuit breaker is open (batches to them wait)."""
        return self.breakers.status()
