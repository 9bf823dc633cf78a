"""A run keeps the application settings it started with: the project-default CampaignHook, QuietTime and Limits as
they were when it was first planned act on every batch it sends, also on a local-time run's later zones and after a
restart (which forgets every spec the engine held). A run that an older version left without them reads the
current ones.

One private server per backend, on a manual clock; the hooks are hosted functions; the receiver is real TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from pointcast.engine import repository as repo
from pointcast.engine.plan import CHUNK, load_spec, plan_run
from pointcast.engine.runner import start_due_runs
from pointcast.settings import Settings
from pointcast.store import Database
from pointcast.store import models as m
from tests.conftest import make_server, running_server
from tests.support.campaigns import (
    Receiver,
    audience_segment,
    endpoint,
    load,
    outcomes,
    own,
    set_clock,
    utc,
    wait_for,
    wait_for_runs,
    webhook_campaign,
    write_store,
)
from tests.support.functions import deploy
from tests.support.server import Server

KEEP_ALL = "def handler(event, context):\n    return event['Endpoints']\n"
DROP_ALL = "def handler(event, context):\n    return {}\n"
EAST = [f"ep-k{i}" for i in range(3)]  # Asia/Kolkata: 09:00 there is 03:30 UTC
WEST = [f"ep-u{i}" for i in range(3)]  # UTC


@pytest.fixture
def clock_server(backend: str, ca_bundle: Path, tmp_path: Path) -> Iterator[Server]:
    server, schema = make_server(
        backend,
        tmp_path / "server",
        ca_bundle,
        POINTCAST_MANUAL_CLOCK="true",
        POINTCAST_SCHEDULER_INTERVAL="0.1",
        POINTCAST_DELIVERY_BACKOFF_BASE="0.05",
        POINTCAST_DELIVERY_BACKOFF_CAP="0.2",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if schema:
            schema.drop()


def invocations(server: Server, fn: str) -> int:
    return len(own(server, f"/pointcast/v1/functions/{fn}/invocations", limit=100)["Invocations"])


def settings(pinpoint: Any, app_id: str, **request: Any) -> None:
    pinpoint.update_application_settings(ApplicationId=app_id, WriteApplicationSettingsRequest=request)


# Each, set on the application while a run goes on, would change what the run's later batches get: hook B drops
# everyone, the MaximumDuration is past by 09:05. (Quiet time is judged while planning: see the test after.)
CHANGES = {
    "CampaignHook": {"LambdaFunctionName": "hook-b", "Mode": "FILTER"},
    "Limits": {"MaximumDuration": 60},
}


@pytest.mark.parametrize("changed", sorted(CHANGES))
def test_a_run_keeps_the_application_settings_it_started_with(clock_server, receiver: Receiver, changed: str) -> None:
    """A local-time run sends its Kolkata zone through the project's hook A; the project's ``changed`` setting then
    changes, and the server restarts: the UTC zone, sent later by the same run, is sent as the Kolkata zone was
    (through A, without a duration limit)."""
    pinpoint, lam = clock_server.pinpoint(), clock_server.lambda_()
    deploy(lam, "hook-a", KEEP_ALL)
    deploy(lam, "hook-b", DROP_ALL)
    app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "kept"})["ApplicationResponse"]["Id"])
    load(pinpoint, app_id, [endpoint(i, "Asia/Kolkata") for i in EAST] + [endpoint(i, "UTC") for i in WEST])
    segment = audience_segment(pinpoint, app_id)
    settings(pinpoint, app_id, CampaignHook={"LambdaFunctionName": "hook-a", "Mode": "FILTER"})
    set_clock(clock_server, "2030-01-01T00:00:00Z")
    schedule = {"StartTime": "2030-01-01T09:00:00Z", "IsLocalTime": True, "Timezone": "UTC", "Frequency": "ONCE"}
    campaign_id = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]

    set_clock(clock_server, "2030-01-01T03:31:00Z")
    wait_for(lambda: {i for p in receiver.posts() for i in p.endpoint_ids} == set(EAST), 30, "the Kolkata zone")
    settings(pinpoint, app_id, **{changed: CHANGES[changed]})
    clock_server.stop()
    clock_server.start()
    set_clock(clock_server, "2030-01-01T09:05:00Z")
    wait_for_runs(clock_server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)

    found = {o["EndpointId"]: (o["Status"], o["Reason"]) for o in outcomes(clock_server, app_id, campaign_id)}
    assert found == {i: ("SENT", None) for i in EAST + WEST}
    assert sorted(i for p in receiver.posts() for i in p.endpoint_ids) == sorted(EAST + WEST)
    wait_for(lambda: invocations(clock_server, "hook-a") == 2, 10, "hook A's two calls on record")
    assert invocations(clock_server, "hook-b") == 0

    if changed == "CampaignHook":  # the next run (a new campaign: this one was ONCE) takes B, which drops everyone
        later = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": "IMMEDIATE"})["Id"]
        wait_for_runs(clock_server, pinpoint, app_id, later, 1, "COMPLETED", timeout=60)
        assert {(o["Status"], o["Reason"]) for o in outcomes(clock_server, app_id, later)} == {
            ("SKIPPED", "FILTERED_BY_HOOK")
        }


def test_a_paced_run_keeps_its_hook_across_a_restart(clock_server, receiver: Receiver) -> None:
    """500 endpoints at 50 a second (10 batches over 10 s) through the project's hook A; after two batches the
    project's hook becomes B (which drops everyone) and the server restarts: the other eight still go through A."""
    pinpoint, lam = clock_server.pinpoint(), clock_server.lambda_()
    deploy(lam, "hook-a", KEEP_ALL)
    deploy(lam, "hook-b", DROP_ALL)
    app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "paced"})["ApplicationResponse"]["Id"])
    ids = [f"ep-{i:03d}" for i in range(500)]
    load(pinpoint, app_id, [endpoint(i) for i in ids])
    segment = audience_segment(pinpoint, app_id)
    settings(pinpoint, app_id, CampaignHook={"LambdaFunctionName": "hook-a", "Mode": "FILTER"})
    paced = {"Limits": {"MessagesPerSecond": 50}}
    campaign_id = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": "IMMEDIATE"}, **paced)["Id"]
    wait_for(lambda: receiver.post_count() >= 2, 30, "two batches")
    settings(pinpoint, app_id, CampaignHook={"LambdaFunctionName": "hook-b", "Mode": "FILTER"})
    clock_server.stop()
    assert receiver.post_count() < 10  # the rest is sent after the restart
    clock_server.start()
    wait_for_runs(clock_server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)
    assert {(o["Status"], o["Reason"]) for o in outcomes(clock_server, app_id, campaign_id)} == {("SENT", None)}
    assert {i for p in receiver.posts() for i in p.endpoint_ids} == set(ids)
    assert invocations(clock_server, "hook-b") == 0


def test_planning_resumed_after_a_quiet_time_change_keeps_the_first(backend, ca_bundle, tmp_path, receiver) -> None:
    """A run planned one chunk, then stopped (a restart); the application's QuietTime then covers the send time:
    the rest of the run is planned without it, as its first chunk was."""
    with running_server(backend, tmp_path / "server", ca_bundle, POINTCAST_ENGINE_ENABLED="false") as server:
        pinpoint = server.pinpoint()
        app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "quiet"})["ApplicationResponse"]["Id"])
        ids = [f"ep-{i:05d}" for i in range(CHUNK + 50)]
        load(pinpoint, app_id, [endpoint(i) for i in ids], threads=4)  # no time zone: judged in UTC
        webhook_campaign(pinpoint, app_id, audience_segment(pinpoint, app_id), receiver.url, {"StartTime": "IMMEDIATE"})
        url = Settings(data_dir=server.data_dir, database_url=server.env.get("POINTCAST_DATABASE_URL"))
        db = Database(url.resolved_database_url())
        try:
            now = utc("2030-01-01T12:00:00Z")
            with db.write() as conn:
                [run_id] = start_due_runs(conn, now)
            assert plan_run(db, run_id, now, max_chunks=1) is False
            settings(pinpoint, app_id, QuietTime={"Start": "11:00", "End": "13:00"})
            assert plan_run(db, run_id, now) is True
            with db.read() as conn:
                o, b = m.outcomes, m.batches
                skipped = conn.execute(sa.select(o.c.endpoint_id, o.c.reason).where(o.c.run_id == run_id)).all()
                planned = conn.execute(sa.select(b.c.endpoint_ids).where(b.c.run_id == run_id)).scalars()
                assert sorted(i for text in planned for i in orjson.loads(text)) == ids
        finally:
            db.dispose()
    assert skipped == []


def test_a_run_an_older_version_left_reads_the_current_settings(clock_server, receiver: Receiver) -> None:
    """A run with nothing kept (its plan_state NULL, as a version before this one left it past planning) reads the
    application's settings as they are now; the settings a run keeps are those load_spec returns."""
    pinpoint = clock_server.pinpoint()
    deploy(clock_server.lambda_(), "hook-c", KEEP_ALL)
    app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "old"})["ApplicationResponse"]["Id"])
    load(pinpoint, app_id, [endpoint("ep-0")])
    segment = audience_segment(pinpoint, app_id)
    set_clock(clock_server, "2030-01-01T00:00:00Z")
    campaign_id = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": "IMMEDIATE"})["Id"]
    wait_for(lambda: run_of(clock_server, campaign_id) is not None, 30, "the run")
    run_id = run_of(clock_server, campaign_id)
    kept = write_store(clock_server, lambda conn: load_spec(conn, run_id))
    empty = {"CampaignHook": {}, "QuietTime": {}, "Limits": {}}  # as the application was created
    assert kept.settings == empty and kept.hook is None and kept.quiet_time is None and kept.limits == {}

    hook = {"LambdaFunctionName": "hook-c", "Mode": "FILTER"}
    settings(pinpoint, app_id, CampaignHook=hook, QuietTime={"Start": "01:00", "End": "02:00"}, Limits={"Daily": 3})
    assert write_store(clock_server, lambda conn: load_spec(conn, run_id).settings) == empty

    def forget(conn: sa.Connection) -> Any:
        conn.execute(sa.update(m.runs).where(m.runs.c.id == run_id).values(plan_state=None))
        return load_spec(conn, run_id)

    current = write_store(clock_server, forget)
    assert current.hook == hook and current.quiet_time == {"Start": "01:00", "End": "02:00"}
    assert current.limits == {"Daily": 3}


def run_of(server: Server, campaign_id: str) -> str | None:
    def read(conn: sa.Connection) -> str | None:
        row = conn.execute(sa.select(m.runs.c.id, m.runs.c.plan_state).where(m.runs.c.campaign_id == campaign_id))
        found = row.first()
        return found.id if found is not None and repo.kept_settings(found.plan_state) is not None else None

    return write_store(server, read)
