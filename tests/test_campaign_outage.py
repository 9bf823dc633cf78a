"""A webhook that is down for a while: the destination's circuit breaker holds the campaign's batches instead of
letting each burn its attempts in the outage's first second, and gives up, with the reason, past the outage limit.

The server runs the real clock with small backoffs (5 attempts, 0.05-0.2 s apart), a breaker that opens after 3
failures in a row for 0.5 s (it would double up to the backoff cap, which is lower here), and an outage limit of
4 s. Without the breaker each of the six batches would spend its 5 attempts within a second of the outage: 30
refused POSTs, and every endpoint FAILED.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pointcast.channels.webhook.breaker import destination_of
from tests.conftest import running_server
from tests.support.campaigns import (
    OK,
    Receiver,
    activities,
    attempts_of,
    audience_segment,
    endpoint,
    load,
    outcomes,
    progress,
    wait_for,
    wait_for_runs,
    webhook_campaign,
)
from tests.support.server import BIN, KEY_ID, REGION, SECRET, Server, cli_env
from tests.support.tls import RequestRecord

ENV = {
    "POINTCAST_DELIVERY_BACKOFF_BASE": "0.05",
    "POINTCAST_DELIVERY_BACKOFF_CAP": "0.2",
    "POINTCAST_DELIVERY_ATTEMPTS": "5",
    "POINTCAST_DELIVERY_TIMEOUT": "2",
    "POINTCAST_DELIVERY_BREAKER_FAILURES": "3",
    "POINTCAST_DELIVERY_BREAKER_COOLDOWN": "0.5",
    "POINTCAST_DELIVERY_OUTAGE_LIMIT": "4",
    "POINTCAST_SCHEDULER_INTERVAL": "0.2",
}
IDS = [f"ep-{i:03d}" for i in range(300)]  # six batches


@pytest.fixture(scope="module")
def server(backend: str, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(backend, tmp_path_factory.mktemp(f"outage-{backend}"), ca_bundle, **ENV) as srv:
        yield srv


class DownFor:
    """Answers every POST with 503 until ``seconds`` after the first one, then 200; counts what it refused."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.first: float | None = None
        self.refused = 0

    def __call__(self, _: RequestRecord) -> Any:
        now = time.monotonic()
        self.first = self.first or now
        if now - self.first < self.seconds:
            self.refused += 1
            return 503, {}, b"restarting"
        return OK


def run(server: Server, pinpoint: Any, app_id: str, rx: Receiver) -> tuple[str, dict[str, dict[str, Any]]]:
    load(pinpoint, app_id, [endpoint(i) for i in IDS])
    segment = audience_segment(pinpoint, app_id)
    campaign_id = str(webhook_campaign(pinpoint, app_id, segment, rx.url, {"StartTime": "IMMEDIATE"})["Id"])
    wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)
    found = {o["EndpointId"]: o for o in outcomes(server, app_id, campaign_id)}
    assert sorted(found) == IDS  # every endpoint has its one outcome
    return campaign_id, found


def test_a_restarting_webhook_gets_every_batch_once_it_is_back(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = down = DownFor(1.5)
    campaign_id, found = run(server, pinpoint, app_id, receiver)
    assert {(o["Status"], o["Reason"]) for o in found.values()} == {("SENT", None)}
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["Result"] == "SUCCESS" and activity["SuccessfulEndpointCount"] == len(IDS)
    assert 6 <= down.refused <= 6 + 1.5 / 0.5 + 3  # the first attempts, then one probe per cool-down
    posts = receiver.posts()
    batches = {post.batch_id for post in posts}
    assert len(batches) == 6
    for batch_id, tries in attempts_of(server, sorted(batches)).items():
        assert tries[-1].status_code == 200 and all(t.status_code in (200, 503) for t in tries[:-1]), batch_id


def test_a_webhook_down_past_the_outage_limit_fails_with_the_reason(server, pinpoint, app_id, receiver) -> None:
    receiver.responder = down = DownFor(3600)
    load(pinpoint, app_id, [endpoint(i) for i in IDS])
    segment = audience_segment(pinpoint, app_id)
    started = time.monotonic()
    campaign_id = str(webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": "IMMEDIATE"})["Id"])
    # while it waits, its progress (and so `pointcast campaigns watch`) says for what
    waiting = wait_for(
        lambda: progress(server, app_id, campaign_id)["DestinationsDown"], timeout=30, what="the destination down"
    )
    assert [d["Destination"] for d in waiting] == [destination_of(receiver.url)]
    watched = subprocess.run(
        [str(BIN / "pointcast"), "campaigns", "watch", app_id, campaign_id, "--endpoint-url", server.url],
        env={
            **cli_env(),
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "COLUMNS": "250",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watched.returncode == 1  # endpoints failed
    assert f"{destination_of(receiver.url)} is down (" in watched.stdout and "s; HTTP 503)" in watched.stdout
    assert "COMPLETED: 0 sent, 300 failed" in watched.stdout
    wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)
    assert 4 <= time.monotonic() - started < 30
    found = {o["EndpointId"]: o for o in outcomes(server, app_id, campaign_id)}
    assert sorted(found) == IDS
    for outcome in found.values():
        assert outcome["Status"] == "FAILED"
        assert outcome["Reason"].startswith(f"WEBHOOK_FAILED: {destination_of(receiver.url)} is down: "), outcome
        assert "(the last: HTTP 503)" in outcome["Reason"]
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["Result"] == "FAIL" and activity["SuccessfulEndpointCount"] == 0
    assert down.refused <= 6 + 4 / 0.5 + 3  # the first attempts, then one probe per cool-down
    health = httpx.get(f"{server.url}/pointcast/health").json()
    down_now = health["engine"]["DestinationsDown"]
    [destination] = [d for d in down_now if d["Destination"] == destination_of(receiver.url)]
    assert destination["LastError"] == "HTTP 503" and destination["DownSeconds"] >= 4
    assert health["engine"]["DeliveryClient"].startswith("libcurl/")  # pycurl is a dependency: "auto" takes it


@pytest.mark.parametrize("whose", ["campaign", "project"])
def test_a_web_url_hook_that_is_down_has_its_own_breaker(server, pinpoint, app_id, receiver, test_ca, whose) -> None:
    """A FILTER hook's WebUrl gets the same rest: the channel's webhook is up, the hook's host is down. The
    campaign's progress names it as down, whether the hook is the campaign's own or the project's default."""
    with Receiver(test_ca) as hook_rx:
        hook_rx.responder = down = DownFor(3600)
        load(pinpoint, app_id, [endpoint(i) for i in IDS])
        segment = audience_segment(pinpoint, app_id)
        hook = {"WebUrl": hook_rx.url, "Mode": "FILTER"}
        if whose == "project":
            pinpoint.update_application_settings(
                ApplicationId=app_id, WriteApplicationSettingsRequest={"CampaignHook": hook}
            )
        own_hook = {"Hook": hook} if whose == "campaign" else {}
        campaign_id = str(
            webhook_campaign(pinpoint, app_id, segment, receiver.url, {"StartTime": "IMMEDIATE"}, **own_hook)["Id"]
        )
        waiting = wait_for(
            lambda: progress(server, app_id, campaign_id)["DestinationsDown"], timeout=30, what="the hook's host down"
        )
        assert [d["Destination"] for d in waiting] == [destination_of(hook_rx.url)]
        if whose == "project":  # the run keeps the hook it started with, and its progress still names it
            pinpoint.update_application_settings(
                ApplicationId=app_id, WriteApplicationSettingsRequest={"CampaignHook": {}}
            )
            still = progress(server, app_id, campaign_id)["DestinationsDown"]
            assert [d["Destination"] for d in still] == [destination_of(hook_rx.url)]
        wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)
    found = {o["EndpointId"]: o for o in outcomes(server, app_id, campaign_id)}
    assert sorted(found) == IDS
    for outcome in found.values():
        assert outcome["Status"] == "FAILED"
        reason = f"HOOK_FAILED: FILTER {hook_rx.url}: {destination_of(hook_rx.url)} is down: "
        assert outcome["Reason"].startswith(reason), outcome
    assert receiver.post_count() == 0  # nothing reached the channel
    assert down.refused <= 6 + 4 / 0.5 + 3  # the hook's host got the first attempts and one probe per cool-down
