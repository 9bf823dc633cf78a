"""The in-process runner: a scheduler loop that starts due runs, plans them, and sends due batches.

Concurrency is bounded (``POINTCAST_DELIVERY_CONCURRENCY`` batches in flight); everything durable lives in the
store, so stopping the process at any point loses nothing: on start, runs still PLANNING are planned again and
PENDING batches are sent (again, with the same batch id, if they were in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import sqlalchemy as sa

from pointcast.aws.wire import iso_ms, new_id
from pointcast.campaigns.repository import campaigns
from pointcast.channels.webhook.deliver import RetryPolicy
from pointcast.context import Context
from pointcast.engine import repository as repo
from pointcast.engine import schedule
from pointcast.engine.clock import Clock
from pointcast.engine.execute import ExecuteDeps, execute_batch, fail_batch
from pointcast.engine.plan import plan_run
from pointcast.engine.progress import finish_activity
from pointcast.store import models as m

log = logging.getLogger("pointcast.engine")
_RUNNABLE = ("SCHEDULED", "PENDING_NEXT_RUN")
MAX_INTERNAL_ERRORS = 5


def start_due_runs(conn: sa.Connection, now: datetime) -> list[str]:
    """Create a run (and one activity per treatment) for every campaign with a due occurrence."""
    started = []
    for row in conn.execute(sa.select(m.campaigns.c.app_id, m.campaigns.c.doc)):
        doc = row.doc
        if doc.get("IsPaused") or doc.get("State", {}).get("CampaignStatus") not in _RUNNABLE:
            continue
        if repo.has_open_run(conn, row.app_id, doc["Id"]):
            continue
        last = repo.last_run_time(conn, row.app_id, doc["Id"])
        sched = doc.get("Schedule") or {}
        written = schedule.parse_time(doc["LastModifiedDate"])
        moment = schedule.due(sched, written, schedule.parse_time(last) if last else None, now)
        if moment is None:
            continue
        run_id = new_id()
        repo.insert_run(
            conn,
            {
                "id": run_id,
                "app_id": row.app_id,
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
                    "ApplicationId": row.app_id,
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
        current = dict(doc)
        current["State"] = {"CampaignStatus": "EXECUTING"}
        campaigns.set_current(conn, row.app_id, current)
        started.append(run_id)
    return started


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
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._rates: dict[str, float] = {}  # run id -> monotonic time the next batch may start
        self._reschedule = True
        self._scheduled_at = 0.0
        self._errors: dict[str, int] = {}  # batch id -> unexpected errors so far

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.ctx.ssl_context, limit=self.concurrency, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector)
        self.deps = ExecuteDeps(self.ctx.read, self.ctx.write, self._session, self.policy, self.clock.now)
        self._task = asyncio.create_task(self._loop(), name="pointcast-runner")

    def wake(self) -> None:
        """Look for due runs now (a campaign was written, the clock moved)."""
        self._reschedule = True
        self._wake.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
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
        now = self.clock.now()
        await self.ctx.write(lambda conn: start_due_runs(conn, now))
        planning = await self.ctx.read(lambda conn: repo.runs_in_state(conn, "PLANNING"))
        for run in planning:
            run_id: str = run.id
            await asyncio.to_thread(plan_run, self.ctx.db, run_id, self.clock.now())
            await self.ctx.write(lambda conn: self._close_empty(conn, run_id))  # noqa: B023 - awaited at once

    def _close_empty(self, conn: sa.Connection, run_id: str) -> None:
        for activity in repo.activities_of_run(conn, run_id):
            finish_activity(conn, activity.id, self.clock.now())

    async def _dispatch(self) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return
        now = iso_ms(self.clock.now())
        due = await self.ctx.read(lambda conn: repo.due_batches(conn, now, set(self._inflight), free))
        for row in due[:free]:
            self._inflight[row.id] = asyncio.create_task(self._send(row.id), name=f"batch-{row.id}")

    async def _send(self, batch_id: str) -> None:
        try:
            await self._respect_rate(batch_id)
            await execute_batch(self.deps, batch_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            errors = self._errors[batch_id] = self._errors.get(batch_id, 0) + 1
            if errors >= MAX_INTERNAL_ERRORS:
                log.exception("batch %s failed inside pointcast %d times; its endpoints end FAILED", batch_id, errors)
                await fail_batch(self.deps, batch_id, f"INTERNAL_ERROR: {type(exc).__name__}: {exc}"[:500])
            else:
                log.exception("batch %s failed unexpectedly; it stays pending and is retried", batch_id)
                await asyncio.sleep(1)
        finally:
            self._inflight.pop(batch_id, None)
            self._wake.set()

    async def _respect_rate(self, batch_id: str) -> None:
        """MessagesPerSecond: each batch of n endpoints holds the campaign's next start back by n / rate seconds."""
        batch = await self.ctx.read(lambda conn: repo.get_batch_if_any(conn, batch_id))
        if batch is None:
            return
        spec = await self.deps.spec(batch.run_id)
        rate = spec.limits.get("MessagesPerSecond")
        if not rate:
            return
        size = len(orjson.loads(batch.endpoint_ids))
        start = max(time.monotonic(), self._rates.get(batch.run_id, 0.0))
        self._rates[batch.run_id] = start + size / rate
        await asyncio.sleep(max(0.0, start - time.monotonic()))

    @property
    def busy(self) -> dict[str, Any]:
        return {"inflight": len(self._inflight)}
