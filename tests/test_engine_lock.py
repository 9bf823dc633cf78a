"""Several servers on one store (a cluster on PostgreSQL; on SQLite, one data directory): the campaign engine runs on
one of them at a time (engine/leader.py), so each batch is sent once, whichever server the campaign was written on;
when that server dies, another's engine takes the runs over."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import make_server
from tests.support.campaigns import (
    Receiver,
    audience_segment,
    endpoint,
    load,
    outcomes,
    slow,
    wait_for,
    wait_for_runs,
    webhook_campaign,
)
from tests.support.server import Server
from tests.support.tls import TestCA

ENDPOINTS = 3000
BATCHES = ENDPOINTS // 50
CONCURRENCY = 4
IDS = [f"ep-{i:05d}" for i in range(ENDPOINTS)]
FAST = {
    "POINTCAST_DELIVERY_CONCURRENCY": str(CONCURRENCY),
    "POINTCAST_SCHEDULER_INTERVAL": "0.2",
    "POINTCAST_DELIVERY_BACKOFF_BASE": "0.05",
    "POINTCAST_DELIVERY_BACKOFF_CAP": "0.2",
}


@pytest.fixture
def pair(backend: str, ca_bundle: Path, tmp_path: Path) -> Iterator[list[Server]]:
    """Two servers on one store: on PostgreSQL one schema and two data directories, on SQLite one data directory."""
    first, schema = make_server(backend, tmp_path / "a", ca_bundle, **FAST)
    second = Server(tmp_path / ("a" if backend == "sqlite" else "b"), dict(first.env))
    try:
        first.start()
        second.start()
        yield [first, second]
    finally:
        second.stop()
        first.stop()
        if schema:
            schema.drop()


def role(server: Server) -> str:
    return str(httpx.get(f"{server.url}/pointcast/health", timeout=5).json()["engine"]["Role"])


def engine_and_standby(servers: list[Server]) -> tuple[Server, Server]:
    roles = {role(server): server for server in servers}
    assert sorted(roles) == ["engine", "standby"], roles
    return roles["engine"], roles["standby"]


def campaign_on(server: Server, rx: Receiver) -> tuple[str, str]:
    pinpoint = server.pinpoint()
    app_id = pinpoint.create_app(CreateApplicationRequest={"Name": "cluster"})["ApplicationResponse"]["Id"]
    load(pinpoint, app_id, [endpoint(i) for i in IDS], threads=4)
    segment = audience_segment(pinpoint, app_id)
    return app_id, str(webhook_campaign(pinpoint, app_id, segment, rx.url, {"StartTime": "IMMEDIATE"})["Id"])


def test_one_engine_per_store_sends_each_batch_once(pair: list[Server], test_ca: TestCA) -> None:
    engine, standby = engine_and_standby(pair)
    with Receiver(test_ca, responder=slow(0.05)) as rx:
        app_id, campaign_id = campaign_on(standby, rx)  # written on the standby: run by the engine
        wait_for_runs(standby, standby.pinpoint(), app_id, campaign_id, 1, "COMPLETED", timeout=60)
        received = Counter(post.batch_id for post in rx.posts())
    assert len(received) == BATCHES and set(received.values()) == {1}
    assert rx.delivered() == Counter(IDS)
    found = outcomes(standby, app_id, campaign_id, page_size=ENDPOINTS)
    assert sorted(o["EndpointId"] for o in found) == IDS and {o["Status"] for o in found} == {"SENT"}
    assert engine_and_standby(pair) == (engine, standby)


def test_the_standby_takes_the_runs_over_when_the_engine_dies(pair: list[Server], test_ca: TestCA) -> None:
    engine, standby = engine_and_standby(pair)
    with Receiver(test_ca, responder=slow(0.2)) as rx:  # 60 batches, 4 at a time: 3 s of sending
        app_id, campaign_id = campaign_on(standby, rx)
        wait_for(lambda: rx.post_count() >= 8, 30, "the engine to be sending")
        engine.stop(signal.SIGKILL)
        wait_for(lambda: role(standby) == "engine", 10, "the standby to take the engine over")
        wait_for_runs(standby, standby.pinpoint(), app_id, campaign_id, 1, "COMPLETED", timeout=60)
        received = Counter(post.batch_id for post in rx.posts())
    assert len(received) == BATCHES
    assert sum(count > 1 for count in received.values()) <= 3 * CONCURRENCY  # only what was in flight at the kill
    assert set(rx.delivered()) == set(IDS)
    found = outcomes(standby, app_id, campaign_id, page_size=ENDPOINTS)
    assert sorted(o["EndpointId"] for o in found) == IDS and {o["Status"] for o in found} == {"SENT"}


def test_an_engine_that_loses_its_lock_stops_and_takes_it_again(
    backend: str, pair: list[Server], test_ca: TestCA
) -> None:
    """PostgreSQL ends the lock's session (a restart, a network cut, an operator): the engine stops, then, as a
    standby, takes the lock again (here nobody else did first) and runs campaigns as before."""
    if backend != "postgres":
        pytest.skip("the lock's session is PostgreSQL's")
    engine, _ = engine_and_standby(pair)
    schema = engine.env["POINTCAST_DATABASE_URL"].rsplit("search_path%3D", 1)[1]
    base = engine.env["POINTCAST_DATABASE_URL"].split("?", 1)[0]
    key = f"pointcast.engine:{schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objid = (hashtext(%s)::bigint & 4294967295)::oid",
            (key,),
        ).fetchall()
    assert ended == [(True,)]
    wait_for(lambda: "the store's engine lock was lost" in engine.log(), 15, "the engine to see its lock lost")
    wait_for(lambda: sorted(map(role, pair)) == ["engine", "standby"], 15, "an engine again")
    with Receiver(test_ca) as rx:
        app_id, campaign_id = campaign_on(pair[1], rx)
        wait_for_runs(pair[1], pair[1].pinpoint(), app_id, campaign_id, 1, "COMPLETED", timeout=60)
        received = Counter(post.batch_id for post in rx.posts())
    assert len(received) == BATCHES and set(received.values()) == {1}
