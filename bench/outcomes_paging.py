"""Paging through a large campaign's outcomes: does the last page cost what the first one does?

``GET /pointcast/v1/apps/{app}/campaigns/{campaign}/outcomes`` (and ``/events``, which pages the same way) reads a
page from where the previous page ended, on the outcomes' primary key (activity, endpoint). Until the sixth session
it used OFFSET over every outcome of the campaign sorted by run, activity and endpoint. This writes one campaign's
outcomes straight into a fresh store (one run, two treatments), then in one run of the tool:

    .venv/bin/python -m bench.outcomes_paging --outcomes 1000000 [--page-size 1000]

- pages through all of them with pointcast's own ``engine.views.outcomes`` (no HTTP), and prints the first, the
  median and the last page's time, and the last against the median (about 1 when a page costs the same at any
  depth);
- times the same last page read the old way (the OFFSET query), against pointcast's last page.

SQLite in a temporary directory; the loop is bounded by the number of pages.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.webhook_campaign import store_url
from pointcast.apps import service as apps
from pointcast.campaigns import service as campaigns
from pointcast.engine import repository as repo
from pointcast.engine import views
from pointcast.segments import service as segments
from pointcast.store import Database
from pointcast.store import models as m

REGION, ACCOUNT = "us-east-1", "000000000000"


def fill(db: Database, count: int) -> tuple[str, str]:
    """An app, a campaign with two treatments, one run, and ``count`` SENT outcomes split between them."""
    with db.write() as conn:
        app_id = apps.create(conn, {"Name": "paging"}, REGION, ACCOUNT)["Id"]
        segment = segments.create(conn, app_id, {"Name": "everyone", "Dimensions": {}}, REGION, ACCOUNT)
        request = {
            "Name": "paging",
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": "hello"}},
            "CustomDeliveryConfiguration": {"DeliveryUri": "https://127.0.0.1:9/hook", "EndpointTypes": ["CUSTOM"]},
            "AdditionalTreatments": [{"SizePercent": 50}],
        }
        campaign_id = campaigns.create(conn, app_id, request, REGION, ACCOUNT)["Id"]
        at = "2026-11-23T00:00:00.000Z"
        run = {"id": "run-1", "app_id": app_id, "campaign_id": campaign_id, "campaign_version": 1}
        repo.insert_run(conn, {**run, "scheduled_time": at, "state": "COMPLETED", "created": at})
        for treatment in ("0", "1"):
            doc = {"ApplicationId": app_id, "CampaignId": campaign_id, "Id": f"activity-{treatment}"}
            repo.insert_activity(conn, {**doc, "TreatmentId": treatment, "State": "COMPLETED"}, "run-1")
    for start in range(0, count, 100_000):
        rows = [
            ("activity-0" if n % 2 == 0 else "activity-1", f"ep-{n:08d}", "run-1", "SENT", None, f"b{n // 50}", at)
            for n in range(start, min(count, start + 100_000))
        ]
        with db.write() as conn:
            repo.insert_outcomes(conn, rows)
    return app_id, campaign_id


def offset_page(conn: sa.Connection, app_id: str, campaign_id: str, skip: int, size: int) -> int:
    """The old way: OFFSET over the campaign's outcomes sorted by run, activity and endpoint."""
    o, a, r = m.outcomes, m.activities, m.runs
    query = (
        sa.select(o.c.endpoint_id, o.c.activity_id, o.c.run_id, o.c.status, o.c.reason, o.c.batch_id, o.c.at)
        .select_from(o.join(a, a.c.id == o.c.activity_id).join(r, r.c.id == o.c.run_id))
        .where(r.c.app_id == app_id, r.c.campaign_id == campaign_id)
        .order_by(o.c.run_id, o.c.activity_id, o.c.endpoint_id)
        .offset(skip)
        .limit(size + 1)
    )
    return len(conn.execute(query).all())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outcomes", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args(argv)
    size = args.page_size
    with tempfile.TemporaryDirectory(prefix="pc-bench-paging-") as tmp:
        db = Database(store_url(Path(tmp), None))
        try:
            db.migrate()
            started = time.perf_counter()
            app_id, campaign_id = fill(db, args.outcomes)
            print(f"{args.outcomes:,} outcomes written in {time.perf_counter() - started:.1f} s", flush=True)
            times: list[float] = []
            seen, token = 0, None
            with db.read() as conn:
                for _ in range(args.outcomes // size + 2):
                    began = time.perf_counter()
                    page = views.outcomes(conn, app_id, campaign_id, token, str(size))
                    times.append(time.perf_counter() - began)
                    seen += len(page["Item"])
                    token = page.get("NextToken")
                    if not token:
                        break
                began = time.perf_counter()
                offset_page(conn, app_id, campaign_id, max(0, args.outcomes - size), size)
                old_last = time.perf_counter() - began
        finally:
            db.dispose()
    if seen != args.outcomes:
        print(f"paging returned {seen:,} outcomes, not {args.outcomes:,}", file=sys.stderr)
        return 1
    first, last, middle = times[0], times[-1], statistics.median(times)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, SQLite")
    print(f"{len(times):,} pages of {size:,} in {sum(times):.2f} s")
    print(f"  page time: first {first * 1e3:.1f} ms, median {middle * 1e3:.1f} ms, last {last * 1e3:.1f} ms")
    print(f"  last page / median page: {last / middle:.2f} (1: the same cost at any depth; the first is a cold read)")
    print(f"  the last page with OFFSET (the old way): {old_last * 1e3:.0f} ms, {old_last / last:.0f}x pointcast's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
