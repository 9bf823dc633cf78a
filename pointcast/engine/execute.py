"""Sending one batch: a plain async function of the batch id and its dependencies.

The same function serves the in-process runner and (later) distributed workers. It is idempotent: a batch that is
no longer PENDING is left alone, outcomes are written once per (activity, endpoint), and a batch interrupted by a
crash is sent again with the same id (``X-Pointcast-Batch-Id``), so a receiver can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.apps.service import WEBHOOK_SECRET_KEY
from pointcast.aws.wire import iso_ms
from pointcast.channels.webhook.breaker import Breakers
from pointcast.channels.webhook.deliver import Attempt, Delivery, RetryPolicy, Transport, post_batch
from pointcast.channels.webhook.signing import signature_headers
from pointcast.engine import hooks, schedule
from pointcast.engine import repository as repo
from pointcast.engine.plan import Prepared, RunSpec, load_spec, over_limits
from pointcast.engine.progress import finish_activity
from pointcast.engine.treatments import Treatment, post_urls

T = TypeVar("T")
SECRET_TTL = 5.0


@dataclass
class ExecuteDeps:
    """What executing a batch needs: the store (through ``read``/``write`` on worker threads), HTTP, clock."""

    read: Callable[[Callable[[sa.Connection], Any]], Awaitable[Any]]
    write: Callable[[Callable[[sa.Connection], Any]], Awaitable[Any]]
    session: Transport
    policy: RetryPolicy
    now: Callable[[], datetime]
    specs: dict[str, RunSpec] = field(default_factory=dict)
    secrets: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    functions: Any = None  # the FunctionHost (hooks, function channels); None where functions cannot run
    function_attempts: int = 3
    hook_timeout: float = 15.0
    breakers: Breakers = field(default_factory=Breakers)  # per destination (channels/webhook/breaker.py)
    unavailable: dict[str, Any] = field(default_factory=dict)  # per function in AWS Lambda: hooks.Outage
    # Around a wait in the middle of a batch's delivery (by batch id): the runner may lend the batch's slot meanwhile.
    idle: Callable[[str], AbstractAsyncContextManager[None]] | None = None

    loading: dict[tuple[str, str], asyncio.Future[Any]] = field(default_factory=dict)

    async def _once(self, key: tuple[str, str], load: Callable[[sa.Connection], Any]) -> Any:
        """``load`` read from the store once for every caller waiting on ``key`` at the same time (a run's first
        batches all start together; each must not read the same thing again)."""
        future = self.loading.get(key)
        if future is None:
            future = self.loading[key] = asyncio.ensure_future(self.read(load))
            future.add_done_callback(lambda _: self.loading.pop(key, None))
        return await asyncio.shield(future)

    def idle_for(self, batch_id: str) -> Callable[[], AbstractAsyncContextManager[None]] | None:
        """What a delivery of ``batch_id`` enters around its waits (``post_batch``'s ``idle``)."""
        idle = self.idle
        return None if idle is None else lambda: idle(batch_id)

    async def webhook_secret(self, app_id: str) -> str | None:
        """The project's signing secret, re-read at most every few seconds so a rotation takes effect."""
        cached = self.secrets.get(app_id)
        if cached is None or time.monotonic() - cached[0] > SECRET_TTL:
            settings = await self._once(("secret", app_id), lambda conn: apps.get(conn, app_id).settings)
            cached = (time.monotonic(), settings.get(WEBHOOK_SECRET_KEY))
            self.secrets[app_id] = cached
        return cached[1]

    async def spec(self, run_id: str) -> RunSpec:
        if run_id not in self.specs:
            self.specs[run_id] = await self._once(("spec", run_id), lambda conn: load_spec(conn, run_id))
        return self.specs[run_id]


def build_payload(
    spec: RunSpec,
    treatment: Treatment,
    activity_id: str,
    scheduled: str,
    docs: dict[str, str],
    ids: list[str],
    *,
    endpoints: bytes | None = None,
) -> bytes:
    """Seed 000's event: the header members, then the stored endpoint definitions spliced in without re-encoding
    (or ``endpoints``, already encoded: what a FILTER hook gave back)."""
    header = orjson.dumps(
        {
            "Message": {},
            "Data": treatment.data,
            "ApplicationId": spec.app_id,
            "CampaignId": spec.campaign_id,
            "TreatmentId": treatment.id,
            "ActivityId": activity_id,
            "ScheduledTime": scheduled,
        }
    )
    if endpoints is None:
        endpoints = hooks.endpoints_json(docs, ids)
    return header[:-1] + b',"Endpoints":' + endpoints + b"}"


@dataclass(slots=True)
class Result:
    """What delivering a batch did, ready to be recorded: the batch's final state, outcomes and attempts."""

    batch_id: str
    activity_id: str
    state: str
    attempts: int
    failure: str | None
    outcomes: list[tuple[Any, ...]]  # endpoints with an outcome of their own (filtered out, deleted)
    attempt_rows: list[dict[str, Any]]
    delivered: tuple[Any, ...] | None = None  # one outcome for the endpoints delivered: repo.insert_outcome_sets


def prepare(
    conn: sa.Connection,
    batch_ids: list[str],
    specs: Mapping[str, RunSpec] | None = None,
    now: datetime | str | None = None,
) -> list[Prepared]:
    """Read pending batches and their endpoints in two queries, however many batches there are.

    Of a campaign with Daily or Total limits, the endpoints that reached them since the batch was planned are left
    out (SKIPPED ``DAILY_LIMIT``/``TOTAL_LIMIT``): a batch read here was planned earlier (a local-time zone's, one
    read again after a restart), and another run of the campaign (local-time runs overlap) may have sent to them
    since. A batch read more than LATE after its time (the server was down, or its clock jumped) is judged again
    where its endpoints are (``_late``) as planning judged it: missed for good when the next occurrence is due there
    too, inside quiet time now. ``specs``: the run specs already loaded (the runner's cache); others are read here."""
    found = repo.batches_with_docs(conn, batch_ids)
    moment = datetime.fromisoformat(now) if isinstance(now, str) else now
    known: dict[str, RunSpec] = {}
    late: dict[str, dict[str, str]] = {}  # batch id -> endpoint id -> why it is not sent after all
    for run_id in dict.fromkeys(batch.run_id for batch, *_ in found):
        spec = (specs or {}).get(run_id) or load_spec(conn, run_id)
        if moment is not None:
            behind = [
                (batch.id, docs)
                for batch, _, docs, _ in found
                if batch.run_id == run_id and moment - datetime.fromisoformat(batch.not_before) > LATE
            ]
            following = spec.following() if behind else None  # once a run
            for batch_id, docs in behind:
                late[batch_id] = _late(spec, following, docs, moment)
        if spec.limits.get("Daily") or spec.limits.get("Total"):
            known[run_id] = spec
    over: dict[str, dict[str, str]] = {}  # run id -> endpoint id -> the limit it reached
    for run_id, spec in known.items():
        candidates = [(i, batch.not_before) for batch, _, docs, _ in found if batch.run_id == run_id for i in docs]
        over[run_id] = over_limits(conn, spec, candidates) if candidates else {}
    prepared = []
    for batch, ids, docs, not_now in found:
        if late.get(batch.id):
            not_now = {**not_now, **late[batch.id]}
            docs = {k: v for k, v in docs.items() if k not in late[batch.id]}
        reached = over.get(batch.run_id)
        if reached and reached.keys() & docs.keys():
            not_now = {**not_now, **{i: reached[i] for i in docs if i in reached}}
            docs = {k: v for k, v in docs.items() if k not in reached}
        prepared.append(Prepared(batch, ids, docs, None, not_now))
    return prepared


LATE = timedelta(seconds=60)  # a batch read this long after its time is judged again (prepare)


def _late(spec: RunSpec, following: datetime | None, docs: Mapping[str, str], now: datetime) -> dict[str, str]:
    """Of a batch's endpoints (id -> stored definition), those not to be sent at ``now``, long after the batch's
    time, and why: ``MISSED_OCCURRENCE`` when the campaign's next occurrence is due where the endpoint is too (after
    downtime each zone gets its latest missed occurrence, not one per run planned before), ``QUIET_TIME`` when now is
    inside quiet time there."""
    plan = spec.campaign.get("Schedule") or {}
    fallback = plan.get("Timezone") if plan.get("IsLocalTime") else None
    skipped: dict[str, str] = {}
    for endpoint_id, doc in docs.items():
        zone = (orjson.loads(doc).get("Demographic") or {}).get("Timezone")
        if schedule.superseded(following, plan, zone, now):
            skipped[endpoint_id] = "MISSED_OCCURRENCE"
        elif schedule.in_quiet_time(now, spec.quiet_time, zone, fallback):
            skipped[endpoint_id] = "QUIET_TIME"
    return skipped


def _header(spec: RunSpec, treatment: Treatment, activity_id: str, scheduled: str, delivery: bool) -> dict[str, Any]:
    """The members of a hook's event before ``Endpoints`` (seeds 001 and 003)."""
    header: dict[str, Any] = {"MessageConfiguration": treatment.hook_message}
    if delivery:
        header["Message"] = hooks.delivery_message(treatment.message)
    header.update(
        ApplicationId=spec.app_id,
        CampaignId=spec.campaign_id,
        TreatmentId=treatment.id,
        ActivityId=activity_id,
        ScheduledTime=scheduled,
    )
    return header


def _failure(ended: Delivery | hooks.Called, failed: str, too_late: str, subject: str = "") -> str | None:
    """None if ``ended`` (a webhook's delivery, a function's or hook's call) succeeded; else the batch's failure:
    ``too_late`` when the run's MaximumDuration stopped the attempts, ``failed`` otherwise, with ``subject`` and
    the reason."""
    if ended.past_deadline:
        return f"{too_late} ({subject}{ended.reason})"
    return None if ended.ok else f"{failed}: {subject}{ended.reason}"


def destinations(spec: RunSpec, treatment: Treatment) -> list[str]:
    """The https URLs a batch of ``treatment`` is POSTed to, in ``deliver``'s order (``treatments.post_urls``)."""
    return post_urls(spec.hook, treatment)


def send_start(spec: RunSpec, batch: Any) -> datetime:
    """When the batch's sending was scheduled to start, which ``MaximumDuration`` counts from: the occurrence, or,
    with local time, the batch's zone's own send time (its ``ScheduledTime``)."""
    return max(spec.scheduled, schedule.parse_time(batch.not_before))


async def deliver(deps: ExecuteDeps, item: Prepared) -> Result:
    """Send one prepared batch (no store access but the cached run spec and secret); return what happened.

    The FILTER hook, if any, runs first and may narrow or rewrite the batch; then the custom channel (webhook or
    function) or, for a campaign of built-in channels, a DELIVERY hook.
    """
    batch, docs, joined = item.batch, item.docs, item.endpoints
    spec = await deps.spec(batch.run_id)
    ids = item.ids
    present = list(ids) if joined is not None else [endpoint_id for endpoint_id in ids if endpoint_id in docs]
    treatment = spec.treatment(batch.treatment_id)
    hook = spec.hook or {}
    hook_target = str(hook.get("LambdaFunctionName") or hook.get("WebUrl") or "")
    tries: list[Attempt] = []
    filtered: list[str] = []
    # The batch's endpoints as the channel gets them, encoded once: joined by planning, or here from the definitions
    # read for sending; a FILTER hook's answer replaces them.
    endpoints = b"" if not present else joined if joined is not None else hooks.endpoints_json(docs, present)
    failure: str | None = None
    max_duration = spec.limits.get("MaximumDuration")
    secret = await deps.webhook_secret(spec.app_id)
    # Standard Webhooks: the webhook-id is the message's, as X-Pointcast-Batch-Id is (a hook's POST is "<batch>.filter"
    # or "<batch>.delivery"), so that a receiver deduplicating on it never takes the channel's POST for the hook's.
    sign_as = (lambda message_id, data: signature_headers(secret, message_id, data)) if secret else None
    sign = (lambda data: signature_headers(secret, batch.id, data)) if secret else None
    too_late = f"MAXIMUM_DURATION: the run passed its MaximumDuration of {max_duration} s"
    left = (
        (send_start(spec, batch) + timedelta(seconds=max_duration) - deps.now()).total_seconds()
        if max_duration
        else None
    )
    deadline = None if left is None else time.monotonic() + left  # no attempt (webhook, hook, function) starts after it
    if left is not None and left <= 0:
        failure = too_late
    elif present and hook.get("Mode") == "FILTER":
        header = _header(spec, treatment, batch.activity_id, batch.not_before, False)
        event = hooks.hook_event(header, endpoints)
        called = await hooks.call(
            deps, hook_target, event, kind="FILTER", source_arn=spec.arn, batch_id=batch.id,
            timeout=deps.hook_timeout, sign=sign_as, deadline=deadline,
        )  # fmt: skip
        tries += called.attempts
        failure = _failure(called, "HOOK_FAILED", too_late, f"FILTER {hook_target}: ")
        if failure is None:
            try:
                kept = hooks.decode_filter(called.payload, present)
            except hooks.FilterError as exc:
                failure = f"HOOK_FAILED: FILTER {hook_target}: {exc}"
            else:
                if kept.rejected and tries:
                    tries[-1].error = f"ignored {len(kept.rejected)} id(s) not in the batch: {kept.rejected[:5]}"
                present, filtered, endpoints = kept.kept, kept.dropped, kept.endpoints_json()
    if failure is None and present:
        if treatment.is_webhook:
            body = build_payload(
                spec, treatment, batch.activity_id, batch.not_before, docs, present, endpoints=endpoints
            )
            url = str(treatment.delivery_uri)
            breaker = deps.breakers.for_url(url)
            sent = await post_batch(
                deps.session, url, body, batch.id, deps.policy, sign=sign, breaker=breaker, deadline=deadline,
                idle=deps.idle_for(batch.id),
            )  # fmt: skip
            tries += sent.attempts
            failure = _failure(sent, "WEBHOOK_FAILED", too_late)
        elif treatment.delivery_uri:
            body = build_payload(
                spec, treatment, batch.activity_id, batch.not_before, docs, present, endpoints=endpoints
            )
            target = str(treatment.delivery_uri)
            called = await hooks.call(
                deps, target, body, kind="CHANNEL", source_arn=spec.arn, batch_id=batch.id, deadline=deadline
            )
            tries += called.attempts
            failure = _failure(called, "FUNCTION_FAILED", too_late, f"{target}: ")
        elif hook.get("Mode") == "DELIVERY":
            header = _header(spec, treatment, batch.activity_id, batch.not_before, True)
            event = hooks.hook_event(header, endpoints)
            called = await hooks.call(
                deps, hook_target, event, kind="DELIVERY", source_arn=spec.arn, batch_id=batch.id, sign=sign_as,
                deadline=deadline,
            )  # fmt: skip
            tries += called.attempts
            failure = _failure(called, "HOOK_FAILED", too_late, f"DELIVERY {hook_target}: ")
        else:
            failure = (
                "CHANNEL_UNAVAILABLE: this campaign has no custom channel, and built-in channels are not available"
            )
    at = iso_ms(deps.now())
    status = "FAILED" if failure else "SENT"
    activity_id, run_id, batch_id = batch.activity_id, batch.run_id, batch.id
    # The endpoints delivered share one outcome: one row of parameters that the store expands (no tuple each).
    delivered = None
    if present:
        delivered = (activity_id, run_id, status, failure, batch_id, at, orjson.dumps(present).decode())
    rows = [(activity_id, i, run_id, "SKIPPED", hooks.FILTERED, batch_id, at) for i in filtered]
    if joined is None:
        not_now = item.not_now or {}  # inactive or opted out since planning; otherwise deleted
        rows += [
            (activity_id, i, run_id, "SKIPPED", not_now.get(i, "ENDPOINT_DELETED"), batch_id, at)
            for i in ids
            if i not in docs
        ]
    attempts = [
        {
            "batch_id": batch.id,
            "attempt": batch.attempts + number,
            "at": iso_ms(datetime.fromtimestamp(a.started, UTC)),
            "duration_ms": a.duration_ms,
            "status_code": a.status,
            "error": a.error,
            "response": a.response,
            "request_id": a.request_id,
        }
        for number, a in enumerate(tries, 1)
    ]
    return Result(
        batch.id,
        batch.activity_id,
        "FAILED" if failure else "DONE",
        batch.attempts + len(attempts),
        failure,
        rows,
        attempts,
        delivered,
    )


def record(conn: sa.Connection, results: list[Result], now: datetime) -> None:
    """Write many results in one transaction; a batch already finished elsewhere is skipped (idempotent)."""
    ids = repo.finish_batches(conn, [(r.batch_id, r.state, r.attempts, r.failure) for r in results])
    finished = [r for r in results if r.batch_id in ids]
    repo.insert_attempts(conn, [row for r in finished for row in r.attempt_rows])
    repo.insert_outcome_sets(conn, [r.delivered for r in finished if r.delivered])
    repo.insert_outcomes(conn, [row for r in finished for row in r.outcomes])
    for activity_id in dict.fromkeys(r.activity_id for r in finished):
        finish_activity(conn, activity_id, now)


async def execute_batch(deps: ExecuteDeps, batch_id: str) -> None:
    """Send one batch start to finish: a plain function of its id and the store (what a worker runs)."""
    [item, *_] = await deps.read(lambda conn: prepare(conn, [batch_id], deps.specs, deps.now())) or [None]
    if item is None:
        return
    result = await deliver(deps, item)
    await deps.write(lambda conn: record(conn, [result], deps.now()))


async def fail_batch(deps: ExecuteDeps, batch_id: str, reason: str) -> None:
    """Give up on a batch that keeps failing inside pointcast: each of its endpoints ends FAILED with ``reason``."""

    def record(conn: sa.Connection) -> None:
        batch = repo.get_batch_if_any(conn, batch_id)
        if batch is None or not repo.finish_batches(conn, [(batch_id, "FAILED", batch.attempts, reason)]):
            return
        at = iso_ms(deps.now())
        failed = (batch.activity_id, batch.run_id, "FAILED", reason, batch_id, at, batch.endpoint_ids)
        repo.insert_outcome_sets(conn, [failed])
        finish_activity(conn, batch.activity_id, deps.now())

    await deps.write(record)
