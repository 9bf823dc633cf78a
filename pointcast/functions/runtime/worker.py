"""One worker: a runtime process (awslambdaric or bootstrap.js), its transport and its log file.

The transport is a Runtime API listener of its own (``runtime_api.py``; always for Node.js) or, for Python, two
pipes (``pipe.py``, the default); both call the same methods here, so what ends an invocation is decided once.

A worker runs one invocation at a time. Every way an invocation can end resolves one future, once: the runtime
posts a response or an error, it posts an init error, its process exits, or a timer fires (init limit, then the
function's Timeout). Timers and the exit watcher guarantee that ``invoke`` returns in bounded time.

Init: a worker's init (starting the runtime, importing the handler's module) has Lambda's 10 s limit, and more when
the first invocation's own Timeout is longer: Lambda retries an init that ran out of its 10 s inside the first
invocation, bounded by the function's Timeout (the "suppressed init"). Here the init simply goes on, up to
max(10 s, that Timeout), and the time it took past 10 s counts against that invocation's Timeout.

Logs: the process's stdout and stderr go to one file opened O_APPEND. A runtime writes its output before it posts
its answer, so when the answer arrives the bytes from the previous read offset to the end of the file are exactly
this invocation's output (a fresh worker's init output lands in its first invocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from pointcast.functions.runtime import launch
from pointcast.functions.runtime.pipe import PIPE_ENV, PipeChannel
from pointcast.functions.runtime.runtime_api import Delivery, RuntimeApi
from pointcast.functions.runtime.spec import FunctionSpec, InvokeResult, error_document

INIT_TIMEOUT = 10.0  # seconds of init (until a fresh worker asks for its first event) that are free: Lambda's limit
REAP_TIMEOUT = 5.0  # seconds to wait for a killed process to be reaped
MAX_LOGS = 4 * 1024 * 1024  # bytes of output kept per invocation (the tail)
TRUNCATE_AT = 1024 * 1024  # the log file is emptied at the end of an invocation once it is this big
LOG_DISK_BOUND = 4 * MAX_LOGS  # bytes of a log file kept on disk between the pool's looks (``bound_log``)

log = logging.getLogger("pointcast.functions")


@dataclass(slots=True)
class _Invocation:
    request_id: str
    event: bytes
    client_context: str | None
    outcome: asyncio.Future[tuple[bytes, str | None, bool]]
    timeout: float  # seconds: this call's, which may be shorter than the function's (a hook's limit)
    waited_from: float = 0.0  # monotonic: when it began to wait for the worker's init (0: it did not wait)
    queued_from: float = 0.0  # monotonic: when it began to wait for a warm runtime's next request (0: it did not)
    delivered: float = 0.0  # monotonic
    init_charged: float = 0.0  # seconds of the worker's init past INIT_TIMEOUT, taken from ``timeout``
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class WorkerGone(Exception):
    """The worker ended before its runtime took the call: the call did not run, and may run on another worker."""


def _out_of_memory(error: bytes) -> bool:
    """Whether an error document is a handler's ``MemoryError`` (the process reached its MemorySize limit)."""
    if b"MemoryError" not in error:
        return False
    try:
        return bool(orjson.loads(error).get("errorType") == "MemoryError")
    except (orjson.JSONDecodeError, AttributeError):
        return False


def _exit_reason(returncode: int) -> str:
    """Like Lambda's (Go's os.ProcessState): "exit status 3", "signal: killed"."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name.lower()}"


def batch_class(pid: int) -> None:
    """Put a worker in the SCHED_BATCH class (Linux): it still gets its fair share of the CPU, but waking it (an
    event written to its pipe or socket) does not preempt the running task. On a busy machine that task is the
    server's event loop, which dispatches every worker, and a preempted loop holds up all of them (measured:
    docs/benchmarks.md, "Function workers in the batch class"). Elsewhere, or if refused, nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))


def _trace_id() -> str:
    # An X-Ray style id, not a secret: the process's own PRNG, not a getrandom() system call per invocation.
    digits = f"{random.getrandbits(160):040x}"
    return f"Root=1-{int(time.time()):08x}-{digits[:24]};Parent={digits[24:]};Sampled=0"


class Worker:
    """A runtime process serving one function revision, one invocation at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        work_dir: Path,
        base_env: Mapping[str, str],
        python: str,
        node: str | None,
        on_exit: Callable[[Worker], None],
        transport: str = "pipe",
        node_ric: Path | None = None,
        batch_scheduling: bool = True,
    ) -> None:
        self.spec = spec
        self.id = uuid.uuid4().hex[:12]
        self.busy = False
        self.retiring = False  # set by the pool: end after the current invocation
        self.broken = False  # ended, or must not be reused (init error, timeout, retired)
        self.last_used = time.monotonic()
        self._work_dir = work_dir
        self._base_env = base_env
        self._python = python
        self._node = node
        self._node_ric = node_ric
        self._batch_scheduling = batch_scheduling
        self._on_exit = on_exit
        # Python workers talk over pipes unless told otherwise; Node.js workers always over the Runtime API.
        self._pipe = PipeChannel(self) if transport == "pipe" and not spec.is_node else None
        self._api = RuntimeApi(self) if self._pipe is None else None
        self._proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._path = launch.worker_path(work_dir, self.id)  # names its processes (launch.processes_of)
        self._log_path = Path(f"{self._path}.log")
        self._tmp_dir = f"{self._path}.tmp"  # TMPDIR, unless the function's Environment sets one
        self._log_fd = -1
        self._log_offset = 0
        self._log_freed = 0  # the file's blocks before this offset are freed (``bound_log``)
        self._started = 0.0  # monotonic: when the process was started (its init began)
        self._pending: _Invocation | None = None  # accepted, not yet fetched by the runtime
        self._current: _Invocation | None = None  # fetched, not yet answered
        self._waiting_next: Callable[[Delivery], None] | None = None  # the runtime's GET next, unanswered
        self._init_error: bytes | None = None  # what the runtime posted to /init/error
        self._initialized = False  # the runtime has asked for an event once: its init is over
        self._init_ms: float | None = None  # how long that took; given with the first call it serves, then None
        self._peak_kb: int | None = None  # the process's peak resident memory when last read (VmHWM)

    @property
    def alive(self) -> bool:
        return not self.broken and self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the listener and the log file, then start the process; raises LaunchError or OSError."""
        argv = launch.command(self.spec, self._python, self._node, self._node_ric)
        argv = launch.with_memory_limit(argv, launch.memory_limit_mb(self.spec, self._node_ric))
        address = await self._api.start() if self._api is not None else None
        env = launch.environment(
            self.spec, self._base_env, address, launch.log_stream_name(), self._work_dir / "pycache"
        )
        pass_fds: tuple[int, ...] = ()
        env[launch.WORKER_ENV] = self._path
        if "TMPDIR" not in self.spec.environment:  # the worker's own, gone with it (Lambda's /tmp is per environment)
            os.makedirs(self._tmp_dir, mode=0o700, exist_ok=True)
            env["TMPDIR"] = self._tmp_dir
        if self._pipe is not None:
            pass_fds = self._pipe.open()
            env[PIPE_ENV] = ",".join(map(str, pass_fds))
        self._log_fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._started = time.monotonic()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.spec.code_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=self._log_fd,
                stderr=self._log_fd,
                pass_fds=pass_fds,
                start_new_session=True,  # its own process group, so a kill takes anything it spawned too
            )
        finally:
            if self._pipe is not None:
                self._pipe.close_child_fds()
        if self._batch_scheduling:
            batch_class(self._proc.pid)
        if self._pipe is not None:
            await self._pipe.connect()
        self._watcher = asyncio.create_task(self._watch(self._proc), name=f"pointcast-worker-{self.id}")
        if self.broken:  # killed (the pool stopping) while the process was being created
            self.kill()

    def kill(self) -> None:
        """SIGKILL the worker's process group; the exit watcher does the rest. Idempotent."""
        self.broken = True
        if self._proc is not None and self._proc.returncode is None:
            self._read_peak_memory()  # what the call that ends with it reports (a timeout, say)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Kill, reap (bounded), close the listener and remove the log file."""
        self.kill()
        if self._watcher is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._watcher), REAP_TIMEOUT)
        self._waiting_next = None
        if self._api is not None:
            await self._api.close()
        if self._pipe is not None:
            self._pipe.close()
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
        with contextlib.suppress(OSError):
            self._log_path.unlink()
        if os.path.isdir(self._tmp_dir):
            await asyncio.to_thread(launch.remove_tree, self._tmp_dir)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        returncode = await proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its group
        self.broken = True
        invocation = self._current or self._pending
        if (
            invocation is not None
            and invocation is self._pending
            and self._initialized
            and self._init_error is None
            and not invocation.outcome.done()
        ):
            # A warm runtime that ended before it asked for this call (a Node.js runtime exits after posting an
            # uncaught exception as the previous call's error): the call never reached it; another worker runs it.
            if invocation.timer is not None:
                invocation.timer.cancel()
            self._pending = None
            invocation.outcome.set_exception(
                WorkerGone(f"the worker ended ({_exit_reason(returncode)}) before the call")
            )
        elif invocation is not None and not invocation.outcome.done():
            reason = _exit_reason(returncode)
            if self._init_error is not None:
                self._finish(invocation, self._init_error, "Unhandled")
            else:
                message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: {reason}"
                self._platform_log(f"{message}\nRuntime.ExitError\n")
                self._finish(invocation, error_document("Runtime.ExitError", message), "Unhandled")
        self._on_exit(self)
        for pid in await asyncio.to_thread(launch.processes_of, self._path):  # started in sessions of their own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                log.info("killed process %d, started by %s's worker %s, which has ended", pid, self.spec.name, self.id)

    # -- invoking -------------------------------------------------------------------------------------------------

    async def invoke(
        self,
        request_id: str,
        event: bytes,
        client_context: str | None,
        timeout: float | None = None,
        measure: bool = True,
    ) -> InvokeResult:
        """Run one invocation on this worker; always returns, within INIT_TIMEOUT + ``timeout`` (the function's
        Timeout unless the call has a shorter one: a worker outlives the call that started it). On a fresh worker
        the call waits for the init up to max(INIT_TIMEOUT, ``timeout``) (the module docstring says why)."""
        loop = asyncio.get_running_loop()
        limit = self.spec.timeout if timeout is None else timeout
        started = time.monotonic()
        invocation = _Invocation(request_id, event, client_context, loop.create_future(), limit)
        if self._init_error is not None:
            self._finish(invocation, self._init_error, "Unhandled")
        elif not self.alive:
            self._finish(invocation, error_document("Runtime.ExitError", "the worker is not running"), "Unhandled")
        elif self._waiting_next is not None:
            deliver, self._waiting_next = self._waiting_next, None
            deliver(self._deliver(invocation))
        elif self._initialized:
            # A warm runtime between its last answer and its next request (over the Runtime API these are two
            # requests): the call's Timeout runs from now.
            self._pending = invocation
            invocation.queued_from = started
            invocation.timer = loop.call_later(limit, self._timed_out, invocation)
        else:
            self._pending = invocation
            invocation.waited_from = started
            init_ends = self._started + max(INIT_TIMEOUT, limit)
            invocation.timer = loop.call_later(max(0.0, init_ends - started), self._init_timed_out, invocation)
        try:
            payload, function_error, timed_out = await invocation.outcome
        except asyncio.CancelledError:
            self.kill()  # the caller gave up mid-invocation: the runtime's state is unknown
            self._finish(invocation, b"", "Unhandled")
            raise
        if function_error is not None and _out_of_memory(payload):
            self.kill()  # it may still hold what filled it (the traceback keeps it): Lambda starts afresh after one
        ended = time.monotonic()
        duration = (ended - (invocation.delivered or started)) * 1000
        self.last_used = ended
        init_ms = None
        if invocation.delivered:
            init_ms, self._init_ms = self._init_ms, None
        if measure and self.alive:
            self._read_peak_memory()
        max_memory_mb = None if self._peak_kb is None else -(-self._peak_kb // 1024)
        return InvokeResult(
            request_id, payload, function_error, self._take_logs(), duration, timed_out, False, init_ms, max_memory_mb
        )

    def _read_peak_memory(self) -> None:
        """Note the process's peak resident set (Linux's VmHWM; 8 µs). Lambda's ``Max Memory Used`` is its
        environment's peak so far, over every call it served, as this is the process's since it started."""
        if self._proc is None:
            return
        try:
            with open(f"/proc/{self._proc.pid}/status", "rb") as status:
                text = status.read()
            at = text.index(b"VmHWM:")
            self._peak_kb = int(text[at + 6 : text.index(b"kB", at)])
        except (OSError, ValueError):
            pass  # not Linux, or the process is gone: the last reading stands

    def _deliver(self, invocation: _Invocation) -> Delivery:
        """Hand the invocation to the runtime: its Timeout runs from now, less the time the worker's init took past
        INIT_TIMEOUT while this call waited for it."""
        if invocation.timer is not None:
            invocation.timer.cancel()
        now = invocation.delivered = time.monotonic()
        if invocation.waited_from:
            free_until = max(invocation.waited_from, self._started + INIT_TIMEOUT)
            invocation.init_charged = min(invocation.timeout, max(0.0, now - free_until))
        remaining = invocation.timeout - invocation.init_charged
        if invocation.queued_from:
            remaining = max(0.001, invocation.timeout - (now - invocation.queued_from))
        self._current = invocation
        invocation.timer = asyncio.get_running_loop().call_later(remaining, self._timed_out, invocation)
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((time.time() + remaining) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": self.spec.arn,
            "Lambda-Runtime-Trace-Id": _trace_id(),
        }
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context.replace("\r", " ").replace("\n", " ")
        return Delivery(invocation.request_id, invocation.event, headers)

    def _finish(
        self, invocation: _Invocation, payload: bytes, function_error: str | None, timeout: bool = False
    ) -> None:
        if invocation.timer is not None:
            invocation.timer.cancel()
        if self._current is invocation:
            self._current = None
        if self._pending is invocation:
            self._pending = None
        if not invocation.outcome.done():
            invocation.outcome.set_result((payload, function_error, timeout))

    def _timed_out(self, invocation: _Invocation) -> None:
        if invocation.outcome.done():
            return
        self.kill()
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        what = f"Task timed out after {invocation.timeout:.2f} seconds"
        if invocation.init_charged:
            what += (
                f" (of which {invocation.init_charged:.2f} s were the worker's init past the "
                f"{INIT_TIMEOUT:g} s init limit)"
            )
        # Lambda's log line, and its answer's message (as its current runtimes give them with Sandbox.Timedout)
        self._platform_log(f"{stamp} {invocation.request_id} {what}\n")
        message = f"RequestId: {invocation.request_id} Error: {what}"
        self._finish(invocation, error_document("Sandbox.Timedout", message), "Unhandled", timeout=True)

    def _init_timed_out(self, invocation: _Invocation) -> None:
        if invocation.outcome.done() or invocation.delivered:
            return
        self.kill()
        message = (
            f"RequestId: {invocation.request_id} Error: the function's init (the runtime's start and the handler "
            f"module's import) did not finish within {INIT_TIMEOUT:g} s, the init limit"
        )
        if invocation.timeout > INIT_TIMEOUT:
            message += (
                f", nor within the {invocation.timeout:.2f} s Timeout of the worker's first invocation, which "
                f"Lambda grants an init that runs past {INIT_TIMEOUT:g} s"
            )
        self._platform_log(message + "\n")
        self._finish(invocation, error_document("Runtime.InitTimeout", message), "Unhandled", timeout=True)

    # -- the Runtime API session (runtime_api.Session) ------------------------------------------------------------

    def next_invocation(self, deliver: Callable[[Delivery], None]) -> None:
        if not self._initialized:
            self._initialized = True
            self._init_ms = (time.monotonic() - self._started) * 1000
        invocation, self._pending = self._pending, None
        if invocation is not None:
            deliver(self._deliver(invocation))
        else:
            self._waiting_next = deliver

    def cancel_next(self, deliver: Callable[[Delivery], None]) -> None:
        if self._waiting_next == deliver:
            self._waiting_next = None

    def posted_response(self, request_id: str, body: bytes) -> bool:
        return self._answer(request_id, body, None)

    def posted_error(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        return self._answer(request_id, body, "Unhandled")

    def posted_init_error(self, body: bytes, error_type: str | None) -> None:
        self.broken = True
        self._init_error = body
        invocation = self._current or self._pending
        if invocation is not None:
            self._finish(invocation, body, "Unhandled")

    def response_too_large(self, request_id: str, size: int) -> bool:
        if self._api is not None:
            # The Runtime API answers 413 and closes the connection; awslambdaric's client then ends the process,
            # so this worker must not be handed the next event. (Over pipes the body is skipped and it goes on.)
            self.broken = True
        message = f"Response payload size ({size} bytes) exceeded maximum allowed payload size (6291556 bytes)."
        return self._answer(request_id, error_document("Function.ResponseSizeTooLarge", message), "Unhandled")

    def _answer(self, request_id: str, payload: bytes, function_error: str | None) -> bool:
        invocation = self._current
        if invocation is None or invocation.request_id != request_id:
            return False
        self._finish(invocation, payload, function_error)
        return True

    # -- logs -----------------------------------------------------------------------------------------------------

    def _platform_log(self, line: str) -> None:
        """A line the platform adds to the invocation's log (a timeout, an exit), as Lambda does: on a line of its
        own, after output that did not end one."""
        if self._log_fd >= 0:
            size = os.fstat(self._log_fd).st_size
            if size > self._log_offset and os.pread(self._log_fd, 1, size - 1) != b"\n":
                line = "\n" + line
            os.write(self._log_fd, line.encode())

    def bound_log(self) -> None:
        """Free what the worker wrote beyond the last MAX_LOGS bytes, which no invocation's log will show: a handler
        that prints in a loop, or a thread that goes on writing while the worker is idle, would otherwise fill the
        disk (250 MB/s measured), as nothing reads its output until its invocation ends. Called by the pool each
        second; the blocks are punched out, so the file keeps its size and the output's offsets stay right. Where
        that cannot be done, the file is emptied instead (the tail then starts after that point). Also notes the
        process's peak memory, for a call whose worker exits (the REPORT line's Max Memory Used)."""
        if self._log_fd < 0:
            return
        if self.busy and self.alive:
            self._read_peak_memory()
        size = os.fstat(self._log_fd).st_size
        if size - max(self._log_freed, self._log_offset) <= LOG_DISK_BOUND:
            return
        end = (size - MAX_LOGS) // 4096 * 4096
        start = max(self._log_freed, self._log_offset) // 4096 * 4096
        if launch.punch_hole(self._log_fd, start, end - start):
            self._log_freed = end
        else:
            os.ftruncate(self._log_fd, 0)
            self._log_offset = self._log_freed = 0

    def _take_logs(self) -> str:
        if self._log_fd < 0:
            return ""
        size = os.fstat(self._log_fd).st_size
        if size <= self._log_offset:
            return ""
        start = max(self._log_offset, size - MAX_LOGS)
        data = os.pread(self._log_fd, size - start, start)
        self._log_offset = size
        if size >= TRUNCATE_AT:
            # Between the read and the truncation only output written after the answer could be lost.
            os.ftruncate(self._log_fd, 0)
            self._log_offset = self._log_freed = 0
        return data.decode("utf-8", "replace")
