"""The least a campaign run must do, each part alone and the cheapest way pointcast's store allows, against the bare
client: how close to the bare client any engine of pointcast's design could come on this machine.

The webhook benchmark's fast phase (bench/webhook_campaign.py) asks pointcast for 0.8 of a bare aiohttp client that
only POSTs pre-built payloads. A run must also read its segment from the store, write its plan (the batches) before
sending, and record an outcome for every endpoint. This times those parts one after the other, each with nothing
else running, over the webhook benchmark's endpoints, in one process:

1. ``read``: the segment's rows as planning reads them (``repo.endpoints_after`` with the benchmark segment's SQL
   selection, chunks of 5,000, the driver's plain tuples), and nothing done with them;
2. ``plan``: the rows split into batches of 50, each batch's payload built (``execute.build_payload``), and the
   ``batches`` rows written (``repo.insert_batches``, a transaction per chunk);
3. ``post``: the bare client (``bench.webhook_campaign.post_all`` on uvloop, 32 in flight) posting those payloads to
   nginx over TLS; nginx's CPU is read from ``/proc``;
4. ``record``: every batch marked done (``repo.finish_batches``) and its endpoints' outcomes written the way the
   server writes them (one outcome set per batch, ``repo.insert_outcome_sets``), a transaction per 32 batches.

The floor on this machine's cores is the parts in perfect parallel with no hand-offs at all:
``max(post's wall time, all CPU (nginx's included) / cores)``, and the best ratio to the bare client is the post's
wall time over that floor.

    .venv/bin/python -m bench.fast_floor [--endpoints 400000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from bench.http_clients import self_cpu
from bench.ingest import process_cpu
from bench.receivers import BenchCA, nginx_or_say, nginx_receiver
from bench.webhook_campaign import ACCOUNT_ID, REGION, load_endpoints, post_all, store_url, tree_cpu
from pointcast.apps import service as apps
from pointcast.aws.wire import iso_ms, new_id
from pointcast.engine import repository as repo
from pointcast.engine.execute import build_payload
from pointcast.engine.hooks import endpoints_json
from pointcast.engine.plan import BATCH_SIZE, CHUNK, RunSpec
from pointcast.engine.treatments import treatments_of
from pointcast.segments.query import select_segment
from pointcast.store import Database

SEGMENT = {"Dimensions": {"Attributes": {"Audience": {"AttributeType": "INCLUSIVE", "Values": ["all"]}}}}
Payload = tuple[str, bytes, int, list[str]]  # batch id, body, endpoints, their ids
GROUP_COMMIT = 32  # batches recorded per transaction: the server's delivery concurrency in the benchmark


def timed(work: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """(result of ``work(*args)``, wall s, CPU s of this process)."""
    cpu, wall = self_cpu(), time.perf_counter()
    result = work(*args)
    return result, time.perf_counter() - wall, self_cpu() - cpu


def read_chunks(db: Database, app_id: str) -> Iterator[Sequence[Any]]:
    """The segment's rows as planning reads them, a chunk at a time."""
    with db.read() as conn:
        selection = select_segment(
            SEGMENT, dialect=conn.dialect.name, now=datetime.now(UTC), load_segment=_none, imported=_none
        )
    sure = sa.true() if selection.exact else selection.sure
    after: str | None = None
    while True:
        with db.read() as conn:
            chunk = repo.endpoints_after(conn, app_id, after, CHUNK, where=selection.maybe, sure=sure)
        yield chunk
        if len(chunk) < CHUNK:
            return
        after = chunk[-1][0]


def _ids_json(ids: list[str]) -> str:
    return orjson.dumps(ids).decode()


def _none(*_: Any) -> Any:
    raise AssertionError("the benchmark's segment has no source segments")


def plan(db: Database, rows: Sequence[Any], spec: RunSpec, payloads: list[Payload]) -> None:
    """A chunk's batches of 50 with their payloads (added to ``payloads``), and their rows written in one
    transaction."""
    treatment = spec.treatments[0]
    activity = spec.activity_ids["0"]
    scheduled = iso_ms(spec.scheduled)
    for start in range(0, len(rows), CHUNK):
        written = []
        for at in range(start, min(len(rows), start + CHUNK), BATCH_SIZE):
            part = rows[at : at + BATCH_SIZE]
            ids = [row[0] for row in part]
            docs = {row[0]: row[1] for row in part}
            batch_id = new_id()
            body = build_payload(spec, treatment, activity, scheduled, {}, ids, endpoints=endpoints_json(docs, ids))
            payloads.append((batch_id, body, len(ids), ids))
            written.append(
                {
                    "id": batch_id,
                    "run_id": spec.run_id,
                    "activity_id": activity,
                    "treatment_id": "0",
                    "endpoint_ids": _ids_json(ids),
                    "not_before": scheduled,
                    "state": "PENDING",
                    "attempts": 0,
                }
            )
        with db.write() as conn:
            repo.insert_batches(conn, written)


def record(db: Database, payloads: list[Payload], spec: RunSpec) -> None:
    activity = spec.activity_ids["0"]
    for start in range(0, len(payloads), GROUP_COMMIT):
        group = payloads[start : start + GROUP_COMMIT]
        at = iso_ms(datetime.now(UTC))
        with db.write() as conn:
            repo.finish_batches(conn, [(batch_id, "DONE", 1, None) for batch_id, *_ in group])
            repo.insert_outcome_sets(
                conn,
                [
                    (activity, spec.run_id, "SENT", None, batch_id, at, _ids_json(ids))
                    for batch_id, _b, _n, ids in group
                ],
            )


def post(url: str, payloads: list[Payload], ca: Path) -> tuple[float, float]:
    """The bare client: (wall s, CPU s)."""
    import uvloop

    bodies = [(batch_id, body, count) for batch_id, body, count, _ids in payloads]
    cpu = self_cpu()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        start, end, ok, errors = runner.run(post_all(url, bodies, 32, ca))
    if errors or ok != sum(count for _, _, count in bodies):
        raise SystemExit(f"the bare client failed: {errors[:3]}")
    return end - start, self_cpu() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    binary = nginx_or_say()
    if binary is None:
        return 2
    cores = os.cpu_count() or 1
    gc.disable()  # a floor: no collector passes over the payloads held for the post (nothing here makes cycles)
    print(f"machine: {cores} CPUs, {platform.machine()}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="pointcast-floor-") as tmp:
        url = store_url(Path(tmp) / "data", None)
        (Path(tmp) / "data").mkdir()
        db = Database(url)
        db.migrate()
        with db.write() as conn:
            app_id = apps.create(conn, {"Name": "floor"}, REGION, ACCOUNT_ID)["Id"]
        print(f"loading {args.endpoints:,} endpoints ...", flush=True)
        load_endpoints(url, app_id, args.endpoints, time.monotonic() + 1800)
        campaign = {"Id": "c" * 32, "Arn": "arn", "MessageConfiguration": {"CustomMessage": {"Data": "hello"}}}
        campaign["CustomDeliveryConfiguration"] = {"DeliveryUri": "https://127.0.0.1/hook", "EndpointTypes": ["CUSTOM"]}
        holdout, treatments = treatments_of(campaign)
        ca = BenchCA.create(Path(tmp) / "ca")
        with nginx_receiver(binary, ca, ACCOUNT_ID, Path(tmp) / "nginx") as receiver:
            print(f"{'round':>5} {'part':>7} {'wall s':>7} {'CPU s':>7}")
            for round_ in range(1, args.rounds + 1):
                run_id = new_id()
                spec = RunSpec(app_id, campaign["Id"], run_id, datetime.now(UTC), campaign, holdout, treatments,
                               {"0": new_id()}, None, {})  # fmt: skip
                gc.collect()
                payloads: list[Payload] = []
                read_wall = read_cpu = plan_wall = plan_cpu = 0.0
                chunks = read_chunks(db, app_id)
                while True:
                    rows, wall, cpu = timed(next, chunks, None)
                    read_wall, read_cpu = read_wall + wall, read_cpu + cpu
                    if rows is None:
                        break
                    _, wall, cpu = timed(plan, db, rows, spec, payloads)
                    plan_wall, plan_cpu = plan_wall + wall, plan_cpu + cpu
                planned = sum(count for _, _, count, _ in payloads)
                if planned != args.endpoints:
                    print(f"the segment read {planned:,} of {args.endpoints:,} endpoints", file=sys.stderr)
                    return 1
                procs = process_cpu()
                post_wall, post_cpu = post(receiver.url, payloads, ca.ca_path)
                nginx_cpu = tree_cpu(procs, process_cpu(), receiver.pid)
                _, record_wall, record_cpu = timed(record, db, payloads, spec)
                for part, wall, cpu in (
                    ("read", read_wall, read_cpu),
                    ("plan", plan_wall, plan_cpu),
                    ("post", post_wall, post_cpu),
                    ("nginx", post_wall, nginx_cpu),
                    ("record", record_wall, record_cpu),
                ):
                    print(f"{round_:>5} {part:>7} {wall:>7.2f} {cpu:>7.2f}")
                total = read_cpu + plan_cpu + post_cpu + nginx_cpu + record_cpu
                floor = max(post_wall, total / cores)
                print(
                    f"round {round_}: all CPU {total:.2f} s; floor on {cores} cores {floor:.2f} s against the bare "
                    f"client's {post_wall:.2f} s: the best ratio an engine of this design could reach is "
                    f"{post_wall / floor:.2f}",
                    flush=True,
                )
                del payloads
                gc.collect()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
