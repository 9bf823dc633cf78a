"""Concurrent API writes of one resource, from boto3 clients on threads: none is lost, none fails with a 500.

On PostgreSQL (READ COMMITTED) an operation that reads a row and writes back a changed copy loses a concurrent
writer's change unless it holds the resource (pointcast.store.lock); on SQLite writers are serialised anyway, and the
same tests must pass there too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.functions import ROLE, deploy, function_campaign_request, zip_code
from tests.support.server import ACCOUNT_ID, KEY_ID, REGION, SECRET, Server

PARALLEL = 20
PINPOINT_ARN = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}"


def _client(server: Server, service: str) -> Any:
    """A client with a connection per thread (botocore keeps 10 by default) and no retries: a 500 is seen."""
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=PARALLEL + 4),
    )


def _together(work: Callable[[int], Any], count: int = PARALLEL) -> list[Any]:
    """``work(0)`` .. ``work(count - 1)`` at once; each result, or the ClientError it raised."""

    def one(index: int) -> Any:
        try:
            return work(index)
        except ClientError as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def _together_while_held(
    server: Server, sql: str, params: tuple[Any, ...], work: Callable[[int], Any], count: int
) -> list[Any]:
    """``_together``, and on PostgreSQL while a transaction of the test's own holds a row the calls write (``sql``:
    an uncommitted insert, a ``SELECT ... FOR UPDATE``) for a second: every call has read what it will change, or
    waits for the resource's lock, before the first can write. Without the lock they all read the same state."""
    url = server.env.get("POINTCAST_DATABASE_URL")
    if not url:
        return _together(work, count)
    with psycopg.connect(url) as held, ThreadPoolExecutor(1) as pool:
        held.execute(sql, params)
        future = pool.submit(_together, work, count)
        time.sleep(1.0)
        held.rollback()
        return future.result()


def _errors(results: list[Any]) -> list[str]:
    return [f"{r.response['Error']['Code']}: {r.response['Error']['Message']}" for r in results if _failed(r)]


def _failed(result: Any) -> bool:
    return isinstance(result, ClientError)


@pytest.fixture
def pp(server: Server) -> Any:
    return _client(server, "pinpoint")


@pytest.fixture
def lam_(server: Server) -> Any:
    return _client(server, "lambda")


@pytest.fixture
def app(pp: Any) -> str:
    return str(pp.create_app(CreateApplicationRequest={"Name": "concurrent"})["ApplicationResponse"]["Id"])


def test_parallel_update_endpoint_keeps_every_attribute(pp: Any, app: str) -> None:
    base = {"ChannelType": "SMS", "Address": "+12065550100", "Attributes": {"base": ["0"]}}
    pp.update_endpoint(ApplicationId=app, EndpointId="e1", EndpointRequest=base)
    results = _together(
        lambda i: pp.update_endpoint(
            ApplicationId=app, EndpointId="e1", EndpointRequest={"Attributes": {f"a{i}": [str(i)]}}
        )
    )
    assert _errors(results) == []
    attributes = pp.get_endpoint(ApplicationId=app, EndpointId="e1")["EndpointResponse"]["Attributes"]
    assert attributes == {"base": ["0"], **{f"a{i}": [str(i)] for i in range(PARALLEL)}}


def test_batches_of_the_same_endpoints_in_opposite_orders_neither_deadlock_nor_lose_updates(pp: Any, app: str) -> None:
    ids = [f"b{i:03d}" for i in range(100)]
    count = 10

    def batch(index: int) -> Any:
        order = ids if index % 2 == 0 else ids[::-1]
        items = [
            {"Id": i, "ChannelType": "SMS", "Address": "+12065550100", "Attributes": {f"k{index}": ["v"]}}
            for i in order
        ]
        return pp.update_endpoints_batch(ApplicationId=app, EndpointBatchRequest={"Item": items})

    assert _errors(_together(batch, count)) == []
    for endpoint_id in (ids[0], ids[57], ids[-1]):
        attributes = pp.get_endpoint(ApplicationId=app, EndpointId=endpoint_id)["EndpointResponse"]["Attributes"]
        assert sorted(attributes) == sorted(f"k{i}" for i in range(count)), endpoint_id


def test_parallel_update_segment_makes_one_version_each(pp: Any, app: str) -> None:
    segment = pp.create_segment(ApplicationId=app, WriteSegmentRequest={"Name": "s"})["SegmentResponse"]
    results = _together(
        lambda i: pp.update_segment(ApplicationId=app, SegmentId=segment["Id"], WriteSegmentRequest={"Name": f"s{i}"})
    )
    assert _errors(results) == []
    assert sorted(r["SegmentResponse"]["Version"] for r in results) == list(range(2, PARALLEL + 2))
    current = pp.get_segment(ApplicationId=app, SegmentId=segment["Id"])["SegmentResponse"]
    assert current["Version"] == PARALLEL + 1
    versions = pp.get_segment_versions(ApplicationId=app, SegmentId=segment["Id"], PageSize="100")
    assert [v["Version"] for v in versions["SegmentsResponse"]["Item"]] == list(range(1, PARALLEL + 2))


def test_parallel_update_campaign_makes_one_version_each(pp: Any, lam_: Any, app: str) -> None:
    function = f"chan-{uuid.uuid4().hex[:8]}"
    deploy(lam_, function)
    segment = pp.create_segment(ApplicationId=app, WriteSegmentRequest={"Name": "s"})["SegmentResponse"]
    request = function_campaign_request(segment["Id"], function)
    campaign = pp.create_campaign(ApplicationId=app, WriteCampaignRequest=request)["CampaignResponse"]
    results = _together(
        lambda i: pp.update_campaign(
            ApplicationId=app, CampaignId=campaign["Id"], WriteCampaignRequest={"Description": f"d{i}"}
        )
    )
    assert _errors(results) == []
    assert sorted(r["CampaignResponse"]["Version"] for r in results) == list(range(2, PARALLEL + 2))
    assert pp.get_campaign(ApplicationId=app, CampaignId=campaign["Id"])["CampaignResponse"]["Version"] == PARALLEL + 1


def test_parallel_tag_and_untag_keep_every_change(pp: Any, app: str) -> None:
    segment = pp.create_segment(ApplicationId=app, WriteSegmentRequest={"Name": "s"})["SegmentResponse"]
    for arn in (f"{PINPOINT_ARN}:apps/{app}", segment["Arn"]):
        pp.tag_resource(ResourceArn=arn, TagsModel={"tags": {f"old{i}": "x" for i in range(PARALLEL)}})

        def change(i: int, arn: str = arn) -> Any:
            pp.tag_resource(ResourceArn=arn, TagsModel={"tags": {f"t{i}": str(i)}})
            return pp.untag_resource(ResourceArn=arn, TagKeys=[f"old{i}"])

        assert _errors(_together(change)) == []
        tags = pp.list_tags_for_resource(ResourceArn=arn)["TagsModel"]["tags"]
        assert tags == {f"t{i}": str(i) for i in range(PARALLEL)}, arn


def test_parallel_application_settings_keep_every_member(pp: Any, app: str) -> None:
    changes: list[dict[str, Any]] = [
        {"Limits": {"Daily": 7}},
        {"QuietTime": {"Start": "22:00", "End": "07:00"}},
        {"CloudWatchMetricsEnabled": True},
        {"EventTaggingEnabled": True},
        {"CampaignHook": {}},
        {"JourneyLimits": {"DailyCap": 3}},
    ]
    for round_ in range(4):
        pp.update_application_settings(
            ApplicationId=app, WriteApplicationSettingsRequest={"Limits": {}, "QuietTime": {}, "JourneyLimits": {}}
        )
        results = _together(
            lambda i: pp.update_application_settings(
                ApplicationId=app, WriteApplicationSettingsRequest=changes[i % len(changes)]
            ),
            len(changes) * 3,
        )
        assert _errors(results) == []
        settings = pp.get_application_settings(ApplicationId=app)["ApplicationSettingsResource"]
        kept = {"Limits": settings["Limits"], "QuietTime": settings["QuietTime"]}
        kept["JourneyLimits"] = settings.get("JourneyLimits")
        assert kept == {
            "Limits": {"Daily": 7},
            "QuietTime": {"Start": "22:00", "End": "07:00"},
            "JourneyLimits": {"DailyCap": 3},
        }, round_


def test_parallel_add_permission_keeps_every_statement(server: Server, lam_: Any) -> None:
    name = f"fn-{uuid.uuid4().hex[:10]}"
    deploy(lam_, name, allow=None)
    results = _together_while_held(
        server,
        "SELECT name FROM functions WHERE name = %s FOR UPDATE",
        (name,),
        lambda i: lam_.add_permission(
            FunctionName=name, StatementId=f"sid{i}", Action="lambda:InvokeFunction", Principal="s3.amazonaws.com"
        ),
        8,
    )
    assert _errors(results) == []
    statements = json.loads(lam_.get_policy(FunctionName=name)["Policy"])["Statement"]
    assert sorted(s["Sid"] for s in statements) == sorted(f"sid{i}" for i in range(8))


def test_parallel_updates_with_one_revision_id_let_exactly_one_through(server: Server, lam_: Any) -> None:
    name = f"fn-{uuid.uuid4().hex[:10]}"
    revision = deploy(lam_, name, allow=None)["RevisionId"]
    results = _together_while_held(
        server,
        "SELECT name FROM functions WHERE name = %s FOR UPDATE",
        (name,),
        lambda i: lam_.update_function_configuration(FunctionName=name, Description=f"d{i}", RevisionId=revision),
        8,
    )
    passed = [r for r in results if not _failed(r)]
    refused = [r.response["Error"]["Code"] for r in results if _failed(r)]
    assert len(passed) == 1 and refused == ["PreconditionFailedException"] * 7, _errors(results)
    configuration = lam_.get_function_configuration(FunctionName=name)
    assert configuration["RevisionId"] == passed[0]["RevisionId"]
    assert configuration["Description"] == passed[0]["Description"]


def test_parallel_create_function_of_one_name_is_a_conflict_not_a_500(server: Server, lam_: Any) -> None:
    """On PostgreSQL the test holds an uncommitted row of that name meanwhile: without the function's lock every
    create got past the check and waited on the row, and all but one then failed on the primary key (a 500)."""
    name = f"fn-{uuid.uuid4().hex[:10]}"
    code = zip_code({"index.py": "def handler(e, c):\n    return 1\n"})
    results = _together_while_held(
        server,
        "INSERT INTO functions (name, doc, code, policy, tags) VALUES (%s, '{}', '', '[]', '{}')",
        (name,),
        lambda i: lam_.create_function(
            FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="index.handler", Code={"ZipFile": code}
        ),
        8,
    )
    refused = [r.response["Error"]["Code"] for r in results if _failed(r)]
    assert refused == ["ResourceConflictException"] * 7, _errors(results)
    assert lam_.get_function(FunctionName=name)["Configuration"]["Handler"] == "index.handler"


def test_put_events_naming_users_in_crossed_orders_do_not_deadlock(pp: Any, app: str) -> None:
    """Each call holds its endpoints and the users they name, taken at once: two calls naming users X, Y and Y, X
    (through different endpoints) queue rather than deadlock."""

    def item(endpoint_id: str, user: str) -> dict[str, Any]:
        event = {"EventType": "x", "Timestamp": "2026-01-01T00:00:00Z"}
        return {"Endpoint": {"ChannelType": "CUSTOM", "User": {"UserId": user}}, "Events": {"e": event}}

    def call(index: int) -> Any:
        pair = (
            (item(f"a{index}", "X"), item(f"b{index}", "Y"))
            if index % 2
            else (item(f"c{index}", "Y"), item(f"d{index}", "X"))
        )
        batch = {f"p{index}-{n}": value for n, value in enumerate(pair)}
        return pp.put_events(ApplicationId=app, EventsRequest={"BatchItem": batch})

    for _ in range(5):
        assert _errors(_together(call, 12)) == []
        for user in ("X", "Y"):
            endpoints = pp.get_user_endpoints(ApplicationId=app, UserId=user)["EndpointsResponse"]["Item"]
            for endpoint in endpoints:  # room for the next round: at most 15 per user
                pp.delete_endpoint(ApplicationId=app, EndpointId=endpoint["Id"])


def test_the_push_endpoint_giving_up_its_place_is_not_rewritten_from_a_stale_read(pp: Any, app: str) -> None:
    """A 16th push endpoint makes the user's oldest push endpoint INACTIVE without a UserId, while that endpoint is
    being updated: both changes land, in some order, and the user never has 16. (An update after the eviction makes
    it ACTIVE again, as any update that does not say does; its user stays gone.)"""
    for round_ in range(8):
        user = f"u{round_}"
        for n in range(14):
            pp.update_endpoint(
                ApplicationId=app,
                EndpointId=f"{user}-s{n}",
                EndpointRequest={"ChannelType": "SMS", "User": {"UserId": user}},
            )
        old = {"ChannelType": "GCM", "User": {"UserId": user}, "EffectiveDate": "2020-01-01T00:00:00Z"}
        pp.update_endpoint(ApplicationId=app, EndpointId=f"{user}-old", EndpointRequest=old)

        def work(index: int, user: str = user) -> Any:
            if index == 0:
                fresh = {"ChannelType": "GCM", "User": {"UserId": user}}
                return pp.update_endpoint(ApplicationId=app, EndpointId=f"{user}-new", EndpointRequest=fresh)
            change = {"Attributes": {f"k{index}": ["v"]}}
            return pp.update_endpoint(ApplicationId=app, EndpointId=f"{user}-old", EndpointRequest=change)

        assert _errors(_together(work, 4)) == []
        got = pp.get_endpoint(ApplicationId=app, EndpointId=f"{user}-old")["EndpointResponse"]
        members = pp.get_user_endpoints(ApplicationId=app, UserId=user)["EndpointsResponse"]["Item"]
        assert len(members) == 15 and f"{user}-new" in {m["Id"] for m in members}
        assert sorted(got.get("Attributes", {})) == ["k1", "k2", "k3"], got  # no update lost
        assert "UserId" not in got.get("User", {}), got  # the eviction was not undone by an update read before it


def test_concurrent_updates_of_a_campaign_keep_its_rules(pp: Any, lam_: Any, app: str, server: Server) -> None:
    """HoldoutPercent 60 and a treatment of 50% are each fine alone, not together: sent at once, one is refused
    (each is checked against the campaign as it is when it is written, not as it was read before)."""
    function = f"chan-{uuid.uuid4().hex[:8]}"
    deploy(lam_, function, allow=f"{PINPOINT_ARN}:apps/*")
    segment = pp.create_segment(ApplicationId=app, WriteSegmentRequest={"Name": "s"})["SegmentResponse"]["Id"]
    changes = [{"HoldoutPercent": 60}, {"AdditionalTreatments": [{"SizePercent": 50}]}]
    request = function_campaign_request(segment, function)
    for _ in range(6):
        campaign = pp.create_campaign(ApplicationId=app, WriteCampaignRequest=request)["CampaignResponse"]["Id"]
        results = _together(
            lambda i, c=campaign: pp.update_campaign(ApplicationId=app, CampaignId=c, WriteCampaignRequest=changes[i]),
            2,
        )
        assert sum(_failed(r) for r in results) == 1, results
        stored = pp.get_campaign(ApplicationId=app, CampaignId=campaign)["CampaignResponse"]
        treatments = sum(t["SizePercent"] for t in stored.get("AdditionalTreatments", []))
        assert stored.get("HoldoutPercent", 0) + treatments <= 100
