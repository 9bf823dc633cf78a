"""Campaign schedules end to end on a manual clock: a week (or months) of schedule in seconds.

One private server per backend runs with POINTCAST_MANUAL_CLOCK=true; each test moves the clock with
POST /pointcast/clock and watches what a real HTTPS receiver gets and what the API reports. Each test has its own
application and receiver; its campaigns are paused when it ends so that later clock moves leave them alone.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.types.json import Jsonb

from pointcast.campaigns.repository import campaigns
from pointcast.segments.repository import segments
from pointcast.store import models as m
from tests.conftest import running_server
from tests.support.campaigns import (
    Gate,
    Receiver,
    activities,
    audience_segment,
    endpoint,
    iso,
    load,
    outcomes,
    progress,
    set_clock,
    settle,
    status,
    utc,
    wait_for,
    wait_for_runs,
    webhook_campaign,
    write_store,
)
from tests.support.functions import deploy
from tests.support.server import ACCOUNT_ID, REGION, Server
from tests.support.signing import signed_request


@pytest.fixture(scope="module")
def clock_server(backend: str, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        backend,
        tmp_path_factory.mktemp(f"clock-{backend}"),
        ca_bundle,
        POINTCAST_MANUAL_CLOCK="true",
        POINTCAST_SCHEDULER_INTERVAL="0.1",
        POINTCAST_DELIVERY_BACKOFF_BASE="0.05",
        POINTCAST_DELIVERY_BACKOFF_CAP="0.2",
        POINTCAST_DELIVERY_TIMEOUT="10",
    ) as srv:
        yield srv


@pytest.fixture
def pinpoint(clock_server: Server) -> Any:
    return clock_server.pinpoint()


@pytest.fixture
def app_id(pinpoint: Any) -> Iterator[str]:
    app = str(pinpoint.create_app(CreateApplicationRequest={"Name": "schedule"})["ApplicationResponse"]["Id"])
    yield app
    # Leave nothing that a later test's clock move could start (deleting mid-run would orphan batches).
    for campaign in pinpoint.get_campaigns(ApplicationId=app, PageSize="100")["CampaignsResponse"]["Item"]:
        if not campaign.get("IsPaused") and campaign["State"]["CampaignStatus"] != "COMPLETED":
            pinpoint.update_campaign(
                ApplicationId=app, CampaignId=campaign["Id"], WriteCampaignRequest={"IsPaused": True}
            )


def activity_ids_received(rx: Receiver) -> set[str]:
    return {post.payload["ActivityId"] for post in rx.posts()}


# --- StartTime --------------------------------------------------------------------------------------------


def test_future_start_time_waits_for_the_clock(clock_server, pinpoint, app_id, receiver) -> None:
    load(pinpoint, app_id, [endpoint(f"ep-{i:03d}") for i in range(120)])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-03-01T12:00:00Z")
    set_clock(clock_server, start - timedelta(hours=6))
    gate = Gate()
    receiver.responder = gate
    campaign = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(start)})
    cid = campaign["Id"]
    assert campaign["State"]["CampaignStatus"] == "SCHEDULED"

    set_clock(clock_server, start - timedelta(seconds=1))
    settle()
    assert receiver.post_count() == 0
    assert activities(pinpoint, app_id, cid) == []
    assert status(pinpoint, app_id, cid) == "SCHEDULED"

    set_clock(clock_server, start)
    receiver.wait_for_requests(1, timeout=10, method="POST")  # held by the gate: the run is under way
    wait_for(lambda: status(pinpoint, app_id, cid) == "EXECUTING", 10, "status EXECUTING while batches are held")
    [running] = activities(pinpoint, app_id, cid)
    assert running["State"] != "COMPLETED"
    gate.open()
    [run] = wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")
    assert run["ScheduledTime"] == iso(start)

    assert sorted(receiver.delivered().elements()) == [f"ep-{i:03d}" for i in range(120)]  # each once
    assert {post.payload["ScheduledTime"] for post in receiver.posts()} == {iso(start)}
    [activity] = activities(pinpoint, app_id, cid)
    assert activity["ScheduledStart"] == iso(start) and activity["State"] == "COMPLETED"
    assert activity["TotalEndpointCount"] == activity["SuccessfulEndpointCount"] == 120
    assert activity_ids_received(receiver) == {activity["Id"]}

    set_clock(clock_server, start + timedelta(days=3))  # a one-time campaign never runs again
    settle()
    assert len(activities(pinpoint, app_id, cid)) == 1 and status(pinpoint, app_id, cid) == "COMPLETED"


def test_tags_written_while_the_engine_starts_a_run_are_kept(clock_server, pinpoint, app_id, receiver) -> None:
    """The engine changes a campaign's State without the resource's lock. On PostgreSQL a TagResource that commits
    between the engine's read of the campaign and its write must not be undone by it: here the test's own
    transaction stands in for TagResource, holding the campaign's row (as TagResource does) while the run starts."""
    load(pinpoint, app_id, [endpoint(f"tg-{i:03d}") for i in range(10)])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-04-01T12:00:00Z")
    set_clock(clock_server, start - timedelta(hours=1))
    campaign = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(start)})
    cid = campaign["Id"]
    url = clock_server.env.get("POINTCAST_DATABASE_URL")
    if url:
        with psycopg.connect(url) as held:
            row = held.execute(
                "SELECT doc FROM campaigns WHERE app_id = %s AND id = %s FOR UPDATE", (app_id, cid)
            ).fetchone()
            assert row is not None
            doc = {**row[0], "tags": {"team": "blue"}}
            held.execute("UPDATE campaigns SET doc = %s WHERE app_id = %s AND id = %s", (Jsonb(doc), app_id, cid))
            set_clock(clock_server, start)
            time.sleep(1.0)  # the engine's tick (every 0.1 s) has read the campaign and waits for its row
            held.commit()
    else:  # SQLite serialises writers: the engine's read and write are one transaction anyway
        pinpoint.tag_resource(ResourceArn=campaign["Arn"], TagsModel={"tags": {"team": "blue"}})
        set_clock(clock_server, start)
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")
    assert sorted(receiver.delivered().elements()) == [f"tg-{i:03d}" for i in range(10)]
    assert pinpoint.get_campaign(ApplicationId=app_id, CampaignId=cid)["CampaignResponse"]["tags"] == {"team": "blue"}


def test_a_campaign_the_engine_cannot_read_is_invalid_and_the_others_run(clock_server, pinpoint, app_id, receiver):
    """A schedule the API now refuses (a start in year 10000 once in UTC) but an older store might hold: that
    campaign becomes INVALID, once, and every other campaign's runs go on; fixing it with an update schedules it."""
    load(pinpoint, app_id, [endpoint(f"ep-{i:02d}") for i in range(30)])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-04-01T12:00:00Z")
    set_clock(clock_server, start - timedelta(hours=1))
    broken = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(start)})
    fine = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(start)})
    bad_schedule = {"StartTime": "9999-12-31T23:59:59-05:00"}
    write_store(clock_server, lambda conn: campaigns.set_current(conn, app_id, {**broken, "Schedule": bad_schedule}))

    set_clock(clock_server, start)
    wait_for_runs(clock_server, pinpoint, app_id, fine["Id"], 1, "COMPLETED")
    assert status(pinpoint, app_id, fine["Id"]) == "COMPLETED"
    assert status(pinpoint, app_id, broken["Id"]) == "INVALID"
    assert activities(pinpoint, app_id, broken["Id"]) == []
    assert receiver.delivered() == Counter({f"ep-{i:02d}": 1 for i in range(30)})

    request = {"Schedule": {"StartTime": iso(start + timedelta(hours=1))}}
    updated = pinpoint.update_campaign(ApplicationId=app_id, CampaignId=broken["Id"], WriteCampaignRequest=request)
    assert updated["CampaignResponse"]["State"]["CampaignStatus"] == "SCHEDULED"
    set_clock(clock_server, start + timedelta(hours=1))
    wait_for_runs(clock_server, pinpoint, app_id, broken["Id"], 1, "COMPLETED")
    assert receiver.delivered() == Counter({f"ep-{i:02d}": 2 for i in range(30)})


def store_segment_as(server: Server, pinpoint: Any, app_id: str, segment_id: str, dimensions: Any) -> None:
    """Give the segment ``dimensions`` the API would refuse, in its current document and its versions (a campaign
    reads the version it was written against), as an older version of pointcast might have stored them."""
    stored = pinpoint.get_segment(ApplicationId=app_id, SegmentId=segment_id)["SegmentResponse"]
    broken = {**stored, "Dimensions": dimensions}
    versions = m.segment_versions

    def store(conn: Any) -> None:
        segments.set_current(conn, app_id, broken)
        conn.execute(sa.update(versions).where(versions.c.segment_id == segment_id).values(doc=broken))

    write_store(server, store)


def test_a_run_whose_segment_cannot_be_evaluated_fails_with_the_reason(clock_server, pinpoint, app_id, receiver):
    """A segment the API now refuses (an unknown operator) but an older store might hold: the run ends at once, its
    activity FAILs and the reason is on the run, instead of planning failing again every tick."""
    load(pinpoint, app_id, [endpoint(f"ep-{i:02d}") for i in range(10)])
    segment_id = audience_segment(pinpoint, app_id)
    start = utc("2030-05-01T12:00:00Z")
    set_clock(clock_server, start - timedelta(hours=1))
    campaign = webhook_campaign(pinpoint, app_id, segment_id, receiver.url, {"StartTime": iso(start)})
    store_segment_as(
        clock_server, pinpoint, app_id, segment_id, {"Metrics": {"score": {"ComparisonOperator": "BOGUS", "Value": 1}}}
    )

    set_clock(clock_server, start)
    [run] = wait_for_runs(clock_server, pinpoint, app_id, campaign["Id"], 1, "COMPLETED")
    assert "the segment cannot be evaluated" in run["Error"] and "BOGUS" in run["Error"]
    [activity] = activities(pinpoint, app_id, campaign["Id"])
    assert (activity["State"], activity["Result"], activity["TotalEndpointCount"]) == ("COMPLETED", "FAIL", 0)
    assert status(pinpoint, app_id, campaign["Id"]) == "COMPLETED"
    assert receiver.post_count() == 0


def test_a_run_whose_planning_fails_unexpectedly_ends_after_five_tries(clock_server, pinpoint, app_id, receiver):
    """A fault nobody foresaw (here a stored dimension that is text, not an object: AttributeError) made planning
    fail at every tick, for ever, the run PLANNING and the campaign EXECUTING with no Error anywhere. After five
    failures in a row the run ends with the last one."""
    load(pinpoint, app_id, [endpoint(f"ep-{i:02d}") for i in range(10)])
    segment_id = audience_segment(pinpoint, app_id)
    start = utc("2030-05-02T12:00:00Z")
    set_clock(clock_server, start - timedelta(hours=1))
    campaign = webhook_campaign(pinpoint, app_id, segment_id, receiver.url, {"StartTime": iso(start)})
    store_segment_as(clock_server, pinpoint, app_id, segment_id, {"Attributes": {"team": "blue"}})
    set_clock(clock_server, start)
    [run] = wait_for_runs(clock_server, pinpoint, app_id, campaign["Id"], 1, "COMPLETED")
    assert run["Error"].startswith("planning failed 5 times in a row; the last time: "), run["Error"]
    assert "AttributeError" in run["Error"] or "attribute" in run["Error"], run["Error"]
    [activity] = activities(pinpoint, app_id, campaign["Id"])
    assert (activity["State"], activity["Result"]) == ("COMPLETED", "FAIL")
    assert receiver.post_count() == 0


def test_a_start_time_with_microseconds_runs_once(clock_server, pinpoint, app_id, receiver) -> None:
    """StartTime as Python's isoformat() writes it. It ran again at every scheduler tick, to the whole segment."""
    load(pinpoint, app_id, [endpoint(f"ep-{i:02d}") for i in range(5)])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-06-01T12:00:00Z") + timedelta(microseconds=306142)
    set_clock(clock_server, start - timedelta(minutes=1))
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": start.isoformat()})["Id"]
    set_clock(clock_server, start + timedelta(seconds=1))
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")
    settle(0.6)  # several scheduler ticks
    assert len(progress(clock_server, app_id, cid)["Runs"]) == 1
    assert receiver.delivered() == Counter({f"ep-{i:02d}": 1 for i in range(5)})


# --- recurring schedules ------------------------------------------------------------------------------------

RECURRING = {
    "HOURLY": [utc("2030-01-07T09:00:00Z") + timedelta(hours=i) for i in range(5)],
    "DAILY": [utc("2030-01-07T09:00:00Z") + timedelta(days=i) for i in range(5)],
    "WEEKLY": [utc("2030-01-07T09:00:00Z") + timedelta(weeks=i) for i in range(5)],
    # From the 31st: short months clamp to their last day, and the day comes back to the 31st after them.
    "MONTHLY": [utc(f"2030-{m}T09:00:00Z") for m in ("01-31", "02-28", "03-31", "04-30", "05-31")],
}


@pytest.mark.parametrize("frequency", list(RECURRING))
def test_recurring_schedule_runs_once_per_occurrence(clock_server, pinpoint, app_id, receiver, frequency) -> None:
    ids = [f"ep-{i:02d}" for i in range(60)]  # two batches a run
    load(pinpoint, app_id, [endpoint(i) for i in ids])
    segment = audience_segment(pinpoint, app_id)
    occurrences = RECURRING[frequency]
    end = occurrences[-1] + timedelta(minutes=1)
    set_clock(clock_server, occurrences[0] - timedelta(hours=1))
    schedule = {"StartTime": iso(occurrences[0]), "EndTime": iso(end), "Frequency": frequency}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    settle(0.3)
    assert receiver.post_count() == 0 and status(pinpoint, app_id, cid) == "SCHEDULED"

    # Occurrences 0 and 1, one by one; a clock move that reaches no new occurrence starts nothing.
    for index in (0, 1):
        set_clock(clock_server, occurrences[index])
        wait_for_runs(clock_server, pinpoint, app_id, cid, index + 1, "PENDING_NEXT_RUN")
        set_clock(clock_server, occurrences[index] + (occurrences[index + 1] - occurrences[index]) / 2)
        settle(0.3)
        assert len(progress(clock_server, app_id, cid)["Runs"]) == index + 1
        assert status(pinpoint, app_id, cid) == "PENDING_NEXT_RUN"

    # Jump over occurrences 2 and 3: only the latest due one (4, the last) runs (docs: the latest missed one).
    set_clock(clock_server, occurrences[4] + timedelta(seconds=30))
    runs = wait_for_runs(clock_server, pinpoint, app_id, cid, 3, "COMPLETED")
    expected = [iso(occurrences[i]) for i in (0, 1, 4)]
    assert sorted(run["ScheduledTime"] for run in runs) == expected

    set_clock(clock_server, occurrences[4] + timedelta(days=62))  # past EndTime: nothing more
    settle(0.3)
    assert len(progress(clock_server, app_id, cid)["Runs"]) == 3 and status(pinpoint, app_id, cid) == "COMPLETED"

    items = activities(pinpoint, app_id, cid)
    assert sorted(a["ScheduledStart"] for a in items) == expected
    assert all(a["State"] == "COMPLETED" and a["SuccessfulEndpointCount"] == 60 for a in items)
    assert activity_ids_received(receiver) == {a["Id"] for a in items}  # one distinct activity per run
    assert receiver.delivered() == Counter({i: 3 for i in ids})  # every endpoint once per run
    posts_by_time = Counter(post.payload["ScheduledTime"] for post in receiver.posts())
    assert posts_by_time == Counter({time: 2 for time in expected})


# --- IsPaused ----------------------------------------------------------------------------------------------


def test_paused_campaign_runs_nothing_until_resumed(clock_server, pinpoint, app_id, receiver) -> None:
    load(pinpoint, app_id, [endpoint(f"ep-{i}") for i in range(10)])
    segment = audience_segment(pinpoint, app_id)
    first = utc("2030-02-04T08:00:00Z")
    set_clock(clock_server, first - timedelta(hours=1))

    # Created paused: its start passes and nothing happens until IsPaused is false.
    once = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(first)}, IsPaused=True)
    assert once["State"]["CampaignStatus"] == "PAUSED"
    set_clock(clock_server, first + timedelta(minutes=5))
    settle()
    assert receiver.post_count() == 0 and activities(pinpoint, app_id, once["Id"]) == []
    assert status(pinpoint, app_id, once["Id"]) == "PAUSED"
    resumed = pinpoint.update_campaign(
        ApplicationId=app_id, CampaignId=once["Id"], WriteCampaignRequest={"IsPaused": False}
    )
    assert resumed["CampaignResponse"]["State"]["CampaignStatus"] != "PAUSED"
    wait_for_runs(clock_server, pinpoint, app_id, once["Id"], 1, "COMPLETED")
    assert receiver.post_count() == 1

    # Paused between two runs of a daily campaign: the occurrence passes while paused, and runs on resume.
    receiver.clear()
    schedule = {"StartTime": iso(first), "EndTime": iso(first + timedelta(days=2, hours=1)), "Frequency": "DAILY"}
    daily = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    wait_for_runs(clock_server, pinpoint, app_id, daily, 1, "PENDING_NEXT_RUN")
    pinpoint.update_campaign(ApplicationId=app_id, CampaignId=daily, WriteCampaignRequest={"IsPaused": True})
    assert status(pinpoint, app_id, daily) == "PAUSED"
    set_clock(clock_server, first + timedelta(days=1, hours=2))
    settle()
    assert len(progress(clock_server, app_id, daily)["Runs"]) == 1 and receiver.post_count() == 1
    pinpoint.update_campaign(ApplicationId=app_id, CampaignId=daily, WriteCampaignRequest={"IsPaused": False})
    runs = wait_for_runs(clock_server, pinpoint, app_id, daily, 2, "PENDING_NEXT_RUN")
    assert runs[-1]["ScheduledTime"] == iso(first + timedelta(days=1))
    set_clock(clock_server, first + timedelta(days=2))
    wait_for_runs(clock_server, pinpoint, app_id, daily, 3, "COMPLETED")
    assert receiver.delivered() == Counter({f"ep-{i}": 3 for i in range(10)})


def test_resuming_after_the_last_run_ended_while_paused_completes(clock_server, pinpoint, app_id, receiver) -> None:
    """Paused while its only run is sending: the run finishes, and on resume nothing is left, so COMPLETED."""
    load(pinpoint, app_id, [endpoint(f"ep-{i}") for i in range(10)])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-02-11T08:00:00Z")
    set_clock(clock_server, start)
    gate = Gate()
    receiver.responder = gate
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(start)})["Id"]
    receiver.wait_for_requests(1, timeout=10, method="POST")
    pinpoint.update_campaign(ApplicationId=app_id, CampaignId=cid, WriteCampaignRequest={"IsPaused": True})
    gate.open()
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "PAUSED")
    pinpoint.update_campaign(ApplicationId=app_id, CampaignId=cid, WriteCampaignRequest={"IsPaused": False})
    set_clock(clock_server, start + timedelta(hours=1))
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED", timeout=5)
    assert receiver.delivered() == Counter({f"ep-{i}": 1 for i in range(10)})


# --- local time --------------------------------------------------------------------------------------------

ZONES = ["Pacific/Kiritimati", "Asia/Tokyo", "Europe/Lisbon", "America/New_York", None]


def local_time_audience(pinpoint: Any, app_id: str) -> dict[str | None, list[str]]:
    members: dict[str | None, list[str]] = {zone: [] for zone in ZONES}
    items = []
    for i in range(100):
        zone = ZONES[i % len(ZONES)]
        members[zone].append(f"ep-{i:03d}")
        items.append(endpoint(f"ep-{i:03d}", zone))
    load(pinpoint, app_id, items)
    return members


def step_through_zones(
    server: Server,
    pinpoint: Any,
    app_id: str,
    campaign_id: str,
    rx: Receiver,
    members: dict[str | None, list[str]],
    sends: dict[str | None, datetime],
) -> None:
    """Move the clock to just before, then to, each zone's send time: its endpoints arrive then and only then, and
    the activity counts the zone completed."""
    delivered: set[str] = set()

    def zones_completed() -> int:
        [activity] = activities(pinpoint, app_id, campaign_id)
        return int(activity["TimezonesCompletedCount"])

    for done, (zone, moment) in enumerate(sorted(sends.items(), key=lambda item: item[1]), 1):
        set_clock(server, moment - timedelta(seconds=1))
        settle(0.4)
        assert set(rx.delivered()) == delivered, f"{zone} must not be sent before {iso(moment)}"
        set_clock(server, moment)
        delivered |= set(members[zone])
        try:
            wait_for(lambda: set(rx.delivered()) == delivered, 10, f"{zone}'s endpoints at {iso(moment)}")  # noqa: B023
        except AssertionError as exc:
            runs = progress(server, app_id, campaign_id)["Runs"]
            raise AssertionError(f"{exc}; the campaign's runs at that time: {runs}") from None
        for post in rx.posts():
            if set(post.endpoint_ids) & set(members[zone]):
                assert set(post.endpoint_ids) <= set(members[zone])  # a batch is one zone's
                assert post.payload["ScheduledTime"] == iso(moment)
        wait_for(lambda: zones_completed() == done, 10, f"TimezonesCompletedCount {done} after {zone}")  # noqa: B023
    wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED")
    assert rx.delivered() == Counter({i: 1 for ids in members.values() for i in ids})
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["TimezonesTotalCount"] == len(sends) == activity["TimezonesCompletedCount"]
    assert activity["SuccessfulEndpointCount"] == 100 == activity["TotalEndpointCount"]


def test_local_time_sends_each_zone_at_its_own_wall_time(clock_server, pinpoint, app_id, receiver) -> None:
    members = local_time_audience(pinpoint, app_id)
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-06-03T09:00:00Z")  # 09:00 wall time, read in Schedule.Timezone (UTC)
    set_clock(clock_server, start - timedelta(days=1))
    schedule = {"StartTime": iso(start), "IsLocalTime": True, "Timezone": "UTC"}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    sends = {
        "Pacific/Kiritimati": utc("2030-06-02T19:00:00Z"),  # UTC+14, the first to reach 09:00
        "Asia/Tokyo": utc("2030-06-03T00:00:00Z"),
        "Europe/Lisbon": utc("2030-06-03T08:00:00Z"),  # summer time, UTC+1
        None: start,  # no Demographic.Timezone: the campaign's zone
        "America/New_York": utc("2030-06-03T13:00:00Z"),  # EDT, UTC-4
    }
    step_through_zones(clock_server, pinpoint, app_id, cid, receiver, members, sends)


def test_local_time_with_a_campaign_zone_west_of_utc(clock_server, pinpoint, app_id, receiver) -> None:
    """09:00 in Los Angeles is 16:00Z; every endpoint still gets 09:00 of its own zone, the easternmost first."""
    members = local_time_audience(pinpoint, app_id)
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-06-03T16:00:00Z")
    set_clock(clock_server, start - timedelta(days=1))
    schedule = {"StartTime": "2030-06-03T09:00:00-07:00", "IsLocalTime": True, "Timezone": "America/Los_Angeles"}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    sends = {
        "Pacific/Kiritimati": utc("2030-06-02T19:00:00Z"),
        "Asia/Tokyo": utc("2030-06-03T00:00:00Z"),
        "Europe/Lisbon": utc("2030-06-03T08:00:00Z"),
        "America/New_York": utc("2030-06-03T13:00:00Z"),
        None: start,  # the campaign's zone: 09:00 in Los Angeles
    }
    step_through_zones(clock_server, pinpoint, app_id, cid, receiver, members, sends)


def test_local_time_hourly_runs_every_occurrence(clock_server, pinpoint, app_id, receiver) -> None:
    """Hourly at local time, Tokyo (UTC+9) and New York (UTC-4): each hour reaches both zones, 13 h apart, so the
    runs of consecutive occurrences overlap; none may be skipped."""
    tokyo, new_york = [f"tyo-{i}" for i in range(5)], [f"nyc-{i}" for i in range(5)]
    load(
        pinpoint,
        app_id,
        [endpoint(i, "Asia/Tokyo") for i in tokyo] + [endpoint(i, "America/New_York") for i in new_york],
    )
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-06-10T12:00:00Z")
    set_clock(clock_server, start - timedelta(days=1))
    schedule = {
        "StartTime": iso(start),
        "EndTime": iso(start + timedelta(hours=2, minutes=1)),
        "Frequency": "HOURLY",
        "IsLocalTime": True,
        "Timezone": "UTC",
    }
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    # The clock walks through every instant that matters, in order: where each occurrence's run may start (14 h
    # ahead, for UTC+14) and where each zone's 12:00, 13:00 and 14:00 come.
    steps = sorted(
        [(start + timedelta(hours=k - 14), []) for k in range(3)]
        + [(start + timedelta(hours=k - 9), tokyo) for k in range(3)]
        + [(start + timedelta(hours=k + 4), new_york) for k in range(3)]
    )
    expected: Counter[str] = Counter()
    for moment, ids in steps:
        set_clock(clock_server, moment)
        expected.update(ids)
        try:
            wait_for(lambda: receiver.delivered() == expected, 10, f"{ids[:1]} at {iso(moment)}")
            if not ids:
                settle(0.3)
                assert receiver.delivered() == expected
        except AssertionError as exc:
            runs = progress(clock_server, app_id, cid)["Runs"]
            raise AssertionError(f"{exc}; runs so far: {runs}") from None
        if ids:
            assert iso(moment) in {post.payload["ScheduledTime"] for post in receiver.posts()}
    runs = wait_for_runs(clock_server, pinpoint, app_id, cid, 3, "COMPLETED")
    assert sorted(run["ScheduledTime"] for run in runs) == [iso(start + timedelta(hours=k)) for k in range(3)]


def hourly_from_nine(
    server: Server, pinpoint: Any, app_id: str, rx: Receiver, members: list[dict[str, Any]], occurrences: int
) -> tuple[str, datetime, datetime]:
    """An HOURLY local-time campaign (UTC wall time) of ``occurrences`` from 09:00Z, created at 08:00Z to
    ``members``: its id, when it was created and its first occurrence."""
    load(pinpoint, app_id, members)
    segment = audience_segment(pinpoint, app_id)
    created = utc("2030-06-10T08:00:00Z")
    set_clock(server, created)
    first = created + timedelta(hours=1)
    schedule = {"StartTime": iso(first), "EndTime": iso(first + timedelta(hours=occurrences - 1, minutes=30)),
                "Frequency": "HOURLY", "IsLocalTime": True, "Timezone": "UTC"}  # fmt: skip
    return str(webhook_campaign(pinpoint, app_id, segment, rx.url, schedule)["Id"]), created, first


def test_an_hourly_local_time_campaign_sends_each_zone_its_latest_due_occurrence_from_the_start(
    clock_server, pinpoint, app_id, receiver
) -> None:
    """Created at 08:00Z to run hourly from 09:00 (UTC): for UTC+14 the occurrences 09:00 .. 21:00 are already past
    and 22:00 is due now; for Tokyo 09:00 .. 17:00 are past. Each zone gets its latest due one now and the rest at
    their hours, the ones it missed skipped with a reason; UTC gets every one. Before, only the 22:00 run started,
    and UTC endpoints got nothing until 22:00."""
    zones = {"kir": "Pacific/Kiritimati", "tyo": "Asia/Tokyo", "utc": "UTC"}
    members = [endpoint(f"{key}-{i}", zone) for key, zone in zones.items() for i in range(2)]
    cid, created, first = hourly_from_nine(clock_server, pinpoint, app_id, receiver, members, 15)

    def by_zone() -> Counter[str]:
        return Counter(endpoint_id.split("-")[0] for endpoint_id in receiver.delivered().elements())

    # 22:00 (+14) and 17:00 (+9) are due now; UTC's first is 09:00Z.
    wait_for(lambda: by_zone() == Counter({"kir": 2, "tyo": 2}), 20, "the due occurrences of the east")
    settle(0.5)
    assert by_zone() == Counter({"kir": 2, "tyo": 2})
    sent_at = {post.payload["ScheduledTime"] for post in receiver.posts()}
    assert sent_at == {iso(created)}  # 22:00 in Kiritimati and 17:00 in Tokyo are both 08:00Z
    set_clock(clock_server, first)
    wait_for(lambda: by_zone() == Counter({"kir": 4, "tyo": 4, "utc": 2}), 20, "the 09:00 occurrence in UTC")
    # Then hour by hour, on each send time (a jump past them would be downtime: only the latest would go).
    for hour in range(1, 15):
        set_clock(clock_server, first + timedelta(hours=hour))
        want = Counter({"kir": 4, "tyo": 2 * min(7, 2 + hour), "utc": 2 * (hour + 1)})
        wait_for(lambda want=want: by_zone() == want, 20, f"the sends of {hour} h after the first")  # type: ignore[misc]
    set_clock(clock_server, first + timedelta(hours=40))
    runs = wait_for_runs(clock_server, pinpoint, app_id, cid, 15, "COMPLETED")
    assert sorted(run["ScheduledTime"] for run in runs) == [iso(first + timedelta(hours=k)) for k in range(15)]
    # Kiritimati: 22:00 and 23:00; Tokyo: 17:00 .. 23:00; UTC: all 15. Every endpoint has an outcome in every run.
    assert by_zone() == Counter({"kir": 2 * 2, "tyo": 2 * 7, "utc": 2 * 15})
    found = Counter((o["EndpointId"].split("-")[0], o["Status"], o.get("Reason")) for o in outcomes(
        clock_server, app_id, cid))  # fmt: skip
    assert found == Counter({("kir", "SENT", None): 4, ("kir", "SKIPPED", "MISSED_OCCURRENCE"): 26,
                             ("tyo", "SENT", None): 14, ("tyo", "SKIPPED", "MISSED_OCCURRENCE"): 16,
                             ("utc", "SENT", None): 30})  # fmt: skip


def test_after_downtime_each_zone_gets_its_latest_missed_occurrence_not_every_batch_planned_before(
    clock_server, pinpoint, app_id, receiver
) -> None:
    """An HOURLY local-time campaign plans each occurrence's later zones ahead; when the clock then jumps 28 hours
    (the server was down), those batches are all due at once. Each zone gets its latest due occurrence, once; the
    batches of earlier ones end MISSED_OCCURRENCE. Before, UTC-12 got 14 messages in the same second."""
    members = [endpoint("west-0", "Etc/GMT+12"), endpoint("utc-0", "UTC")]
    cid, created, _ = hourly_from_nine(clock_server, pinpoint, app_id, receiver, members, 30)
    # The runs of 09:00 .. 22:00 start now (UTC+14 is past them), each planning both zones for later.
    wait_for(lambda: len(progress(clock_server, app_id, cid)["Runs"]) == 14, 30, "14 runs planned ahead")
    settle(0.5)
    assert receiver.posts() == []
    jumped = created + timedelta(hours=28)  # 12:00Z the next day
    set_clock(clock_server, jumped)
    # UTC: 09:00 .. 12:00 the next day are due, the latest once; UTC-12 (sent 12 h after): 09:00 .. 00:00.
    expected = {"utc-0": [iso(jumped)], "west-0": [iso(jumped)]}

    def sent() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for post in receiver.posts():
            for endpoint_id in post.endpoint_ids:
                found.setdefault(endpoint_id, []).append(post.payload["ScheduledTime"])
        return found

    wait_for(lambda: sent() == expected, 30, "one send per zone")
    # 22:00's run is wholly superseded (23:00's has reached UTC-12 too): 09:00 .. 22:00 the day before, less it,
    # and 23:00 .. 14:00 the next day.
    wait_for(lambda: len(progress(clock_server, app_id, cid)["Runs"]) == 29, 30, "every run due started")
    settle(1.0)
    assert sent() == expected
    found = Counter((o["EndpointId"], o["Status"], o.get("Reason")) for o in outcomes(clock_server, app_id, cid))
    assert found[("utc-0", "SKIPPED", "MISSED_OCCURRENCE")] == 26 and found[("utc-0", "SENT", None)] == 1
    assert found[("west-0", "SKIPPED", "MISSED_OCCURRENCE")] == 14 and found[("west-0", "SENT", None)] == 1


# --- quiet time --------------------------------------------------------------------------------------------


def test_a_batch_sent_late_is_judged_for_quiet_time_when_it_is_sent(clock_server, pinpoint, app_id, receiver):
    """A local-time run plans London's 09:00 (08:00Z) at 06:00Z; the clock then jumps to 23:30Z (the server was
    down), which is 00:30 in London, inside 22:00-07:00: the batch is not sent at night. Before, quiet time was
    judged only when the run was planned."""
    load(pinpoint, app_id, [endpoint("ldn-0", "Europe/London")])
    segment = audience_segment(pinpoint, app_id)
    planned_at = utc("2030-06-10T06:00:00Z")
    set_clock(clock_server, planned_at)
    schedule = {"StartTime": "2030-06-10T09:00:00Z", "IsLocalTime": True, "Timezone": "UTC",
                "QuietTime": {"Start": "22:00", "End": "07:00"}}  # fmt: skip
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    wait_for(lambda: progress(clock_server, app_id, cid)["PendingBatches"] == 1, 30, "London's batch planned")
    set_clock(clock_server, utc("2030-06-10T23:30:00Z"))
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")
    assert receiver.posts() == []
    [outcome] = outcomes(clock_server, app_id, cid)
    assert (outcome["Status"], outcome["Reason"]) == ("SKIPPED", "QUIET_TIME")


# At 03:00Z on 2030-06-03 (summer time): each zone's local time, and whether 22:00-07:00 holds it quiet.
QUIET_AT = utc("2030-06-03T03:00:00Z")
LOCAL = {
    "Asia/Tokyo": ("12:00", False),
    "America/Los_Angeles": ("20:00", False),
    "Asia/Kolkata": ("08:30", False),
    "Asia/Dubai": ("07:00", True),  # End is included ("earlier than or equal to", the model says)
    "America/Chicago": ("22:00", True),  # Start is inclusive
    "America/New_York": ("23:00", True),
    "Europe/Lisbon": ("04:00", True),
    None: ("03:00", True),  # no zone: UTC
    "UTC+99": ("03:00", True),  # no such zone (Demographic.Timezone is any text): UTC, as with none
}


def quiet_audience(pinpoint: Any, app_id: str) -> dict[str, str | None]:
    zones = list(LOCAL)
    items = [endpoint(f"ep-{i:02d}", zones[i % len(zones)]) for i in range(40)]
    load(pinpoint, app_id, items)
    return {item["Id"]: (item.get("Demographic") or {}).get("Timezone") for item in items}


def check_quiet(server: Server, app_id: str, campaign_id: str, rx: Receiver, zone_of, quiet) -> None:
    expected_quiet = {i for i, zone in zone_of.items() if quiet(zone)}
    found = {o["EndpointId"]: o for o in outcomes(server, app_id, campaign_id)}
    assert set(found) == set(zone_of)
    for endpoint_id, outcome in found.items():
        if endpoint_id in expected_quiet:
            assert (outcome["Status"], outcome["Reason"]) == ("SKIPPED", "QUIET_TIME"), zone_of[endpoint_id]
        else:
            assert outcome["Status"] == "SENT", zone_of[endpoint_id]
    assert rx.delivered() == Counter({i: 1 for i in zone_of if i not in expected_quiet})


def test_local_time_quiet_time_reads_a_zoneless_endpoint_where_it_is_sent(clock_server, pinpoint, app_id, receiver):
    """With IsLocalTime an endpoint without a zone is sent at the wall time in Schedule.Timezone; its quiet time is
    read there too (it was read in UTC, so it was sent at 09:00 inside an 08:00-10:00 quiet time)."""
    load(pinpoint, app_id, [endpoint("ep-ny", "UTC-05"), endpoint("ep-none"), endpoint("ep-mars", "Mars/Olympus")])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2041-01-02T14:00:00Z")  # 09:00 at UTC-05
    set_clock(clock_server, start - timedelta(days=1))
    schedule = {"StartTime": "2041-01-02T09:00:00-05:00", "IsLocalTime": True, "Timezone": "UTC-05",
                "QuietTime": {"Start": "08:00", "End": "10:00"}}  # fmt: skip
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    set_clock(clock_server, start + timedelta(hours=1))
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")
    found = {o["EndpointId"]: (o["Status"], o["Reason"]) for o in outcomes(clock_server, app_id, cid)}
    assert found == {i: ("SKIPPED", "QUIET_TIME") for i in ("ep-ny", "ep-none", "ep-mars")}
    assert receiver.post_count() == 0


def test_campaign_quiet_time_skips_endpoints_inside_it(clock_server, pinpoint, app_id, receiver) -> None:
    zone_of = quiet_audience(pinpoint, app_id)
    segment = audience_segment(pinpoint, app_id)
    # The application's quiet time would hold everyone: the campaign's own replaces it.
    pinpoint.update_application_settings(
        ApplicationId=app_id, WriteApplicationSettingsRequest={"QuietTime": {"Start": "00:00", "End": "23:59"}}
    )
    set_clock(clock_server, QUIET_AT - timedelta(hours=1))
    schedule = {"StartTime": iso(QUIET_AT), "QuietTime": {"Start": "22:00", "End": "07:00"}}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    set_clock(clock_server, QUIET_AT)
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")
    check_quiet(clock_server, app_id, cid, receiver, zone_of, lambda zone: LOCAL[zone][1])
    [activity] = activities(pinpoint, app_id, cid)
    sent = sum(1 for zone in zone_of.values() if not LOCAL[zone][1])
    assert activity["SuccessfulEndpointCount"] == sent == activity["TotalEndpointCount"]


def test_quiet_time_is_judged_when_a_late_run_actually_sends(clock_server, pinpoint, app_id, receiver) -> None:
    """A campaign due at 12:00Z, paused, and resumed at 23:00Z sends at 23:00Z: an endpoint in UTC is then inside its
    22:00-07:00 quiet time, one in Tokyo (08:00) is not. Judged at the scheduled 12:00Z, both were sent."""
    load(pinpoint, app_id, [endpoint("q-utc", "UTC"), endpoint("q-tokyo", "Asia/Tokyo")])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2031-06-02T12:00:00Z")
    set_clock(clock_server, start - timedelta(hours=1))
    schedule = {"StartTime": iso(start), "QuietTime": {"Start": "22:00", "End": "07:00"}}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, IsPaused=True)["Id"]
    set_clock(clock_server, start + timedelta(hours=11))
    pinpoint.update_campaign(ApplicationId=app_id, CampaignId=cid, WriteCampaignRequest={"IsPaused": False})
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")
    found = {o["EndpointId"]: (o["Status"], o.get("Reason")) for o in outcomes(clock_server, app_id, cid)}
    assert found == {"q-utc": ("SKIPPED", "QUIET_TIME"), "q-tokyo": ("SENT", None)}


def test_application_quiet_time_applies_when_the_campaign_has_none(clock_server, pinpoint, app_id, receiver) -> None:
    zone_of = quiet_audience(pinpoint, app_id)
    segment = audience_segment(pinpoint, app_id)
    pinpoint.update_application_settings(
        ApplicationId=app_id, WriteApplicationSettingsRequest={"QuietTime": {"Start": "21:30", "End": "08:00"}}
    )
    set_clock(clock_server, QUIET_AT - timedelta(hours=1))
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(QUIET_AT)})["Id"]
    set_clock(clock_server, QUIET_AT)
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED")

    def quiet(zone: str | None) -> bool:
        local = LOCAL[zone][0]
        return local >= "21:30" or local < "08:00"

    check_quiet(clock_server, app_id, cid, receiver, zone_of, quiet)


# --- treatments and holdout --------------------------------------------------------------------------------


def test_treatments_and_holdout_split_the_audience_stably(clock_server, pinpoint, app_id, receiver) -> None:
    total = 2000
    ids = [f"ep-{i:04d}" for i in range(total)]
    load(pinpoint, app_id, [endpoint(i) for i in ids], threads=4)
    segment = audience_segment(pinpoint, app_id)
    first = utc("2030-09-02T10:00:00Z")
    set_clock(clock_server, first - timedelta(hours=1))
    sizes = {"1": 20, "2": 15, "3": 25}
    schedule = {"StartTime": iso(first), "EndTime": iso(first + timedelta(days=1, hours=1)), "Frequency": "DAILY"}
    cid = webhook_campaign(
        pinpoint,
        app_id,
        segment,
        receiver.url,
        schedule,
        HoldoutPercent=10,
        AdditionalTreatments=[
            {"SizePercent": size, "MessageConfiguration": {"CustomMessage": {"Data": f"treatment {tid}"}}}
            for tid, size in sizes.items()
        ],
    )["Id"]
    shares = {"0": 30.0, **{tid: float(size) for tid, size in sizes.items()}, "holdout": 10.0}

    def run_once(moment: datetime, runs: int, state: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        receiver.clear()
        set_clock(clock_server, moment)
        [run] = [
            r
            for r in wait_for_runs(clock_server, pinpoint, app_id, cid, runs, state)
            if r["ScheduledTime"] == iso(moment)
        ]
        placed: dict[str, str] = {}
        for post in receiver.posts():
            tid = post.payload["TreatmentId"]
            assert post.payload["Data"] == ("hello" if tid == "0" else f"treatment {tid}")
            for endpoint_id in post.endpoint_ids:
                assert endpoint_id not in placed, f"{endpoint_id} received twice in one run"
                placed[endpoint_id] = tid
        found = [o for o in outcomes(clock_server, app_id, cid, page_size=700) if o["RunId"] == run["Id"]]
        return placed, found

    first_placed, first_outcomes = run_once(first, 1, "PENDING_NEXT_RUN")
    held = {o["EndpointId"] for o in first_outcomes if o["Status"] == "SKIPPED"}
    assert {(o["Status"], o["Reason"]) for o in first_outcomes if o["EndpointId"] in held} == {("SKIPPED", "HOLDOUT")}
    assert held.isdisjoint(first_placed)  # a held-out endpoint is never delivered
    assert set(first_placed) | held == set(ids)  # everyone is in exactly one treatment or the holdout
    assert len(first_outcomes) == total
    counts = Counter(first_placed.values()) + Counter({"holdout": len(held)})
    for name, share in shares.items():
        assert abs(100 * counts[name] / total - share) < 4.5, (name, counts)
    for outcome in first_outcomes:
        if outcome["Status"] == "SENT":
            assert outcome["TreatmentId"] == first_placed[outcome["EndpointId"]]

    second_placed, second_outcomes = run_once(first + timedelta(days=1), 2, "COMPLETED")
    assert second_placed == first_placed  # the same endpoint lands in the same treatment every run
    assert {o["EndpointId"] for o in second_outcomes if o["Reason"] == "HOLDOUT"} == held

    campaign = pinpoint.get_campaign(ApplicationId=app_id, CampaignId=cid)["CampaignResponse"]
    states = [campaign["State"], campaign["DefaultState"], *(t["State"] for t in campaign["AdditionalTreatments"])]
    assert states == [{"CampaignStatus": "COMPLETED"}] * 5  # they move together
    items = activities(pinpoint, app_id, cid)
    assert len(items) == 8  # one activity per treatment per run
    for scheduled in (iso(first), iso(first + timedelta(days=1))):
        of_run = {a["TreatmentId"]: a for a in items if a["ScheduledStart"] == scheduled}
        assert sorted(of_run) == ["0", "1", "2", "3"]
        for tid, activity in of_run.items():
            assert activity["SuccessfulEndpointCount"] == counts[tid] == activity["TotalEndpointCount"]
            assert activity["State"] == "COMPLETED" and activity["Result"] == "SUCCESS"

    # Outcomes page from where the last page ended (8 activities of two runs, pages across their boundaries).
    paged = outcomes(clock_server, app_id, cid, page_size=700)
    assert paged == outcomes(clock_server, app_id, cid, page_size=10_000)  # none lost or repeated between pages
    run_order = {r["Id"]: n for n, r in enumerate(progress(clock_server, app_id, cid)["Runs"])}
    keys = [(run_order[o["RunId"]], o["TreatmentId"], o["EndpointId"]) for o in paged]
    assert len(set(keys)) == len(keys) == 2 * total and keys == sorted(keys)  # runs in order, by treatment and id
    url = f"{clock_server.url}/pointcast/v1/apps/{app_id}/campaigns/{cid}/outcomes"
    for token in ("o700", "bm90IG91cnM="):  # an offset token of an older version; base64 that is not a position
        response = signed_request("GET", f"{url}?token={token}")
        assert response.status_code == 400 and "NextToken from this server" in response.text


# --- limits ------------------------------------------------------------------------------------------------


def reasons_of_run(server: Server, app_id: str, campaign_id: str, scheduled: datetime) -> Counter[tuple[str, Any]]:
    [run] = [r for r in progress(server, app_id, campaign_id)["Runs"] if r["ScheduledTime"] == iso(scheduled)]
    return Counter((o["Status"], o["Reason"]) for o in outcomes(server, app_id, campaign_id) if o["RunId"] == run["Id"])


def test_daily_limit_skips_endpoints_sent_within_24_hours(clock_server, pinpoint, app_id, receiver) -> None:
    load(pinpoint, app_id, [endpoint(f"ep-{i}") for i in range(8)])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-10-07T06:00:00Z")
    set_clock(clock_server, start - timedelta(hours=1))
    schedule = {"StartTime": iso(start), "EndTime": iso(start + timedelta(hours=30)), "Frequency": "HOURLY"}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, Limits={"Daily": 1})["Id"]

    # 24 h later is a new window: a send scheduled exactly 24 hours before does not count (a DAILY campaign with
    # Daily 1 sends every day).
    plan = [(0, "SENT"), (1, "DAILY_LIMIT"), (23, "DAILY_LIMIT"), (24, "SENT")]
    for number, (hours, expected) in enumerate(plan, start=1):
        moment = start + timedelta(hours=hours)
        set_clock(clock_server, moment)
        wait_for_runs(clock_server, pinpoint, app_id, cid, number, "PENDING_NEXT_RUN")
        reasons = reasons_of_run(clock_server, app_id, cid, moment)
        assert reasons == Counter({("SENT", None) if expected == "SENT" else ("SKIPPED", expected): 8}), hours
    assert receiver.delivered() == Counter({f"ep-{i}": 2 for i in range(8)})


def test_a_daily_local_time_campaign_with_daily_1_sends_every_day(clock_server, pinpoint, app_id, receiver) -> None:
    """Each zone's 24 hours end at its own send time. Before, the window ended when the run was planned (up to 26
    hours before a zone's send), so yesterday's sends counted and every other day was DAILY_LIMIT."""
    load(pinpoint, app_id, [endpoint("ep-tokyo", "Asia/Tokyo"), endpoint("ep-la", "America/Los_Angeles")])
    segment = audience_segment(pinpoint, app_id)
    first = utc("2031-01-02T09:00:00Z")
    set_clock(clock_server, first - timedelta(days=1))
    schedule = {"StartTime": iso(first), "EndTime": iso(first + timedelta(days=2, hours=12)), "Frequency": "DAILY",
                "IsLocalTime": True}  # fmt: skip
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, Limits={"Daily": 1})["Id"]
    for day in range(3):
        occurrence = first + timedelta(days=day)
        for moment in (
            occurrence - timedelta(hours=14),
            occurrence - timedelta(hours=9),
            occurrence + timedelta(hours=8),
        ):
            set_clock(clock_server, moment)  # planned (UTC+14 at 09:00), Tokyo's 09:00, Los Angeles' 09:00
            settle(0.3)
        wait_for_runs(clock_server, pinpoint, app_id, cid, day + 1, ("PENDING_NEXT_RUN", "COMPLETED"))
        assert receiver.delivered() == Counter({"ep-tokyo": day + 1, "ep-la": day + 1}), day


def test_daily_1_sends_on_the_day_of_a_daylight_saving_change(clock_server, pinpoint, app_id, receiver) -> None:
    """09:00 in New York on 2031-03-08, 09 and 10: the spring change on the 9th makes that send 23 hours after the
    one before, and a 24-hour window counted it (DAILY_LIMIT on the day of the change)."""
    load(pinpoint, app_id, [endpoint("ep-ny", "America/New_York")])
    segment = audience_segment(pinpoint, app_id)
    first = utc("2031-03-08T14:00:00Z")  # 09:00 EST
    set_clock(clock_server, first - timedelta(days=2))
    schedule = {"StartTime": "2031-03-08T09:00:00-05:00", "EndTime": "2031-03-10T20:00:00Z", "Frequency": "DAILY",
                "IsLocalTime": True, "Timezone": "America/New_York"}  # fmt: skip
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, Limits={"Daily": 1})["Id"]
    sends = [first, utc("2031-03-09T13:00:00Z"), utc("2031-03-10T13:00:00Z")]  # 09:00 EST, then EDT
    for day, send in enumerate(sends):
        for moment in (send - timedelta(hours=19), send):  # planned (09:00 at UTC+14), then New York's 09:00
            set_clock(clock_server, moment)
            settle(0.3)
        wait_for_runs(clock_server, pinpoint, app_id, cid, day + 1, ("PENDING_NEXT_RUN", "COMPLETED"))
        assert receiver.delivered() == Counter({"ep-ny": day + 1}), day


@pytest.mark.parametrize("limits", [{"Daily": 1}, {"Total": 1}])
def test_overlapping_local_time_runs_keep_the_limits(clock_server, pinpoint, app_id, receiver, limits) -> None:
    """An HOURLY local-time campaign: each run plans every zone at once, before the runs before it have sent to the
    zones west of it, so a limit checked only when planning let each run through. Checked again when a batch
    planned for later is sent, each endpoint gets one message in the six hours."""
    load(pinpoint, app_id, [endpoint("ep-kiri", "Pacific/Kiritimati"), endpoint("ep-utc", "UTC"),
                            endpoint("ep-la", "America/Los_Angeles")])  # fmt: skip
    segment = audience_segment(pinpoint, app_id)
    start = utc("2031-03-07T09:00:00Z")
    set_clock(clock_server, start - timedelta(days=2))
    schedule = {"StartTime": iso(start), "EndTime": iso(start + timedelta(hours=6)), "Frequency": "HOURLY",
                "IsLocalTime": True, "Timezone": "UTC"}  # fmt: skip
    webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, Limits=limits)
    moment = start - timedelta(hours=15)
    for _ in range(60):  # half-hour steps over 30 hours: every zone of every occurrence
        moment += timedelta(minutes=30)
        set_clock(clock_server, moment)
        settle(0.25)
    settle(1)
    assert receiver.delivered() == Counter({"ep-kiri": 1, "ep-utc": 1, "ep-la": 1})


def test_maximum_duration_counts_from_each_zones_own_send_time(clock_server, pinpoint, app_id, receiver) -> None:
    """Local time: Los Angeles' batch is scheduled at its own 09:00 (16:00 UTC), seven hours after the occurrence;
    MaximumDuration (600 s) counts from then, so it is sent, not failed before its first attempt."""
    load(pinpoint, app_id, [endpoint("ep-utc", "UTC"), endpoint("ep-la", "America/Los_Angeles")])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2031-04-08T09:00:00Z")
    set_clock(clock_server, start - timedelta(days=1))
    schedule = {"StartTime": iso(start), "IsLocalTime": True, "Timezone": "UTC"}
    limits = {"MaximumDuration": 600}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, Limits=limits)["Id"]
    la_nine = start + timedelta(hours=7)  # 09:00 in Los Angeles (PDT, UTC-7) on 2031-04-08
    for moment in (start - timedelta(hours=14), start + timedelta(minutes=1), la_nine + timedelta(minutes=1)):
        set_clock(clock_server, moment)
        settle(0.5)
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED", timeout=30)
    found = {o["EndpointId"]: (o["Status"], o.get("Reason")) for o in outcomes(clock_server, app_id, cid)}
    assert found == {"ep-utc": ("SENT", None), "ep-la": ("SENT", None)}


def test_total_limit_stops_after_that_many_sends(clock_server, pinpoint, app_id, receiver) -> None:
    load(pinpoint, app_id, [endpoint(f"ep-{i}") for i in range(8)])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-11-04T06:00:00Z")
    set_clock(clock_server, start - timedelta(hours=1))
    schedule = {"StartTime": iso(start), "EndTime": iso(start + timedelta(days=3, hours=1)), "Frequency": "DAILY"}
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, Limits={"Total": 2})["Id"]
    for day in range(4):
        moment = start + timedelta(days=day)
        set_clock(clock_server, moment)
        wait_for_runs(clock_server, pinpoint, app_id, cid, day + 1, "COMPLETED" if day == 3 else "PENDING_NEXT_RUN")
        expected = ("SENT", None) if day < 2 else ("SKIPPED", "TOTAL_LIMIT")
        assert reasons_of_run(clock_server, app_id, cid, moment) == Counter({expected: 8}), day
    assert receiver.delivered() == Counter({f"ep-{i}": 2 for i in range(8)})
    items = activities(pinpoint, app_id, cid)
    assert sorted(a["SuccessfulEndpointCount"] for a in items) == [0, 0, 8, 8]


def paced_campaign(server: Server, pinpoint: Any, app_id: str, url: str, count: int, rate: int, at: str) -> str:
    """``count`` endpoints and a campaign to them paced at ``rate`` messages a second, started now, at ``at``."""
    load(pinpoint, app_id, [endpoint(f"ep-{i:04d}") for i in range(count)])
    segment = audience_segment(pinpoint, app_id)
    start = utc(at)
    set_clock(server, start)
    limits = {"MessagesPerSecond": rate}
    return str(webhook_campaign(pinpoint, app_id, segment, url, {"StartTime": iso(start)}, Limits=limits)["Id"])


def test_messages_per_second_paces_delivery(clock_server, pinpoint, app_id, receiver) -> None:
    cid = paced_campaign(clock_server, pinpoint, app_id, receiver.url, 500, 100, "2030-12-02T06:00:00Z")
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED", timeout=30)
    posts = receiver.posts()
    assert len(posts) == 10 and sum(receiver.delivered().values()) == 500
    spread = posts[-1].received_at - posts[0].received_at
    # 10 batches of 50 at 100 a second: each start waits 0.5 s for the one before, so the 10th starts 4.5 s in.
    assert spread >= 4.0, f"500 messages at 100/s arrived over {spread:.2f} s"
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.25, [round(g, 2) for g in gaps]


def test_a_rate_under_50_a_second_makes_batches_of_that_size(clock_server, pinpoint, app_id, receiver) -> None:
    """MessagesPerSecond 20: batches of 20, one a second. Batches of 50 went out at once, 50 in that second."""
    cid = paced_campaign(clock_server, pinpoint, app_id, receiver.url, 60, 20, "2030-12-04T06:00:00Z")
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED", timeout=30)
    posts = receiver.posts()
    assert [len(post.endpoint_ids) for post in posts] == [20, 20, 20]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.8, [round(g, 2) for g in gaps]


def test_messages_per_second_is_the_campaigns_rate_across_overlapping_runs(clock_server, pinpoint, app_id, receiver):
    """Limits.MessagesPerSecond is "the maximum number of messages that a campaign can send each second". Hourly at
    local time, the run of 13:00 reaches UTC while the run of 12:00 reaches UTC-1: both send at once, and together
    they keep the campaign's 100 a second (paced per run, their batches came in pairs, twice the rate)."""
    utc_ids, west_ids = [f"pu-{i:03d}" for i in range(250)], [f"pw-{i:03d}" for i in range(250)]
    load(
        pinpoint, app_id, [endpoint(i, "UTC") for i in utc_ids] + [endpoint(i, "Atlantic/Cape_Verde") for i in west_ids]
    )
    segment = audience_segment(pinpoint, app_id)
    start = utc("2031-05-05T12:00:00Z")
    set_clock(clock_server, start - timedelta(days=1))
    schedule = {"StartTime": iso(start), "EndTime": iso(start + timedelta(hours=1, minutes=1)), "Frequency": "HOURLY",
                "IsLocalTime": True, "Timezone": "UTC"}  # fmt: skip
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule, Limits={"MessagesPerSecond": 100})["Id"]
    for ahead in (14, 13):  # each occurrence's run is planned when UTC+14 reaches it; nothing is due yet
        set_clock(clock_server, start - timedelta(hours=ahead))
        settle(1)
    assert receiver.post_count() == 0
    set_clock(clock_server, start)  # 12:00's UTC batches
    wait_for(lambda: sum(receiver.delivered().values()) == 250, 30, "12:00 in UTC")
    # (Each send time in turn: a jump past one is downtime, after which only the latest occurrence is sent.)
    set_clock(clock_server, start + timedelta(hours=1))  # 12:00's UTC-1 batches and 13:00's UTC batches, together
    wait_for(lambda: sum(receiver.delivered().values()) == 750, 30, "750 messages at 100 a second")
    posts = receiver.posts()[5:]
    assert len(posts) == 10 and len({post.payload["ActivityId"] for post in posts}) == 2  # of the two runs
    assert {post.payload["ScheduledTime"] for post in posts} == {iso(start + timedelta(hours=1))}
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.25, [round(g, 2) for g in gaps]  # one batch of 50 each 0.5 s, whichever run it is of
    set_clock(clock_server, start + timedelta(hours=2))  # 13:00 in UTC-1
    wait_for_runs(clock_server, pinpoint, app_id, cid, 2, "COMPLETED", timeout=30)
    assert receiver.delivered() == Counter({i: 2 for i in utc_ids + west_ids})


def test_deleting_a_campaign_while_it_sends_stops_its_sending(clock_server, pinpoint, app_id, receiver) -> None:
    """20 batches paced at 50 messages a second (one a second); deleted after 3 have arrived, the campaign sends
    at most the batch in flight and the one starting then: its batches read ahead are dropped."""
    cid = paced_campaign(clock_server, pinpoint, app_id, receiver.url, 1000, 50, "2030-12-03T06:00:00Z")
    receiver.wait_for_requests(3, timeout=30, method="POST")
    pinpoint.delete_campaign(ApplicationId=app_id, CampaignId=cid)
    deleted_at = receiver.post_count()
    time.sleep(4)  # four more would have arrived
    assert receiver.post_count() <= deleted_at + 2, (deleted_at, receiver.post_count())


def test_maximum_duration_fails_what_is_not_sent_in_time(clock_server, pinpoint, app_id, receiver) -> None:
    """Limits.MaximumDuration: batches that have not started by then end FAILED with the reason; the others SENT."""
    ids = [f"ep-{i:03d}" for i in range(300)]
    load(pinpoint, app_id, [endpoint(i) for i in ids])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-12-09T06:00:00Z")
    set_clock(clock_server, start)
    limits = {"MessagesPerSecond": 50, "MaximumDuration": 60}  # a batch of 50 a second: 6 batches over 5 s
    cid = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": iso(start)}, Limits=limits)["Id"]
    wait_for(lambda: len(receiver.posts()) >= 2, timeout=30, what="two batches delivered")
    set_clock(clock_server, start + timedelta(seconds=61))  # the run is past its MaximumDuration now
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED", timeout=30)
    sent = {endpoint_id for post in receiver.posts() for endpoint_id in post.endpoint_ids}
    assert 100 <= len(sent) <= 150  # the two, and at most one that had started when the clock moved
    found = {o["EndpointId"]: o for o in outcomes(clock_server, app_id, cid)}
    assert sorted(found) == ids
    for endpoint_id, outcome in found.items():
        if endpoint_id in sent:
            assert (outcome["Status"], outcome["Reason"]) == ("SENT", None)
        else:
            assert outcome["Status"] == "FAILED", outcome
            assert outcome["Reason"] == "MAXIMUM_DURATION: the run passed its MaximumDuration of 60 s"
    [activity] = activities(pinpoint, app_id, cid)
    assert activity["SuccessfulEndpointCount"] == len(sent) and activity["TotalEndpointCount"] == 300


FAILING_SLOWLY = """
import time

def handler(event, context):
    time.sleep(1.2)
    raise RuntimeError("not today")
"""


@pytest.mark.parametrize("mode", ["FILTER", "CHANNEL"])
def test_maximum_duration_stops_function_attempts(clock_server, pinpoint, app_id, receiver, mode) -> None:
    """MaximumDuration holds for functions too: no attempt of a FILTER hook or of a function channel starts after it.
    The run starts 58 s late on the manual clock, so 2 s of its 60 are left: the function fails after 1.2 s, the
    second attempt starts in time, the third would not (3 attempts without the limit)."""
    fn = f"late-{mode.lower()}"
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{fn}"
    deploy(clock_server.lambda_(), fn, FAILING_SLOWLY)
    ids = [f"ep-{i:02d}" for i in range(20)]
    load(pinpoint, app_id, [endpoint(i) for i in ids])
    segment = audience_segment(pinpoint, app_id)
    start = utc("2030-12-16T06:00:00Z")
    set_clock(clock_server, start - timedelta(minutes=1))
    limits = {"MaximumDuration": 60}
    if mode == "FILTER":
        extra: dict[str, Any] = {"Hook": {"LambdaFunctionName": fn, "Mode": "FILTER"}}
        target = receiver.url
    else:
        extra, target = {}, arn
    cid = webhook_campaign(pinpoint, app_id, segment, target, {"StartTime": iso(start)}, Limits=limits, **extra)["Id"]
    set_clock(clock_server, start + timedelta(seconds=58))  # the run starts now, with 2 s of its 60 left
    wait_for_runs(clock_server, pinpoint, app_id, cid, 1, "COMPLETED", timeout=60)
    found = outcomes(clock_server, app_id, cid)
    assert sorted(o["EndpointId"] for o in found) == ids
    where = f"FILTER {fn}" if mode == "FILTER" else arn
    for outcome in found:
        assert outcome["Status"] == "FAILED", outcome
        reason = outcome["Reason"]
        assert reason.startswith(f"MAXIMUM_DURATION: the run passed its MaximumDuration of 60 s ({where}: "), reason
        assert "the deadline passed; 2 attempt(s) made for this batch, the last: RuntimeError: not today" in reason
    assert receiver.post_count() == 0
