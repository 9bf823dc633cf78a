"""Function runtime benchmark: invocations/s through the worker pool, against a bare echo child over a pipe.

The event is a custom-channel payload with 50 realistic endpoint definitions (~690 bytes each, ~36 KB in all).

* ``pool:pipe`` and ``pool:api``: ``WorkerPool.invoke`` on a Python function (runtime python3.12, AWS's
  awslambdaric in the worker with pointcast's marshaller), over the pipe transport (the default) or the Lambda
  Runtime API over HTTP on 127.0.0.1 (``--transports``). Two handlers: ``count`` returns ``{"ok": 50}`` (the event is
  decoded, the answer is tiny) and ``echo`` returns ``event["Endpoints"]`` (what a FILTER hook that keeps every
  endpoint does: decode ~36 KB, encode ~35 KB).
* ``node:ric`` and ``node:bootstrap`` (``--node``): the same two handlers in JavaScript (runtime nodejs20.x) through
  the pool, under AWS's aws-lambda-ric (``pointcast functions install-node-ric``) and under pointcast's bootstrap.js;
  Node.js workers always use the Runtime API over HTTP.
* ``bare``: the floor of the same isolation. One child process per in-flight request, started the same way, that
  reads a length-prefixed message from its stdin pipe and writes it back unchanged; the parent is asyncio too.

Both sides keep the same number of requests in flight (one loop per slot), after a warm-up, for a fixed time per
row. It prints calls/s, the parent's CPU per call (the pool's cost in the server process), the children's CPU
per call, latency percentiles, and the ratio pool/bare for each handler and concurrency (goal: >= 0.7).

    .venv/bin/python -m bench.functions --seconds 5 --concurrency 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.ingest import machine, start_profiler, stop_profiler
from pointcast.functions.runtime import FunctionSpec, WorkerPool, node_ric

GOAL = 0.7
RUNTIME = os.environ.get("BENCH_RUNTIME", "python3.12")
HANDLERS = {
    "count": 'def handler(event, context):\n    return {"ok": len(event["Endpoints"])}\n',
    "echo": 'def handler(event, context):\n    return event["Endpoints"]\n',
}
NODE_HANDLERS = {
    "count": "exports.handler = async (event) => ({ ok: Object.keys(event.Endpoints).length });\n",
    "echo": "exports.handler = async (event) => event.Endpoints;\n",
}
# The same work as the runtime without its transport and bootstrap: the worker's marshaller (ric.FastMarshaller, or
# awslambdaric's own LambdaMarshaller with --marshaller awslambdaric) decodes the event, the handler runs, the
# marshaller encodes its answer; framed over the pipe like ECHO_CHILD.
JSON_CHILD = """
import sys
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller
from pointcast.functions.runtime.ric import FastMarshaller
namespace = {}
exec(sys.argv[1], namespace)
handler = namespace["handler"]
marshaller = FastMarshaller() if sys.argv[2] == "pointcast" else LambdaMarshaller()
read, write = sys.stdin.buffer.read, sys.stdout.buffer
while True:
    head = read(4)
    if len(head) < 4:
        break
    event = marshaller.unmarshal_request(read(int.from_bytes(head, "big")))
    body, _ = marshaller.marshal_response(handler(event, None))
    body = body.encode() if isinstance(body, str) else body
    write.write(len(body).to_bytes(4, "big") + body)
    write.flush()
"""
ECHO_CHILD = """
import sys
read, write = sys.stdin.buffer.read, sys.stdout.buffer
while True:
    head = read(4)
    if len(head) < 4:
        break
    write.write(head + read(int.from_bytes(head, "big")))
    write.flush()
"""
_CITIES = (("Seattle", "US", "WA", "98101", 47.6062, -122.3321), ("Berlin", "DE", "BE", "10115", 52.52, 13.405))


def endpoint(n: int) -> dict[str, Any]:
    """One endpoint definition as Pinpoint puts it in a custom channel's payload."""
    city, country, region, postal, lat, lon = _CITIES[n % 2]
    return {
        "ChannelType": "SMS",
        "Address": f"+1206555{n:04d}",
        "EndpointStatus": "ACTIVE",
        "OptOut": "NONE",
        "Location": {"City": city, "Country": country, "Region": region, "PostalCode": postal, "Latitude": lat,
                     "Longitude": lon},
        "Demographic": {"Make": "Google", "Model": "Pixel 8", "Platform": "android", "PlatformVersion": "14",
                        "Locale": "en_US", "Timezone": "America/Los_Angeles"},
        "EffectiveDate": "2026-03-01T12:00:00.000Z",
        "Attributes": {"Interests": ["running", "jazz"], "Plan": ["plus"]},
        "Metrics": {"Sessions": float(n % 40)},
        "User": {"UserId": f"user-{n:06d}", "UserAttributes": {"FirstName": [f"Ada{n}"], "LastName": ["Lovelace"]}},
        "CohortId": str(n % 100),
        "CreationDate": "2026-01-15T08:30:00.000Z",
    }  # fmt: skip


def make_event(count: int = 50) -> bytes:
    return json.dumps(
        {
            "Message": {},
            "Data": "bench",
            "ApplicationId": "0123456789abcdef0123456789abcdef",
            "CampaignId": "fedcba9876543210fedcba9876543210",
            "TreatmentId": "0",
            "ActivityId": "00112233445566778899aabbccddeeff",
            "ScheduledTime": "2026-03-01T12:00:00.000Z",
            "Endpoints": {f"ep-{n:06d}": endpoint(n) for n in range(count)},
        }
    ).encode()


@dataclass
class Row:
    target: str
    handler: str
    concurrency: int
    calls: int
    seconds: float
    per_s: float
    parent_cpu_us: float  # per call
    children_cpu_us: float  # per call (includes the children's start-up)
    p50_ms: float
    p99_ms: float


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def drive(call: Any, concurrency: int, seconds: float, warmup: int) -> tuple[int, float, float, list[float]]:
    """Run ``call`` from ``concurrency`` loops for ``seconds``; returns (calls, elapsed, parent CPU, latencies)."""
    for _ in range(warmup):
        await asyncio.gather(*(call(slot) for slot in range(concurrency)))
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def loop(slot: int) -> None:
        while (now := time.perf_counter()) < stop_at:
            await call(slot)
            latencies.append(time.perf_counter() - now)

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop(slot) for slot in range(concurrency)))
    return len(latencies), time.perf_counter() - started, time.process_time() - cpu, latencies


def make_row(target: str, handler: str, concurrency: int, result: tuple[int, float, float, list[float]], kids: float):
    calls, elapsed, cpu, latencies = result
    latencies.sort()
    return Row(
        target,
        handler,
        concurrency,
        calls,
        round(elapsed, 3),
        calls / elapsed,
        cpu / calls * 1e6,
        kids / calls * 1e6,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


def expected_answer(handler: str, event: bytes) -> Any:
    endpoints = json.loads(event)["Endpoints"]
    return {"ok": len(endpoints)} if handler == "count" else endpoints


class Checked:
    """Checks answers without charging the timed loop: decoded once, then compared byte for byte."""

    def __init__(self, expected: Any) -> None:
        self.expected = expected
        self.good: bytes | None = None

    def __call__(self, payload: bytes) -> None:
        if payload == self.good:
            return
        if json.loads(payload) != self.expected:
            raise RuntimeError(f"unexpected answer: {payload[:300]!r}")
        self.good = payload


async def run_bare(
    event: bytes, handler: str | None, concurrency: int, seconds: float, warmup: int, marshaller: str = "pointcast"
) -> Row:
    """``handler`` None: the echo child; else the JSON child running that handler."""
    kids = children_cpu()
    argv = ["-c", ECHO_CHILD] if handler is None else ["-c", JSON_CHILD, HANDLERS[handler], marshaller]
    env = {**os.environ, "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}"}  # as in a worker: the marshaller reads it
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, env=env
        )
        for _ in range(concurrency)
    ]
    message = len(event).to_bytes(4, "big") + event
    check = Checked(json.loads(event) if handler is None else expected_answer(handler, event))

    async def call(slot: int) -> None:
        proc = procs[slot]
        assert proc.stdin and proc.stdout
        proc.stdin.write(message)
        head = await proc.stdout.readexactly(4)
        check(await proc.stdout.readexactly(int.from_bytes(head, "big")))

    try:
        result = await drive(call, concurrency, seconds, warmup)
    finally:
        for proc in procs:
            assert proc.stdin
            proc.stdin.close()
            await proc.wait()
    target = "bare" if handler is None else "bare+json"
    return make_row(target, handler or "-", concurrency, result, children_cpu() - kids)


async def run_pool(
    event: bytes,
    handler: str,
    concurrency: int,
    seconds: float,
    warmup: int,
    work: Path,
    transport: str,
    node: str | None = None,  # "ric" or "bootstrap": the JavaScript handler under that Node.js client
) -> Row:
    code = work / f"code-{handler}-{node or 'python'}"
    code.mkdir(exist_ok=True)
    if node:
        (code / "index.js").write_text(NODE_HANDLERS[handler])
    else:
        (code / "index.py").write_text(HANDLERS[handler])
    spec = FunctionSpec(
        name=f"bench-{handler}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:bench-{handler}",
        revision="1",
        runtime="nodejs20.x" if node else RUNTIME,
        handler="index.handler",
        code_dir=code,
        environment={},
        timeout=30.0,
        memory_mb=256,
        concurrency=concurrency,
    )
    check = Checked(expected_answer(handler, event))
    kids = children_cpu()
    pool = WorkerPool(
        work_dir=work / "pool",
        base_env={"AWS_REGION": "us-east-1"},
        max_workers=concurrency,
        transport=transport,
        node_ric=node_ric.resolve(node_ric.AUTO) if node == "ric" else None,
    )
    await pool.start()

    async def call(slot: int) -> None:
        result = await pool.invoke(spec, event)
        if result.function_error:
            raise RuntimeError(f"the function failed: {result.payload[:300]!r} {result.logs[-500:]}")
        check(result.payload)

    try:
        result = await drive(call, concurrency, seconds, warmup)
    finally:
        await pool.stop()
    name = f"node:{node}" if node else "pool:pipe" if transport == "pipe" else "pool:api"
    return make_row(name, handler, concurrency, result, children_cpu() - kids)


COLUMNS = ("target", "handler", "in flight", "calls/s", "parent us/call", "children us/call", "p50 ms", "p99 ms")
RATIOS = ("/bare", "/bare+json")


def ratios(row: Row, rows: list[Row]) -> tuple[float | None, float | None]:
    """pool calls/s over the bare echo and over bare+json with the same handler, at the same concurrency."""
    if not row.target.startswith("pool"):
        return None, None
    found = {(r.target, r.handler): r.per_s for r in rows if r.concurrency == row.concurrency}
    echo, same = found.get(("bare", "-")), found.get(("bare+json", row.handler))
    return (row.per_s / echo if echo else None), (row.per_s / same if same else None)


def print_table(rows: list[Row]) -> None:
    print("  ".join(f"{name:>9}" for name in COLUMNS + RATIOS))
    for row in rows:
        cells = [row.target, row.handler, row.concurrency, f"{row.per_s:,.0f}", f"{row.parent_cpu_us:,.0f}",
                 f"{row.children_cpu_us:,.0f}", f"{row.p50_ms:.3f}", f"{row.p99_ms:.3f}"]  # fmt: skip
        cells += ["" if ratio is None else f"{ratio:.2f}" for ratio in ratios(row, rows)]
        print("  ".join(f"{cell:>9}" for cell in cells))


async def main_async(args: argparse.Namespace) -> list[Row]:
    event = make_event(args.endpoints)
    print(f"event: {args.endpoints} endpoints, {len(event):,} bytes; runtime {RUNTIME}", file=sys.stderr)
    rows: list[Row] = []
    profiler = None
    with tempfile.TemporaryDirectory(prefix="pointcast-bench-fn-") as tmp:
        for concurrency in args.concurrency:
            rows.append(await run_bare(event, None, concurrency, args.seconds, args.warmup))
            for handler in args.handlers:
                rows.append(await run_bare(event, handler, concurrency, args.seconds, args.warmup, args.marshaller))
                if args.profile and profiler is None:
                    profiler = start_profiler(os.getpid(), Path(args.profile), nonblocking=True)
                for transport in args.transports:
                    rows.append(
                        await run_pool(event, handler, concurrency, args.seconds, args.warmup, Path(tmp), transport)
                    )
                for node in ("ric", "bootstrap") if args.node else ():
                    rows.append(
                        await run_pool(
                            event, handler, concurrency, args.seconds, args.warmup, Path(tmp), "runtime-api", node
                        )
                    )
                print(f"  done: {handler} x{concurrency}", file=sys.stderr)
    if profiler is not None:
        stop_profiler(profiler)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per row (default 5)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up rounds per row (default 50)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--handlers", type=lambda s: s.split(","), default=list(HANDLERS))
    parser.add_argument("--transports", type=lambda s: s.split(","), default=["pipe", "runtime-api"])
    parser.add_argument(
        "--marshaller", choices=("pointcast", "awslambdaric"), default="pointcast", help="of the bare+json child"
    )
    parser.add_argument("--endpoints", type=int, default=50, help="endpoints in the event (default 50)")
    parser.add_argument("--profile", help="py-spy raw profile of this process during the pool rows")
    parser.add_argument("--json", help="write the rows here as JSON")
    parser.add_argument(
        "--node", action="store_true", help="also the Node.js rows (needs 'pointcast functions install-node-ric')"
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (as uvicorn does when installed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.node and node_ric.resolve(node_ric.AUTO) is None:
        print("--node: AWS's aws-lambda-ric is not installed (pointcast functions install-node-ric)", file=sys.stderr)
        return 2
    if args.uvloop:
        import uvloop

        rows = uvloop.run(main_async(args))
    else:
        rows = asyncio.run(main_async(args))
    m = machine()
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}")
    print_table(rows)
    pools = [ratios(row, rows) for row in rows if row.target == "pool:pipe"]
    to_echo = [echo for echo, _ in pools if echo is not None]
    to_same = [same for _, same in pools if same is not None]
    if to_echo:
        worst = min(to_echo)
        verdict = "met" if worst >= GOAL else "NOT met"
        print(f"\nworst pool:pipe/bare: {worst:.2f} (the issue's goal >= {GOAL}: {verdict})")
    if to_same:
        print(f"worst pool:pipe/bare+json: {min(to_same):.2f} (the same work without the transport and bootstrap)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": m, "rows": [asdict(row) for row in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
