"""Every limit the server enforces: just inside passes, just outside is a BadRequestException naming the member.

Then the wire contract for what boto3 refuses to send (wrong types, unknown or missing members, bodies that are
not JSON objects, unknown routes, wrong methods), sent as raw SigV4-signed HTTP, and a property test that no JSON
body makes the server answer 5xx or without the AWS error envelope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import Shape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointcast.aws.shapes import service_model
from tests.support.server import ACCOUNT_ID, KEY_ID, REGION, SECRET

# Campaign requests here name functions ("x", "channel", "filter-fn"); pointcast checks they exist and allow it.
pytestmark = pytest.mark.usefixtures("stock_functions")

LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:x"
START = "2099-01-01T09:00:00.000Z"
TIMESTAMP = "2024-01-01T00:00:00.000Z"  # every date pointcast stores has this length
BAD = "BadRequestException"


# --- helpers ---------------------------------------------------------------------------------------------------


@contextmanager
def refused(pinpoint: Any, *fragments: str) -> Iterator[None]:
    """The block must raise BadRequestException whose message contains every fragment."""
    with pytest.raises(pinpoint.exceptions.BadRequestException) as info:
        yield
    message = info.value.response["Error"]["Message"]
    assert all(fragment in message for fragment in fragments), message


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def signed(server: Any, method: str, path: str, body: Any = None) -> httpx.Response:
    """A SigV4-signed request as botocore would sign it; ``body`` is raw bytes, or a value sent as JSON."""
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    url = server.url + path
    request = AWSRequest(method=method, url=url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY_ID, SECRET), "mobiletargeting", REGION).add_auth(request)
    return httpx.request(method, url, content=data, headers=dict(request.headers.items()), timeout=30)


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The AWS error envelope: x-amzn-ErrorType, and {"Message", "RequestID"} matching x-amzn-RequestId."""
    body = response.json()
    assert set(body) == {"Message", "RequestID"}, body
    assert response.headers["x-amzn-ErrorType"]
    assert response.headers["x-amzn-RequestId"] == body["RequestID"]
    return dict(body)


def stored_size(request: dict[str, Any]) -> int:
    """Bytes of the endpoint document pointcast stores for ``request`` on a new endpoint."""
    defaults = {"EndpointStatus": "ACTIVE", "OptOut": "NONE", "EffectiveDate": TIMESTAMP, "CreationDate": TIMESTAMP}
    return len(compact({**defaults, **request}))


def endpoint_of_size(size: int) -> dict[str, Any]:
    """An EndpointRequest stored as exactly ``size`` bytes: 140 attribute values of 100 characters, Address pads."""
    request = {"Address": "", "Attributes": {f"attr{i}": ["v" * 100] * 14 for i in range(10)}}
    request["Address"] = "x" * (size - stored_size(request))
    assert stored_size(request) == size
    return request


def with_attribute(member: str, name: str, value: str) -> dict[str, Any]:
    if member == "Attributes":
        return {"Attributes": {name: [value]}}
    if member == "User.UserAttributes":
        return {"User": {"UserId": "u", "UserAttributes": {name: [value]}}}
    return {"Metrics": {name: 1.0}}


def campaign(segment_id: str, **members: Any) -> dict[str, Any]:
    return {
        "Name": "limits",
        "SegmentId": segment_id,
        "Schedule": {"StartTime": START},
        "MessageConfiguration": {"CustomMessage": {"Data": "hello"}},
        "CustomDeliveryConfiguration": {"DeliveryUri": LAMBDA, "EndpointTypes": ["CUSTOM"]},
        **members,
    }


def treatment(percent: int, **members: Any) -> dict[str, Any]:
    return {"SizePercent": percent, "MessageConfiguration": {"CustomMessage": {"Data": "alt"}}, **members}


def events(endpoints: int, per_endpoint: int) -> dict[str, Any]:
    return {
        "BatchItem": {
            f"ep-{e}": {
                "Endpoint": {"ChannelType": "CUSTOM", "Address": f"a{e}"},
                "Events": {f"ev-{n}": {"EventType": "limits", "Timestamp": TIMESTAMP} for n in range(per_endpoint)},
            }
            for e in range(endpoints)
        }
    }


@pytest.fixture
def segment_id(pinpoint, app_id) -> str:
    dimensions = {"Attributes": {"plan": {"AttributeType": "INCLUSIVE", "Values": ["pro"]}}}
    response = pinpoint.create_segment(
        ApplicationId=app_id, WriteSegmentRequest={"Name": "limits", "Dimensions": dimensions}
    )
    return str(response["SegmentResponse"]["Id"])


# --- endpoints -------------------------------------------------------------------------------------------------


def test_batch_holds_at_most_100_endpoints(pinpoint, app_id):
    items = [{"Id": f"ep-{i}", "ChannelType": "CUSTOM", "Address": f"a{i}"} for i in range(101)]
    pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items[:100]})
    assert pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep-99")["EndpointResponse"]["Address"] == "a99"
    with refused(pinpoint, "EndpointBatchRequest.Item", "101", "at most 100"):
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items})
    with refused(pinpoint, "EndpointBatchRequest.Item", "at least one"):
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": []})


def test_endpoint_has_at_most_250_attributes_in_all(pinpoint, app_id):
    full = {
        "Attributes": {f"a{i}": ["v"] for i in range(100)},
        "Metrics": {f"m{i}": float(i) for i in range(100)},
        "User": {"UserId": "u", "UserAttributes": {f"u{i}": ["v"] for i in range(50)}},
    }
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="full", EndpointRequest=full)
    over = {**full, "Metrics": {**full["Metrics"], "m100": 1.0}}
    with refused(pinpoint, "EndpointRequest", "251 attributes", "Attributes + Metrics + User.UserAttributes", "250"):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="over", EndpointRequest=over)

    # The count is of the endpoint after the merge: a new key on a full endpoint is one too many, an old one is not.
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="full", EndpointRequest={"Attributes": {"a0": ["w"]}})
    with refused(pinpoint, "251 attributes"):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="full", EndpointRequest={"Attributes": {"x": ["v"]}})
    with refused(pinpoint, "EndpointBatchRequest.Item[1]", "251 attributes"):
        items = [{"Id": "fresh", "Address": "a"}, {"Id": "full", "User": {"UserAttributes": {"x": ["v"]}}}]
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items})


@pytest.mark.parametrize("member", ["Attributes", "User.UserAttributes", "Metrics"])
def test_attribute_names_have_at_most_50_characters(pinpoint, app_id, member):
    pinpoint.update_endpoint(
        ApplicationId=app_id, EndpointId="e", EndpointRequest=with_attribute(member, "n" * 50, "v")
    )
    with refused(pinpoint, f"EndpointRequest.{member} name", "51 characters", "at most 50"):
        request = with_attribute(member, "n" * 51, "v")
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="e", EndpointRequest=request)


@pytest.mark.parametrize("member", ["Attributes", "User.UserAttributes"])
def test_attribute_values_have_at_most_100_characters(pinpoint, app_id, member):
    pinpoint.update_endpoint(
        ApplicationId=app_id, EndpointId="e", EndpointRequest=with_attribute(member, "k", "v" * 100)
    )
    with refused(pinpoint, f"EndpointRequest.{member}.k[0]", "101 characters", "at most 100"):
        request = with_attribute(member, "k", "v" * 101)
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="e", EndpointRequest=request)


def test_single_item_batch_names_item_zero(pinpoint, app_id):
    """A batch's message names Item[i] whether the batch holds one endpoint or many."""
    items = [{"Id": "e", "Attributes": {"k": ["v" * 101]}}]
    with refused(pinpoint, "EndpointBatchRequest.Item[0].Attributes.k[0]"):
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items})


def test_endpoint_is_at_most_15_kb_as_stored(pinpoint, app_id):
    limit = 15 * 1024
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="big", EndpointRequest=endpoint_of_size(limit))
    stored = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="big")["EndpointResponse"]
    document = {k: v for k, v in stored.items() if k not in ("ApplicationId", "Id", "CohortId", "RequestId")}
    assert len(compact(document)) == limit
    with refused(pinpoint, "EndpointRequest is 15361 bytes", "15 KB"):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="bigger", EndpointRequest=endpoint_of_size(limit + 1))
    with refused(pinpoint, "EndpointRequest is 15361 bytes"):  # growing a stored endpoint past the limit
        pinpoint.update_endpoint(
            ApplicationId=app_id, EndpointId="big", EndpointRequest={"Address": stored["Address"] + "x"}
        )


# --- campaigns -------------------------------------------------------------------------------------------------

DATA_PATHS = {
    "campaign": "WriteCampaignRequest.MessageConfiguration.CustomMessage.Data",
    "treatment": "WriteCampaignRequest.AdditionalTreatments[0].MessageConfiguration.CustomMessage.Data",
}


def with_data(segment_id: str, where: str, data: str) -> dict[str, Any]:
    message = {"CustomMessage": {"Data": data}}
    if where == "campaign":
        return campaign(segment_id, MessageConfiguration=message)
    return campaign(segment_id, AdditionalTreatments=[treatment(10, MessageConfiguration=message)])


@pytest.mark.parametrize("where", DATA_PATHS)
@pytest.mark.parametrize(
    ("data", "accepted"),
    [("x" * 5120, True), ("x" * 5121, False), ("é" * 2560, True), ("é" * 2561, False)],
    ids=["5120-bytes", "5121-bytes", "2560-two-byte-chars", "2561-two-byte-chars"],
)
def test_custom_message_data_is_at_most_5_kb(pinpoint, app_id, segment_id, where, data, accepted):
    request = with_data(segment_id, where, data)
    if accepted:
        created = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
        unit = created if where == "campaign" else created["AdditionalTreatments"][0]
        assert unit["MessageConfiguration"]["CustomMessage"]["Data"] == data
        return
    with refused(pinpoint, DATA_PATHS[where], f"{len(data.encode())} bytes", "5 KB"):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)


def test_at_most_five_treatments_in_all(pinpoint, app_id, segment_id):
    four = campaign(segment_id, AdditionalTreatments=[treatment(10) for _ in range(4)])
    created = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=four)["CampaignResponse"]
    assert [t["Id"] for t in created["AdditionalTreatments"]] == ["1", "2", "3", "4"]
    five = campaign(segment_id, AdditionalTreatments=[treatment(10) for _ in range(5)])
    with refused(pinpoint, "WriteCampaignRequest.AdditionalTreatments", "5 treatments", "at most 4 additional"):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=five)


@pytest.mark.parametrize(
    ("sizes", "holdout", "accepted"),
    [([50, 40], 10, True), ([50, 40], 11, False), ([60, 40], 0, True), ([60, 41], 0, False), ([100], 0, True)],
)
def test_treatment_sizes_plus_holdout_are_at_most_100(pinpoint, app_id, segment_id, sizes, holdout, accepted):
    request = campaign(segment_id, HoldoutPercent=holdout, AdditionalTreatments=[treatment(s) for s in sizes])
    if accepted:
        created = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
        assert [t["SizePercent"] for t in created["AdditionalTreatments"]] == sizes
        return
    with refused(pinpoint, "AdditionalTreatments[].SizePercent", "HoldoutPercent", f"add up to {sum(sizes) + holdout}"):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)


@pytest.mark.parametrize("holdout", [101, -1])
def test_holdout_percent_is_a_percentage(pinpoint, app_id, segment_id, holdout):
    with refused(pinpoint, "WriteCampaignRequest.HoldoutPercent must be from 0 to 100", f"(got {holdout})"):
        pinpoint.create_campaign(
            ApplicationId=app_id, WriteCampaignRequest=campaign(segment_id, HoldoutPercent=holdout)
        )


def test_custom_message_needs_a_custom_delivery_configuration(pinpoint, app_id, segment_id):
    bare = {k: v for k, v in campaign(segment_id).items() if k != "CustomDeliveryConfiguration"}
    with refused(pinpoint, "WriteCampaignRequest.CustomDeliveryConfiguration is required", "CustomMessage"):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=bare)

    # A treatment inherits the campaign's configuration; without one on either it is refused by its own path.
    inherits = campaign(segment_id, AdditionalTreatments=[treatment(10)])
    pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=inherits)
    neither = {k: v for k, v in inherits.items() if k not in ("CustomDeliveryConfiguration", "MessageConfiguration")}
    with refused(pinpoint, "WriteCampaignRequest.AdditionalTreatments[0].CustomDeliveryConfiguration is required"):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=neither)


# --- Limits, on campaigns and on application settings ------------------------------------------------------------

LIMITS = [
    ("MessagesPerSecond", 1, True),
    ("MessagesPerSecond", 20_000, True),
    ("MessagesPerSecond", 0, False),
    ("MessagesPerSecond", 20_001, False),
    ("Daily", 100, True),
    ("Daily", 101, False),
    ("Total", 100, True),
    ("Total", 101, False),
    ("Session", 100, True),
    ("Session", 101, False),
    ("MaximumDuration", 60, True),
    ("MaximumDuration", 59, False),
]


@pytest.mark.parametrize(("member", "value", "accepted"), LIMITS)
def test_campaign_limits(pinpoint, app_id, segment_id, member, value, accepted):
    request = campaign(segment_id, Limits={member: value})
    if accepted:
        created = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
        assert created["Limits"] == {member: value}
        return
    with refused(pinpoint, f"WriteCampaignRequest.Limits.{member}", f"(got {value})"):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)


@pytest.mark.parametrize(("member", "value", "accepted"), LIMITS)
def test_application_settings_limits(pinpoint, app_id, member, value, accepted):
    request = {"Limits": {member: value}}
    if accepted:
        pinpoint.update_application_settings(ApplicationId=app_id, WriteApplicationSettingsRequest=request)
        got = pinpoint.get_application_settings(ApplicationId=app_id)["ApplicationSettingsResource"]
        assert got["Limits"] == {member: value}
        return
    with refused(pinpoint, f"WriteApplicationSettingsRequest.Limits.{member}", f"(got {value})"):
        pinpoint.update_application_settings(ApplicationId=app_id, WriteApplicationSettingsRequest=request)


QUIET_ROOTS = {"settings": "WriteApplicationSettingsRequest", "campaign": "WriteCampaignRequest.Schedule"}


def write_quiet_time(pinpoint: Any, app_id: str, segment_id: str, where: str, quiet: dict[str, str]) -> None:
    if where == "settings":
        pinpoint.update_application_settings(ApplicationId=app_id, WriteApplicationSettingsRequest={"QuietTime": quiet})
    else:
        request = campaign(segment_id, Schedule={"StartTime": START, "QuietTime": quiet})
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)


@pytest.mark.parametrize("where", QUIET_ROOTS)
@pytest.mark.parametrize(
    ("quiet", "refusal"),
    [
        ({"Start": "23:59", "End": "00:00"}, None),
        ({"Start": "24:00", "End": "06:00"}, "QuietTime.Start must be a time of day as HH:MM"),
        ({"Start": "22:00", "End": "7:00"}, "QuietTime.End must be a time of day as HH:MM"),
        ({"Start": "22:00"}, "QuietTime needs both Start and End"),
    ],
)
def test_quiet_time_is_two_times_of_day(pinpoint, app_id, segment_id, where, quiet, refusal):
    if refusal is None:
        write_quiet_time(pinpoint, app_id, segment_id, where, quiet)
        return
    with refused(pinpoint, f"{QUIET_ROOTS[where]}.{refusal}"):
        write_quiet_time(pinpoint, app_id, segment_id, where, quiet)


# --- applications, tags, ids, pages ------------------------------------------------------------------------------


def test_application_name_is_1_to_64_characters(pinpoint):
    created = pinpoint.create_app(CreateApplicationRequest={"Name": "n" * 64})["ApplicationResponse"]
    assert created["Name"] == "n" * 64
    for name in ("n" * 65, "   "):
        with refused(pinpoint, "CreateApplicationRequest.Name must be 1 to 64 characters"):
            pinpoint.create_app(CreateApplicationRequest={"Name": name})


def test_tags_at_most_50_keys_of_128_values_of_256(pinpoint, app_id):
    arn = pinpoint.get_app(ApplicationId=app_id)["ApplicationResponse"]["Arn"]

    def tag(tags: dict[str, str]) -> None:
        pinpoint.tag_resource(ResourceArn=arn, TagsModel={"tags": tags})

    tag({"k" * 128: "v" * 256, **{f"t{i}": "v" for i in range(49)}})
    assert len(pinpoint.list_tags_for_resource(ResourceArn=arn)["TagsModel"]["tags"]) == 50
    with refused(pinpoint, "TagsModel.tags has 51 tags", "at most 50"):  # counted after the merge
        tag({"one-more": "v"})
    with refused(pinpoint, "CreateApplicationRequest.tags has 51 tags"):
        pinpoint.create_app(CreateApplicationRequest={"Name": "t", "tags": {f"t{i}": "v" for i in range(51)}})
    pinpoint.untag_resource(ResourceArn=arn, TagKeys=[f"t{i}" for i in range(49)])
    for tags, fragment in [
        ({"k" * 129: "v"}, "must be 1 to 128 characters"),
        ({"aws:owner": "v"}, "must not start with 'aws:'"),
        ({"k": "v" * 257}, "TagsModel.tags.k value is longer than 256"),
    ]:
        with refused(pinpoint, "TagsModel.tags", fragment):
            tag(tags)


def test_endpoint_id_is_at_most_256_characters(pinpoint, app_id):
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="e" * 256, EndpointRequest={"Address": "a"})
    with refused(pinpoint, "EndpointId", "longer than 256"):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="e" * 257, EndpointRequest={"Address": "a"})
    with refused(pinpoint, "EndpointBatchRequest.Item[0].Id", "longer than 256"):
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": [{"Id": "e" * 257}]})


def test_page_size_is_1_to_1000(pinpoint):
    assert "Item" in pinpoint.get_apps(PageSize="1000")["ApplicationsResponse"]
    with refused(pinpoint, "page-size must be a whole number from 1 to 1000"):
        pinpoint.get_apps(PageSize="1001")


# --- PutEvents -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoints", "per_endpoint", "refusal"),
    [
        (1, 100, None),
        (1, 101, "EventsRequest has 101 events in all"),
        (100, 1, None),
        (101, 1, "EventsRequest.BatchItem has 101 items"),
        (4, 25, None),
        (3, 34, "EventsRequest has 102 events in all"),
    ],
)
def test_put_events_takes_at_most_100_events(pinpoint, app_id, endpoints, per_endpoint, refusal):
    request = events(endpoints, per_endpoint)
    if refusal is None:
        results = pinpoint.put_events(ApplicationId=app_id, EventsRequest=request)["EventsResponse"]["Results"]
        assert len(results) == endpoints
        assert all(len(r["EventsItemResponse"]) == per_endpoint for r in results.values())
        assert {s["StatusCode"] for r in results.values() for s in r["EventsItemResponse"].values()} == {202}
        return
    with refused(pinpoint, refusal, "at most 100"):
        pinpoint.put_events(ApplicationId=app_id, EventsRequest=request)


# --- values the model forbids, sent through boto3 (which does not check enums) ----------------------------------

ENUMS = [
    ("create_campaign", campaign("s", Schedule={"StartTime": START, "Frequency": "YEARLY"}),
     "WriteCampaignRequest.Schedule.Frequency"),
    ("create_campaign", campaign("s", CustomDeliveryConfiguration={"DeliveryUri": LAMBDA, "EndpointTypes": ["FAX"]}),
     "WriteCampaignRequest.CustomDeliveryConfiguration.EndpointTypes[0]"),
    ("update_endpoint", {"ChannelType": "FAX"}, "EndpointRequest.ChannelType"),
    ("update_endpoints_batch", {"Item": [{"Id": "e", "ChannelType": "FAX"}]},
     "EndpointBatchRequest.Item[0].ChannelType"),
    ("create_segment", {"Dimensions": {"Attributes": {"plan": {"AttributeType": "SOMETIMES", "Values": ["pro"]}}}},
     "WriteSegmentRequest.Dimensions.Attributes.plan.AttributeType"),
    ("update_application_settings", {"CampaignHook": {"Mode": "LOUD", "LambdaFunctionName": "x"}},
     "WriteApplicationSettingsRequest.CampaignHook.Mode"),
]  # fmt: skip


@pytest.mark.parametrize(("operation", "payload", "path"), ENUMS, ids=[case[2] for case in ENUMS])
def test_bad_enum_values_name_the_member(pinpoint, app_id, operation, payload, path):
    """botocore does not check enums client-side, so these reach the server through boto3."""
    root = path.split(".")[0]
    extra = {"EndpointId": "e"} if operation == "update_endpoint" else {}
    with refused(pinpoint, path, "must be one of"):
        getattr(pinpoint, operation)(ApplicationId=app_id, **extra, **{root: payload})


# --- raw signed HTTP: what boto3 would refuse to send ----------------------------------------------------------

CAMPAIGNS, ENDPOINT, ENDPOINTS = "/v1/apps/{app}/campaigns", "/v1/apps/{app}/endpoints/e", "/v1/apps/{app}/endpoints"
VALID_CAMPAIGN = {"Name": "c", "SegmentId": "s", "Schedule": {"StartTime": START}}
TAGS = "/v1/tags/" + quote(f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/x", safe="")


BAD_REQUESTS = [
    # wrong types
    ("POST", "/v1/apps", {"Name": 5}, "CreateApplicationRequest.Name"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "HoldoutPercent": "10"}, "WriteCampaignRequest.HoldoutPercent"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "IsPaused": "yes"}, "WriteCampaignRequest.IsPaused"),
    ("PUT", ENDPOINT, {"Attributes": {"plan": "pro"}}, "EndpointRequest.Attributes.plan"),
    ("PUT", ENDPOINT, {"Metrics": {"score": "high"}}, "EndpointRequest.Metrics.score"),
    ("PUT", ENDPOINTS, {"Item": {"Id": "e"}}, "EndpointBatchRequest.Item"),
    ("PUT", "/v1/apps/{app}/settings", {"Limits": {"Daily": 1.5}}, "WriteApplicationSettingsRequest.Limits.Daily"),
    # integers are AWS's 32-bit ones (every batch failed on a date overflow with 10**12 seconds)
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "Limits": {"MaximumDuration": 10**12}},
     "WriteCampaignRequest.Limits.MaximumDuration input should be less than or equal to 2147483647"),
    ("PUT", "/v1/apps/{app}/settings", {"Limits": {"MaximumDuration": 10**18}},
     "WriteApplicationSettingsRequest.Limits.MaximumDuration input should be less than or equal to 2147483647"),
    ("POST", TAGS, {"tags": {"k": 1}}, "TagsModel.tags.k"),
    # unknown members
    ("POST", "/v1/apps", {"Name": "x", "Colour": "red"}, "CreateApplicationRequest.Colour is not a member"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "AdditionalTreatments": [{"SizePercent": 1, "Weight": 1}]},
     "WriteCampaignRequest.AdditionalTreatments[0].Weight is not a member"),
    ("PUT", ENDPOINTS, {"Item": [{"Id": "e"}], "Extra": 1}, "EndpointBatchRequest.Extra is not a member"),
    # missing required members
    ("POST", "/v1/apps", {}, "CreateApplicationRequest.Name is required"),
    ("POST", CAMPAIGNS, {"SegmentId": "s", "Schedule": {"Frequency": "ONCE"}},
     "WriteCampaignRequest.Schedule.StartTime is required"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "AdditionalTreatments": [{"TreatmentName": "t"}]},
     "WriteCampaignRequest.AdditionalTreatments[0].SizePercent is required"),
    ("POST", "/v1/apps/{app}/events", {"BatchItem": {"e": {"Endpoint": {}, "Events": {"v": {"EventType": "x"}}}}},
     "EventsRequest.BatchItem.e.Events.v.Timestamp is required"),
    ("PUT", ENDPOINTS, {}, "EndpointBatchRequest.Item is required"),
    # enums
    ("PUT", ENDPOINT, {"ChannelType": "FAX"}, "EndpointRequest.ChannelType must be one of"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "Schedule": {"StartTime": START, "Frequency": "YEARLY"}},
     "WriteCampaignRequest.Schedule.Frequency must be one of"),
    # bodies that are not one JSON object
    ("POST", "/v1/apps", b"{", "not valid JSON"),
    ("POST", "/v1/apps", b'{"Name": NaN}', "not valid JSON"),
    ("POST", "/v1/apps", b'{"Name": "x"} trailing', "not valid JSON"),
    ("POST", "/v1/apps", b"\xff\xfe{}", "not valid JSON"),
    ("POST", "/v1/apps", b'[{"Name": "x"}]', "must be a JSON object, not list"),
    ("POST", "/v1/apps", b"null", "must be a JSON object"),
    ("POST", "/v1/apps", b'"x"', "must be a JSON object"),
    ("POST", "/v1/apps", b"", "body is required"),
    ("PUT", ENDPOINT, b"  \n", "body is required"),
    # query strings
    ("GET", "/v1/apps?page-size=abc", None, "page-size"),
    ("GET", "/v1/apps?page-size=0", None, "page-size"),
    ("GET", "/v1/apps?token=bogus", None, "token"),
    ("GET", "/v1/apps?token=p" + "9" * 40, None, "token"),  # past SQL's BIGINT
    ("GET", "/v1/apps?token=p%C2%B2", None, "token"),  # "²": str.isdigit says yes, int() says no
    ("GET", "/v1/apps?page-size=%C2%B2", None, "page-size"),
    ("GET", CAMPAIGNS + "/x/versions/%C2%B2", None, "Version must be a whole number"),
    ("GET", "/v1/apps/{app}/segments/x/versions/" + "9" * 30, None, "Version must be a whole number"),
    # date-times that leave Python's years once moved to UTC
    ("PUT", ENDPOINT, {"EffectiveDate": "0001-01-01T00:00:00+01:00"}, "EndpointRequest.EffectiveDate is out of range"),
    ("PUT", ENDPOINT, {"EffectiveDate": "9999-12-31T23:59:59-01:00"}, "EndpointRequest.EffectiveDate is out of range"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "Schedule": {"StartTime": "9999-12-31T23:59:59-05:00"}},
     "WriteCampaignRequest.Schedule.StartTime is out of range"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "Schedule": {"StartTime": "0001-01-01T00:00:00+05:00"}},
     "WriteCampaignRequest.Schedule.StartTime is out of range"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "Schedule": {"StartTime": "9999-06-01T00:00:00Z"}},
     "WriteCampaignRequest.Schedule.StartTime must fall in the years 1970 to 9998"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "Schedule": {"StartTime": START, "EndTime": "9999-12-31T23:59:59-05:00"}},
     "WriteCampaignRequest.Schedule.EndTime is out of range"),
    ("POST", CAMPAIGNS, {**VALID_CAMPAIGN, "Schedule": {"StartTime": "IMMEDIATE", "EndTime": "2000-01-01T00:00:00Z"}},
     "WriteCampaignRequest.Schedule.EndTime has passed"),
]  # fmt: skip

ROUTING = [
    ("GET", "/v1/nothing/here", 404, "NotFoundException", "GET /v1/nothing/here"),
    ("GET", "/v2/apps", 404, "NotFoundException", "GET /v2/apps"),
    ("DELETE", "/v1/apps", 405, "MethodNotAllowedException", "use GET, POST"),
    ("PATCH", "/v1/apps/{app}", 405, "MethodNotAllowedException", "use DELETE, GET"),
    ("GET", "/v1/apps/{app}/events", 405, "MethodNotAllowedException", "use POST"),
]


@pytest.mark.parametrize(("method", "path", "body", "fragment"), BAD_REQUESTS, ids=[c[3] for c in BAD_REQUESTS])
def test_raw_bad_requests_name_the_problem(server, app_id, method, path, body, fragment):
    response = signed(server, method, path.format(app=app_id), body)
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-ErrorType"] == BAD
    assert fragment in envelope(response)["Message"]


@pytest.mark.parametrize(("method", "path", "status", "error", "fragment"), ROUTING, ids=[c[4] for c in ROUTING])
def test_unknown_routes_and_wrong_methods(server, app_id, method, path, status, error, fragment):
    response = signed(server, method, path.format(app=app_id))
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-ErrorType"] == error
    assert fragment in envelope(response)["Message"]


# --- strings the store cannot hold ---------------------------------------------------------------------------


def one_event(event_id: str = "v", **members: Any) -> dict[str, Any]:
    event = {"EventType": "t", "Timestamp": TIMESTAMP, **members}
    return {"BatchItem": {"e": {"Endpoint": {}, "Events": {event_id: event}}}}


UNSTORABLE = [
    ("app-name-nul", "POST", "/v1/apps", {"Name": "nul\u0000name"}),
    ("segment-name-nul", "POST", "/v1/apps/{app}/segments", {"Name": "nul\u0000name"}),
    ("campaign-name-nul", "POST", CAMPAIGNS, campaign("SEGMENT", Name="nul\u0000name")),
    ("endpoint-id-nul", "PUT", "/v1/apps/{app}/endpoints/e%00x", {"Address": "a"}),
    ("user-id-nul", "PUT", ENDPOINT, {"User": {"UserId": "nul\u0000user"}}),
    ("user-id-300", "PUT", ENDPOINT, {"User": {"UserId": "u" * 300}}),
    ("request-id-300", "PUT", ENDPOINT, {"RequestId": "r" * 300}),
    ("opt-out-17", "PUT", ENDPOINT, {"OptOut": "o" * 17}),
    ("endpoint-status-17", "PUT", ENDPOINT, {"EndpointStatus": "s" * 17}),
    ("event-type-nul", "POST", "/v1/apps/{app}/events", one_event(EventType="nul\u0000type")),
    ("event-type-300", "POST", "/v1/apps/{app}/events", one_event(EventType="t" * 300)),
    ("event-id-300", "POST", "/v1/apps/{app}/events", one_event("v" * 300)),
    ("timestamp-41", "POST", "/v1/apps/{app}/events", one_event(Timestamp="2024-01-01T00:00:00." + "0" * 20 + "Z")),
]


@pytest.mark.parametrize(("method", "path", "body"), [c[1:] for c in UNSTORABLE], ids=[c[0] for c in UNSTORABLE])
def test_values_the_store_cannot_hold_are_refused_not_5xx(server, app_id, segment_id, method, path, body):
    """Stored, or refused with a BadRequestException; never an internal error (PostgreSQL is the strict store)."""
    data = compact(body).replace(b'"SEGMENT"', f'"{segment_id}"'.encode())
    response = signed(server, method, path.format(app=app_id), data)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["x-amzn-ErrorType"] == BAD
        envelope(response)


# --- property: no JSON body makes a 5xx ------------------------------------------------------------------------

WORDS = ["", "IMMEDIATE", START, "2020-01-01T00:00:00Z", "ONCE", "DAILY", "CUSTOM", "UTC", "22:00", LAMBDA, "SEGMENT"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The given strategy, except that one value in 30 is arbitrary JSON."""
    return st.integers(0, 29).flatmap(lambda n: JSON if n == 0 else strategy)


def shaped(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of a model shape with random JSON mixed in at every level, so bodies reach past the first check."""
    kind = shape.type_name
    if depth > 4:
        return JSON
    if kind == "structure":
        members = {name: shaped(member, depth + 1) for name, member in shape.members.items()}
        required = set(shape.required_members)
        strategy = st.fixed_dictionaries(
            {k: v for k, v in members.items() if k in required},
            optional={k: v for k, v in members.items() if k not in required},
        )
    elif kind == "list":
        strategy = st.lists(shaped(shape.member, depth + 1), max_size=3)
    elif kind == "map":
        strategy = st.dictionaries(st.text(max_size=8), shaped(shape.value, depth + 1), max_size=3)
    elif shape.metadata.get("enum"):
        strategy = st.sampled_from(shape.metadata["enum"])
    elif kind == "string":
        strategy = st.sampled_from(WORDS) | st.text(max_size=12)
    elif kind in ("integer", "long"):
        strategy = st.integers(-2, 20_002) | st.integers()
    elif kind in ("double", "float"):
        strategy = st.floats(allow_nan=False, allow_infinity=False)
    elif kind == "boolean":
        strategy = st.booleans()
    else:
        strategy = SCALARS
    return mostly(strategy)


def over(base: dict[str, Any]) -> Any:
    """Drawn members laid over ``base`` (a drawn body that is not an object stays as it is)."""
    return lambda drawn: {**base, **drawn} if isinstance(drawn, dict) else drawn


MODEL = service_model("pinpoint")
BODIES = {
    "WriteCampaignRequest": shaped(MODEL.shape_for("WriteCampaignRequest")).map(over(campaign("SEGMENT"))),
    "EndpointRequest": shaped(MODEL.shape_for("EndpointRequest")),
}


@dataclass(frozen=True)
class Target:
    """Where the property test sends its bodies (a small value, so Hypothesis reports stay short)."""

    url: str
    app_id: str
    segment_id: str


@pytest.fixture
def target(server, app_id, segment_id) -> Target:
    return Target(server.url, app_id, segment_id)


@pytest.mark.parametrize(
    ("method", "path", "shape"),
    [("POST", CAMPAIGNS, "WriteCampaignRequest"), ("PUT", ENDPOINT, "EndpointRequest")],
    ids=["CreateCampaign", "UpdateEndpoint"],
)
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_json_bodies_never_make_a_5xx(target, method, path, shape, data):
    body = compact(data.draw(BODIES[shape])).replace(b'"SEGMENT"', f'"{target.segment_id}"'.encode())
    response = signed(target, method, path.format(app=target.app_id), body)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert response.headers["x-amzn-ErrorType"] == BAD
        envelope(response)
    else:
        assert isinstance(response.json(), dict)
