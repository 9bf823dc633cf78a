"""Running import jobs in the server: one asyncio task per job, its parsing and writing on a worker thread.

Ownership: the process that runs a job holds a lease on it (``owner`` = host:pid:nonce, ``lease_until``), renewed
every ``LEASE / 3`` while it runs and with every chunk written. A job still CREATED or PROCESSING whose owner is gone
is resumed where its last committed chunk ended (see :mod:`pointcast.imports.service`): its owner is gone when the
lease has run out, or at once when the owner was a process on this host that no longer exists (a restart), or when it
was this process and nothing here runs it. :func:`resume_orphans` looks for such jobs; every import-job call runs it,
and the server's startup can (``await resume_orphans(ctx)``), so a job interrupted by a restart carries on.

Shutdown: the job's task is cancelled with everything else; it tells its thread to stop at the next record (the
thread is a daemon, so it never holds the process up), and the uncommitted chunk is simply done again on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp

from pointcast.aws.wire import iso_ms
from pointcast.context import Context
from pointcast.imports import repository as repo
from pointcast.imports import service, sources
from pointcast.imports.formats import FileError

log = logging.getLogger("pointcast.imports")

LEASE = timedelta(seconds=60)
_HOST = socket.gethostname()
OWNER = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
"""This process, as it appears in ``import_jobs.owner``."""

_tasks: dict[str, asyncio.Task[None]] = {}
T = TypeVar("T")


def lease_until() -> str:
    return iso_ms(datetime.now(UTC) + LEASE)


def start(ctx: Context, job_id: str) -> None:
    """Run a job this process owns, in the background (once, however often it is asked)."""
    if job_id in _tasks:
        return
    task = asyncio.create_task(_run(ctx, job_id), name=f"import-{job_id}")
    _tasks[job_id] = task
    task.add_done_callback(lambda _: _tasks.pop(job_id, None))


async def resume_orphans(ctx: Context) -> None:
    """Take over and run every unfinished job whose owner is gone."""
    rows = await ctx.read(repo.unfinished)
    now = iso_ms(datetime.now(UTC))
    for row in rows:
        if row.id in _tasks or not _orphaned(row.owner, row.lease_until, now):
            continue
        job_id, previous = row.id, row.owner
        if await ctx.write(lambda conn: repo.claim(conn, job_id, previous, OWNER, lease_until())):  # noqa: B023
            log.warning("resuming import job %s (its runner %s is gone)", job_id, previous)
            start(ctx, job_id)


def _orphaned(owner: str | None, until: str | None, now: str) -> bool:
    if owner is None or until is None or until < now or owner == OWNER:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _run(ctx: Context, job_id: str) -> None:
    stop = threading.Event()
    renewing = asyncio.create_task(_keep_lease(ctx, job_id, stop), name=f"import-lease-{job_id}")
    try:
        if not await ctx.write(lambda conn: service.start(conn, job_id, OWNER, lease_until())):
            return
        job = await ctx.read(lambda conn: service.Job.load(conn, job_id, ctx.region, ctx.account_id))
        source = sources.parse(job.definition["S3Url"], check=False)
        if source.kind == "file":
            await _in_thread(lambda: _process_file(ctx, job, source.location, stop))
        else:
            await _process_https(ctx, job, source.location, stop)
    except asyncio.CancelledError:
        stop.set()
        raise
    except Exception as exc:  # whatever happens, the job must end with a reason
        message = service.reason(exc, job_id)
        with contextlib.suppress(Exception):
            await ctx.write(lambda conn: service.fail(conn, job_id, OWNER, message))
    finally:
        stop.set()
        renewing.cancel()


def _process_file(ctx: Context, job: service.Job, path: str, stop: threading.Event) -> None:
    with sources.open_file(path) as stream:
        service.process(ctx.db, job, stream, OWNER, lease_until, stop)


async def _process_https(ctx: Context, job: service.Job, url: str, stop: threading.Event) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=sources.READ_TIMEOUT, sock_read=sources.READ_TIMEOUT)
    connector = aiohttp.TCPConnector(ssl=ctx.ssl_context)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                raise FileError(f"GET {url} answered HTTP {response.status}")
            if response.url.scheme != "https":
                raise FileError(f"GET {url} redirected to {response.url.scheme}://, which pointcast does not follow")
            stream = io.BufferedReader(sources.AsyncBody(response.content, asyncio.get_running_loop(), url, stop))
            try:
                await _in_thread(lambda: service.process(ctx.db, job, stream, OWNER, lease_until, stop))
            finally:
                stop.set()  # before the response closes, so a read it breaks is taken for a stop, not a failure
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FileError(f"GET {url} failed: {exc or type(exc).__name__}") from None


async def _keep_lease(ctx: Context, job_id: str, stop: threading.Event) -> None:
    """Renew the lease while the job runs; if it was lost, tell the job to stop."""
    while not stop.is_set():
        await asyncio.sleep(LEASE.total_seconds() / 3)
        if not await ctx.write(lambda conn: repo.renew(conn, job_id, OWNER, lease_until())):
            stop.set()


async def _in_thread(work: Callable[[], T]) -> T:
    """Run ``work`` on a daemon thread (so a long job never holds up shutdown) and wait for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if future.done():
            return
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def target() -> None:
        outcome: Any
        try:
            outcome, failed = work(), False
        except BaseException as exc:  # handed to the waiting task
            outcome, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            loop.call_soon_threadsafe(settle, outcome, failed)

    threading.Thread(target=target, name="pointcast-import", daemon=True).start()
    return await future
