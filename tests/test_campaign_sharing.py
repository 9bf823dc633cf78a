"""Campaigns share the server's delivery slots: a campaign that has to wait does not make the others wait.

A batch holds one of the ``POINTCAST_DELIVERY_CONCURRENCY`` slots only while it is being delivered. A campaign paced
by ``Limits.MessagesPerSecond``, or whose webhook or WebUrl hook is down (its circuit breaker is open), keeps its
batches in the read-ahead, where they hold no slot; batches caught by an outage in the middle of their delivery give
their slots up while they wait. And the runs with batches to send take turns, so a small campaign started after a
large one is not queued behind all of the large one's read-ahead.

The server runs with 4 slots, so that a campaign could fill them all, and one worker per function.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pointcast.channels.webhook.breaker import destination_of
from pointcast.engine.treatments import bucket
from tests.conftest import running_server
from tests.support.campaigns import (
    OK,
    Receiver,
    new_app,
    outcomes,
    progress,
    slow,
    small_campaign_time,
    start,
    status,
    wait_for,
    wait_for_runs,
)
from tests.support.functions import deploy
from tests.support.server import Server
from tests.support.tls import RequestRecord

ENV = {
    "POINTCAST_DELIVERY_CONCURRENCY": "4",
    "POINTCAST_DELIVERY_BACKOFF_BASE": "0.05",
    "POINTCAST_DELIVERY_BACKOFF_CAP": "0.2",
    "POINTCAST_DELIVERY_ATTEMPTS": "5",
    "POINTCAST_DELIVERY_TIMEOUT": "2",
    "POINTCAST_DELIVERY_BREAKER_FAILURES": "3",
    "POINTCAST_DELIVERY_BREAKER_COOLDOWN": "0.5",
    "POINTCAST_DELIVERY_OUTAGE_LIMIT": "8",
    "POINTCAST_SCHEDULER_INTERVAL": "0.1",
    "POINTCAST_FUNCTION_CONCURRENCY": "1",
    "POINTCAST_HOOK_TIMEOUT": "10",
}
QUICK = 4.0  # seconds a one-batch campaign may take with a free slot (it takes well under one)


@pytest.fixture(scope="module")
def server(backend: str, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(backend, tmp_path_factory.mktemp(f"sharing-{backend}"), ca_bundle, **ENV) as srv:
        yield srv


def test_a_paced_campaign_does_not_hold_the_slots(server, pinpoint, receiver, test_ca) -> None:
    """MessagesPerSecond 50: one batch a second. Its 12 batches would have filled the 4 slots, each asleep, for 12 s."""
    app_id = new_app(pinpoint, "paced")
    paced = start(pinpoint, app_id, 600, receiver.url, Limits={"MessagesPerSecond": 50})
    wait_for(lambda: receiver.post_count() >= 1, timeout=30, what="the paced campaign's first batch")
    took = small_campaign_time(server, pinpoint, test_ca)
    assert took < QUICK, f"the small campaign took {took:.1f} s"
    assert status(pinpoint, app_id, paced) == "EXECUTING"  # the paced one is still at it
    wait_for_runs(server, pinpoint, app_id, paced, 1, "COMPLETED", timeout=60)
    posts = receiver.posts()
    assert len(posts) == 12
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.8, [round(g, 2) for g in gaps]  # still one batch a second
    assert {o["Status"] for o in outcomes(server, app_id, paced)} == {"SENT"}


def test_a_slow_receiver_does_not_take_every_slot(server, pinpoint, receiver, test_ca) -> None:
    """A receiver that answers in 1.5 s: its campaign's batches held all 4 slots, and another campaign of 20 batches
    got about one slot in two as they freed. A run now gets its share of the slots while another's batches wait,
    so the second campaign keeps the slots it gets."""
    receiver.responder = slow(1.5)  # under the delivery timeout here (2 s)
    app_id = new_app(pinpoint, "slow")
    slow_one = start(pinpoint, app_id, 1000, receiver.url)
    wait_for(lambda: len(receiver.requests) >= 4, timeout=30, what="the slow receiver's first batches")
    with Receiver(test_ca) as other:
        quick_app = new_app(pinpoint, "quick")
        began = time.monotonic()
        quick = start(pinpoint, quick_app, 1000, other.url)
        wait_for_runs(server, pinpoint, quick_app, quick, 1, "COMPLETED", timeout=60)
        took = time.monotonic() - began
        assert other.post_count() == 20
    assert took < QUICK, f"20 batches took {took:.1f} s beside the slow receiver"  # 7.6 s before
    pinpoint.delete_campaign(ApplicationId=app_id, CampaignId=slow_one)  # its sending stops


class Down:
    """503 for every POST until ``up()``; counts them, and keeps those it took."""

    def __init__(self) -> None:
        self.is_up = False
        self.refused = 0
        self.taken: list[RequestRecord] = []

    def up(self) -> None:
        self.is_up = True

    def __call__(self, request: RequestRecord) -> Any:
        if self.is_up:
            self.taken.append(request)
            return OK
        self.refused += 1
        return 503, {}, b"down"


def test_a_campaign_whose_webhook_is_down_does_not_hold_the_slots(server, pinpoint, receiver, test_ca) -> None:
    """The 8 batches of a campaign whose webhook is down wait for its breaker (up to the outage limit, 8 s here):
    those that were being delivered give their slots up, the others are not started. A campaign to a webhook that
    is up goes through meanwhile; when the first one's webhook is back, its batches are all sent."""
    receiver.responder = down = Down()
    app_id = new_app(pinpoint, "down")
    stuck = start(pinpoint, app_id, 400, receiver.url)
    wait_for(lambda: progress(server, app_id, stuck)["DestinationsDown"], timeout=30, what="the breaker open")
    took = small_campaign_time(server, pinpoint, test_ca)
    assert took < QUICK, f"the small campaign took {took:.1f} s"

    def engine() -> dict[str, Any]:
        return dict(httpx.get(f"{server.url}/pointcast/health").json()["engine"])

    # what is in flight is waiting for the breaker, holding no slot
    waiting = wait_for(lambda: (e := engine())["Waiting"] == e["InFlight"] > 0 and e, timeout=10, what="all waiting")
    assert any(d["Destination"] == destination_of(receiver.url) for d in waiting["DestinationsDown"])
    down.up()
    wait_for_runs(server, pinpoint, app_id, stuck, 1, "COMPLETED", timeout=60)
    found = outcomes(server, app_id, stuck)
    assert len(found) == 400 and {o["Status"] for o in found} == {"SENT"}
    assert len({post.batch_id for post in receiver.posts()}) == 8
    assert down.refused <= 8 + 8 / 0.5 + 4  # each batch's first attempt, then about a probe per cool-down


class HookDown(Down):
    """A FILTER hook's WebUrl: 503 until ``up()``, then each batch's endpoints handed back as they came."""

    def __call__(self, request: RequestRecord) -> Any:
        if self.is_up:
            self.taken.append(request)
            return 200, {"Content-Type": "application/json"}, json.dumps(json.loads(request.body)["Endpoints"]).encode()
        self.refused += 1
        return 503, {}, b"down"


def test_a_campaign_whose_web_url_hook_is_down_is_held_like_one_whose_webhook_is(
    server, pinpoint, receiver, test_ca
) -> None:
    """A FILTER hook's WebUrl that is down holds its campaign's batches back as a webhook that is down does: its
    220 batches (11,000 endpoints, three planning chunks) are far more than a run keeps read ahead (4 x 4 slots), so
    the rest stay in the store and planning goes on to the end while the hook is down; other campaigns go through;
    once the hook is back every batch goes to it and on to the channel, once."""
    count = 11_000
    with Receiver(test_ca) as hook_rx:
        hook_rx.responder = down = HookDown()
        app_id = new_app(pinpoint, "hook-down")
        stuck = start(pinpoint, app_id, count, receiver.url, Hook={"WebUrl": hook_rx.url, "Mode": "FILTER"})
        wait_for(lambda: progress(server, app_id, stuck)["DestinationsDown"], timeout=30, what="the hook's breaker")
        took = small_campaign_time(server, pinpoint, test_ca)
        assert took < QUICK, f"the small campaign took {took:.1f} s"
        # before, planning waited for the held batches to leave the read-ahead: it stopped after its first chunk
        wait_for(lambda: progress(server, app_id, stuck)["Planned"] == count, timeout=5, what="planning to the end")
        assert progress(server, app_id, stuck)["DestinationsDown"] and receiver.post_count() == 0
        down.up()
        wait_for_runs(server, pinpoint, app_id, stuck, 1, "COMPLETED", timeout=60)
    found = outcomes(server, app_id, stuck)
    assert len(found) == count and {o["Status"] for o in found} == {"SENT"}
    hooked = [i for request in down.taken for i in json.loads(request.body)["Endpoints"]]
    sent = [i for post in receiver.posts() for i in post.payload["Endpoints"]]
    assert len(set(hooked)) == len(hooked) == count and len(set(sent)) == len(sent) == count


def test_a_treatment_whose_webhook_is_down_does_not_hold_back_the_other(server, pinpoint, receiver, test_ca) -> None:
    """An A/B campaign: treatment A's webhook is down, B delivers elsewhere. B's batches are all sent while A's
    wait for their breaker (up to the outage limit, 8 s here); then A's webhook comes back and its batches go too."""
    a_b_test(server, pinpoint, receiver, test_ca, 400)


def test_a_down_treatment_with_more_batches_than_the_read_ahead_holds(server, pinpoint, receiver, test_ca) -> None:
    """The same with 4,000 endpoints: A's ~40 batches are more than a run keeps read ahead (4 x 4 slots). Those
    beyond it are left in the store, not in the read-ahead, so planning goes on and B's ~40 batches are all sent
    while A is down; A's are read again once its webhook is back, and none is lost or sent twice."""
    a_b_test(server, pinpoint, receiver, test_ca, 4000)


def start_a_b(pinpoint: Any, name: str, count: int, a_url: str, b_url: str) -> tuple[str, str]:
    """A project of ``count`` endpoints and a campaign to them that starts now: treatment A to ``a_url``, treatment B
    (SizePercent 50) to ``b_url``. Returns (app id, campaign id)."""
    app_id = new_app(pinpoint, name)
    b = {
        "SizePercent": 50,
        "TreatmentName": "B",
        "MessageConfiguration": {"CustomMessage": {"Data": "b"}},
        "CustomDeliveryConfiguration": {"DeliveryUri": b_url, "EndpointTypes": ["CUSTOM"]},
    }
    return app_id, start(pinpoint, app_id, count, a_url, AdditionalTreatments=[b])


def a_b_test(server: Server, pinpoint: Any, receiver: Receiver, test_ca: Any, count: int) -> None:
    receiver.responder = down = Down()
    with Receiver(test_ca) as other:
        app_id, ab = start_a_b(pinpoint, "ab", count, receiver.url, other.url)
        wait_for(lambda: progress(server, app_id, ab)["DestinationsDown"], timeout=30, what="A's breaker open")
        b_endpoints = sum(1 for i in range(count) if bucket(ab, f"ep-{i:04d}") < 50)  # B takes buckets [0, 50)
        b_batches = -(-b_endpoints // 50)
        wait_for(lambda: other.post_count() == b_batches, timeout=5, what=f"B's {b_batches} batches")
        assert status(pinpoint, app_id, ab) == "EXECUTING" and progress(server, app_id, ab)["DestinationsDown"]
        down.up()
        wait_for_runs(server, pinpoint, app_id, ab, 1, "COMPLETED", timeout=60)
        found = outcomes(server, app_id, ab)
        assert len(found) == count and {o["Status"] for o in found} == {"SENT"}
        b_ids = [i for post in other.posts() for i in post.payload["Endpoints"]]
        a_ids = [i for request in down.taken for i in json.loads(request.body)["Endpoints"]]
        assert len(set(b_ids)) == len(b_ids) == b_endpoints and other.post_count() == b_batches
        assert len(set(a_ids)) == len(a_ids) == count - b_endpoints


def test_a_treatment_back_while_its_run_is_planned_sends_what_waited_in_the_store_first(
    server, pinpoint, receiver, test_ca
) -> None:
    """20,000 endpoints, A/B: planning hands on 4 chunks of 5,000, each once B's read-ahead has room, and B's webhook
    takes 0.1 s a batch. A is down while the first chunks are planned: its batches beyond the read-ahead are left in
    the store. A comes back while planning goes on, and those are sent before A's batches planned after them (they
    were read only once planning had ended, after the last chunk's), and none is lost or sent twice."""
    count, chunk = 20_000, 5_000  # engine.plan.CHUNK
    receiver.responder = down = Down()
    with Receiver(test_ca, responder=slow(0.1)) as other:
        app_id, ab = start_a_b(pinpoint, "back", count, receiver.url, other.url)
        wait_for(lambda: progress(server, app_id, ab)["DestinationsDown"], timeout=60, what="A's breaker open")
        wait_for(lambda: other.post_count() >= 40, timeout=30, what="B's first 40 batches")  # the 2nd chunk's
        down.up()
        wait_for_runs(server, pinpoint, app_id, ab, 1, "COMPLETED", timeout=120)
        found = outcomes(server, app_id, ab)
        assert len(found) == count and {o["Status"] for o in found} == {"SENT"}
        position = {endpoint_id: n for n, endpoint_id in enumerate(sorted(f"ep-{i:04d}" for i in range(count)))}
        # The chunk each of A's batches was begun in (a part-filled batch is filled on in the next), in the order A's
        # webhook got them.
        order = [min(position[i] for i in json.loads(r.body)["Endpoints"]) // chunk for r in down.taken]
        last = count // chunk - 1
        assert order.index(last) > max(i for i, c in enumerate(order) if c == 0), order  # the 1st chunk's first
        a_ids = [i for request in down.taken for i in json.loads(request.body)["Endpoints"]]
        b_ids = [i for post in other.posts() for i in post.payload["Endpoints"]]
        assert len(set(a_ids)) == len(a_ids) and len(set(b_ids)) == len(b_ids) and len(a_ids) + len(b_ids) == count


def test_runs_take_turns(server, pinpoint, receiver, test_ca) -> None:
    """A 40-batch campaign to a webhook that takes 0.5 s a batch needs 5 s of the 4 slots; a campaign started after
    it does not wait for the 16 batches it has read ahead (2 s of the slots), only for the next slot to free."""
    receiver.responder = slow(0.5)
    app_id = new_app(pinpoint, "large")
    large = start(pinpoint, app_id, 2000, receiver.url)
    wait_for(lambda: receiver.post_count() >= 4, timeout=30, what="the large campaign sending")
    took = small_campaign_time(server, pinpoint, test_ca)
    assert took < 2.0, f"the small campaign took {took:.1f} s"
    assert status(pinpoint, app_id, large) == "EXECUTING"
    wait_for_runs(server, pinpoint, app_id, large, 1, "COMPLETED", timeout=60)
    assert len(outcomes(server, app_id, large)) == 2000


SLOW_FILTER = """
import time

def handler(event, context):
    time.sleep(2)
    return event["Endpoints"]
"""


def test_batches_waiting_for_a_function_worker_do_not_hold_the_slots(server, pinpoint, receiver, test_ca) -> None:
    """A FILTER function that takes 2 s, with one worker: of the 4 batches in flight, 3 wait for it. They lend
    their slots out while they wait, so a campaign without the hook goes through at once, not 2 s later."""
    function = f"slow-filter-{uuid.uuid4().hex[:8]}"
    deploy(server.lambda_(), function, SLOW_FILTER)
    app_id = new_app(pinpoint, "hooked")
    hook = {"LambdaFunctionName": function, "Mode": "FILTER"}
    hooked = start(pinpoint, app_id, 250, receiver.url, Hook=hook)  # 5 batches: 10 s
    wait_for(lambda: receiver.post_count() >= 1, timeout=30, what="the first filtered batch")
    took = small_campaign_time(server, pinpoint, test_ca)
    assert took < 1.5, f"the small campaign took {took:.1f} s"
    assert status(pinpoint, app_id, hooked) == "EXECUTING"
    wait_for_runs(server, pinpoint, app_id, hooked, 1, "COMPLETED", timeout=60)
    found = outcomes(server, app_id, hooked)
    assert len(found) == 250 and {o["Status"] for o in found} == {"SENT"}


def test_campaigns_sharing_a_function_with_one_worker_all_finish(server, pinpoint, test_ca) -> None:
    """Two campaigns whose FILTER hook is the same function, with one worker: batches of both wait for it, lend
    their slots to each other and take them back; every batch is filtered and sent."""
    function = f"shared-filter-{uuid.uuid4().hex[:8]}"
    deploy(server.lambda_(), function, SLOW_FILTER.replace("time.sleep(2)", "time.sleep(0.2)"))
    hook = {"LambdaFunctionName": function, "Mode": "FILTER"}
    with Receiver(test_ca) as first_rx, Receiver(test_ca) as second_rx:
        first_app, second_app = new_app(pinpoint, "first"), new_app(pinpoint, "second")
        first = start(pinpoint, first_app, 400, first_rx.url, Hook=hook)
        wait_for(lambda: first_rx.post_count() >= 1, timeout=30, what="the first campaign sending")
        second = start(pinpoint, second_app, 400, second_rx.url, Hook=hook)
        for app_id, campaign_id in ((first_app, first), (second_app, second)):
            wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)
            found = outcomes(server, app_id, campaign_id)
            assert len(found) == 400 and {o["Status"] for o in found} == {"SENT"}
        assert first_rx.post_count() == second_rx.post_count() == 8


FAILING_FILTER = """
def handler(event, context):
    raise RuntimeError("not today")
"""


def test_batches_backing_off_from_a_failing_function_do_not_hold_the_slots(
    backend, ca_bundle, tmp_path, receiver, test_ca
) -> None:
    """A FILTER function that always fails: each batch tries it 3 times, with back-offs of up to 30 s between. The
    batches in flight lend their slots while they back off, as a webhook's do, so a campaign without the hook goes
    through at once."""
    backing_off = {"POINTCAST_DELIVERY_BACKOFF_BASE": "30", "POINTCAST_DELIVERY_BACKOFF_CAP": "30"}
    with running_server(backend, tmp_path / "backoff", ca_bundle, **{**ENV, **backing_off}) as srv:
        pinpoint = srv.pinpoint()
        function = f"failing-filter-{uuid.uuid4().hex[:8]}"
        deploy(srv.lambda_(), function, FAILING_FILTER)
        app_id = new_app(pinpoint, "failing")
        hook = {"LambdaFunctionName": function, "Mode": "FILTER"}
        failing = start(pinpoint, app_id, 400, receiver.url, Hook=hook)  # 8 batches for the 4 slots

        def engine() -> dict[str, Any]:
            return dict(httpx.get(f"{srv.url}/pointcast/health").json()["engine"])

        # every batch in flight is backing off (or waiting for the one worker), none holds its slot for it
        wait_for(lambda: (e := engine())["Waiting"] == e["InFlight"] == 4, timeout=20, what="all four waiting")
        took = small_campaign_time(srv, pinpoint, test_ca)
        assert took < QUICK, f"the small campaign took {took:.1f} s"
        assert status(pinpoint, app_id, failing) == "EXECUTING" and receiver.post_count() == 0


def test_nothing_is_kept_for_runs_that_are_done(server, pinpoint, test_ca) -> None:
    """What the runner keeps per run (its spec, its pace) goes once the run has nothing left in the server."""
    small_campaign_time(server, pinpoint, test_ca)
    wait_for(
        lambda: httpx.get(f"{server.url}/pointcast/health").json()["engine"]["RunsKept"] == 0,
        timeout=10,
        what="the runs' specs dropped",
    )
