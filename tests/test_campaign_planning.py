"""Planning is resumable: a run stopped between chunks goes on from its ``plan_state`` (the last endpoint planned,
the batches not yet full, the time zones seen); what was planned keeps its batch ids, no endpoint is planned twice,
and the run's activities stay open until the plan is whole, even when every batch planned so far has been sent.

The API runs in a server process with its campaign runner off; the test plans the run itself in this process,
against the same store, so it can stop planning after exactly one chunk.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from pointcast.engine import repository as repo
from pointcast.engine.execute import ExecuteDeps, fail_batch
from pointcast.engine.hooks import endpoints_json
from pointcast.engine.plan import BATCH_SIZE, CHUNK, plan_run
from pointcast.engine.progress import finish_activity
from pointcast.engine.runner import start_due_runs
from pointcast.settings import Settings
from pointcast.store import Database
from pointcast.store import models as m
from tests.conftest import running_server
from tests.support.campaigns import Receiver, audience_segment, endpoint, load, webhook_campaign
from tests.support.server import Server
from tests.support.tls import TestCA

ENDPOINTS = 2 * CHUNK + 345
IDS = [f"ep-{i:05d}" for i in range(ENDPOINTS)]
INACTIVE = set(IDS[::7])  # not a multiple of 50 per chunk: a part-filled batch is carried over each chunk
ACTIVE = [i for i in IDS if i not in INACTIVE]


@pytest.fixture
def planned(
    backend: str, ca_bundle: Path, tmp_path: Path, test_ca: TestCA
) -> Iterator[tuple[Server, Database, str, datetime]]:
    """An app of 10,345 endpoints (every 7th inactive), a campaign for all of them, and its run, not yet planned."""
    with (
        running_server(backend, tmp_path / "server", ca_bundle, POINTCAST_ENGINE_ENABLED="false") as server,
        Receiver(test_ca) as rx,
    ):
        pinpoint = server.pinpoint()
        app_id = pinpoint.create_app(CreateApplicationRequest={"Name": "planning"})["ApplicationResponse"]["Id"]
        items = [endpoint(i, EndpointStatus="INACTIVE") if i in INACTIVE else endpoint(i) for i in IDS]
        load(pinpoint, app_id, items, threads=4)
        webhook_campaign(pinpoint, app_id, audience_segment(pinpoint, app_id), rx.url, {"StartTime": "IMMEDIATE"})
        settings = Settings(data_dir=server.data_dir, database_url=server.env.get("POINTCAST_DATABASE_URL"))
        db = Database(settings.resolved_database_url())
        try:
            now = datetime.now(UTC)
            with db.write() as conn:
                [run_id] = start_due_runs(conn, now)
            yield server, db, run_id, now
        finally:
            db.dispose()


def batches(db: Database, run_id: str) -> list[Any]:
    with db.read() as conn:
        b = m.batches
        return list(conn.execute(sa.select(b).where(b.c.run_id == run_id).order_by(b.c.pk)))


def skipped(db: Database, run_id: str) -> Counter[str]:
    with db.read() as conn:
        o = m.outcomes
        rows = conn.execute(sa.select(o.c.endpoint_id).where(o.c.run_id == run_id, o.c.status == "SKIPPED"))
        return Counter(row.endpoint_id for row in rows)


def stored_docs(db: Database, ids: list[str]) -> dict[str, str]:
    with db.read() as conn:
        e = m.endpoints
        return dict(conn.execute(sa.select(e.c.id, e.c.doc).where(e.c.id.in_(ids))).all())  # type: ignore[arg-type]


def send(db: Database, rows: list[Any], now: datetime) -> None:
    """What delivering and recording these batches writes (their outcomes, the batch DONE, the activity check)."""
    with db.write() as conn:
        for row in rows:
            assert repo.finish_batches(conn, [(row.id, "DONE", 1, None)]) == {row.id}
            ids = orjson.loads(row.endpoint_ids)
            repo.insert_outcomes(conn, [(row.activity_id, i, row.run_id, "SENT", None, row.id, "t") for i in ids])
            finish_activity(conn, row.activity_id, now)


def activity(db: Database, run_id: str) -> dict[str, Any]:
    with db.read() as conn:
        [row] = repo.activities_of_run(conn, run_id)
        return dict(row.doc)


def test_a_stopped_plan_goes_on_from_where_it_got_to(planned) -> None:
    _, db, run_id, now = planned
    stop = threading.Event()
    stop.set()  # stop after the chunk under way
    handed: list[Any] = []
    assert plan_run(db, run_id, now, planned=handed.extend, stop=stop) is False

    first = batches(db, run_id)
    # Each committed batch goes to delivery with the definitions planning read: no second read of the store.
    assert [(item.batch.id, item.ids) for item in handed] == [(b.id, orjson.loads(b.endpoint_ids)) for b in first]
    # ... already joined as the payload's Endpoints, as they are stored.
    assert all(item.docs == {} for item in handed)
    assert all(item.endpoints == endpoints_json(stored_docs(db, item.ids), item.ids) for item in handed)
    first_chunk = IDS[:CHUNK]
    active_first = [i for i in first_chunk if i not in INACTIVE]
    assert len(first) == len(active_first) // BATCH_SIZE  # only full batches; the rest waits in the plan state
    with db.read() as conn:
        run = repo.get_run(conn, run_id)
    assert run.state == "PLANNING"
    state = orjson.loads(run.plan_state)
    assert state["after"] == first_chunk[-1]
    [[_, _, carried]] = state["groups"]
    assert carried == active_first[len(first) * BATCH_SIZE :]
    assert skipped(db, run_id) == Counter(i for i in first_chunk if i in INACTIVE)
    assert activity(db, run_id)["State"] == "RUNNING"  # sending starts while the rest is planned

    # Every batch planned so far is sent and recorded: the activity must stay open, more is being planned.
    send(db, first, now)
    assert activity(db, run_id)["State"] == "RUNNING"

    handed.clear()
    assert plan_run(db, run_id, now, planned=handed.extend) is True
    every = batches(db, run_id)
    # The batch that began before the stop has definitions this planning did not read: delivery reads it.
    assert [item.batch.id for item in handed] == [b.id for b in every[len(first) + 1 :]]
    assert [b.id for b in every[: len(first)]] == [b.id for b in first]  # planned once, under the same ids
    planned_ids = [i for b in every for i in orjson.loads(b.endpoint_ids)]
    assert planned_ids == ACTIVE  # each active endpoint once, in id order
    assert all(len(orjson.loads(b.endpoint_ids)) == BATCH_SIZE for b in every[:-1])
    assert skipped(db, run_id) == Counter(INACTIVE)
    with db.read() as conn:
        run = repo.get_run(conn, run_id)
    # The planning cursor is gone; the application settings the run keeps stay (as the app was created: empty).
    assert (run.state, orjson.loads(run.plan_state)) == (
        "EXECUTING",
        {"settings": {"CampaignHook": {}, "QuietTime": {}, "Limits": {}}},
    )
    doc = activity(db, run_id)
    assert (doc["State"], doc["TotalEndpointCount"]) == ("RUNNING", len(ACTIVE))

    send(db, every[len(first) :], now)
    doc = activity(db, run_id)
    assert (doc["State"], doc["Result"], doc["SuccessfulEndpointCount"]) == ("COMPLETED", "SUCCESS", len(ACTIVE))


def test_planning_a_deleted_run_stops(planned) -> None:
    server, db, run_id, now = planned
    stop = threading.Event()
    stop.set()
    assert plan_run(db, run_id, now, stop=stop) is False
    with db.read() as conn:
        run = repo.get_run(conn, run_id)
    server.pinpoint().delete_campaign(ApplicationId=run.app_id, CampaignId=run.campaign_id)
    assert plan_run(db, run_id, now) is True
    assert batches(db, run_id) == []


def test_two_planners_of_one_run_never_plan_the_same_endpoints(planned) -> None:
    """A planner whose run another planner moved on meanwhile writes nothing more (its plan_state is stale)."""
    _, db, run_id, now = planned
    chunks = 0

    def meanwhile(items: list[Any]) -> None:  # after the first planner's first chunk commits
        nonlocal chunks
        chunks += 1
        if chunks == 1:
            assert plan_run(db, run_id, now, max_chunks=1) is False  # a second planner takes the next chunk

    assert plan_run(db, run_id, now, planned=meanwhile) is True  # the first one finds its state stale and stops
    assert chunks == 1
    planned_ids = [i for b in batches(db, run_id) for i in orjson.loads(b.endpoint_ids)]
    assert len(planned_ids) == len(set(planned_ids))
    active = [i for i in IDS[: 2 * CHUNK] if i not in INACTIVE]
    assert planned_ids == active[: len(active) // BATCH_SIZE * BATCH_SIZE]
    assert plan_run(db, run_id, now) is True  # the rest, from where the second planner got to
    planned_ids = [i for b in batches(db, run_id) for i in orjson.loads(b.endpoint_ids)]
    assert planned_ids == ACTIVE


def test_giving_up_on_a_batch_fails_each_of_its_endpoints_once(planned) -> None:
    """fail_batch (a batch that kept failing inside pointcast): every endpoint of the batch ends FAILED with the
    reason, the batch FAILED; a second call changes nothing."""
    _, db, run_id, now = planned
    assert plan_run(db, run_id, now) is True
    first = batches(db, run_id)[0]

    async def read(work: Any) -> Any:
        with db.read() as conn:
            return work(conn)

    async def write(work: Any) -> Any:
        with db.write() as conn:
            return work(conn)

    deps = ExecuteDeps(read, write, None, None, lambda: now)  # type: ignore[arg-type]
    asyncio.run(fail_batch(deps, first.id, "INTERNAL_ERROR: boom"))
    asyncio.run(fail_batch(deps, first.id, "INTERNAL_ERROR: again"))
    with db.read() as conn:
        o = m.outcomes
        rows = conn.execute(sa.select(o.c.endpoint_id, o.c.status, o.c.reason).where(o.c.batch_id == first.id)).all()
        state = conn.scalar(sa.select(m.batches.c.state).where(m.batches.c.id == first.id))
    assert sorted(rows) == [(i, "FAILED", "INTERNAL_ERROR: boom") for i in orjson.loads(first.endpoint_ids)]
    assert state == "FAILED"


@pytest.mark.timeout(30)
def test_the_planning_process_sends_chunks_in_order_and_stops_when_the_server_lets_go() -> None:
    """The child's sender thread: what planning hands it arrives in order; once the reading end is gone, ``put``
    raises (which ends planning) and closing does not wait for ever."""
    import multiprocessing

    from pointcast.engine.plan import BatchRow, Prepared
    from pointcast.engine.planner import _Sender, receive_chunk

    def chunk(n: int) -> list[Prepared]:
        def batch(k: int) -> Prepared:
            row = BatchRow(f"batch-{n}-{k}", "run", "activity", str(k), "2026-01-01T00:00:00.000Z", 0, "app")
            return Prepared(row, [f"ep-{n}-{k}-{i}" for i in range(50)], {}, b"%d" % k * (40_000 + n))

        return [batch(k) for k in range(3)]

    receive, send = multiprocessing.Pipe(duplex=False)
    sender = _Sender(send)
    sent = [chunk(n) for n in range(5)]  # larger than a default pipe: the writes block
    reader = threading.Thread(target=lambda: got.extend(receive_chunk(receive) for _ in sent))
    got: list[Any] = []
    reader.start()
    for items in sent:
        sender.put(items)
    reader.join(timeout=10)
    assert got == sent
    receive.close()
    with pytest.raises(BrokenPipeError):
        for _ in range(100):  # the first puts may still go in the pipe's buffer
            sender.put(chunk(9))
    with pytest.raises(BrokenPipeError):
        sender.close()
