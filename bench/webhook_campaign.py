"""Webhook campaign benchmark: endpoints/s from CreateCampaign to the last recorded outcome, against a bare client.

pointcast runs as a ``pointcast serve`` subprocess (SQLite in a temp dir, or a fresh PostgreSQL schema) and
delivers an IMMEDIATE campaign, in batches of 50, to an HTTPS webhook on 127.0.0.1 (a custom channel). Two phases:

* ``fast``: the receiver is nginx answering 200 at once. pointcast's end-to-end endpoints/s (CreateCampaign sent ->
  the activity COMPLETED) is compared with a *bare* aiohttp client that posts the very same payloads (the same
  batches of 50, the same header members and endpoint JSON, built up front from the run's batches) to the same
  receiver with the same number of requests in flight. Goal: >= 0.8 of the bare client, and the server's peak
  RSS (VmHWM) under 300 MB.
* ``slow``: the receiver takes ``--slow-delay`` (100 ms) per request, so ``concurrency / delay`` requests per
  second is the bound. Goal: >= 0.9 of the bound.

Setup (not measured): the app is created through the API, then the endpoints are written straight into the store
with pointcast's own ``endpoints.service.write`` (what UpdateEndpointsBatch runs, 1,000 a transaction) while the
server is stopped; the server is restarted (so its peak RSS covers the campaign only), then the segment and the
campaign are created with boto3.

At the end it checks the activity (COMPLETED, SuccessfulEndpointCount == audience) and pointcast's ``/progress``
(sent == audience, failed == 0), that the receiver got one POST per batch, and that the bare client's payloads
are byte-for-byte what pointcast's ``build_payload`` makes; it exits 1 if anything is off.

    .venv/bin/python -m bench.webhook_campaign --endpoints 1000000 --json /tmp/webhook.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from bench import threads
from bench.ingest import (
    DEFAULT_PG_URL,
    ProcCpu,
    cpu_seconds,
    machine,
    machine_ticks,
    others_cores,
    peak_rss_mb,
    postgres_schema,
    postgres_unreachable,
    process_cpu,
    process_tree,
    start_profiler,
    stop_process,
    stop_profiler,
    wait_http,
)
from bench.ingest import make_endpoint as ingest_endpoint
from bench.receivers import (
    NGINX_PACKAGES,
    BenchCA,
    Receiver,
    free_port,
    install_nginx,
    nginx_binary,
    nginx_receiver,
    slow_receiver,
)

KEY_ID, SECRET = "AKIDPOINTCASTBENCH", "pointcast-bench-secret"
ACCOUNT_ID, REGION = "123456789012", "us-east-1"
BATCH = 50  # pointcast's batch size (engine/plan.py BATCH_SIZE)
LOAD_CHUNK = 1_000  # endpoints per store transaction during setup
MESSAGE_DATA = "pointcast webhook benchmark: hello {{User.UserAttributes.FirstName}}"
BATCH_ID_HEADER = "X-Pointcast-Batch-Id"
RESPONSE_KEEP = 1024  # what pointcast reads of a response body
GOAL_FAST, GOAL_SLOW, GOAL_RSS_MB = 0.8, 0.9, 300.0
GOAL_FILTER = 1.5  # at most this many times the fast phase's time with a FILTER hook (issue 4)

# --------------------------------------------------------------------------------------------------------------
# The audience: realistic CUSTOM endpoints, deterministic per serial number.


def endpoint_id(n: int) -> str:
    """Zero-padded, so id order (the order pointcast plans in) is serial order."""
    return f"ep-{n:08d}"


def make_endpoint(n: int) -> dict[str, Any]:
    """bench/ingest.py's realistic endpoint, on the custom channel, in one segment, without a time zone.

    No Timezone: an IMMEDIATE campaign without local time sends everyone at once either way.
    """
    item = ingest_endpoint(endpoint_id(n), n)
    item["ChannelType"] = "CUSTOM"
    item["Address"] = f"customer-{n:08d}@hooks.example.com"
    item["Attributes"] = {"Audience": ["all"], **item["Attributes"]}
    del item["Demographic"]["Timezone"]
    return item


def store_url(data_dir: Path, database_url: str | None) -> str:
    """The SQLAlchemy URL the server uses for this data dir / database URL (pointcast's own resolution)."""
    from pointcast.settings import Settings

    return Settings.model_validate({"data_dir": data_dir, "database_url": database_url}).resolved_database_url()


def load_endpoints(url: str, app_id: str, count: int, deadline: float) -> float:
    """Write ``count`` endpoints into the store the way UpdateEndpointsBatch does (``endpoints.service.write``).

    The server must be stopped (or idle). Returns the seconds it took. On PostgreSQL the table is analyzed at the
    end, as autovacuum would do on a database that has been loaded for a while.
    """
    from pointcast.endpoints import service
    from pointcast.store import Database

    started = time.monotonic()
    db = Database(url)
    try:
        for start in range(0, count, LOAD_CHUNK):
            if time.monotonic() > deadline:
                raise TimeoutError(f"loading stopped at the phase limit after {start:,} of {count:,} endpoints")
            items = [(endpoint_id(n), make_endpoint(n)) for n in range(start, min(count, start + LOAD_CHUNK))]
            with db.write() as conn:
                service.write(conn, app_id, items, "EndpointBatchRequest.Item[{index}]")
        if not db.is_sqlite:
            with db.write() as conn:
                conn.exec_driver_sql("ANALYZE endpoints")
    finally:
        db.dispose()
    return time.monotonic() - started


# --------------------------------------------------------------------------------------------------------------
# The pointcast server and its clients.


@dataclass
class PointcastServer:
    """``pointcast serve`` on a free loopback port; ``start()``/``stop()`` restart it on the same store."""

    workdir: Path
    data_dir: Path
    database_url: str | None
    ca_path: Path
    concurrency: int
    src: Path | None = None  # run the pointcast package found here (PYTHONPATH) instead of the installed one
    extra_env: dict[str, str] = field(default_factory=dict)  # --server-env, for experiments
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POINTCAST_"))}
        env.update(
            {
                "POINTCAST_CREDENTIALS": f"{KEY_ID}:{SECRET}",
                "POINTCAST_ACCOUNT_ID": ACCOUNT_ID,
                "POINTCAST_REGION": REGION,
                "POINTCAST_LOG_LEVEL": "warning",
                "POINTCAST_CA_BUNDLE": str(self.ca_path),
                "POINTCAST_DELIVERY_CONCURRENCY": str(self.concurrency),
            }
        )
        if self.database_url:
            env["POINTCAST_DATABASE_URL"] = self.database_url
        if self.src:
            env["PYTHONPATH"] = str(self.src)
        env.update(self.extra_env)
        self.starts += 1
        log = self.workdir / f"server-{self.starts}.log"
        command = [sys.executable, "-m", "pointcast", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        with log.open("wb") as out:
            # cwd: ``-m`` puts the working directory first on sys.path, ahead of PYTHONPATH
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_http(f"{self.url}/pointcast/health", self.process, 60.0, log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def pinpoint(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "pinpoint",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=120),
        )

    def own(self, path: str) -> Any:
        """GET one of pointcast's own routes (``/pointcast/...``), SigV4-signed like botocore signs."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.url + path
        request = AWSRequest(method="GET", url=url, data=b"", headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(KEY_ID, SECRET), "mobiletargeting", REGION).add_auth(request)
        sent = urllib.request.Request(url, headers=dict(request.headers.items()), method="GET")
        with urllib.request.urlopen(sent, timeout=300) as response:
            return json.loads(response.read())


def parse_iso(text: str | None) -> float | None:
    """Seconds since the epoch of one of pointcast's ISO times (``...Z``), or None."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------------------------------------------
# /proc readings.


def descendants(procs: dict[tuple[int, int], ProcCpu], root: int) -> set[int]:
    """``root`` and every process below it, from a ``process_cpu()`` snapshot."""
    children: dict[int, list[int]] = {}
    for (pid, _), cpu in procs.items():
        children.setdefault(cpu.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu(before: dict[tuple[int, int], ProcCpu], after: dict[tuple[int, int], ProcCpu], root: int) -> float:
    """CPU seconds used between two snapshots by ``root`` and its descendants (e.g. nginx's master and worker)."""
    pids = descendants(after, root)
    total = 0.0
    for key, cpu in after.items():
        if key[0] in pids:
            old = before.get(key)
            total += cpu.own - (old.own if old else 0.0)
    return total


@dataclass
class Window:
    """What the machine did while one target was measured: wall time, busy share, who else used CPU."""

    wall0: float = 0.0
    ticks0: tuple[int, int] = (0, 0)
    procs0: dict[tuple[int, int], ProcCpu] = field(default_factory=dict)

    @classmethod
    def open(cls) -> Window:
        return cls(time.monotonic(), machine_ticks(), process_cpu())

    def close(self, receiver_pid: int, extra_mine: set[int], sender_pid: int | None = None) -> dict[str, Any]:
        wall1, ticks1, procs1 = time.monotonic(), machine_ticks(), process_cpu()
        children_cpu = 0.0  # the sender's child processes (pointcast's planner, function workers), reaped or not
        if sender_pid is not None:
            children_cpu = tree_cpu(self.procs0, procs1, sender_pid) - own_cpu(self.procs0, procs1, sender_pid)
            children_cpu += reaped_cpu(self.procs0, procs1, sender_pid)
        window = max(wall1 - self.wall0, 1e-9)
        busy, total = ticks1[0] - self.ticks0[0], ticks1[1] - self.ticks0[1]
        mine = descendants(procs1, os.getpid()) | extra_mine
        others = others_cores(self.procs0, procs1, mine, window)
        return {
            "window_s": window,
            "machine_busy": busy / total if total else 0.0,
            "receiver_cpu_s": tree_cpu(self.procs0, procs1, receiver_pid),
            "others": {k: round(v, 3) for k, v in others.items() if v >= 0.01},
            "other_cores": sum(others.values()),
            "sender_children_cpu_s": children_cpu,
        }


def own_cpu(before: dict[tuple[int, int], ProcCpu], after: dict[tuple[int, int], ProcCpu], pid: int) -> float:
    """CPU seconds ``pid`` itself used between two snapshots."""
    return sum(cpu.own - (before[key].own if key in before else 0.0) for key, cpu in after.items() if key[0] == pid)


def reaped_cpu(before: dict[tuple[int, int], ProcCpu], after: dict[tuple[int, int], ProcCpu], pid: int) -> float:
    """CPU seconds of ``pid``'s children that ended (and were reaped) between two snapshots."""
    return sum(
        cpu.children - (before[key].children if key in before else 0.0) for key, cpu in after.items() if key[0] == pid
    )


# --------------------------------------------------------------------------------------------------------------
# Profiling (py-spy) and its summary.


def _frame_name(frame: str) -> tuple[str, str, str]:
    """(function, short file, line) of a py-spy frame ``function (path/file.py:line)``."""
    name, _, rest = frame.partition(" (")
    path, _, line = rest.rstrip(")").rpartition(":")
    for marker in ("/pointcast/", "site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = ("pointcast/" if marker == "/pointcast/" else "") + path.split(marker, 1)[1]
            break
    return name, path, line


# What the server is doing, by the first of these frames (function name, file) found in a stack.
ACTIVITIES = (
    ("planning (plan_run, a worker thread)", "plan_run", "pointcast/engine/plan.py"),
    ("recording results (write transaction)", "Context._write", "pointcast/context.py"),
    ("reading due batches and their endpoints", "Context._read", "pointcast/context.py"),
    ("event loop (HTTP client, payloads, scheduling)", "serve", "pointcast/cli.py"),
)


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Shares of the GIL-holding samples of a ``py-spy record --gil -f raw`` file.

    * ``activities``: planning, recording, reading, the event loop (by the frames in ``ACTIVITIES``);
    * ``pointcast_inclusive``: each pointcast function, with everything it calls;
    * ``pointcast_lines``: the deepest pointcast line of each stack, so time in C (orjson, sqlite3, ssl) and in
      libraries is charged to the pointcast line that called it;
    * ``leaf``: where the interpreter was (self time), pointcast or not.
    """
    inclusive: Counter[tuple[str, str]] = Counter()
    lines: Counter[tuple[str, str, str]] = Counter()
    leaf: Counter[tuple[str, str]] = Counter()
    activities: Counter[str] = Counter()
    total = 0
    for text in path.read_text(errors="replace").splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if " (" in f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        for key in {(name, file) for name, file, _ in frames}:
            inclusive[key] += count
        leaf[frames[-1][:2]] += count
        own = [f for f in frames if f[1].startswith("pointcast/")]
        if own:
            lines[own[-1]] += count
        keys = {(name, file) for name, file, _ in frames}
        label = next((label for label, name, file in ACTIVITIES if (name, file) in keys), "other / truncated stack")
        activities[label] += count

    def share(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    mine = [(k, n) for k, n in inclusive.most_common() if k[1].startswith("pointcast/")]
    return {
        "samples": total,
        "activities": [{"what": k, "share": share(n)} for k, n in activities.most_common()],
        "pointcast_inclusive": [{"function": f"{p}:{f}", "share": share(n)} for (f, p), n in mine[:top]],
        "pointcast_lines": [{"line": f"{p}:{ln} {f}", "share": share(n)} for (f, p, ln), n in lines.most_common(top)],
        "leaf": [{"function": f"{p}:{f}", "share": share(n)} for (f, p), n in leaf.most_common(top)],
    }


# --------------------------------------------------------------------------------------------------------------
# The bare client.


def build_payload(header: dict[str, Any], docs: dict[str, str], ids: list[str]) -> bytes:
    """Seed 000's event as pointcast builds it: header members, then ``"Endpoints": {id: stored doc, ...}``."""
    import orjson

    head = orjson.dumps(header)
    endpoints = b",".join(orjson.dumps(i) + b":" + docs[i].encode() for i in ids)
    return head[:-1] + b',"Endpoints":{' + endpoints + b"}}"


Payload = tuple[str, bytes, int]  # (batch id, body, endpoints in it)


def bare_payloads(url: str, app_id: str, campaign_id: str, run_id: str) -> list[Payload]:
    """(batch id, body, endpoints) for every batch of the run, in plan order, built up front from the store."""
    import orjson
    import sqlalchemy as sa

    from pointcast.store import Database
    from pointcast.store import models as m

    db = Database(url)
    try:
        with db.read() as conn:
            e, b = m.endpoints, m.batches
            docs = dict(conn.execute(sa.select(e.c.id, e.c.doc).where(e.c.app_id == app_id)).all())
            rows = conn.execute(
                sa.select(b.c.id, b.c.endpoint_ids, b.c.not_before, b.c.activity_id, b.c.treatment_id)
                .where(b.c.run_id == run_id)
                .order_by(b.c.pk)
            ).all()
    finally:
        db.dispose()
    payloads = []
    for row in rows:
        header = {
            "Message": {},
            "Data": MESSAGE_DATA,
            "ApplicationId": app_id,
            "CampaignId": campaign_id,
            "TreatmentId": row.treatment_id,
            "ActivityId": row.activity_id,
            "ScheduledTime": row.not_before,
        }
        ids = orjson.loads(row.endpoint_ids)
        payloads.append((row.id, build_payload(header, docs, ids), len(ids)))
    return payloads


def same_as_pointcast(url: str, run_id: str, payloads: list[Payload], sample: int = 5) -> str | None:
    """Compare a few of our payloads with pointcast's own ``engine.execute.build_payload``; None if identical."""
    import orjson

    try:
        import sqlalchemy as sa

        from pointcast.engine.execute import build_payload as pointcast_build
        from pointcast.engine.plan import load_spec
        from pointcast.store import Database
        from pointcast.store import models as m

        db = Database(url)
        try:
            with db.read() as conn:
                spec = load_spec(conn, run_id)
                step = max(1, len(payloads) // sample)
                for batch_id, body, _ in payloads[::step][:sample]:
                    b, e = m.batches, m.endpoints
                    batch = conn.execute(sa.select(b).where(b.c.id == batch_id)).one()
                    ids = orjson.loads(batch.endpoint_ids)
                    where = sa.and_(e.c.app_id == spec.app_id, e.c.id.in_(ids))
                    docs = dict(conn.execute(sa.select(e.c.id, e.c.doc).where(where)).all())
                    treatment = spec.treatment(batch.treatment_id)
                    theirs = pointcast_build(spec, treatment, batch.activity_id, batch.not_before, docs, ids)
                    if theirs != body:
                        return f"batch {batch_id}: {len(body)} bytes here, {len(theirs)} from pointcast, not equal"
        finally:
            db.dispose()
    except Exception as exc:  # pointcast's internals moved: say so rather than fail the benchmark
        return f"could not compare with pointcast's build_payload: {type(exc).__name__}: {exc}"
    return None


async def post_all(
    url: str, payloads: list[Payload], concurrency: int, ca_path: Path
) -> tuple[float, float, int, list[str]]:
    """POST every payload with ``concurrency`` tasks over one session; returns (start, end, endpoints ok, errors)."""
    import aiohttp

    from pointcast.channels.webhook.verify import make_ssl_context

    connector = aiohttp.TCPConnector(ssl=make_ssl_context(str(ca_path)), limit=concurrency, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=10.0)
    ok = 0
    errors: list[str] = []
    queue = iter(payloads)

    async def worker() -> None:
        nonlocal ok
        for batch_id, body, count in queue:
            headers = {"Content-Type": "application/json", BATCH_ID_HEADER: batch_id}
            try:
                async with session.post(
                    url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                ) as response:
                    await response.content.read(RESPONSE_KEEP)
                    if 200 <= response.status < 300:
                        ok += count
                    else:
                        errors.append(f"{batch_id}: HTTP {response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{batch_id}: {type(exc).__name__}: {exc}")

    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        end = time.monotonic()
    return start, end, ok, errors


def run_bare(
    url: str, payloads: list[Payload], concurrency: int, ca_path: Path, limit_s: float
) -> tuple[float, float, int, list[str]]:
    """``post_all`` on uvloop (as pointcast's server runs), bounded by ``limit_s``."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None

    async def bounded() -> tuple[float, float, int, list[str]]:
        return await asyncio.wait_for(post_all(url, payloads, concurrency, ca_path), timeout=limit_s)

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bounded())


# --------------------------------------------------------------------------------------------------------------
# One phase.


@dataclass
class Result:
    """One measured target in one phase: pointcast, or the bare client."""

    target: str
    endpoints: int = 0
    seconds: float = 0.0
    endpoints_per_s: float = 0.0
    cpu_s: float = 0.0
    sys_s: float = 0.0
    cores: float = 0.0
    peak_rss_mb: float | None = None
    receiver_cpu_s: float = 0.0
    receiver_cores: float = 0.0
    receiver_requests: int | None = None
    machine_busy: float = 0.0
    other_cores: float = 0.0
    others: dict[str, float] = field(default_factory=dict)
    us_per_endpoint: float = 0.0
    # pointcast only: the time split, from the run's and outcomes' timestamps
    create_s: float | None = None  # CreateCampaign round trip (includes the webhook HEAD check)
    pickup_s: float | None = None  # CreateCampaign sent -> the run is created (the scheduler saw the campaign)
    to_first_send_s: float | None = None  # CreateCampaign sent -> first outcome (scheduler pick-up + planning)
    sending_s: float | None = None  # first outcome -> last outcome
    closing_s: float | None = None  # last outcome -> activity End
    sending_only_per_s: float | None = None
    receiver_mean_inflight: float | None = None  # slow receiver: mean POSTs in flight while sending
    # (s after CreateCampaign, the server's VmRSS MB, with its child processes MB)
    rss_samples: list[tuple[float, float, float]] = field(default_factory=list)
    children_cpu_s: float = 0.0  # pointcast only: its child processes (planner, function workers); in cpu_s too
    threads: dict[str, dict[str, float]] = field(default_factory=dict)  # pointcast only: bench.threads.summary
    completed: bool = True
    errors: list[str] = field(default_factory=list)


@dataclass
class PhaseReport:
    backend: str
    phase: str
    receiver: str
    audience: int
    concurrency: int
    delay_s: float | None
    bound_per_s: float | None
    setup_s: float = 0.0
    payload_bytes: float = 0.0
    batches: int = 0
    attempts: int = 0  # delivery attempts pointcast recorded for the run's batches
    attempt_kinds: dict[str, int] = field(default_factory=dict)  # "status error" -> count
    resends: dict[str, Any] | None = None  # --log-batch-ids: batches the receiver got more than once
    pointcast: Result = field(default_factory=lambda: Result("pointcast"))
    bare: Result | None = None
    ratio: float = 0.0  # pointcast / bare (fast) or pointcast / bound (slow)
    goal: float = 0.0
    verification: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


def rss_mb(pid: int) -> float:
    """Current resident set size (VmRSS) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """VmRSS of a process and all its descendants (pointcast's planner and function workers), in MiB."""
    total = 0.0
    for current in process_tree(pid):
        with suppress(OSError, ValueError):
            total += rss_mb(current)
    return total


def wait_completed(
    pinpoint: Any,
    app_id: str,
    campaign_id: str,
    receiver: Receiver,
    deadline: float,
    stall_s: float,
    watch: tuple[int, float, list[tuple[float, float, float]]] | None = None,
    on_poll: Callable[[], None] | None = None,
) -> str | None:
    """Poll GetCampaign (every 0.5 s, cheap) until the campaign is COMPLETED; None then, else why it stopped.

    It gives up at ``deadline``, or when the receiver has seen no request for ``stall_s`` seconds (read from the
    receiver's own counter, so watching costs pointcast nothing); planning comes first, so keep it generous.
    """
    seen, moved = receiver.requests_seen(), time.monotonic()
    while True:
        if watch is not None:  # (pid, t0, samples): the server's RSS over time, to tell when the peak happens
            pid, t0, samples = watch
            with suppress(OSError):
                at = round(time.monotonic() - t0, 2)
                samples.append((at, round(rss_mb(pid), 1), round(tree_rss_mb(pid), 1)))
        if on_poll is not None:
            on_poll()
        campaign = pinpoint.get_campaign(ApplicationId=app_id, CampaignId=campaign_id)["CampaignResponse"]
        if campaign["State"]["CampaignStatus"] == "COMPLETED":
            return None
        now = time.monotonic()
        if now >= deadline:
            return "the campaign did not complete within the phase limit"
        count = receiver.requests_seen()
        if count != seen:
            seen, moved = count, now
        elif now - moved > stall_s:
            return f"stalled: the receiver got no request for {stall_s:.0f} s and the campaign is not COMPLETED"
        time.sleep(0.5)


def run_facts(url: str, run_id: str) -> dict[str, Any]:
    """Read from the store after the run: when the run was created, the first SENT and last outcome, and the
    delivery attempts pointcast recorded (so re-sends can be told apart from retries)."""
    import sqlalchemy as sa

    from pointcast.store import Database
    from pointcast.store import models as m

    db = Database(url)
    try:
        with db.read() as conn:
            o, b, a = m.outcomes, m.batches, m.attempts
            created = conn.execute(sa.select(m.runs.c.created).where(m.runs.c.id == run_id)).scalar()
            first_sent = conn.execute(
                sa.select(sa.func.min(o.c.at)).where(o.c.run_id == run_id, o.c.status == "SENT")
            ).scalar()
            last = conn.execute(sa.select(sa.func.max(o.c.at)).where(o.c.run_id == run_id)).scalar()
            run_batches = sa.select(b.c.id).where(b.c.run_id == run_id).scalar_subquery()
            attempts = conn.execute(
                sa.select(a.c.status_code, a.c.error, sa.func.count())
                .where(a.c.batch_id.in_(run_batches))
                .group_by(a.c.status_code, a.c.error)
            ).all()
    finally:
        db.dispose()
    return {
        "created": created,
        "first_sent": first_sent,
        "last": last,
        "attempts": sum(int(n) for _, _, n in attempts),
        "attempt_kinds": {f"{status or '-'} {error or ''}".strip(): int(n) for status, error, n in attempts},
    }


def log_offset(receiver: Receiver) -> int:
    """The size of nginx's batch-id log once its buffer is flushed (it flushes every second); 0 without a log."""
    if receiver.access_log is None:
        return 0
    time.sleep(1.5)
    return receiver.access_log.stat().st_size if receiver.access_log.exists() else 0


def resent_batches(log: Path, start: int, end: int) -> dict[str, Any]:
    """Batches POSTed more than once between two offsets of the batch-id log, and how far apart the sends were."""
    with log.open("rb") as f:
        f.seek(start)
        text = f.read(end - start).decode(errors="replace")
    sends: dict[str, list[float]] = {}
    other: Counter[str] = Counter()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1] == "POST":
            sends.setdefault(parts[2], []).append(float(parts[0]))
        else:
            other[" ".join(parts[1:2] + parts[3:4]) or line[:40]] += 1
    twice = {batch: times for batch, times in sends.items() if len(times) > 1}
    gaps = sorted(times[1] - times[0] for times in twice.values())
    return {
        "posts": sum(len(t) for t in sends.values()),
        "batches": len(sends),
        "resent": len(twice),
        "extra_posts": sum(len(t) - 1 for t in twice.values()),
        "gap_ms_median": round(gaps[len(gaps) // 2] * 1000, 1) if gaps else None,
        "gap_ms_max": round(gaps[-1] * 1000, 1) if gaps else None,
        "examples": sorted(twice)[:5],
        "other_requests": dict(other),  # "METHOD status" -> count (HEAD checks, our stub_status reads, ...)
    }


def deploy_filter_hook(server: PointcastServer) -> dict[str, str]:
    """The demo's FILTER function (seed 003's example in Python), deployed through boto3's ``lambda`` client."""
    import boto3
    from botocore.config import Config

    from pointcast.demo import deploy_credit_score

    lam = boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )
    function = deploy_credit_score(lam, ACCOUNT_ID, REGION)
    return {"LambdaFunctionName": function["FunctionName"], "Mode": "FILTER"}


def run_phase(
    backend: str,
    phase: str,
    receiver: Receiver,
    audience: int,
    concurrency: int,
    delay: float | None,
    database_url: str | None,
    args: argparse.Namespace,
    workdir: Path,
    ca: BenchCA,
) -> PhaseReport:
    """Set up, run the campaign, verify, then post the same payloads with the bare client."""
    workdir.mkdir(parents=True, exist_ok=True)
    bound = concurrency / delay * BATCH if delay else None
    report = PhaseReport(backend, phase, receiver.name, audience, concurrency, delay, bound)
    data_dir = workdir / "data"
    url = store_url(data_dir, database_url)
    src = Path(args.pointcast_src) if args.pointcast_src else None
    extra = dict(item.split("=", 1) for item in args.server_env)
    server = PointcastServer(workdir, data_dir, database_url, ca.ca_path, concurrency, src, extra)
    pc = report.pointcast
    with ExitStack() as stack:
        stack.callback(server.stop)
        # --- setup (not measured)
        server.start()
        pinpoint = server.pinpoint()
        app_id = pinpoint.create_app(CreateApplicationRequest={"Name": f"webhook-bench-{phase}"})
        app_id = app_id["ApplicationResponse"]["Id"]
        server.stop()
        print(f"  {backend}/{phase}: loading {audience:,} endpoints into the store ...", file=sys.stderr)
        report.setup_s = load_endpoints(url, app_id, audience, time.monotonic() + args.phase_limit)
        server.start()
        pinpoint = server.pinpoint()
        segment_id = pinpoint.create_segment(
            ApplicationId=app_id,
            WriteSegmentRequest={
                "Name": "everyone",
                "Dimensions": {"Attributes": {"Audience": {"AttributeType": "INCLUSIVE", "Values": ["all"]}}},
            },
        )["SegmentResponse"]["Id"]
        print(
            f"  {backend}/{phase}: loaded in {report.setup_s:.0f} s; campaign to {receiver.url} "
            f"(pointcast pid {server.pid}, concurrency {concurrency}) ...",
            file=sys.stderr,
        )
        hook = deploy_filter_hook(server) if phase == "filter" else None
        profiler = None
        if args.profile_dir:
            path = Path(args.profile_dir) / f"{backend}-{phase}.txt"
            profiler = start_profiler(server.pid, path, args.profile_seconds, nonblocking=True)
            if profiler is not None:
                stack.callback(stop_profiler, profiler)
        # --- measured: CreateCampaign -> COMPLETED
        log_from = log_offset(receiver)
        stats0 = receiver.stats()
        window = Window.open()
        times = threads.Watch(server.pid, receiver.pid)
        cpu0 = cpu_seconds(server.pid)
        t0_wall, t0 = time.time(), time.monotonic()
        campaign = pinpoint.create_campaign(
            ApplicationId=app_id,
            WriteCampaignRequest={
                "Name": f"bench-{phase}",
                "SegmentId": segment_id,
                "Schedule": {"StartTime": "IMMEDIATE"},
                "MessageConfiguration": {"CustomMessage": {"Data": MESSAGE_DATA}},
                "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["CUSTOM"]},
                **({"Hook": hook} if hook else {}),
            },
        )["CampaignResponse"]
        pc.create_s = time.monotonic() - t0
        campaign_id = campaign["Id"]
        watch = (server.pid, t0, pc.rss_samples)
        stopped = wait_completed(
            pinpoint, app_id, campaign_id, receiver, t0 + args.phase_limit, args.stall_limit, watch, times.take
        )
        times.take()
        pc.completed = stopped is None
        observed = time.monotonic() - t0
        cpu1 = cpu_seconds(server.pid)
        closed = window.close(receiver.pid, {server.pid, *([profiler.pid] if profiler else [])}, server.pid)
        pc.threads = times.summary(closed["window_s"])
        pc.peak_rss_mb = peak_rss_mb(server.pid)
        if profiler is not None:
            stop_profiler(profiler)
            report.profile = {"path": str(path), **summarize_profile(path)}
        stats1 = receiver.stats()
        if receiver.access_log is not None:
            report.resends = resent_batches(receiver.access_log, log_from, log_offset(receiver))
        # --- what pointcast says
        activities = pinpoint.get_campaign_activities(ApplicationId=app_id, CampaignId=campaign_id)
        activities = activities["ActivitiesResponse"]["Item"]
        progress = server.own(f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/progress")
        run_id = progress["Runs"][0]["Id"] if progress["Runs"] else None
        server.stop()
        # --- numbers
        activity = activities[0] if activities else {}
        end = parse_iso(activity.get("End"))
        pc.seconds = (end - t0_wall) if (pc.completed and end) else observed
        pc.endpoints = int(progress.get("Sent", 0))
        pc.endpoints_per_s = pc.endpoints / pc.seconds if pc.seconds > 0 else 0.0
        pc.children_cpu_s = closed["sender_children_cpu_s"]
        pc.cpu_s, pc.sys_s = sum(cpu1) - sum(cpu0) + pc.children_cpu_s, cpu1[1] - cpu0[1]
        pc.cores = pc.cpu_s / closed["window_s"]
        pc.us_per_endpoint = pc.cpu_s / pc.endpoints * 1e6 if pc.endpoints else 0.0
        pc.receiver_cpu_s = closed["receiver_cpu_s"]
        pc.receiver_cores = pc.receiver_cpu_s / closed["window_s"]
        pc.machine_busy, pc.other_cores, pc.others = closed["machine_busy"], closed["other_cores"], closed["others"]
        # nginx's stub_status counts every request: take out our own reads and the HEAD check of CreateCampaign.
        reads = stats1["reads"] - stats0["reads"]
        pc.receiver_requests = int(stats1["requests"] - stats0["requests"] - reads) - (1 if reads else 0)
        if run_id:
            facts = run_facts(url, run_id)
            report.attempts, report.attempt_kinds = facts["attempts"], facts["attempt_kinds"]
            created, first_sent, last = (parse_iso(facts[k]) for k in ("created", "first_sent", "last"))
            if created:
                pc.pickup_s = created - t0_wall
            if first_sent:
                pc.to_first_send_s = first_sent - t0_wall
            if first_sent and last:
                pc.sending_s = last - first_sent
                if pc.sending_s > 0:
                    pc.sending_only_per_s = pc.endpoints / pc.sending_s
                    if "area" in stats1:
                        pc.receiver_mean_inflight = (stats1["area"] - stats0["area"]) / pc.sending_s
            if last and end:
                pc.closing_s = end - last
        if stopped:
            pc.errors.append(f"{stopped} (after {observed:.0f} s)")
        report.batches = int(progress.get("Batches", 0))
        report.verification = verify(audience, activities, progress, campaign_id, pc, receiver)
        # --- the bare client: the same payloads, the same receiver, the same concurrency
        if run_id and phase != "filter":  # a FILTER phase is compared with the fast phase instead
            print(f"  {backend}/{phase}: bare client, building {report.batches:,} payloads ...", file=sys.stderr)
            payloads = bare_payloads(url, app_id, campaign_id, run_id)
            mismatch = same_as_pointcast(url, run_id, payloads)
            if mismatch:
                report.verification["problems"].append(f"bare payloads differ from pointcast's: {mismatch}")
                report.verification["ok"] = False
            report.payload_bytes = sum(len(body) for _, body, _ in payloads) / max(1, len(payloads))
            report.bare = measure_bare(receiver, payloads, concurrency, ca.ca_path, args.phase_limit)
            del payloads
            gc.collect()
    if phase == "fast":
        report.goal = GOAL_FAST
        report.ratio = pc.endpoints_per_s / report.bare.endpoints_per_s if report.bare and report.bare.seconds else 0.0
    elif phase == "filter":
        report.goal = GOAL_FILTER  # the ratio (time with the hook / time without) is set once both phases ran
    else:
        report.goal = GOAL_SLOW
        report.ratio = pc.endpoints_per_s / bound if bound else 0.0
    return report


def measure_bare(
    receiver: Receiver, payloads: list[Payload], concurrency: int, ca_path: Path, limit_s: float
) -> Result:
    """The bare client against ``receiver``, with the same /proc readings as for pointcast."""
    bare = Result("bare client")
    gc.collect()
    stats0 = receiver.stats()
    window = Window.open()
    cpu0 = time.process_time()
    try:
        start, end, ok, errors = run_bare(receiver.url, payloads, concurrency, ca_path, limit_s)
    except TimeoutError:
        start, end, ok, errors = window.wall0, time.monotonic(), 0, [f"stopped at the phase limit ({limit_s:.0f} s)"]
        bare.completed = False
    cpu = time.process_time() - cpu0
    closed = window.close(receiver.pid, set())
    stats1 = receiver.stats()
    bare.receiver_requests = int(stats1["requests"] - stats0["requests"] - (stats1["reads"] - stats0["reads"]))
    bare.endpoints = ok
    bare.seconds = end - start
    bare.endpoints_per_s = bare.endpoints / bare.seconds if bare.seconds > 0 else 0.0
    if "area" in stats1 and bare.seconds > 0:
        bare.receiver_mean_inflight = (stats1["area"] - stats0["area"]) / bare.seconds
    bare.cpu_s, bare.cores = cpu, cpu / closed["window_s"]
    bare.us_per_endpoint = cpu / bare.endpoints * 1e6 if bare.endpoints else 0.0
    bare.receiver_cpu_s = closed["receiver_cpu_s"]
    bare.receiver_cores = bare.receiver_cpu_s / closed["window_s"]
    bare.machine_busy, bare.other_cores, bare.others = closed["machine_busy"], closed["other_cores"], closed["others"]
    bare.errors = errors[:10] + ([f"... and {len(errors) - 10} more"] if len(errors) > 10 else [])
    return bare


def verify(
    audience: int,
    activities: list[dict[str, Any]],
    progress: dict[str, Any],
    campaign_id: str,
    pc: Result,
    receiver: Receiver,
) -> dict[str, Any]:
    """The activity and /progress must both say every endpoint was sent; the receiver must have seen every batch."""
    problems: list[str] = []
    if len(activities) != 1:
        problems.append(f"{len(activities)} activities, expected 1")
    for activity in activities:
        if activity.get("State") != "COMPLETED":
            problems.append(f"activity {activity.get('Id')} is {activity.get('State')}, not COMPLETED")
        if activity.get("SuccessfulEndpointCount") != audience:
            problems.append(f"SuccessfulEndpointCount {activity.get('SuccessfulEndpointCount')} != {audience}")
        if activity.get("TotalEndpointCount") != audience:
            problems.append(f"TotalEndpointCount {activity.get('TotalEndpointCount')} != {audience}")
    expected_batches = -(-audience // BATCH)
    checks = {
        "Sent": audience,
        "Failed": 0,
        "Skipped": 0,
        "PendingBatches": 0,
        "Planned": audience,
        "Batches": expected_batches,
    }
    for key, want in checks.items():
        if progress.get(key) != want:
            problems.append(f"/progress {key} = {progress.get(key)}, expected {want}")
    if pc.receiver_requests is not None and pc.receiver_requests < progress.get("Batches", 0):
        problems.append(f"the receiver saw {pc.receiver_requests} POSTs for {progress.get('Batches')} batches")
    return {
        "ok": not problems,
        "problems": problems,
        "campaign_id": campaign_id,
        "activity": {
            k: activities[0].get(k)
            for k in ("State", "SuccessfulEndpointCount", "TotalEndpointCount", "Result", "Start", "End")
        }
        if activities
        else {},
        "progress": {k: progress.get(k) for k in checks},
        "receiver_posts": pc.receiver_requests,
    }


# --------------------------------------------------------------------------------------------------------------
# The report.

COLUMNS = (
    ("backend", 8, "{}"),
    ("phase", 5, "{}"),
    ("target", 11, "{}"),
    ("endpoints", 9, "{:,}"),
    ("seconds", 7, "{:.1f}"),
    ("endpoints/s", 11, "{:,.0f}"),
    ("ratio", 5, "{:.2f}"),
    ("to 1st send s", 13, "{:.1f}"),
    ("sending s", 9, "{:.1f}"),
    ("send-only/s", 11, "{:,.0f}"),
    ("CPU s", 6, "{:.1f}"),
    ("cores", 5, "{:.2f}"),
    ("us/endpoint", 11, "{:.0f}"),
    ("peak RSS MB", 11, "{:.0f}"),
    ("rcv cores", 9, "{:.2f}"),
    ("other cores", 11, "{:.2f}"),
    ("busy", 4, "{:.0%}"),
)


def _cell(fmt: str, width: int, value: Any) -> str:
    return ("-" if value is None else fmt.format(value)).rjust(width)


def table_row(report: PhaseReport, result: Result, ratio: float | None) -> str:
    values = (
        report.backend,
        report.phase,
        result.target,
        result.endpoints,
        result.seconds,
        result.endpoints_per_s,
        ratio,
        result.to_first_send_s,
        result.sending_s,
        result.sending_only_per_s,
        result.cpu_s,
        result.cores,
        result.us_per_endpoint,
        result.peak_rss_mb,
        result.receiver_cores,
        result.other_cores,
        result.machine_busy,
    )
    return "  ".join(_cell(fmt, width, v) for (_, width, fmt), v in zip(COLUMNS, values, strict=True))


def print_report(report: dict[str, Any], phases: list[PhaseReport]) -> None:
    m = report["machine"]
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}")
    code = report["code"]
    dirty = code.get("uncommitted")
    print(
        f"pointcast: {code['source']} at commit {code['commit']}"
        + (f" plus uncommitted changes to {', '.join(dirty)} (diff {code['diff_sha1']})" if dirty else "")
    )
    p = report["params"]
    print(
        f"params: fast phase {p['endpoints']:,} endpoints at concurrency {p['concurrency']} (nginx, 1 worker); "
        f"slow phase {p['slow_endpoints']:,} endpoints at concurrency {p['slow_concurrency']} "
        f"({p['slow_delay'] * 1000:.0f} ms per request); batches of {BATCH}; phase limit {p['phase_limit_s']:.0f} s"
    )
    if p["server_env"]:
        print(f"server environment added: {' '.join(p['server_env'])}")
    if report["background_busy"] > 0.15:
        print(f"WARNING: the machine was {report['background_busy']:.0%} busy before the run; numbers are noisy")
    print(
        "(ratio = pointcast / bare client (fast), or / the bound = concurrency / delay (slow); to 1st send =\n"
        " CreateCampaign sent -> first outcome (scheduler pick-up + planning); sending = first -> last outcome;\n"
        " send-only/s = endpoints / sending; CPU, cores, us/endpoint = the sender (the pointcast server with its\n"
        " child processes, or this process for the bare client); peak RSS = the server's own VmHWM; rcv = the\n"
        " receiver; other = everything else busy; busy = whole machine)\n"
    )
    print("  ".join(name.rjust(width) for name, width, _ in COLUMNS))
    for phase in phases:
        print(table_row(phase, phase.pointcast, phase.ratio))
        if phase.bare:
            bare_ratio = phase.bare.endpoints_per_s / phase.bound_per_s if phase.bound_per_s else None
            print(table_row(phase, phase.bare, bare_ratio))
        if phase.bound_per_s:
            print(f"{phase.backend:>8}  {phase.phase:>5}  {'bound':>11}  {'':>9}  {'':>7}  {phase.bound_per_s:>11,.0f}")
    print()
    for phase in phases:
        pc, bare = phase.pointcast, phase.bare
        v = phase.verification
        against = (
            f"bare client {bare.endpoints_per_s:,.0f}/s"
            if phase.phase == "fast" and bare
            else f"bound {phase.bound_per_s or 0:,.0f}/s"
        )
        if phase.phase == "filter":
            met = "met" if 0 < phase.ratio <= phase.goal else "NOT met"
            print(
                f"{phase.backend}/filter: pointcast {pc.endpoints_per_s:,.0f} endpoints/s end to end with a FILTER "
                f"hook on every batch; time with the hook / time without (fast phase) = {phase.ratio:.2f} "
                f"(goal <= {phase.goal}: {met}); verification {'OK' if v.get('ok') else 'FAILED'}"
            )
        else:
            met = "met" if phase.ratio >= phase.goal else "NOT met"
            print(
                f"{phase.backend}/{phase.phase}: pointcast {pc.endpoints_per_s:,.0f} endpoints/s end to end, "
                f"{against}, ratio {phase.ratio:.2f} (goal >= {phase.goal}: {met}); verification "
                f"{'OK' if v.get('ok') else 'FAILED'}"
            )
        if phase.phase == "fast":
            tree_peak = max((sample[2] for sample in pc.rss_samples), default=0.0)
            rss_met = "met" if max(pc.peak_rss_mb or 0, tree_peak) < GOAL_RSS_MB else "NOT met"
            print(
                f"  server peak RSS {pc.peak_rss_mb:.0f} MB, with its child processes {tree_peak:.0f} MB "
                f"(goal < {GOAL_RSS_MB:.0f} MB: {rss_met})",
                end="",
            )
            if pc.rss_samples:
                start_mb = pc.rss_samples[0][1]
                top_at, top_mb, _ = max(pc.rss_samples, key=lambda sample: sample[1])
                tree_at, _, tree_mb = max(pc.rss_samples, key=lambda sample: sample[2])
                print(
                    f"; sampled every 0.5 s: {start_mb:.0f} MB at CreateCampaign, highest {top_mb:.0f} MB at "
                    f"{top_at:.1f} s; with its child processes (planner) highest {tree_mb:.0f} MB at {tree_at:.1f} s"
                )
            else:
                print()
        print(
            f"  CPU: {pc.cpu_s:.1f} s, of it {pc.children_cpu_s:.1f} s in the server's child processes (the planner, "
            "function workers)"
        )
        print(
            f"  time: CreateCampaign {pc.create_s or 0:.2f} s, run created after {pc.pickup_s or 0:.1f} s, "
            f"first outcome after {pc.to_first_send_s or 0:.1f} s, sending {pc.sending_s or 0:.1f} s "
            f"({pc.sending_only_per_s or 0:,.0f}/s), last outcome -> COMPLETED {pc.closing_s or 0:.2f} s"
        )
        print(
            f"  setup: {phase.audience:,} endpoints written to the store in {phase.setup_s:.0f} s; "
            f"{phase.batches:,} batches, {phase.payload_bytes / 1024:.1f} KiB per payload; receiver saw "
            f"{pc.receiver_requests} POSTs from pointcast, {bare.receiver_requests if bare else '-'} from the bare "
            "client"
        )
        if phase.resends is not None:
            r = phase.resends
            print(
                f"  batch-id log: {r['posts']} POSTs of {r['batches']} batches; {r['resent']} batches POSTed more "
                f"than once ({r['extra_posts']} extra), second send {r['gap_ms_median']} ms after the first "
                f"(median; max {r['gap_ms_max']} ms); other requests: {r['other_requests']}"
            )
        if pc.receiver_mean_inflight is not None:
            print(
                f"  requests in flight at the receiver while sending (mean, of {phase.concurrency} allowed): "
                f"pointcast {pc.receiver_mean_inflight:.1f}, bare client "
                f"{bare.receiver_mean_inflight if bare and bare.receiver_mean_inflight is not None else 0:.1f}"
            )
        extra = (pc.receiver_requests or 0) - phase.batches
        if extra and pc.completed:
            kinds = ", ".join(f"{k}: {n}" for k, n in phase.attempt_kinds.items())
            print(
                f"  NOTE: the receiver got {pc.receiver_requests} POSTs for {phase.batches} batches; pointcast "
                f"recorded {phase.attempts} attempts ({kinds})"
            )
        if pc.threads:
            print("  where pointcast's threads and the receiver's spent the run (cores: on a CPU, waiting for one):")
            print("\n".join(threads.table(pc.threads)))
        for result in (pc, bare):
            if result is None:
                continue
            busiest = ", ".join(f"{k} {c:.2f}" for k, c in list(result.others.items())[:5])
            print(f"  other processes busy during {result.target} (cores): {busiest or 'none'}")
            for error in result.errors:
                print(f"  ERROR ({result.target}): {error}")
        for problem in v.get("problems", [])[:10]:
            print(f"  VERIFY: {problem}")
        if phase.profile:
            prof = phase.profile
            print(f"  profile ({prof['samples']} GIL samples, {prof['path']}): what the server did:")
            for item in prof["activities"]:
                print(f"    {item['share']:6.1%}  {item['what']}")
            print("  pointcast functions, inclusive share:")
            for item in prof["pointcast_inclusive"][:20]:
                print(f"    {item['share']:6.1%}  {item['function']}")
            print("  pointcast lines (each stack charged to its deepest pointcast line):")
            for item in prof["pointcast_lines"][:20]:
                print(f"    {item['share']:6.1%}  {item['line']}")
            print("  leaf (self) functions:")
            for item in prof["leaf"][:15]:
                print(f"    {item['share']:6.1%}  {item['function']}")


# --------------------------------------------------------------------------------------------------------------
# The run.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite, postgres")
    parser.add_argument(
        "--phases",
        default="fast,slow",
        help="comma-separated: fast (nginx), slow (100 ms receiver), filter (fast with a FILTER hook on every batch)",
    )
    parser.add_argument("--endpoints", type=int, default=200_000, help="audience of the fast phase")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="POINTCAST_DELIVERY_CONCURRENCY (and the bare client's), fast phase"
    )
    parser.add_argument("--slow-endpoints", type=int, default=100_000, help="audience of the slow phase")
    parser.add_argument("--slow-concurrency", type=int, default=64, help="requests in flight, slow phase")
    parser.add_argument("--slow-delay", type=float, default=0.1, help="seconds the slow receiver takes per request")
    parser.add_argument("--phase-limit", type=float, default=900.0, help="hard limit (s) on each step of a phase")
    parser.add_argument(
        "--stall-limit", type=float, default=180.0, help="give up when the receiver gets nothing for this long (s)"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL database for throwaway schemas")
    parser.add_argument(
        "--log-batch-ids",
        action="store_true",
        help="diagnostic: nginx logs each request's batch id, to find batches pointcast POSTed more than once",
    )
    parser.add_argument("--install-nginx", action="store_true", help="apt-get install nginx if it is missing")
    parser.add_argument(
        "--pointcast-rev",
        help="run pointcast as of this git revision (exported with 'git archive' to a temp dir), not the work tree",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the pointcast server (repeatable), e.g. MALLOC_ARENA_MAX=2 for an experiment",
    )
    parser.add_argument("--json", dest="json_path", help="also write the numbers to this file")
    parser.add_argument("--profile-dir", help="record the server with py-spy (--gil, raw) during each phase")
    parser.add_argument(
        "--profile-seconds", type=float, help="record only this long (py-spy -d) instead of the whole fast phase"
    )
    return parser.parse_args(argv)


def _git(*command: str) -> str:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["git", *command], cwd=root, capture_output=True, text=True, timeout=30)
    return done.stdout if done.returncode == 0 else ""


def code_state(rev: str | None) -> dict[str, Any]:
    """Which pointcast the server ran: a revision's export, or the work tree (its commit and uncommitted files).

    Other work may be in progress in the tree; a short hash of the uncommitted diff tells two such states apart.
    """
    import hashlib

    if rev:
        return {"source": f"git revision {rev}", "commit": _git("rev-parse", "--short", rev).strip() or None}
    state: dict[str, Any] = {"source": "the work tree", "commit": _git("rev-parse", "--short", "HEAD").strip() or None}
    state["uncommitted"] = _git("diff", "HEAD", "--name-only", "--", "pointcast").split()
    diff = _git("diff", "HEAD", "--", "pointcast")
    state["diff_sha1"] = hashlib.sha1(diff.encode()).hexdigest()[:10] if diff else None
    return state


def export_pointcast(rev: str, dest: Path) -> None:
    """``git archive REV pointcast`` unpacked into ``dest`` (read-only for the repository)."""
    import io
    import tarfile

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["git", "archive", "--format=tar", rev, "pointcast"], cwd=root, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"git archive {rev} failed: {done.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(dest, filter="data")
    found = subprocess.run(
        [sys.executable, "-c", "import pointcast; print(pointcast.__file__)"],
        env={**os.environ, "PYTHONPATH": str(dest)},
        cwd=dest,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    if not found.startswith(str(dest)):
        raise RuntimeError(f"with PYTHONPATH={dest} the server would import {found or 'nothing'}")


def _terminate(signum: int, _frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds the ExitStacks: every subprocess is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if set(backends) - {"sqlite", "postgres"} or set(phases) - {"fast", "slow", "filter"} or not backends or not phases:
        print("--backends takes sqlite,postgres and --phases takes fast,slow,filter", file=sys.stderr)
        return 2
    if any("=" not in item for item in args.server_env):
        print("--server-env takes KEY=VALUE", file=sys.stderr)
        return 2
    nginx = nginx_binary()
    if {"fast", "filter"} & set(phases) and nginx is None:
        if not args.install_nginx:
            print(
                "nginx is not installed; the fast phase needs Debian's nginx as its receiver. Install it with\n"
                f"  apt-get update && apt-get install -y {NGINX_PACKAGES[0]}   (or: {NGINX_PACKAGES[1]})\n"
                "or run this again with --install-nginx.",
                file=sys.stderr,
            )
            return 2
        print("installing nginx (apt-get) ...", file=sys.stderr)
        nginx = install_nginx()
    source = None
    args.pointcast_src = None
    if args.pointcast_rev:
        source = tempfile.TemporaryDirectory(prefix="pc-webhook-src-")
        export_pointcast(args.pointcast_rev, Path(source.name))
        args.pointcast_src = source.name
        sys.path.insert(0, source.name)  # this process writes the store with the same code
    try:
        return run(args, backends, phases, nginx)
    finally:
        if source is not None:
            source.cleanup()


def run(args: argparse.Namespace, backends: list[str], phases: list[str], nginx: str | None) -> int:
    """Every backend x phase, then the report; the exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    report: dict[str, Any] = {
        "machine": machine(),
        "params": {
            "endpoints": args.endpoints,
            "concurrency": args.concurrency,
            "slow_endpoints": args.slow_endpoints,
            "slow_concurrency": args.slow_concurrency,
            "slow_delay": args.slow_delay,
            "batch": BATCH,
            "phase_limit_s": args.phase_limit,
            "server_env": args.server_env,
            "command": " ".join([Path(sys.executable).name, "-m", "bench.webhook_campaign", *sys.argv[1:]]),
        },
        "skipped": {},
        "code": code_state(args.pointcast_rev),
    }
    busy0, total0 = machine_ticks()
    time.sleep(1.0)
    busy1, total1 = machine_ticks()
    report["background_busy"] = (busy1 - busy0) / max(1, total1 - total0)
    results: list[PhaseReport] = []
    interrupted = None
    try:
        with tempfile.TemporaryDirectory(prefix="pc-webhook-bench-") as tmp, ExitStack() as stack:
            workdir = Path(tmp)
            ca = BenchCA.create(workdir / "tls")
            receivers: dict[str, Receiver] = {}
            if {"fast", "filter"} & set(phases):
                assert nginx is not None
                fast_receiver = nginx_receiver(
                    nginx, ca, ACCOUNT_ID, workdir / "nginx", log_batch_ids=args.log_batch_ids
                )
                receivers["fast"] = receivers["filter"] = stack.enter_context(fast_receiver)
            if "slow" in phases:
                receivers["slow"] = stack.enter_context(slow_receiver(ca, ACCOUNT_ID, args.slow_delay, workdir))
            for backend in backends:
                if backend == "postgres":
                    reason = postgres_unreachable(args.pg_url)
                    if reason:
                        print(f"skipping postgres: {reason}", file=sys.stderr)
                        report["skipped"][backend] = reason
                        continue
                for phase in phases:
                    fast = phase in ("fast", "filter")
                    audience = args.endpoints if fast else args.slow_endpoints
                    concurrency = args.concurrency if fast else args.slow_concurrency
                    delay = None if fast else args.slow_delay
                    print(f"running {backend}/{phase} ...", file=sys.stderr)
                    with ExitStack() as store:
                        database_url = None
                        if backend == "postgres":
                            _, database_url = store.enter_context(postgres_schema(args.pg_url))
                        results.append(
                            run_phase(
                                backend,
                                phase,
                                receivers[phase],
                                audience,
                                concurrency,
                                delay,
                                database_url,
                                args,
                                workdir / f"{backend}-{phase}",
                                ca,
                            )
                        )
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C / SIGTERM: the ExitStacks already cleaned up
        interrupted = f"interrupted ({type(exc).__name__}); the phases that finished are reported"
        print(f"\n{interrupted}", file=sys.stderr)
    for result in results:
        if result.phase == "filter":
            plain = next((r for r in results if r.backend == result.backend and r.phase == "fast"), None)
            if plain is not None and plain.pointcast.seconds:
                result.ratio = result.pointcast.seconds / plain.pointcast.seconds
    report["elapsed_s"] = time.monotonic() - started
    report["phases"] = [asdict(r) for r in results]
    print_report(report, results)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    failed = [
        f"{r.backend}/{r.phase}"
        for r in results
        if not r.verification.get("ok") or r.pointcast.errors or (r.bare is not None and r.bare.errors)
    ]
    if failed or interrupted:
        print(f"\nFAILED: {', '.join(failed) or interrupted} (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
