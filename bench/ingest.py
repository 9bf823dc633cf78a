"""Ingest benchmark: endpoints per second through UpdateEndpointsBatch, against pointcast and against a sink.

Eight client *processes* (each with its own boto3 client) send batches of 100 distinct, realistic endpoints to

* a real ``pointcast serve`` subprocess on a loopback port (SQLite in a temp dir, or a fresh PostgreSQL schema),
* a do-nothing HTTP server that reads the body and answers 202 (the *ceiling*: what the clients alone can push).

It prints endpoints/s for both, the ratio pointcast/ceiling, the server's CPU time and peak RSS, the clients' CPU
time and how busy the machine was, so one can tell which side is the limit. At the end it checks that every
endpoint landed (a count in the store, plus GetEndpoint on a random sample) and exits non-zero if any is missing.

    .venv/bin/python -m bench.ingest --backends sqlite,postgres --json /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KEY_ID, SECRET = "AKIDPOINTCASTBENCH", "pointcast-bench-secret"
ACCOUNT_ID, REGION = "123456789012", "us-east-1"
BATCH = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
SINK_BODY = b'{"Message":"Accepted","RequestID":"x"}'
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

# --------------------------------------------------------------------------------------------------------------
# The payload: deterministic per serial number, so verification can regenerate what was sent.

_CHANNELS = ("EMAIL", "SMS", "GCM", "APNS")
_CITIES = (
    ("Seattle", "US", "WA", "98101", 47.6062, -122.3321, "America/Los_Angeles"),
    ("Berlin", "DE", "BE", "10115", 52.52, 13.405, "Europe/Berlin"),
    ("Sao Paulo", "BR", "SP", "01000-000", -23.5505, -46.6333, "America/Sao_Paulo"),
    ("Tokyo", "JP", "13", "100-0001", 35.6762, 139.6503, "Asia/Tokyo"),
    ("Lyon", "FR", "ARA", "69001", 45.764, 4.8357, "Europe/Paris"),
)
_DEVICES = (("Google", "Pixel 8", "android", "14"), ("Apple", "iPhone15,2", "ios", "17.4"))
_INTERESTS = ("running", "cooking", "travel", "jazz", "chess", "cycling", "films")
_PLANS = ("free", "plus", "pro")


def endpoint_id(worker: int, call: int, item: int, *, warmup: bool = False) -> str:
    """A distinct id per (worker, call, item); warm-up ids never collide with measured ones."""
    return f"{'wu' if warmup else 'ep'}-{worker:02d}-{call:06d}-{item:03d}"


def make_endpoint(eid: str, n: int) -> dict[str, Any]:
    """One realistic EndpointBatchItem: channel and address, 2-3 attributes, a user, location, device, metrics."""
    channel = _CHANNELS[n % len(_CHANNELS)]
    address = {
        "EMAIL": f"user{n}@example.com",
        "SMS": f"+1206{n % 10_000_000:07d}",
        "GCM": f"fcm-{n:040x}",
        "APNS": f"{n:064x}",
    }[channel]
    city, country, region, postal, lat, lon, tz = _CITIES[n % len(_CITIES)]
    make, model, os_name, os_version = _DEVICES[n % len(_DEVICES)]
    attributes = {
        "Interests": [_INTERESTS[n % 7], _INTERESTS[(n // 7) % 7]],
        "Plan": [_PLANS[n % 3]],
    }
    if n % 2:
        attributes["Source"] = ["import"]
    return {
        "Id": eid,
        "ChannelType": channel,
        "Address": address,
        "EndpointStatus": "ACTIVE",
        "OptOut": "NONE",
        "Attributes": attributes,
        "User": {
            "UserId": f"user-{n // 2}",
            "UserAttributes": {"FirstName": [f"Name{n % 997}"], "Tier": [_PLANS[(n // 3) % 3]]},
        },
        "Location": {
            "City": city,
            "Country": country,
            "Region": region,
            "PostalCode": postal,
            "Latitude": lat,
            "Longitude": lon,
        },
        "Demographic": {
            "AppVersion": "3.2.1",
            "Locale": "en_US",
            "Make": make,
            "Model": model,
            "Platform": os_name,
            "PlatformVersion": os_version,
            "Timezone": tz,
        },
        "Metrics": {"sessions": float(n % 50), "purchases": float(n % 7)},
    }


def serial(worker: int, call: int, item: int) -> int:
    return worker * 100_000_000 + call * BATCH + item


def make_batch(worker: int, call: int, *, warmup: bool = False) -> list[dict[str, Any]]:
    base = (1_000_000 if warmup else 0) + call
    return [make_endpoint(endpoint_id(worker, call, i, warmup=warmup), serial(worker, base, i)) for i in range(BATCH)]


# --------------------------------------------------------------------------------------------------------------
# Processes: the pointcast server, the sink, /proc readings.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set size) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True, slots=True)
class ProcCpu:
    """One process's CPU use so far: its own, and that of its children it has reaped."""

    comm: str
    ppid: int
    own: float
    children: float


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, now (``/proc/PID/task/TID/children``); ended ones are left out."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        found.append(current)
        for task in tasks:
            with suppress(OSError, ValueError):
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def process_cpu() -> dict[tuple[int, int], ProcCpu]:
    """(pid, start time) -> CPU use, for every process on the machine."""
    found: dict[tuple[int, int], ProcCpu] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):
            text = (entry / "stat").read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm.startswith("kworker"):
                comm = "kworker"  # the kernel renames them after the work item they run
            f = text[text.rindex(")") + 2 :].split()
            own, children = (int(f[11]) + int(f[12])) / CLK_TCK, (int(f[13]) + int(f[14])) / CLK_TCK
            found[int(entry.name), int(f[19])] = ProcCpu(comm, int(f[1]), own, children)
    return found


def others_cores(
    before: dict[tuple[int, int], ProcCpu], after: dict[tuple[int, int], ProcCpu], mine: set[int], window: float
) -> dict[str, float]:
    """CPU cores used during ``window`` by processes that are not ours, by command name, busiest first.

    Short-lived processes (autovacuum workers, a test suite's subprocesses) are counted through their parent's
    reaped-children time; what a process that exited had already used before the window is taken back out.
    """
    used: dict[str, float] = {}
    parents = {pid: cpu.comm for (pid, _), cpu in after.items()}
    for key, cpu in after.items():
        if key[0] in mine:
            continue
        old = before.get(key)
        delta = cpu.own + cpu.children - ((old.own + old.children) if old else 0.0)
        used[cpu.comm] = used.get(cpu.comm, 0.0) + delta / window
    ppid_before = {pid: cpu.ppid for (pid, _), cpu in before.items()}
    for key, cpu in before.items():
        if key in after:
            continue
        reaper = cpu.ppid  # the closest ancestor still alive is the one whose children time grew
        while reaper not in parents and reaper in ppid_before and reaper > 1:
            reaper = ppid_before[reaper]
        if reaper in parents and reaper not in mine:
            comm = parents[reaper]
            used[comm] = used.get(comm, 0.0) - (cpu.own + cpu.children) / window
    return dict(sorted(((k, v) for k, v in used.items() if v > 0), key=lambda kv: -kv[1]))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already counted in user
    return total - idle, total


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text(errors='replace')}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def pointcast_server(workdir: Path, database_url: str | None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``pointcast serve`` subprocess on a free loopback port; yields (url, process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POINTCAST_"))}
    env.update(
        {
            "POINTCAST_CREDENTIALS": f"{KEY_ID}:{SECRET}",
            "POINTCAST_ACCOUNT_ID": ACCOUNT_ID,
            "POINTCAST_REGION": REGION,
            "POINTCAST_LOG_LEVEL": "warning",
        }
    )
    if database_url:
        env["POINTCAST_DATABASE_URL"] = database_url
    log = workdir / "server.log"
    command = [sys.executable, "-m", "pointcast", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(workdir / "data")]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/pointcast/health", process, 60.0, log)
        yield url, process
    finally:
        stop_process(process)


async def sink_app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[..., Any]) -> None:
    """The trivial server: read the whole body, answer 202 with UpdateEndpointsBatch's reply."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"x-amzn-requestid", b"x")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": SINK_BODY})


@contextmanager
def sink_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The sink (this file with ``--sink-port``, uvicorn with the same loop/parser as pointcast)."""
    port = free_port()
    log = workdir / "sink.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--sink-port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/", process, 30.0, log)
        yield url, process
    finally:
        stop_process(process)


def run_sink(port: int) -> None:
    import uvicorn

    uvicorn.run(sink_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------------------------------------------
# Clients.


def boto_client(url: str, *, validate: bool = True) -> Any:
    """A pinpoint client signing with the bench's key pair; ``validate=False`` skips botocore's param checks."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "pinpoint",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(
            retries={"max_attempts": 1},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=2,
            parameter_validation=validate,
        ),
    )


@dataclass
class WorkerResult:
    index: int
    warmup_sent: int = 0
    calls_done: int = 0
    sent: int = 0
    start: float = 0.0
    end: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None


def client_worker(
    index: int,
    url: str,
    app_id: str,
    calls: int,
    warmup: int,
    validate: bool,
    deadline: Any,
    barrier: Any,
    queue: Any,
) -> None:
    """One client process: warm up, meet the others at the barrier, send ``calls`` batches (or until deadline)."""
    result = WorkerResult(index)
    try:
        client = boto_client(url, validate=validate)
        for call in range(warmup):
            client.update_endpoints_batch(
                ApplicationId=app_id, EndpointBatchRequest={"Item": make_batch(index, call, warmup=True)}
            )
            result.warmup_sent += BATCH
    except Exception as exc:
        result.error = f"warm-up: {type(exc).__name__}: {exc}"
        barrier.abort()
        queue.put(asdict(result))
        return
    try:
        barrier.wait(timeout=180)
    except threading.BrokenBarrierError:
        result.error = "start barrier broken (another process failed)"
        queue.put(asdict(result))
        return
    cpu0, result.start, stop_at = time.process_time(), time.monotonic(), deadline.value
    try:
        for call in range(calls):
            if time.monotonic() > stop_at:
                result.truncated = True
                break
            items = make_batch(index, call)
            sent_at = time.perf_counter()
            reply = client.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items})
            result.latencies.append(time.perf_counter() - sent_at)
            if reply["MessageBody"].get("Message") != "Accepted":
                raise RuntimeError(f"unexpected reply {reply['MessageBody']!r}")
            result.calls_done += 1
            result.sent += len(items)
    except Exception as exc:
        result.error = f"call {result.calls_done}: {type(exc).__name__}: {exc}"
    result.end, result.cpu = time.monotonic(), time.process_time() - cpu0
    queue.put(asdict(result))


@dataclass
class Phase:
    """One measured run of the 8 clients against one target."""

    target: str
    endpoints: int = 0
    warmup_endpoints: int = 0
    seconds: float = 0.0
    endpoints_per_s: float = 0.0
    calls_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cpu_s: float = 0.0
    server_sys_s: float = 0.0
    server_cores: float = 0.0
    server_peak_rss_mb: float = 0.0
    client_cpu_s: float = 0.0
    client_cores: float = 0.0
    machine_busy: float = 0.0
    other_cores: float = 0.0
    db_cores: float = 0.0
    others: dict[str, float] = field(default_factory=dict)
    window_s: float = 0.0
    server_us_per_endpoint: float = 0.0
    client_us_per_endpoint: float = 0.0
    db_us_per_endpoint: float = 0.0
    truncated: bool = False
    errors: list[str] = field(default_factory=list)
    calls_done: list[int] = field(default_factory=list)


def collect(queue: Any, clients: int, until: float) -> list[WorkerResult]:
    """Every worker's result; a worker that died without reporting counts as an error."""
    results: dict[int, WorkerResult] = {}
    while len(results) < clients and time.monotonic() < until:
        with suppress(Exception):
            result = WorkerResult(**queue.get(timeout=1.0))
            results[result.index] = result
    for index in range(clients):
        results.setdefault(index, WorkerResult(index, error="no result (process died or hung)"))
    return [results[i] for i in range(clients)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_phase(
    target: str,
    url: str,
    app_id: str,
    server_pid: int,
    *,
    clients: int,
    calls: int,
    warmup: int,
    validate: bool,
    limit_s: float,
    profile_to: Path | None = None,
) -> Phase:
    """Start the client processes, time the measured part, read the server's CPU around it."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    queue = ctx.Queue()
    workers = []
    # The deadline is set once every client is warm; workers read it from shared memory after the barrier.
    deadline = ctx.Value("d", time.monotonic() + limit_s + 600, lock=False)
    for index in range(clients):
        process = ctx.Process(
            target=client_worker,
            args=(index, url, app_id, calls, warmup, validate, deadline, barrier, queue),
            daemon=True,
        )
        process.start()
        workers.append(process)
    phase = Phase(target)
    profiler: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        while barrier.n_waiting < clients and not barrier.broken and time.monotonic() - started < 120:
            time.sleep(0.02)
        if profile_to is not None and not barrier.broken:
            profiler = start_profiler(server_pid, profile_to)
        deadline.value = time.monotonic() + limit_s
        procs0 = process_cpu()
        cpu0, ticks0, wall0 = cpu_seconds(server_pid), machine_ticks(), time.monotonic()
        with suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=60)
        results = collect(queue, clients, time.monotonic() + limit_s + 120)
        cpu1, ticks1, wall1 = cpu_seconds(server_pid), machine_ticks(), time.monotonic()
        procs1 = process_cpu()
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    measured = [r for r in results if r.start]
    phase.endpoints = sum(r.sent for r in results)
    phase.warmup_endpoints = sum(r.warmup_sent for r in results)
    phase.errors = [f"client {r.index}: {r.error}" for r in results if r.error]
    phase.truncated = any(r.truncated for r in results)
    phase.calls_done = [r.calls_done for r in sorted(results, key=lambda r: r.index)]
    if measured:
        phase.seconds = max(r.end for r in measured) - min(r.start for r in measured)
    if phase.seconds > 0:
        phase.endpoints_per_s = phase.endpoints / phase.seconds
        phase.calls_per_s = sum(r.calls_done for r in results) / phase.seconds
    latencies = [x for r in results for x in r.latencies]
    phase.p50_ms, phase.p99_ms = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    window = wall1 - wall0
    phase.server_cpu_s = sum(cpu1) - sum(cpu0)
    phase.server_sys_s = cpu1[1] - cpu0[1]
    phase.server_cores = phase.server_cpu_s / window if window > 0 else 0.0
    phase.server_peak_rss_mb = peak_rss_mb(server_pid)
    phase.client_cpu_s = sum(r.cpu for r in results)
    phase.client_cores = phase.client_cpu_s / window if window > 0 else 0.0
    busy, total = ticks1[0] - ticks0[0], ticks1[1] - ticks0[1]
    phase.machine_busy = busy / total if total else 0.0
    # CPU used by neither the server nor the clients (other processes on the box, the kernel's softirq work...).
    cores = os.cpu_count() or 1
    phase.other_cores = max(0.0, phase.machine_busy * cores - phase.server_cores - phase.client_cores)
    mine = {os.getpid(), server_pid, *(w.pid for w in workers if w.pid)}
    if profiler is not None:
        mine.add(profiler.pid)
    phase.others = {k: round(v, 3) for k, v in others_cores(procs0, procs1, mine, window).items() if v >= 0.01}
    phase.db_cores = phase.others.get("postgres", 0.0)
    phase.window_s = window
    if phase.endpoints:
        # Load-independent costs: CPU time per endpoint, on each side.
        phase.server_us_per_endpoint = phase.server_cpu_s / phase.endpoints * 1e6
        phase.client_us_per_endpoint = phase.client_cpu_s / phase.endpoints * 1e6
        phase.db_us_per_endpoint = phase.db_cores * window / phase.endpoints * 1e6
    return phase


def start_profiler(
    pid: int, path: Path, duration: float | None = None, *, nonblocking: bool = False
) -> subprocess.Popen[bytes] | None:
    """``py-spy record --gil -f raw`` on the server (its log beside ``path``); None if py-spy is not in the venv.

    ``nonblocking`` samples without pausing the server (less exact, no slow-down of a long run).
    """
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        print(f"  (no py-spy at {exe}; not profiling)", file=sys.stderr)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [str(exe), "record", "--gil", "-p", str(pid), "-f", "raw", "-o", str(path), "-r", "100"]
    if nonblocking:
        command.append("--nonblocking")
    if duration:
        command += ["-d", str(int(duration))]
    with path.with_suffix(".log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # let it attach before the measured part starts
    return process


def stop_profiler(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --------------------------------------------------------------------------------------------------------------
# Verification.


def verify(url: str, app_id: str, phase: Phase, count_rows: Callable[[], int], sample: int = 20) -> dict[str, Any]:
    """Count the stored rows and compare a random sample, fetched with GetEndpoint, to what was sent."""
    expected = phase.endpoints + phase.warmup_endpoints
    stored = count_rows()
    candidates = [(w, c) for w, done in enumerate(phase.calls_done) for c in range(done)]
    rng = random.Random()
    picks = [(w, c, rng.randrange(BATCH)) for w, c in (rng.choice(candidates) for _ in range(sample))]
    client = boto_client(url)
    problems: list[str] = []
    for worker, call, item in picks:
        eid = endpoint_id(worker, call, item)
        sent = make_endpoint(eid, serial(worker, call, item))
        try:
            got = client.get_endpoint(ApplicationId=app_id, EndpointId=eid)["EndpointResponse"]
        except Exception as exc:
            problems.append(f"GetEndpoint {eid}: {type(exc).__name__}: {exc}")
            continue
        for member in ("ChannelType", "Address", "Attributes", "User", "Location", "Demographic", "Metrics"):
            if got.get(member) != sent[member]:
                problems.append(f"{eid}.{member}: sent {sent[member]!r}, got {got.get(member)!r}")
    if stored != expected:
        problems.insert(0, f"{expected - stored} endpoint(s) missing: {stored} rows stored, {expected} sent")
    return {
        "expected_rows": expected,
        "stored_rows": stored,
        "sampled": len(picks),
        "problems": problems,
        "ok": not problems,
    }


def sqlite_counter(path: Path, app_id: str) -> Callable[[], int]:
    def count() -> int:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM endpoints WHERE app_id = ?", (app_id,)).fetchone()[0])

    return count


def postgres_table_stats(base_url: str, schema: str) -> dict[str, Any]:
    """Whether autovacuum analyzed ``endpoints`` during the run: plans on a fresh, unanalyzed table can be poor."""
    import psycopg

    query = (
        "SELECT n_live_tup, autoanalyze_count + analyze_count, "
        "extract(epoch FROM now() - greatest(last_autoanalyze, last_analyze)) "
        "FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'endpoints'"
    )
    with psycopg.connect(base_url, connect_timeout=5) as conn:
        row = conn.execute(query, (schema,)).fetchone()
    if row is None:
        return {}
    return {"live_rows": row[0], "analyze_count": row[1], "last_analyze_s_ago": row[2] and round(float(row[2]), 1)}


def postgres_counter(base_url: str, schema: str, app_id: str) -> Callable[[], int]:
    def count() -> int:
        import psycopg

        with psycopg.connect(base_url, connect_timeout=5) as conn:
            row = conn.execute(f'SELECT count(*) FROM "{schema}".endpoints WHERE app_id = %s', (app_id,)).fetchone()
            return int(row[0]) if row else 0

    return count


# --------------------------------------------------------------------------------------------------------------
# The run.


def machine() -> dict[str, Any]:
    model = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@contextmanager
def postgres_schema(base_url: str) -> Iterator[tuple[str, str]]:
    """A fresh ``pc_bench_<random>`` schema; yields (schema, server URL pinned to it); dropped at the end."""
    import psycopg

    name = f"pc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield name, f"{base_url}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def postgres_unreachable(base_url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(base_url, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {base_url} is not reachable: {str(exc).strip().splitlines()[0]}"


def run_backend(backend: str, args: argparse.Namespace, limit_s: float) -> dict[str, Any]:
    """Ceiling (sink) then pointcast on one backend, then verification."""
    calls = max(1, args.endpoints // (BATCH * args.clients))
    common = {
        "clients": args.clients,
        "calls": calls,
        "warmup": args.warmup,
        "validate": args.client_validation,
        "limit_s": limit_s,
    }
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as tmp:
        workdir = Path(tmp)
        with sink_server(workdir) as (url, process):
            ceiling = run_phase("ceiling", url, "sink", process.pid, **common)
        with (
            store_for(backend, args) as (schema, database_url),
            pointcast_server(workdir, database_url) as (url, process),
        ):
            print(f"  {backend}: pointcast pid {process.pid} on {url}", file=sys.stderr)
            app_id = boto_client(url).create_app(CreateApplicationRequest={"Name": "ingest-bench"})
            app_id = app_id["ApplicationResponse"]["Id"]
            profile = Path(args.profile_dir) / f"{backend}.txt" if args.profile_dir else None
            if profile:
                profile.parent.mkdir(parents=True, exist_ok=True)
            phase = run_phase("pointcast", url, app_id, process.pid, profile_to=profile, **common)
            if schema is None:
                counter = sqlite_counter(workdir / "data" / "pointcast.sqlite3", app_id)
            else:
                counter = postgres_counter(args.pg_url, schema, app_id)
            verification = verify(url, app_id, phase, counter)
            if schema is not None:
                verification["endpoints_table"] = postgres_table_stats(args.pg_url, schema)
    ratio = phase.endpoints_per_s / ceiling.endpoints_per_s if ceiling.endpoints_per_s else 0.0
    return {
        "pointcast": asdict(phase),
        "ceiling": asdict(ceiling),
        "ratio": ratio,
        "verification": verification,
        "profile": str(profile) if profile else None,
    }


@contextmanager
def store_for(backend: str, args: argparse.Namespace) -> Iterator[tuple[str | None, str | None]]:
    """(schema, database URL) for a backend: (None, None) for SQLite, a fresh schema for PostgreSQL."""
    if backend == "sqlite":
        yield None, None
        return
    with postgres_schema(args.pg_url) as (schema, url):
        yield schema, url


COLUMNS = (
    ("backend", 9, "{}"),
    ("target", 9, "{}"),
    ("endpoints", 9, "{:d}"),
    ("seconds", 7, "{:.2f}"),
    ("endpoints/s", 11, "{:,.0f}"),
    ("calls/s", 7, "{:.0f}"),
    ("p50 ms", 6, "{:.1f}"),
    ("p99 ms", 6, "{:.1f}"),
    ("srv CPU s", 9, "{:.2f}"),
    ("(sys)", 5, "{:.2f}"),
    ("srv cores", 9, "{:.2f}"),
    ("srv RSS MB", 10, "{:.0f}"),
    ("cli CPU s", 9, "{:.2f}"),
    ("cli cores", 9, "{:.2f}"),
    ("db cores", 8, "{:.2f}"),
    ("other cores", 11, "{:.2f}"),
    ("machine busy", 12, "{:.0%}"),
)


def table_row(backend: str, phase: dict[str, Any]) -> str:
    values = (
        backend,
        phase["target"],
        phase["endpoints"],
        phase["seconds"],
        phase["endpoints_per_s"],
        phase["calls_per_s"],
        phase["p50_ms"],
        phase["p99_ms"],
        phase["server_cpu_s"],
        phase["server_sys_s"],
        phase["server_cores"],
        phase["server_peak_rss_mb"],
        phase["client_cpu_s"],
        phase["client_cores"],
        phase["db_cores"],
        phase["other_cores"],
        phase["machine_busy"],
    )
    return "  ".join(fmt.format(v).rjust(width) for (_, width, fmt), v in zip(COLUMNS, values, strict=True))


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}")
    p = report["params"]
    print(
        f"params: {p['clients']} client processes x {p['calls_per_client']} calls x {BATCH} endpoints "
        f"(+{p['warmup']} warm-up calls each), botocore parameter validation "
        f"{'on' if p['client_validation'] else 'off'}, phase limit {p['phase_limit_s']:.0f} s"
    )
    if report["background_busy"] > 0.15:
        print(f"WARNING: the machine was {report['background_busy']:.0%} busy before the run; numbers are noisy")
    print(
        "(srv = the pointcast process, or the sink in the ceiling rows; cli = the 8 client processes; db = the\n"
        " PostgreSQL server processes; other = everything else busy on the machine, incl. the db; "
        "cores = CPU s / wall s)\n"
    )
    print("  ".join(name.rjust(width) for name, width, _ in COLUMNS))
    for backend, result in report["results"].items():
        if "skipped" in result:
            print(f"{backend:>9}  skipped: {result['skipped']}")
            continue
        print(table_row(backend, result["pointcast"]))
        print(table_row(backend, result["ceiling"]))
    print()
    for backend, result in report["results"].items():
        if "skipped" in result:
            continue
        v = result["verification"]
        state = "OK" if v["ok"] else "FAILED"
        print(
            f"{backend}: pointcast {result['pointcast']['endpoints_per_s']:,.0f} endpoints/s, ceiling "
            f"{result['ceiling']['endpoints_per_s']:,.0f} endpoints/s, ratio {result['ratio']:.2f}; "
            f"goal 20,000/s {'met' if result['pointcast']['endpoints_per_s'] >= 20_000 else 'NOT met'}; "
            f"verification {state} ({v['stored_rows']}/{v['expected_rows']} rows, {v['sampled']} sampled)"
        )
        pc, cl = result["pointcast"], result["ceiling"]
        total_us = pc["server_us_per_endpoint"] + pc["client_us_per_endpoint"] + pc["db_us_per_endpoint"]
        cores = report["machine"]["nproc"] or 1
        print(
            f"  CPU per endpoint: pointcast {pc['server_us_per_endpoint']:.0f} us, clients "
            f"{pc['client_us_per_endpoint']:.0f} us (against the sink: {cl['client_us_per_endpoint']:.0f} us), "
            f"database {pc['db_us_per_endpoint']:.0f} us"
        )
        if pc["server_us_per_endpoint"] and total_us:
            print(
                f"  => with nothing else running, {cores} cores shared by clients+server+db allow at most "
                f"{cores * 1e6 / total_us:,.0f} endpoints/s; one pointcast process (one core, the GIL) at most "
                f"{1e6 / pc['server_us_per_endpoint']:,.0f}/s; the clients alone at most "
                f"{cores * 1e6 / max(cl['client_us_per_endpoint'], 1e-9):,.0f}/s"
            )
        for phase in ("pointcast", "ceiling"):
            busiest = ", ".join(f"{k} {v:.2f}" for k, v in list(result[phase]["others"].items())[:5])
            print(f"  other processes busy during {phase} (cores): {busiest or 'none'}")
            for error in result[phase]["errors"]:
                print(f"  ERROR ({phase}): {error}")
            if result[phase]["truncated"]:
                print(f"  NOTE ({phase}): stopped at the phase time limit before sending every endpoint")
        if v.get("endpoints_table"):
            stats = v["endpoints_table"]
            when = f", last {stats['last_analyze_s_ago']} s before the end" if stats["analyze_count"] else ""
            print(f"  PostgreSQL analyzed the endpoints table {stats['analyze_count']} time(s) during the run{when}")
        for problem in v["problems"][:10]:
            print(f"  VERIFY: {problem}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--endpoints", type=int, default=200_000, help="measured endpoints per phase")
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up calls per client (not measured)")
    parser.add_argument(
        "--no-client-validation",
        dest="client_validation",
        action="store_false",
        help="turn off botocore's client-side parameter validation (it costs the clients ~60%% of their CPU)",
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL database for a throwaway schema")
    parser.add_argument("--phase-limit", type=float, default=60.0, help="hard limit (s) on one measured phase")
    parser.add_argument("--time-limit", type=float, default=290.0, help="hard limit (s) on the whole run")
    parser.add_argument("--json", dest="json_path", help="also write the numbers to this file")
    parser.add_argument("--profile-dir", help="record the server with py-spy (collapsed stacks) into this dir")
    parser.add_argument("--sink-port", type=int, help=argparse.SUPPRESS)  # internal: run the sink server
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sink_port:
        run_sink(args.sink_port)
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown:
        print(f"unknown backend(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started = time.monotonic()
    report: dict[str, Any] = {
        "machine": machine(),
        "params": {
            "clients": args.clients,
            "calls_per_client": max(1, args.endpoints // (BATCH * args.clients)),
            "batch": BATCH,
            "warmup": args.warmup,
            "client_validation": args.client_validation,
            "phase_limit_s": args.phase_limit,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        },
        "results": {},
    }
    busy0, total0 = machine_ticks()
    time.sleep(1.0)
    busy1, total1 = machine_ticks()
    report["background_busy"] = (busy1 - busy0) / max(1, total1 - total0)
    for backend in backends:
        remaining = args.time_limit - (time.monotonic() - started)
        reason = None
        if remaining < 30:
            reason = f"the run's time limit ({args.time_limit:.0f} s) is nearly used up"
        elif backend == "postgres":
            reason = postgres_unreachable(args.pg_url)
        if reason:
            print(f"skipping {backend}: {reason}")
            report["results"][backend] = {"skipped": reason}
            continue
        print(f"running {backend} ...", file=sys.stderr)
        # Two phases per backend share what is left; each stops by itself at its limit.
        limit_s = min(args.phase_limit, remaining / 2 - 10)
        report["results"][backend] = run_backend(backend, args, limit_s)
    report["elapsed_s"] = time.monotonic() - started
    print_report(report)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    failed = [
        b
        for b, r in report["results"].items()
        if "skipped" not in r and (not r["verification"]["ok"] or r["pointcast"]["errors"] or r["ceiling"]["errors"])
    ]
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
