"""Segment evaluation: the store's SQL selection against the Python predicate over every endpoint.

Planning reads a run's audience a chunk at a time. Since the SQL selection (pointcast.segments.query) it reads
only the rows the segment may hold, with the segment's Python predicate asked about the rows SQL cannot decide;
before, it read every endpoint of the app, parsed each definition and asked the predicate. This measures both ways
over the same store in one run, for segments of different shapes, each against a bare read of the app's rows:

    .venv/bin/python -m bench.segments --endpoints 200000 [--backends sqlite,postgres] [--pg-url URL]

For each segment it prints the endpoints matched (the two ways must agree, or the tool exits 1), the seconds and
endpoints/s of each way, and the ratios: SQL against Python (how many times faster), and each against the bare read
(``SELECT id, doc`` of every endpoint in the same chunks, nothing else done). The endpoints are the webhook
benchmark's (bench/webhook_campaign.py), written with pointcast's own ``endpoints.service.write``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa

from bench.webhook_campaign import load_endpoints, store_url
from pointcast.apps import service as apps
from pointcast.engine import repository as repo
from pointcast.engine.plan import CHUNK
from pointcast.segments.evaluate import EndpointView, compile_segment
from pointcast.segments.query import Selection, select_segment
from pointcast.store import Database
from pointcast.store import models as m

SEGMENTS: dict[str, dict[str, Any]] = {
    "everyone (Audience = all)": {"Attributes": {"Audience": {"Values": ["all"]}}},
    "1 in 997 (a user attribute)": {"UserAttributes": {"FirstName": {"Values": ["Name7"]}}},
    "a plan in one country": {
        "Attributes": {"Plan": {"Values": ["free"]}},
        "Location": {"Country": {"Values": ["US"]}},
    },
    "not a plan, by platform": {
        "Attributes": {"Plan": {"AttributeType": "EXCLUSIVE", "Values": ["pro"]}},
        "Demographic": {"Platform": {"Values": ["ANDROID"]}},
    },
    "GPS 100 km (SQL: latitude band)": {
        "Location": {"GPSPoint": {"Coordinates": {"Latitude": 47.6, "Longitude": -122.3}, "RangeInKilometers": 100}}
    },
}


@dataclass
class Timing:
    seconds: float
    matched: int
    asked: int = 0


def chunks(db: Database, query: Callable[[str | None], Any]) -> Iterator[Sequence[Any]]:
    """Each chunk of rows ``query(after)`` reads, in id order, as planning reads them."""
    after: str | None = None
    while True:
        with db.read() as conn:
            rows = conn.execute(query(after)).all()
        if not rows:
            return
        yield rows
        if len(rows) < CHUNK:
            return
        after = rows[-1].id


def bare_read(db: Database, app_id: str) -> Timing:
    e = m.endpoints
    started, count = time.perf_counter(), 0

    def query(after: str | None) -> Any:
        q = sa.select(e.c.id, e.c.doc).where(e.c.app_id == app_id)
        return (q.where(e.c.id > after) if after else q).order_by(e.c.id).limit(CHUNK)

    for rows in chunks(db, query):
        count += len(rows)
    return Timing(time.perf_counter() - started, count)


def python_way(db: Database, app_id: str, segment: dict[str, Any], now: datetime) -> Timing:
    """Every endpoint read, parsed and asked the predicate (planning before the SQL selection)."""
    e = m.endpoints
    predicate = compile_segment(segment, now=now, load_segment=_no_sources)
    started, matched = time.perf_counter(), 0

    def query(after: str | None) -> Any:
        q = sa.select(e.c.id, e.c.doc, e.c.last_active).where(e.c.app_id == app_id)
        return (q.where(e.c.id > after) if after else q).order_by(e.c.id).limit(CHUNK)

    for rows in chunks(db, query):
        for row in rows:
            last = datetime.fromisoformat(row.last_active) if row.last_active else None
            if predicate(EndpointView(row.id, orjson.loads(row.doc), last)):
                matched += 1
    return Timing(time.perf_counter() - started, matched)


def sql_way(db: Database, app_id: str, segment: dict[str, Any], now: datetime) -> Timing:
    """The rows the selection may hold, read as planning reads them; the predicate asked about the uncertain."""
    predicate = compile_segment(segment, now=now, load_segment=_no_sources)
    started, matched, asked = time.perf_counter(), 0, 0
    with db.read() as conn:
        selection: Selection = select_segment(
            segment, dialect=conn.dialect.name, now=now, load_segment=_no_sources, imported=_no_imports
        )
    sure = sa.true() if selection.exact else selection.sure
    after: str | None = None
    while True:
        with db.read() as conn:
            rows = repo.endpoints_after(conn, app_id, after, CHUNK, where=selection.maybe, sure=sure)
        for endpoint_id, doc, last_active, _channel, _status, _opt_out, _zone, sure_of_it in rows:  # plain tuples
            if sure_of_it:
                matched += 1
                continue
            asked += 1
            last = datetime.fromisoformat(last_active) if last_active else None
            if predicate(EndpointView(endpoint_id, orjson.loads(doc), last)):
                matched += 1
        if len(rows) < CHUNK:
            break
        after = rows[-1][0]
    return Timing(time.perf_counter() - started, matched, asked)


def _no_sources(segment_id: str, version: int | None) -> dict[str, Any]:
    raise AssertionError("the benchmark's segments have no source segments")


def _no_imports(segment: dict[str, Any]) -> Any:
    raise AssertionError("the benchmark's segments are not imported")


def run_backend(backend: str, count: int, pg_url: str | None) -> bool:
    schema = None
    with tempfile.TemporaryDirectory(prefix="pc-bench-segments-") as tmp:
        if backend == "postgres":
            assert pg_url, "--pg-url is needed for postgres"
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(pg_url, autocommit=True) as pg:
                pg.execute(f'CREATE SCHEMA "{schema}"')
            database_url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
        else:
            database_url = None
        url = store_url(Path(tmp), database_url)
        db = Database(url)
        try:
            db.migrate()
            with db.write() as conn:
                app_id = apps.create(conn, {"Name": "bench"}, "us-east-1", "000000000000")["Id"]
            print(f"{backend}: loading {count:,} endpoints ...", flush=True)
            loaded = load_endpoints(url, app_id, count, time.monotonic() + 1800)
            print(f"{backend}: loaded in {loaded:.0f} s", flush=True)
            return report(backend, db, app_id)
        finally:
            db.dispose()
            if schema and pg_url:
                with psycopg.connect(pg_url, autocommit=True) as pg:
                    pg.execute(f'DROP SCHEMA "{schema}" CASCADE')


def report(backend: str, db: Database, app_id: str) -> bool:
    now = datetime.now(UTC)
    bare_read(db, app_id)  # warm the page cache
    bare = bare_read(db, app_id)
    rate = bare.matched / bare.seconds
    print(f"{backend}: bare read of {bare.matched:,} endpoints: {bare.seconds:.2f} s ({rate:,.0f}/s)")
    header = (
        f"{'segment':<34} {'matched':>9} {'asked':>9} {'python s':>9} {'sql s':>7} "
        f"{'sql/python speed':>16} {'python/bare':>11} {'sql/bare':>8}"
    )
    print(header)
    ok = True
    for name, dimensions in SEGMENTS.items():
        segment = {"Id": "bench", "Dimensions": dimensions}
        py = python_way(db, app_id, segment, now)
        sql = sql_way(db, app_id, segment, now)
        if py.matched != sql.matched:
            ok = False
        print(
            f"{name:<34} {sql.matched:>9,} {sql.asked:>9,} {py.seconds:>9.2f} {sql.seconds:>7.2f} "
            f"{py.seconds / sql.seconds:>15.1f}x {bare.seconds / py.seconds:>11.2f} {bare.seconds / sql.seconds:>8.2f}"
            + ("" if py.matched == sql.matched else f"  MISMATCH: python matched {py.matched:,}")
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=200_000)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("(ratios: x/bare = the bare read's seconds / x's seconds, 1.0 = as fast as reading every row)")
    ok = True
    for backend in args.backends.split(","):
        ok = run_backend(backend, args.endpoints, args.pg_url if backend == "postgres" else None) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
