"""The worker pool: runs handlers in worker processes, never in the calling process.

Bounds: at most ``FunctionSpec.concurrency`` invocations of one function at once (callers beyond that wait, FIFO),
and at most ``max_workers`` processes in all (an idle worker of another function is ended, least recently used
first, to make room; when every worker is busy, callers wait). A wait for a slot is itself bounded
(``QUEUE_TIMEOUT``), and an invocation by its function's Timeout, so ``invoke`` always returns.

Workers are reused (warm starts) while their function's revision is current. An idle worker ends after
``idle_seconds``; an older revision's worker ends when seen idle, a busy one after its invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pointcast.functions.runtime import launch
from pointcast.functions.runtime.launch import LaunchError, node_available
from pointcast.functions.runtime.node_ric import describe
from pointcast.functions.runtime.spec import FunctionSpec, InvokeResult, error_document
from pointcast.functions.runtime.worker import Worker, WorkerGone

log = logging.getLogger("pointcast.functions")

__all__ = ["FunctionSpec", "InvokeResult", "PoolStopped", "WorkerPool", "node_available"]

QUEUE_TIMEOUT = 900.0  # seconds an invocation may wait for a slot: Lambda's longest Timeout
STOP_TIMEOUT = 10.0  # seconds stop() waits for killed workers to be reaped
LOG_LOOK_SECONDS = 1.0  # how often the workers' log files are bounded (Worker.bound_log) and idle ones reaped


class Stale(Exception):
    """The function changed (code, configuration, policy) or went away while a call waited for a worker
    (``WorkerPool.invoke``'s ``current``): the caller looks it up again instead of running what it was."""


class PoolStopped(RuntimeError):
    """The pool is stopped (or stopping): nothing more runs."""


@dataclass(eq=False)
class _Function:
    name: str
    revision: str
    concurrency: int
    inflight: int = 0  # invocations holding one of the function's slots
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    idle: list[Worker] = field(default_factory=list)  # most recently used last
    workers: set[Worker] = field(default_factory=set)


def _failed(request_id: str, error_type: str, message: str) -> InvokeResult:
    return InvokeResult(request_id, error_document(error_type, message), "Unhandled", "", 0.0)


def _throttled(request_id: str, name: str, waited: float) -> InvokeResult:
    message = f"Rate Exceeded: no worker for {name} was free within {waited:g} s (its concurrency, or the pool's)"
    return InvokeResult(
        request_id, error_document("TooManyRequestsException", message), "Unhandled", "", 0.0, throttled=True
    )


class WorkerPool:
    """Worker processes serving the Lambda Runtime API, per function, within per-function and total bounds."""

    def __init__(
        self,
        *,
        work_dir: Path,
        base_env: Mapping[str, str],
        max_workers: int = 8,
        idle_seconds: float = 300.0,
        python: str = sys.executable,
        node: str | None = shutil.which("node"),
        transport: str = "pipe",
        node_ric: Path | None = None,
        batch_scheduling: bool = True,
    ) -> None:
        if transport not in launch.TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(launch.TRANSPORTS)}, not {transport!r}")
        self.work_dir = Path(work_dir)
        self.base_env = dict(base_env)
        self.max_workers = max(1, max_workers)
        self.idle_seconds = idle_seconds
        self.python = python
        self.node = node
        self.node_ric = node_ric  # AWS's aws-lambda-ric for Node.js workers; None: pointcast's bootstrap.js
        self.node_client = describe(node_ric)  # for status(): read once, not at every health check
        self.transport = transport
        self.batch_scheduling = batch_scheduling  # workers in SCHED_BATCH (worker.batch_class)
        self._functions: dict[str, _Function] = {}
        self._workers: set[Worker] = set()
        self._capacity_waiters: list[asyncio.Future[None]] = []
        self._closing: dict[Worker, asyncio.Task[None]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._lock_fd = -1

    async def start(self) -> None:
        """Prepare the work dir and the idle reaper; each worker gets its Runtime API listener when it starts.
        What the workers of an earlier server on this work dir left running (it was killed) is killed first, when
        no other server on the work dir is running: every running pool holds a shared lock on ``pool.lock``
        (released with its process), and only a pool that finds none takes it exclusively and looks."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.chmod(0o700)  # workers' logs, TMPDIRs and bytecode: the owner's only
        self._lock_fd = os.open(self.work_dir / "pool.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # another server's pool runs here: what runs here is its
        else:
            for pid in launch.leftover_processes(self.work_dir):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    log.warning("killed process %d, left running by a worker of an earlier server", pid)
            for tmp_dir in self.work_dir.glob("worker-*.tmp"):  # the TMPDIRs of those workers
                launch.remove_tree(str(tmp_dir))
            for log_file in self.work_dir.glob("worker-*.log"):  # and their output (up to 16 MB each, for ever)
                with contextlib.suppress(OSError):
                    log_file.unlink()
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # (from exclusive: a conversion)
        self._started = True
        self._reaper = asyncio.create_task(self._reap_idle(), name="pointcast-pool-reaper")

    async def stop(self) -> None:
        """Kill every worker (in-flight invocations end with an error), fail waiters, close the listeners."""
        if self._stopped:
            return
        self._stopped = True
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        waiters = [w for fn in self._functions.values() for w in fn.waiters] + self._capacity_waiters
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(PoolStopped("the worker pool is stopping"))
        workers = list(self._workers)
        for worker in workers:
            self._discard(worker)
        for worker in workers:
            self._close(worker)  # busy ones too: their invocations end with "signal: killed"
        if self._closing:
            await asyncio.wait(list(self._closing.values()), timeout=STOP_TIMEOUT)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def code_dirs(self) -> set[Path]:
        """The code directories of every worker, running or idle."""
        return {worker.spec.code_dir for worker in self._workers}

    def retire(self, name: str) -> None:
        """End the function's workers: idle ones now, busy ones after their current invocation."""
        fn = self._functions.get(name)
        if fn is None:
            return
        for worker in list(fn.workers):
            worker.retiring = True
            if not worker.busy:
                self._discard(worker)

    def status(self) -> dict[str, Any]:
        """Counts for a health endpoint."""
        functions = {
            fn.name: {
                "Revision": fn.revision,
                "Concurrency": fn.concurrency,
                "Workers": len(fn.workers),
                "Busy": sum(1 for w in fn.workers if w.busy),
                "Idle": len(fn.idle),
                "Waiting": len(fn.waiters),
            }
            for fn in self._functions.values()
        }
        busy = sum(1 for w in self._workers if w.busy)
        return {
            "Workers": len(self._workers),
            "Busy": busy,
            "Idle": len(self._workers) - busy,
            "MaxWorkers": self.max_workers,
            "WaitingForWorker": len(self._capacity_waiters),
            "NodeRuntimeClient": self.node_client,
            "Functions": functions,
        }

    # -- invoking -------------------------------------------------------------------------------------------------

    async def invoke(
        self,
        spec: FunctionSpec,
        event: bytes,
        *,
        client_context: str | None = None,
        idle: Callable[[], AbstractAsyncContextManager[None]] | None = None,
        current: Callable[[], bool] | None = None,
        request_id: str | None = None,
        queue_timeout: float = QUEUE_TIMEOUT,
        measure: bool = True,
    ) -> InvokeResult:
        """Run ``spec``'s handler once on ``event``; what the handler did is in the result, never raised.

        Raises ``PoolStopped`` when the pool is not running. ``client_context`` is the ClientContext JSON text.
        ``idle``, when given, is entered around a wait for one of the function's concurrency slots (a campaign's
        runner may lend the batch's delivery slot out meanwhile). ``current``, when given, is asked once the slot
        is taken whether ``spec`` still holds; if not, the slot goes back and ``Stale`` is raised. ``request_id`` is
        the invocation's id (the context's aws_request_id), made here when not given. A call that finds no slot
        and worker within ``queue_timeout`` seconds ends ``throttled`` (TooManyRequestsException), having run nothing.
        ``measure``: read the worker's peak memory after the call (``max_memory_mb``; 8 us, so not for a campaign's
        calls, whose results nobody reads it from).
        """
        self._check_running()
        request_id = request_id or str(uuid.uuid4())
        fn = self._function(spec)
        deadline = time.monotonic() + queue_timeout
        try:
            waiting = idle() if idle is not None and not self._free(fn) else contextlib.nullcontext()
            async with waiting:
                await self._acquire(fn, deadline)
        except TimeoutError:
            return _throttled(request_id, spec.name, queue_timeout)
        if current is not None and not current():
            self._release(fn)
            raise Stale(spec.name)
        worker: Worker | None = None
        try:
            worker = await self._checkout(fn, spec, deadline)
            try:
                return await worker.invoke(request_id, event, client_context, spec.timeout, measure)
            except WorkerGone:  # it never ran: once more, on a fresh worker (the slot is still this call's)
                self._checkin(worker)
                worker = None
                worker = await self._checkout(fn, spec, deadline)
                return await worker.invoke(request_id, event, client_context, spec.timeout, measure)
        except WorkerGone as exc:
            return _failed(request_id, "Runtime.ExitError", str(exc))
        except TimeoutError:
            return _throttled(request_id, spec.name, queue_timeout)
        except LaunchError as exc:
            return _failed(request_id, exc.error_type, str(exc))
        except OSError as exc:
            return _failed(request_id, "Runtime.InvalidEntrypoint", f"the worker could not be started: {exc}")
        finally:
            if worker is not None:
                self._checkin(worker)
            self._release(fn)

    def _check_running(self) -> None:
        if not self._started or self._stopped:
            raise PoolStopped("the worker pool is not running")

    def _function(self, spec: FunctionSpec) -> _Function:
        fn = self._functions.get(spec.name)
        if fn is None:
            fn = self._functions[spec.name] = _Function(spec.name, spec.revision, max(1, spec.concurrency))
            return fn
        if fn.revision != spec.revision:
            fn.revision = spec.revision
            for worker in [w for w in fn.idle if w.spec.revision != spec.revision]:
                self._discard(worker)
        if fn.concurrency != max(1, spec.concurrency):
            fn.concurrency = max(1, spec.concurrency)
            self._grant(fn)
        self._functions[spec.name] = fn  # discarding its last idle worker may have dropped it
        return fn

    # -- per-function slots ---------------------------------------------------------------------------------------

    @staticmethod
    def _free(fn: _Function) -> bool:
        return fn.inflight < fn.concurrency and not fn.waiters

    async def _acquire(self, fn: _Function, deadline: float) -> None:
        if self._free(fn):
            fn.inflight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fn.waiters.append(waiter)
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(fn)  # granted just as we gave up: hand the slot on
            else:
                with contextlib.suppress(ValueError):
                    fn.waiters.remove(waiter)
            raise

    def _release(self, fn: _Function) -> None:
        fn.inflight -= 1
        self._grant(fn)
        self._forget_if_unused(fn)

    def _forget_if_unused(self, fn: _Function) -> None:
        if not (fn.inflight or fn.waiters or fn.workers) and self._functions.get(fn.name) is fn:
            del self._functions[fn.name]

    def _grant(self, fn: _Function) -> None:
        while fn.waiters and fn.inflight < fn.concurrency:
            waiter = fn.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                fn.inflight += 1

    # -- workers --------------------------------------------------------------------------------------------------

    async def _checkout(self, fn: _Function, spec: FunctionSpec, deadline: float) -> Worker:
        """A warm worker of this revision, else a new one (ending the least recently used idle worker if full)."""
        while True:
            self._check_running()
            while fn.idle:
                worker = fn.idle.pop()
                if worker.alive and not worker.retiring and worker.spec.revision == spec.revision:
                    worker.busy = True
                    return worker
                self._discard(worker)
            if len(self._workers) < self.max_workers:
                return await self._spawn(fn, spec)
            idle = [w for w in self._workers if not w.busy]
            if idle:
                self._discard(min(idle, key=lambda w: w.last_used))
                continue
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._capacity_waiters.append(waiter)
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._capacity_waiters.remove(waiter)

    async def _spawn(self, fn: _Function, spec: FunctionSpec) -> Worker:
        worker = Worker(
            spec,
            work_dir=self.work_dir,
            base_env=self.base_env,
            python=self.python,
            node=self.node,
            on_exit=self._worker_exited,
            transport=self.transport,
            node_ric=self.node_ric,
            batch_scheduling=self.batch_scheduling,
        )
        worker.busy = True
        self._workers.add(worker)
        fn.workers.add(worker)
        try:
            await worker.start()
        except BaseException:
            worker.busy = False
            self._discard(worker)
            raise
        return worker

    def _checkin(self, worker: Worker) -> None:
        worker.busy = False
        fn = self._functions.get(worker.spec.name)
        reusable = (
            not self._stopped
            and worker.alive
            and not worker.retiring
            and worker in self._workers
            and fn is not None
            and worker.spec.revision == fn.revision
        )
        if reusable and fn is not None:
            fn.idle.append(worker)
            self._notify_capacity()
        else:
            self._discard(worker)

    def _discard(self, worker: Worker) -> None:
        """Take the worker out of the pool and kill it; it is closed now, or at check-in if it is busy."""
        self._workers.discard(worker)
        fn = self._functions.get(worker.spec.name)
        if fn is not None:
            fn.workers.discard(worker)
            with contextlib.suppress(ValueError):
                fn.idle.remove(worker)
            self._forget_if_unused(fn)
        worker.kill()
        if not worker.busy:
            self._close(worker)
        self._notify_capacity()

    def _close(self, worker: Worker) -> None:
        if worker not in self._closing:
            task = asyncio.get_running_loop().create_task(worker.close(), name=f"pointcast-close-{worker.id}")
            self._closing[worker] = task
            task.add_done_callback(lambda _: self._closing.pop(worker, None))

    def _worker_exited(self, worker: Worker) -> None:
        if worker in self._workers:
            self._discard(worker)

    def _notify_capacity(self) -> None:
        waiters, self._capacity_waiters = self._capacity_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _reap_idle(self) -> None:
        interval = max(0.05, min(self.idle_seconds / 4, LOG_LOOK_SECONDS))
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_seconds
            for worker in [w for w in self._workers if not w.busy and w.last_used < cutoff]:
                self._discard(worker)
            for worker in list(self._workers):
                try:
                    worker.bound_log()
                except OSError:
                    log.exception("bounding the log of %s's worker %s failed", worker.spec.name, worker.id)
