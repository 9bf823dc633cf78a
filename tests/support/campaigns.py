"""Helpers for end-to-end campaign tests: endpoints, segments, webhook campaigns, the manual clock, a scriptable
receiver, and bounded waits on what the server reports (campaign state, activities, outcomes)."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from pointcast.settings import Settings
from pointcast.store import models as m
from tests.support.server import ACCOUNT_ID, Server
from tests.support.signing import signed_request
from tests.support.tls import Reply, RequestRecord, TestCA, TLSReceiver

BATCH_HEADER = "X-Pointcast-Batch-Id"
AUDIENCE = {"Audience": ["all"]}
OK: Reply = (200, {"Content-Type": "application/json"}, b"{}")
RESET = (-1, {}, b"")  # a Reply that makes a Receiver drop the connection without answering


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def iso(moment: datetime) -> str:
    """The form pointcast writes times in (ms, Z)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- endpoints, segments, campaigns ------------------------------------------------------------------------


def endpoint(endpoint_id: str, zone: str | None = None, **extra: Any) -> dict[str, Any]:
    """A CUSTOM endpoint in the AUDIENCE segment, optionally in a time zone."""
    item: dict[str, Any] = {
        "Id": endpoint_id,
        "ChannelType": "CUSTOM",
        "Address": f"addr-{endpoint_id}",
        "Attributes": dict(AUDIENCE),
        **extra,
    }
    if zone:
        item["Demographic"] = {"Timezone": zone}
    return item


def load(pinpoint: Any, app_id: str, items: list[dict[str, Any]], threads: int = 1) -> None:
    """UpdateEndpointsBatch, 100 a call (several calls at once with ``threads``)."""
    chunks = [items[i : i + 100] for i in range(0, len(items), 100)]

    def put(chunk: list[dict[str, Any]]) -> None:
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": chunk})

    if threads <= 1:
        for chunk in chunks:
            put(chunk)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, chunks))


def audience_segment(pinpoint: Any, app_id: str) -> str:
    """A segment of every endpoint made by ``endpoint()``."""
    segment = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "audience",
            "Dimensions": {"Attributes": {"Audience": {"AttributeType": "INCLUSIVE", "Values": ["all"]}}},
        },
    )["SegmentResponse"]
    return str(segment["Id"])


def webhook_campaign(
    pinpoint: Any, app_id: str, segment_id: str, url: str, schedule: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """CreateCampaign for a custom channel that POSTs to ``url`` (CUSTOM endpoints)."""
    request = {
        "Name": "campaign",
        "SegmentId": segment_id,
        "Schedule": schedule,
        "MessageConfiguration": {"CustomMessage": {"Data": "hello"}},
        "CustomDeliveryConfiguration": {"DeliveryUri": url, "EndpointTypes": ["CUSTOM"]},
        **extra,
    }
    return dict(pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"])


def new_app(pinpoint: Any, name: str) -> str:
    return str(pinpoint.create_app(CreateApplicationRequest={"Name": name})["ApplicationResponse"]["Id"])


def start(pinpoint: Any, app_id: str, count: int, url: str, **extra: Any) -> str:
    """``count`` endpoints in project ``app_id``, and a campaign to them that starts now."""
    load(pinpoint, app_id, [endpoint(f"ep-{i:04d}") for i in range(count)])
    segment = audience_segment(pinpoint, app_id)
    return str(webhook_campaign(pinpoint, app_id, segment, url, {"StartTime": "IMMEDIATE"}, **extra)["Id"])


def small_campaign_time(server: Server, pinpoint: Any, test_ca: TestCA) -> float:
    """Seconds from CreateCampaign to COMPLETED for a one-batch campaign in a project of its own."""
    with Receiver(test_ca) as other:
        app_id = new_app(pinpoint, "small")
        load(pinpoint, app_id, [endpoint(f"small-{i:02d}") for i in range(50)])
        segment = audience_segment(pinpoint, app_id)
        began = time.monotonic()
        campaign_id = webhook_campaign(pinpoint, app_id, segment, other.url, {"StartTime": "IMMEDIATE"})["Id"]
        wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=60)
        took = time.monotonic() - began
        assert other.post_count() == 1
    found = outcomes(server, app_id, campaign_id)
    assert len(found) == 50 and {o["Status"] for o in found} == {"SENT"}
    return took


# --- pointcast's own routes -------------------------------------------------------------------------------


def own(server: Server, path: str, **query: Any) -> Any:
    url = f"{server.url}{path}" + (f"?{urlencode(query)}" if query else "")
    response = signed_request("GET", url)
    assert response.status_code == 200, response.text
    return response.json()


def set_clock(server: Server, moment: datetime | str) -> None:
    """Move the server's manual clock (POINTCAST_MANUAL_CLOCK=true)."""
    text = moment if isinstance(moment, str) else moment.astimezone(UTC).isoformat()
    response = signed_request("POST", f"{server.url}/pointcast/clock", json.dumps({"Now": text}).encode())
    assert response.status_code == 200, response.text


def progress(server: Server, app_id: str, campaign_id: str) -> dict[str, Any]:
    return dict(own(server, f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/progress"))


def outcomes(server: Server, app_id: str, campaign_id: str, page_size: int = 1000) -> list[dict[str, Any]]:
    """Every outcome of the campaign, following NextToken (bounded)."""
    items: list[dict[str, Any]] = []
    token = None
    for _ in range(10_000):
        query: dict[str, Any] = {"page-size": page_size}
        if token:
            query["token"] = token
        page = own(server, f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/outcomes", **query)
        items += page["Item"]
        token = page.get("NextToken")
        if not token:
            return items
    raise AssertionError("outcomes never stopped paginating")


def activities(pinpoint: Any, app_id: str, campaign_id: str) -> list[dict[str, Any]]:
    """Every activity (GetCampaignActivities, paginated)."""
    items: list[dict[str, Any]] = []
    token = None
    for _ in range(1_000):
        kwargs: dict[str, Any] = {"ApplicationId": app_id, "CampaignId": campaign_id, "PageSize": "100"}
        if token:
            kwargs["Token"] = token
        page = pinpoint.get_campaign_activities(**kwargs)["ActivitiesResponse"]
        items += page["Item"]
        token = page.get("NextToken")
        if not token:
            return items
    raise AssertionError("activities never stopped paginating")


def status(pinpoint: Any, app_id: str, campaign_id: str) -> str:
    campaign = pinpoint.get_campaign(ApplicationId=app_id, CampaignId=campaign_id)["CampaignResponse"]
    return str(campaign["State"]["CampaignStatus"])


# --- bounded waits -----------------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_for_runs(
    server: Server,
    pinpoint: Any,
    app_id: str,
    campaign_id: str,
    runs: int,
    state: str | Iterable[str],
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """Wait until the campaign has ``runs`` runs, all COMPLETED, and its status is ``state``; return its runs."""
    states = {state} if isinstance(state, str) else set(state)

    def check() -> Any:
        report = progress(server, app_id, campaign_id)
        done = len(report["Runs"]) == runs and all(r["State"] == "COMPLETED" for r in report["Runs"])
        return report["Runs"] if done and status(pinpoint, app_id, campaign_id) in states else None

    try:
        return list(wait_for(check, timeout, f"{runs} completed run(s) and status {states}", interval=0.1))
    except AssertionError as exc:
        report = progress(server, app_id, campaign_id)
        raise AssertionError(f"{exc}; status {status(pinpoint, app_id, campaign_id)}, progress {report}") from None


def settle(seconds: float = 0.6) -> None:
    """Give the scheduler (POINTCAST_SCHEDULER_INTERVAL=0.1) several ticks to do something it should not."""
    time.sleep(seconds)


# --- the receiver ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One POSTed batch as the receiver saw it."""

    batch_id: str
    payload: dict[str, Any]
    received_at: float

    @property
    def endpoint_ids(self) -> list[str]:
        return list(self.payload["Endpoints"])


class Receiver(TLSReceiver):
    """A TLSReceiver for campaigns: parses POSTed batches, and a responder may answer ``RESET`` to drop the
    connection without a response (the transport is aborted), which the sender sees as a disconnect."""

    def __init__(self, ca: TestCA, **kwargs: Any) -> None:
        super().__init__(ca, account_id=ACCOUNT_ID, **kwargs)

    def posts(self) -> list[Post]:
        return [
            Post(r.headers[BATCH_HEADER], json.loads(r.body), r.received_at)
            for r in self.requests
            if r.method == "POST"
        ]

    def post_count(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST")

    def delivered(self) -> Counter[str]:
        """How many times each endpoint id was received."""
        return Counter(endpoint_id for post in self.posts() for endpoint_id in post.endpoint_ids)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return await super()._handle(request)
        body = await request.read()
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
        )
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()
        reply = self.responder(record)
        if inspect.isawaitable(reply):
            reply = await reply
        status, headers, payload = reply
        if status == RESET[0]:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing can be written any more
        return web.Response(status=status, headers=CIMultiDict(headers), body=payload)


class Script:
    """A responder that answers the n-th arrival of each batch id with the n-th step (then ``then``).

    A step is a Reply, or an async callable of the record returning one (to be slow)."""

    def __init__(self, *steps: Any, then: Any = OK) -> None:
        self.steps = steps
        self.then = then
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, record: RequestRecord) -> Any:
        batch_id = record.headers.get(BATCH_HEADER, "")
        with self._lock:
            index = self.seen[batch_id]
            self.seen[batch_id] += 1
        step = self.steps[index] if index < len(self.steps) else self.then
        if callable(step):
            return step(record)
        return step


def slow(seconds: float, reply: Reply = OK) -> Callable[[RequestRecord], Any]:
    """An async step that answers ``reply`` after ``seconds``."""

    async def step(record: RequestRecord) -> Reply:
        await asyncio.sleep(seconds)
        return reply

    return step


class Gate:
    """A responder that holds every POST until ``open()`` (bounded by ``limit`` seconds), then answers OK."""

    def __init__(self, limit: float = 20.0) -> None:
        self.event = threading.Event()
        self.limit = limit

    def open(self) -> None:
        self.event.set()

    async def __call__(self, record: RequestRecord) -> Reply:
        deadline = time.monotonic() + self.limit
        while not self.event.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return OK


# --- the store, read directly (for what no route shows, such as delivery attempts) -------------------------


def write_store(server: Server, work: Callable[[sa.Connection], Any]) -> Any:
    """``work`` in one transaction on the server's store: what the API would refuse, written as an older version
    of pointcast might have left it."""
    url = Settings(data_dir=server.data_dir, database_url=server.env.get("POINTCAST_DATABASE_URL"))
    engine = sa.create_engine(url.resolved_database_url())
    try:
        with engine.begin() as conn:
            return work(conn)
    finally:
        engine.dispose()


def attempts_of(server: Server, batch_ids: Iterable[str]) -> dict[str, list[Any]]:
    """Every recorded delivery attempt per batch id, in order, read from the server's store."""
    url = Settings(data_dir=server.data_dir, database_url=server.env.get("POINTCAST_DATABASE_URL"))
    engine = sa.create_engine(url.resolved_database_url())
    try:
        with engine.connect() as conn:
            a = m.attempts
            rows = conn.execute(
                sa.select(a).where(a.c.batch_id.in_(list(batch_ids))).order_by(a.c.batch_id, a.c.attempt)
            ).all()
    finally:
        engine.dispose()
    found: dict[str, list[Any]] = {}
    for row in rows:
        found.setdefault(row.batch_id, []).append(row)
    return found
