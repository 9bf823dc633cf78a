"""Running a function by reference, wherever it lives: hosted ones in the worker pool, others in AWS Lambda.

Every invocation is recorded (function, kind, duration, outcome, error, log tail), in small group commits so a
campaign that invokes a hook per batch does not pay a transaction per call. A campaign's invocation is checked
against the function's resource policy first (seeds 000 and 001), each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pointcast.aws.wire import iso_ms
from pointcast.functions import policy
from pointcast.functions import repository as repo
from pointcast.functions.code import digest_dir, sweep, unpack
from pointcast.functions.names import FunctionRef, parse_ref
from pointcast.functions.remote import RemoteLambda, is_throttle, is_transient, policy_refusal
from pointcast.functions.runtime.pool import FunctionSpec, Stale, WorkerPool, node_available
from pointcast.functions.runtime.spec import InvokeResult
from pointcast.store.db import storable

if TYPE_CHECKING:
    from pointcast.context import Context

log = logging.getLogger("pointcast.functions")
SPEC_TTL = 2.0  # seconds a function's configuration and policy are reused before being read again
LOG_KEEP = 4096  # bytes of an invocation's log kept with its record (and returned by LogType: Tail)
EVENT_BYTES_QUEUED = 256 * 1024 * 1024  # bytes of Event invocations' events waiting or running at once
SWEEP_SECONDS = 300.0  # how often unpacked code no longer used is looked for, besides after each change
SWEEP_DELAY = 1.0
FLUSH_SECONDS = 0.25
PRUNE_SECONDS = 60.0  # how often invocation records past POINTCAST_FUNCTION_RECORDS are deleted
PRUNE_CHUNK = 5000  # records deleted a transaction: the store is not held for seconds (600k took 6.3 s at once)
STALE_TRIES = 3  # look-ups again for a call whose function changed while it waited for a worker; then it runs
VERDICTS_KEPT = 1024  # policy answers kept per function (one per campaign that invokes it), for its statements


@dataclass(frozen=True)
class Invocation(InvokeResult):
    """What one invocation did. ``refused`` is set (and nothing ran) when the policy does not allow the caller."""

    refused: str | None = None
    # AWS Lambda throttled the call or could not be reached (the function did not run): the engine waits for it,
    # with back-off, instead of spending one of the batch's attempts (``engine.hooks.call``).
    unavailable: bool = False
    retry_after: float | None = None  # AWS's Retry-After, when it gave one

    @classmethod
    def refusal(cls, reason: str) -> Invocation:
        return cls("", b"", None, "", 0.0, refused=reason)

    @property
    def ok(self) -> bool:
        return self.function_error is None and self.refused is None

    @property
    def error_message(self) -> str:
        """A one-line account of the failure: the refusal, or the function's errorType and errorMessage."""
        if self.refused:
            return self.refused
        try:
            doc = orjson.loads(self.payload)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and ("errorMessage" in doc or "errorType" in doc):
            return f"{doc.get('errorType', 'Error')}: {doc.get('errorMessage', '')}"[:1000]
        return f"{self.function_error}: {self.payload[:200].decode('utf-8', 'replace')}"


class PolicyUnavailable(Exception):
    """The policy of a function in AWS Lambda could not be read, for a reason that may pass."""


@dataclass(slots=True)
class _Hosted:
    read_at: float
    revision_id: str  # the function's RevisionId when read (any write changes it, a policy's too)
    spec: FunctionSpec
    statements: list[dict[str, Any]]
    verdicts: dict[str, str | None] = field(default_factory=dict)  # source ARN -> the policy's answer for it

    def verdict(self, source_arn: str, region: str, account: str) -> str | None:
        """``policy.pinpoint_may_invoke`` for these statements, worked out once per source ARN: a hook's function is
        asked once per batch."""
        if source_arn not in self.verdicts:
            if len(self.verdicts) >= VERDICTS_KEPT:
                self.verdicts.clear()
            self.verdicts[source_arn] = policy.pinpoint_may_invoke(self.statements, region, source_arn, account)
        return self.verdicts[source_arn]


def _logging(doc: dict[str, Any]) -> tuple[str, str | None]:
    """LoggingConfig's LogFormat and ApplicationLogLevel, as a worker starts with them."""
    config = doc.get("LoggingConfig") or {}
    return str(config.get("LogFormat") or "Text"), config.get("ApplicationLogLevel")


def _runtime_revision(doc: dict[str, Any]) -> str:
    """What a worker runs, as one value: its code and the configuration it starts with (a policy is not part of
    it, though a change of it changes ``RevisionId``)."""
    runs = [
        doc["CodeSha256"],
        doc["Runtime"],
        doc["Handler"],
        doc["Timeout"],
        doc["MemorySize"],
        doc.get("Environment"),
        *_logging(doc),
    ]
    return hashlib.sha256(orjson.dumps(runs)).hexdigest()[:32]


class FunctionHost:
    """The one place that invokes functions; owns the worker pool and the AWS Lambda client."""

    def __init__(self, ctx: Context, pool: WorkerPool, remote: RemoteLambda | None) -> None:
        self.ctx = ctx
        self.pool = pool
        self.remote = remote
        self.code_root = ctx.settings.data_dir / "functions"
        with contextlib.suppress(OSError):  # the unpacked code: the owner's only (made as it is needed otherwise)
            self.code_root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.code_root.chmod(0o700)
        self.concurrency = ctx.settings.function_concurrency
        self.event_queue = ctx.settings.function_event_queue
        self.records_kept = ctx.settings.function_records
        self._hosted: dict[str, _Hosted] = {}
        self._reading: dict[str, asyncio.Future[_Hosted | None]] = {}  # name -> the read every caller waits on
        self._remote_verdicts: dict[tuple[str, str], tuple[float, str | None]] = {}  # (ref, source) -> (when, why not)
        self._changes: dict[str, int] = {}  # name -> how often it was forgotten (a read from before is not kept)
        self._records: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_soon = asyncio.Event()  # a function changed: its old code may go
        self._flushing = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._events: set[asyncio.Task[Invocation]] = set()  # Event invocations waiting or running
        self._event_bytes = 0  # ... and the size of their events

    @functools.cached_property
    def node_available(self) -> bool:
        """Whether Node.js functions can run here (asked once: ``node --version``)."""
        return node_available(self.pool.node)

    async def start(self) -> None:
        await self.pool.start()
        self._flusher = asyncio.create_task(self._flush_loop(), name="pointcast-invocation-records")
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="pointcast-code-sweep")

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for loop_task in (self._flusher, self._sweeper):
            if loop_task:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
        await self.flush()
        await self.pool.stop()
        if self.remote is not None:
            self.remote.close()

    def forget(self, name: str, *, workers: bool = True) -> None:
        """A function changed or went away: read it again next time, and end its workers (unless only its policy
        changed: a worker runs the same code either way, and Lambda keeps its environments then too)."""
        self._hosted.pop(name, None)
        self._reading.pop(name, None)
        self._changes[name] = self._changes.get(name, 0) + 1
        if workers:
            self.pool.retire(name)
            self._sweep_soon.set()

    async def _sweep_loop(self) -> None:
        """Remove unpacked code no function has and no worker runs (``code.sweep``): as the server starts, soon
        after a function changes or goes (its busy workers' code at the sweep after they end), and every
        ``SWEEP_SECONDS``."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("removing unpacked code no longer used failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_soon.wait(), SWEEP_SECONDS)
            await asyncio.sleep(SWEEP_DELAY)  # changes that come together, one sweep; retired workers closed
            self._sweep_soon.clear()

    async def sweep(self) -> list[Path]:
        since = time.time()
        hashes = await self.ctx.read(repo.code_hashes)
        current = {name: digest_dir(sha) for name, sha in hashes.items()}
        in_use = self.pool.code_dirs() | {hosted.spec.code_dir for hosted in self._hosted.values()}
        removed = await asyncio.to_thread(sweep, self.code_root, current, in_use, since, self.pool.work_dir / "pycache")
        if removed:
            log.info("removed the unpacked code of %d function revision(s) no longer used", len(removed))
        return removed

    # -- what a function is -------------------------------------------------------------------------------------

    async def _lookup(self, name: str) -> _Hosted | None:
        """The function as hosted here (None if it does not exist), read again every ``SPEC_TTL`` seconds. Callers
        that ask at the same time share one read: a hook's batches in flight all find the entry stale together."""
        cached = self._hosted.get(name)
        if cached and time.monotonic() - cached.read_at < SPEC_TTL:
            return cached
        reading = self._reading.get(name)
        if reading is None:
            reading = self._reading[name] = asyncio.ensure_future(self._read(name, cached))

            def done(future: asyncio.Future[_Hosted | None]) -> None:
                if self._reading.get(name) is future:
                    del self._reading[name]

            reading.add_done_callback(done)
        return await asyncio.shield(reading)

    async def _read(self, name: str, cached: _Hosted | None) -> _Hosted | None:
        changes = self._changes.get(name, 0)
        row = await self.ctx.read(lambda conn: repo.get(conn, name))
        if row is None:
            self._hosted.pop(name, None)
            return None
        doc = row.doc
        if cached and cached.revision_id == doc["RevisionId"]:
            statements = list(row.policy or [])
            if statements != cached.statements:
                cached.statements, cached.verdicts = statements, {}
            cached.read_at = time.monotonic()
            return cached
        code_row = await self.ctx.read(lambda conn: repo.get(conn, name, with_code=True))
        if code_row is None:
            return None
        code_dir = await asyncio.to_thread(unpack, self.code_root, name, code_row.code)
        log_format, log_level = _logging(doc)
        spec = FunctionSpec(
            name=name,
            arn=doc["FunctionArn"],
            revision=_runtime_revision(doc),
            runtime=doc["Runtime"],
            handler=doc["Handler"],
            code_dir=Path(code_dir),
            environment=dict((doc.get("Environment") or {}).get("Variables") or {}),
            timeout=float(doc["Timeout"]),
            memory_mb=int(doc["MemorySize"]),
            concurrency=self.concurrency,
            log_format=log_format,
            log_level=log_level,
        )
        if cached and cached.spec.revision != spec.revision:
            self.pool.retire(name)
        hosted = _Hosted(time.monotonic(), doc["RevisionId"], spec, list(code_row.policy or []))
        if self._changes.get(name, 0) == changes:  # not forgotten meanwhile: a read from before a change is not kept
            self._hosted[name] = hosted
        return hosted

    async def _where(self, ref: str) -> tuple[FunctionRef, _Hosted | None]:
        parsed = parse_ref(ref)
        if parsed is None:
            raise ValueError(f"'{ref}' is not a function name or ARN")
        settings = self.ctx.settings
        hosted = await self._lookup(parsed.name) if parsed.is_local(settings.region, settings.account_id) else None
        if hosted is not None and parsed.qualifier not in (None, "$LATEST"):
            raise ValueError(f"function {ref}: pointcast hosts {parsed.name}, and only its $LATEST exists")
        return parsed, hosted

    async def permission_problem(self, ref: str, source_arn: str) -> str | None:
        """None when Pinpoint may invoke ``ref`` for ``source_arn``; otherwise why not (for an error message). A
        write's check: a policy in AWS is read afresh, not taken from the answers kept for run time (a permission
        just added must count, and one just removed too)."""
        try:
            return await self._permission(ref, source_arn, fresh=True)
        except PolicyUnavailable as exc:
            return str(exc)

    async def _permission(self, ref: str, source_arn: str, *, fresh: bool = False) -> str | None:
        """``permission_problem``, but a policy in AWS that could not be read for a passing reason (throttling, an
        outage) raises ``PolicyUnavailable``: at run time the engine waits for it, not a refusal. AWS's answers are kept
        ``SPEC_TTL`` seconds for run time, as a hosted function's are (GetPolicy is throttled per account); ``fresh``
        (a write's check) reads the policy again whatever is kept."""
        try:
            parsed, hosted = await self._where(ref)
        except ValueError as exc:
            return str(exc)
        settings = self.ctx.settings
        if hosted is not None:
            reason = hosted.verdict(source_arn, settings.region, settings.account_id)
        elif self.remote is None:
            return (
                f"function {ref} is not hosted by pointcast, and invoking functions in AWS Lambda is turned off "
                "(POINTCAST_REMOTE_LAMBDA)"
            )
        else:
            key = (ref, source_arn)
            known = self._remote_verdicts.get(key)
            if known is not None and not fresh and time.monotonic() - known[0] < SPEC_TTL:
                return known[1]
            local = parsed.is_local(settings.region, settings.account_id)
            missing = f"no function {parsed.name} is hosted here" if local else f"function {ref} is not hosted here"
            try:
                statements = await self.remote.policy_statements(parsed, settings.region)
            except Exception as exc:  # whatever AWS said is the reason
                if is_transient(exc):
                    raise PolicyUnavailable(
                        f"{missing}, and its policy in AWS Lambda could not be read: {exc}"
                    ) from exc
                problem: str | None = policy_refusal(exc, missing)
            else:
                reason = policy.pinpoint_may_invoke(statements, settings.region, source_arn, settings.account_id)
                problem = (
                    f"the policy of function {ref} does not allow Pinpoint to invoke it: {reason}" if reason else None
                )
            if len(self._remote_verdicts) >= VERDICTS_KEPT:
                self._remote_verdicts.clear()
            self._remote_verdicts[key] = (time.monotonic(), problem)
            return problem
        return f"the policy of function {ref} does not allow Pinpoint to invoke it: {reason}" if reason else None

    # -- invoking -------------------------------------------------------------------------------------------------

    async def invoke(
        self,
        ref: str,
        event: bytes,
        *,
        kind: str = "Invoke",
        source_arn: str | None = None,
        timeout: float | None = None,
        client_context: str | None = None,
        idle: Callable[[], AbstractAsyncContextManager[None]] | None = None,
        request_id: str | None = None,
        hosted_only: bool = False,
        queue_timeout: float | None = None,
    ) -> Invocation:
        """Run the function once with ``event``; never raises for what the function did (see ``Invocation``).

        ``idle`` is entered around a wait for one of a hosted function's concurrency slots (``WorkerPool.invoke``).
        ``hosted_only`` (the Lambda API's Invoke): a function pointcast does not host, or no longer hosts once the
        call has waited for a worker, is refused (FUNCTION_NOT_FOUND) rather than invoked in AWS Lambda.
        """
        started = datetime.now(UTC)
        clock = time.monotonic()
        key = ref  # what the record is kept under: a hosted function's name, else the reference as given
        try:
            for tries_left in range(STALE_TRIES, -1, -1):
                # A call may wait for a worker; a function deleted, changed or no longer permitted meanwhile is
                # looked up and checked again (``current``), as a call made after the change would be.
                if source_arn is not None:
                    try:
                        problem = await self._permission(ref, source_arn)
                    except PolicyUnavailable as exc:  # AWS throttled or down: the engine waits and tries again
                        payload = orjson.dumps({"errorType": "pointcast.PolicyUnavailable", "errorMessage": str(exc)})
                        took = (time.monotonic() - clock) * 1000
                        throttled = exc.__cause__ is not None and is_throttle(exc.__cause__)
                        result = Invocation("", payload, "Unhandled", "", took, throttled=throttled, unavailable=True)
                        self._record(await self._key(ref), kind, source_arn, started, result)
                        return result
                    if problem:
                        result = Invocation.refusal(f"PERMISSION_DENIED: {problem}")
                        self._record(await self._key(ref), kind, source_arn, started, result)
                        return result
                try:
                    parsed, hosted = await self._where(ref)
                except ValueError as exc:
                    result = Invocation.refusal(f"FUNCTION_NOT_FOUND: {exc}")
                    self._record(key, kind, source_arn, started, result)
                    return result
                if hosted is not None:
                    key = hosted.spec.name
                    spec = hosted.spec
                    if timeout is not None and timeout < spec.timeout:
                        spec = dataclasses.replace(spec, timeout=timeout)
                    seen = self._changes.get(key, 0)

                    def current(name: str = key, seen: int = seen) -> bool:
                        return self._changes.get(name, 0) == seen

                    try:
                        ran = await self.pool.invoke(
                            spec,
                            event,
                            client_context=client_context,
                            idle=idle,
                            current=current if tries_left else None,
                            request_id=request_id,
                            measure=kind == "Invoke",  # the REPORT line's Max Memory Used is the Lambda API's alone
                            **({} if queue_timeout is None else {"queue_timeout": queue_timeout}),
                        )
                    except Stale:
                        continue
                    result = Invocation(**{f.name: getattr(ran, f.name) for f in dataclasses.fields(ran)})
                elif hosted_only:
                    result = Invocation.refusal(f"FUNCTION_NOT_FOUND: pointcast hosts no function {ref}")
                elif self.remote is not None:
                    key = await self._key(ref)
                    settings = self.ctx.settings
                    result = await self.remote.invoke(parsed, event, settings.region, timeout)
                else:
                    result = Invocation.refusal(
                        f"FUNCTION_NOT_FOUND: pointcast hosts no function {ref}, and AWS Lambda is turned off"
                    )
                break
        except Exception as exc:  # an invocation that pointcast could not make is a failed one
            log.exception("invoking %s failed inside pointcast", ref)
            payload = orjson.dumps(
                {"errorType": "pointcast.InternalError", "errorMessage": f"{type(exc).__name__}: {exc}"}
            )
            result = Invocation("", payload, "Unhandled", "", (time.monotonic() - clock) * 1000)
        self._record(key, kind, source_arn, started, result)
        return result

    async def _key(self, ref: str) -> str:
        """What a call's record is kept under: the name, for a reference of this pointcast's account and region
        (hosted or not: ``functions logs NAME`` finds it either way); otherwise the reference as given."""
        parsed = parse_ref(ref)
        settings = self.ctx.settings
        return parsed.name if parsed is not None and parsed.is_local(settings.region, settings.account_id) else ref

    def invoke_later(self, ref: str, event: bytes, request_id: str | None = None) -> bool:
        """InvocationType Event (the Lambda API's): run a hosted function in the background; the record, under
        ``request_id``, is the only trace. False (nothing queued) when ``event_queue`` events, or
        ``EVENT_BYTES_QUEUED`` bytes of them, are already waiting or running: memory is not spent without bound."""
        if len(self._events) >= self.event_queue or self._event_bytes + len(event) > EVENT_BYTES_QUEUED:
            return False
        task = asyncio.create_task(self.invoke(ref, event, kind="Event", request_id=request_id, hosted_only=True))
        self._background.add(task)
        self._events.add(task)
        self._event_bytes += len(event)

        def done(finished: asyncio.Task[Invocation], size: int = len(event)) -> None:
            self._background.discard(finished)
            self._events.discard(finished)
            self._event_bytes -= size

        task.add_done_callback(done)
        return True

    # -- records --------------------------------------------------------------------------------------------------

    def _record(self, key: str, kind: str, source: str | None, started: datetime, result: Invocation) -> None:
        if result.refused:
            outcome = "Refused"
        elif result.throttled:
            outcome = "Throttled"
        elif result.timed_out:
            outcome = "TimedOut"
        else:
            outcome = "Success" if result.function_error is None else result.function_error
        self._records.append(
            {
                "request_id": result.request_id or "-",
                "function": key,
                "kind": kind,
                "source": source,
                "started": iso_ms(started),
                "duration_ms": result.duration_ms,
                "outcome": outcome[:16],
                "error": None if result.ok else storable(result.error_message),
                "logs": storable(result.logs[-LOG_KEEP:]) or None,
            }
        )

    async def _flush_loop(self) -> None:
        prune_at = time.monotonic()  # at start, then each PRUNE_SECONDS
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            with contextlib.suppress(Exception):
                await self.flush()
            if time.monotonic() >= prune_at:
                prune_at = time.monotonic() + PRUNE_SECONDS
                try:
                    await self.prune()
                except Exception:
                    log.exception("deleting old function invocation records failed; trying again in a minute")

    async def prune(self) -> int:
        """Delete the invocation records past the newest ``POINTCAST_FUNCTION_RECORDS``: without it a campaign of a
        million endpoints with a FILTER hook would leave some 80 MB of them behind each time it ran."""
        gone = 0
        while True:
            chunk = await self.ctx.write(lambda conn: repo.prune_invocations(conn, self.records_kept, PRUNE_CHUNK))
            gone += chunk
            if chunk < PRUNE_CHUNK:
                break
        if gone:
            log.info("deleted %d function invocation records, past the newest %d", gone, self.records_kept)
        return int(gone)

    async def flush(self) -> None:
        """Write the records gathered so far; returns once every record made before the call is written."""
        async with self._flushing:  # a reader's flush waits for one in progress to commit
            rows, self._records = self._records, []
            if rows:
                try:
                    await self.ctx.write(lambda conn: repo.insert_invocations(conn, rows))
                except Exception:
                    # One bad record must not take the others with it: write them one by one.
                    log.exception("recording %d function invocations together failed; one by one", len(rows))
                    for row in rows:
                        try:
                            await self.ctx.write(lambda conn, r=row: repo.insert_invocations(conn, [r]))  # type: ignore[misc]
                        except Exception:
                            log.exception(
                                "recording invocation %s of %s failed; it is dropped",
                                row["request_id"],
                                row["function"],
                            )

    def status(self) -> dict[str, Any]:
        return {"Pool": self.pool.status(), "UnrecordedInvocations": len(self._records)}
