"""Delivery end to end: what a campaign does when the webhook fails, slows down, drops the connection or refuses.

The server here runs the real clock with small backoffs (POINTCAST_DELIVERY_BACKOFF_BASE=0.05, CAP=0.2,
TIMEOUT=2, 5 attempts), so every retry path finishes in seconds. Each test has its own application and receiver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_server, running_server
from tests.support.campaigns import (
    OK,
    RESET,
    Gate,
    Post,
    Receiver,
    Script,
    activities,
    attempts_of,
    audience_segment,
    endpoint,
    iso,
    load,
    outcomes,
    own,
    progress,
    settle,
    slow,
    wait_for,
    wait_for_runs,
    webhook_campaign,
)
from tests.support.server import Server
from tests.support.tls import RequestRecord, TestCA

SMALL_BACKOFFS = {
    "POINTCAST_DELIVERY_BACKOFF_BASE": "0.05",
    "POINTCAST_DELIVERY_BACKOFF_CAP": "0.2",
    "POINTCAST_DELIVERY_TIMEOUT": "2",
    "POINTCAST_DELIVERY_ATTEMPTS": "5",
    "POINTCAST_SCHEDULER_INTERVAL": "0.2",
}
TIMEOUT, CAP, ATTEMPTS = 2.0, 0.2, 5


@pytest.fixture(scope="module")
def server(backend: str, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server's shape, with the small delivery backoffs these tests count on."""
    with running_server(backend, tmp_path_factory.mktemp(f"delivery-{backend}"), ca_bundle, **SMALL_BACKOFFS) as srv:
        yield srv


IDS = [f"ep-{i:03d}" for i in range(120)]  # three batches: 50, 50, 20


def run_campaign(server: Server, pinpoint: Any, app_id: str, rx: Receiver, ids: list[str] = IDS) -> str:
    """Load ``ids``, create an IMMEDIATE campaign to ``rx`` and wait for it to complete; the campaign id."""
    load(pinpoint, app_id, [endpoint(i) for i in ids])
    segment = audience_segment(pinpoint, app_id)
    campaign_id = str(webhook_campaign(pinpoint, app_id, segment, rx.url, {"StartTime": "IMMEDIATE"})["Id"])
    wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)
    return campaign_id


def by_batch(posts: list[Post]) -> dict[str, list[Post]]:
    grouped: dict[str, list[Post]] = {}
    for post in posts:
        grouped.setdefault(post.batch_id, []).append(post)
    return grouped


def outcome_map(server: Server, app_id: str, campaign_id: str) -> dict[str, dict[str, Any]]:
    found = outcomes(server, app_id, campaign_id)
    assert len({o["EndpointId"] for o in found}) == len(found)  # one outcome per endpoint
    return {o["EndpointId"]: o for o in found}


def assert_all_sent(server: Server, pinpoint: Any, app_id: str, campaign_id: str, ids: list[str] = IDS) -> None:
    found = outcome_map(server, app_id, campaign_id)
    assert sorted(found) == sorted(ids)
    assert {(o["Status"], o["Reason"]) for o in found.values()} == {("SENT", None)}
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["Result"] == "SUCCESS" and activity["State"] == "COMPLETED"
    assert activity["SuccessfulEndpointCount"] == len(ids) == activity["TotalEndpointCount"]


def test_server_errors_then_success_retry_the_same_batch(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = Script((500, {}, b"oops"), (500, {}, b"oops again"))
    campaign_id = run_campaign(server, pinpoint, app_id, receiver)
    assert_all_sent(server, pinpoint, app_id, campaign_id)
    batches = by_batch(receiver.posts())
    assert len(batches) == 3
    for batch_id, posts in batches.items():
        assert len(posts) == 3, batch_id  # two failures, then success
        assert all(post.payload == posts[0].payload for post in posts)  # the same batch each time
    assert receiver.delivered() == Counter({i: 3 for i in IDS})
    # Each endpoint's outcome names the batch that carried it, and every attempt is on record.
    found = outcome_map(server, app_id, campaign_id)
    for batch_id, posts in batches.items():
        assert {found[i]["BatchId"] for i in posts[0].endpoint_ids} == {batch_id}
    recorded = attempts_of(server, batches)
    for batch_id in batches:
        assert [(a.attempt, a.status_code) for a in recorded[batch_id]] == [(1, 500), (2, 500), (3, 200)]
        assert recorded[batch_id][0].response == "oops"


def test_too_many_requests_honours_retry_after(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = Script((429, {"Retry-After": "1"}, b"slow down"))
    campaign_id = run_campaign(server, pinpoint, app_id, receiver)
    assert_all_sent(server, pinpoint, app_id, campaign_id)
    for batch_id, posts in by_batch(receiver.posts()).items():
        assert len(posts) == 2, batch_id
        # Retry-After 1 s, capped at POINTCAST_DELIVERY_BACKOFF_CAP (0.2 s); the jittered backoff alone would be
        # at most 0.05 s here, so a gap of about 0.2 s shows the header was used.
        gap = posts[1].received_at - posts[0].received_at
        assert CAP * 0.9 <= gap < 1.0, gap
    for rows in attempts_of(server, by_batch(receiver.posts())).values():
        assert [a.status_code for a in rows] == [429, 200]


def test_an_answer_slower_than_the_timeout_is_retried(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = Script(slow(TIMEOUT + 1.5))
    campaign_id = run_campaign(server, pinpoint, app_id, receiver)
    assert_all_sent(server, pinpoint, app_id, campaign_id)
    batches = by_batch(receiver.posts())
    for batch_id, posts in batches.items():
        assert len(posts) == 2, batch_id
        assert posts[1].received_at - posts[0].received_at >= TIMEOUT * 0.9
    for rows in attempts_of(server, batches).values():
        assert rows[0].status_code is None and "timed out" in rows[0].error
        assert rows[1].status_code == 200 and rows[1].error is None


def test_a_dropped_connection_is_retried(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = Script(RESET)
    campaign_id = run_campaign(server, pinpoint, app_id, receiver)
    assert_all_sent(server, pinpoint, app_id, campaign_id)
    batches = by_batch(receiver.posts())
    assert len(batches) == 3 and all(len(posts) == 2 for posts in batches.values())
    for rows in attempts_of(server, batches).values():
        assert rows[0].status_code is None and rows[0].error
        assert rows[1].status_code == 200


def first_batch_answers(reply: Any) -> Any:
    """A responder: the batch holding ep-000 gets ``reply`` every time; the others succeed."""

    def responder(record: RequestRecord) -> Any:
        return reply if b'"ep-000"' in record.body else OK

    return responder


def check_one_failed_batch(
    server: Server, pinpoint: Any, app_id: str, campaign_id: str, rx: Receiver, tries: int, reason: str
) -> None:
    batches = by_batch(rx.posts())
    [failed] = [batch_id for batch_id, posts in batches.items() if "ep-000" in posts[0].endpoint_ids]
    assert len(batches[failed]) == tries
    assert all(len(posts) == 1 for batch_id, posts in batches.items() if batch_id != failed)
    failed_ids = set(batches[failed][0].endpoint_ids)
    assert len(failed_ids) == 50
    found = outcome_map(server, app_id, campaign_id)
    assert sorted(found) == IDS
    for endpoint_id, outcome in found.items():
        if endpoint_id in failed_ids:
            assert outcome["Status"] == "FAILED" and reason in outcome["Reason"], outcome
            assert outcome["BatchId"] == failed
        else:
            assert (outcome["Status"], outcome["Reason"]) == ("SENT", None)
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["Result"] == "FAIL" and activity["State"] == "COMPLETED"
    assert activity["SuccessfulEndpointCount"] == len(IDS) - 50
    assert activity["TotalEndpointCount"] == len(IDS)
    report = progress(server, app_id, campaign_id)
    assert (report["Sent"], report["Failed"], report["PendingBatches"]) == (70, 50, 0)
    events = own(server, f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/events")["Item"]
    statuses = Counter(e["attributes"]["campaign_send_status"] for e in events)
    assert statuses == Counter({"SUCCESS": 70, "FAILURE": 50})
    recorded = attempts_of(server, [failed])[failed]
    assert len(recorded) == tries


def test_a_client_error_is_final(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = first_batch_answers((400, {}, b'{"error": "bad batch"}'))
    campaign_id = run_campaign(server, pinpoint, app_id, receiver)
    settle(0.5)  # no retry comes later either
    check_one_failed_batch(server, pinpoint, app_id, campaign_id, receiver, 1, "HTTP 400")
    [failed] = [p.batch_id for p in receiver.posts() if "ep-000" in p.endpoint_ids]
    [attempt] = attempts_of(server, [failed])[failed]
    assert attempt.status_code == 400 and attempt.response == '{"error": "bad batch"}'
    # What the user sees of it: the outcome's last attempt, and the batch's attempts.
    outcome = outcome_map(server, app_id, campaign_id)["ep-000"]
    last = outcome["LastAttempt"]
    assert (last["Attempt"], last["StatusCode"], last["Response"]) == (1, 400, '{"error": "bad batch"}')
    assert "LastAttempt" not in outcome_map(server, app_id, campaign_id)["ep-119"]  # a SENT one has none
    path = f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/batches/{failed}/attempts"
    assert own(server, path) == {"BatchId": failed, "Attempts": [last]}


def test_a_server_error_every_time_fails_after_all_attempts(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = first_batch_answers((503, {}, b"unavailable"))
    campaign_id = run_campaign(server, pinpoint, app_id, receiver)
    check_one_failed_batch(server, pinpoint, app_id, campaign_id, receiver, ATTEMPTS, "HTTP 503")
    [failed] = {p.batch_id for p in receiver.posts() if "ep-000" in p.endpoint_ids}
    assert [a.status_code for a in attempts_of(server, [failed])[failed]] == [503] * ATTEMPTS
    assert "after 5 attempt" in outcome_map(server, app_id, campaign_id)["ep-000"]["Reason"]


def test_an_empty_segment_completes_with_no_endpoints(server, pinpoint, app_id, receiver) -> None:
    load(pinpoint, app_id, [endpoint(i) for i in IDS[:5]])
    segment = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "nobody",
            "Dimensions": {"Attributes": {"Audience": {"AttributeType": "INCLUSIVE", "Values": ["nobody"]}}},
        },
    )["SegmentResponse"]["Id"]
    campaign_id = webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": "IMMEDIATE"})["Id"]
    wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=30)
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["State"] == "COMPLETED" and activity["Result"] == "SUCCESS"
    assert activity["TotalEndpointCount"] == 0 == activity["SuccessfulEndpointCount"]
    assert receiver.post_count() == 0 and outcomes(server, app_id, campaign_id) == []


def test_an_endpoint_deleted_opted_out_or_inactive_after_planning_is_skipped(
    server, pinpoint, app_id, receiver
) -> None:
    """A local-time campaign is planned up to 14 h ahead: endpoints deleted, opted out or made inactive before their
    batch is due are skipped (the last two were sent)."""
    ids = IDS[:60]  # ep-000..ep-049 in one batch, ep-050..ep-059 in another
    load(pinpoint, app_id, [endpoint(i) for i in ids])
    segment = audience_segment(pinpoint, app_id)
    start = datetime.now(UTC) + timedelta(seconds=4)
    schedule = {"StartTime": iso(start), "IsLocalTime": True, "Timezone": "UTC"}
    campaign_id = webhook_campaign(pinpoint, app_id, segment, receiver.url, schedule)["Id"]
    wait_for(lambda: progress(server, app_id, campaign_id)["Planned"] == 60, 4, "the plan, well before the start")
    deleted = ["ep-001", "ep-002", "ep-049", *ids[50:]]  # three of the first batch, the whole second one
    for endpoint_id in deleted:
        pinpoint.delete_endpoint(ApplicationId=app_id, EndpointId=endpoint_id)
    # Opted out or made inactive since planning: checked again when the batch is read for sending.
    changed = {"ep-010": ("OptOut", "ALL", "OPTED_OUT"), "ep-011": ("EndpointStatus", "INACTIVE", "ENDPOINT_INACTIVE")}
    for endpoint_id, (member, value, _) in changed.items():
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId=endpoint_id, EndpointRequest={member: value})
    if receiver.post_count() or datetime.now(UTC) >= start - timedelta(seconds=0.5):
        pytest.skip("planning and deleting took too long to time this deterministically")
    wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=30)

    [post] = receiver.posts()  # a batch whose endpoints are all gone is not sent at all
    assert sorted(post.endpoint_ids) == sorted(set(ids[:50]) - set(deleted) - set(changed))
    found = outcome_map(server, app_id, campaign_id)
    assert sorted(found) == ids
    for endpoint_id, outcome in found.items():
        expected = ("SKIPPED", "ENDPOINT_DELETED") if endpoint_id in deleted else ("SENT", None)
        if endpoint_id in changed:
            expected = ("SKIPPED", changed[endpoint_id][2])
        assert (outcome["Status"], outcome["Reason"]) == expected, endpoint_id
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["SuccessfulEndpointCount"] == 45 and activity["Result"] == "SUCCESS"


@pytest.mark.parametrize("deleted", ["campaign", "application"])
def test_deleting_mid_run_does_not_block_other_campaigns(
    backend: str, ca_bundle: Path, tmp_path: Path, test_ca: TestCA, deleted: str
) -> None:
    """Deleting a campaign (or its whole application) while it sends: its pending batches must stop (or at least
    end); they must not hold the delivery slots forever."""
    srv, schema = make_server(
        backend, tmp_path / "srv", ca_bundle, **SMALL_BACKOFFS, POINTCAST_DELIVERY_CONCURRENCY="2"
    )
    srv.start()
    try:
        pinpoint = srv.pinpoint()
        apps = [pinpoint.create_app(CreateApplicationRequest={"Name": n})["ApplicationResponse"]["Id"] for n in "ab"]
        with Receiver(test_ca) as first, Receiver(test_ca) as second:
            gate = Gate(limit=15)
            first.responder = gate
            load(pinpoint, apps[0], [endpoint(f"a-{i:03d}") for i in range(300)])  # six batches
            segment = audience_segment(pinpoint, apps[0])
            doomed = webhook_campaign(pinpoint, apps[0], segment, first.url, {"StartTime": "IMMEDIATE"})["Id"]
            first.wait_for_requests(2, timeout=10, method="POST")  # both slots held by the gate
            if deleted == "campaign":
                pinpoint.delete_campaign(ApplicationId=apps[0], CampaignId=doomed)
            else:
                pinpoint.delete_app(ApplicationId=apps[0])
            gate.open()

            load(pinpoint, apps[1], [endpoint(f"b-{i:03d}") for i in range(100)])
            other_segment = audience_segment(pinpoint, apps[1])
            other = webhook_campaign(pinpoint, apps[1], other_segment, second.url, {"StartTime": "IMMEDIATE"})["Id"]
            try:
                wait_for_runs(srv, pinpoint, apps[1], other, 1, "COMPLETED", timeout=15)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}; meanwhile the deleted {deleted}'s webhook got {first.post_count()} POSTs "
                    f"and the other campaign's got {second.post_count()} (for 2 batches)"
                ) from None
            assert second.delivered() == Counter({f"b-{i:03d}": 1 for i in range(100)})
            settle(1.5)
            assert first.post_count() <= 6, f"the deleted {deleted}'s batches are sent over and over"
    finally:
        srv.stop()
        if schema:
            schema.drop()
