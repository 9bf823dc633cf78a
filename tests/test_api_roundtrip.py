"""Every supported Pinpoint operation through boto3: what is written is what is read back, member by member."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.server import ACCOUNT_ID, REGION

# Campaign requests here name functions ("x", "channel", "filter-fn"); pointcast checks they exist and allow it.
pytestmark = pytest.mark.usefixtures("stock_functions")

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")

FULL_ENDPOINT: dict[str, Any] = {
    "Address": "mary.major@example.com",
    "Attributes": {"CohortName": ["42"], "Interests": ["shoes", "hats"]},
    "ChannelType": "EMAIL",
    "Demographic": {
        "AppVersion": "1.2",
        "Locale": "en_US",
        "Make": "OnePlus",
        "Model": "8",
        "ModelVersion": "8T",
        "Platform": "android",
        "PlatformVersion": "11",
        "Timezone": "America/Los_Angeles",
    },
    "EffectiveDate": "2026-04-01T01:05:17.267Z",
    "EndpointStatus": "ACTIVE",
    "Location": {
        "City": "Seattle",
        "Country": "USA",
        "Latitude": 47.6,
        "Longitude": -122.3,
        "PostalCode": "98101",
        "Region": "WA",
    },
    "Metrics": {"purchases": 3.0, "score": 7.5},
    "OptOut": "NONE",
    "RequestId": "req-1",
    "User": {"UserAttributes": {"FirstName": ["Mary"]}, "UserId": "user-1"},
}


def test_app_round_trip(pinpoint) -> None:
    app = pinpoint.create_app(CreateApplicationRequest={"Name": "shop", "tags": {"team": "growth"}})
    created = app["ApplicationResponse"]
    assert app["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert HEX32.match(created["Id"]) and ISO_MS.match(created["CreationDate"])
    assert created["Arn"] == f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/{created['Id']}"
    assert created["Name"] == "shop" and created["tags"] == {"team": "growth"}
    assert pinpoint.get_app(ApplicationId=created["Id"])["ApplicationResponse"] == created
    deleted = pinpoint.delete_app(ApplicationId=created["Id"])["ApplicationResponse"]
    assert deleted == created
    with pytest.raises(pinpoint.exceptions.NotFoundException, match=created["Id"]):
        pinpoint.get_app(ApplicationId=created["Id"])


def test_settings_round_trip(pinpoint, app_id) -> None:
    initial = pinpoint.get_application_settings(ApplicationId=app_id)["ApplicationSettingsResource"]
    assert initial["ApplicationId"] == app_id and initial["CampaignHook"] == {} and initial["Limits"] == {}
    write = {
        "CampaignHook": {"LambdaFunctionName": "filter-fn", "Mode": "FILTER"},
        "Limits": {"Daily": 3, "MaximumDuration": 600, "MessagesPerSecond": 50, "Total": 10, "Session": 2},
        "QuietTime": {"Start": "22:00", "End": "07:30"},
        "CloudWatchMetricsEnabled": True,
    }
    updated = pinpoint.update_application_settings(ApplicationId=app_id, WriteApplicationSettingsRequest=write)
    resource = updated["ApplicationSettingsResource"]
    for member in ("CampaignHook", "Limits", "QuietTime"):
        assert resource[member] == write[member]
    assert ISO_MS.match(resource["LastModifiedDate"])
    assert pinpoint.get_application_settings(ApplicationId=app_id)["ApplicationSettingsResource"] == resource
    # Members left out are kept.
    again = pinpoint.update_application_settings(
        ApplicationId=app_id, WriteApplicationSettingsRequest={"QuietTime": {"Start": "23:00", "End": "06:00"}}
    )["ApplicationSettingsResource"]
    assert again["Limits"] == write["Limits"] and again["QuietTime"] == {"Start": "23:00", "End": "06:00"}


def test_endpoint_round_trip_all_members(pinpoint, app_id) -> None:
    accepted = pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="ep-1", EndpointRequest=FULL_ENDPOINT)
    assert accepted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert accepted["MessageBody"]["Message"] == "Accepted"
    got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep-1")["EndpointResponse"]
    for member, value in FULL_ENDPOINT.items():
        assert got[member] == value, member
    assert got["Id"] == "ep-1" and got["ApplicationId"] == app_id
    assert ISO_MS.match(got["CreationDate"]) and got["CohortId"].isdigit() and 0 <= int(got["CohortId"]) < 100
    # RequestId: the most recent update's, the API request's own id when the client gave none.
    again = pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="ep-1", EndpointRequest={"Metrics": {"x": 1.0}})
    got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep-1")["EndpointResponse"]
    assert got["RequestId"] == again["ResponseMetadata"]["RequestId"] != "req-1"


def test_endpoint_update_merges(pinpoint, app_id) -> None:
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="ep", EndpointRequest=FULL_ENDPOINT)
    first = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep")["EndpointResponse"]
    pinpoint.update_endpoint(
        ApplicationId=app_id,
        EndpointId="ep",
        EndpointRequest={
            "Attributes": {"Interests": ["boots"]},
            "Location": {"City": "Portland"},
            "User": {"UserAttributes": {"LastName": ["Major"]}},
            "OptOut": "ALL",
        },
    )
    got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep")["EndpointResponse"]
    assert got["Attributes"] == {"CohortName": ["42"], "Interests": ["boots"]}
    assert got["Location"]["City"] == "Portland" and got["Location"]["Country"] == "USA"
    assert got["User"] == {"UserId": "user-1", "UserAttributes": {"FirstName": ["Mary"], "LastName": ["Major"]}}
    assert got["OptOut"] == "ALL" and got["Address"] == FULL_ENDPOINT["Address"]
    assert got["CreationDate"] == first["CreationDate"]
    assert got["EffectiveDate"] != FULL_ENDPOINT["EffectiveDate"]  # no EffectiveDate given: the update's time


def test_batch_users_and_deletes(pinpoint, app_id) -> None:
    items = [
        {"Id": f"e{i}", "ChannelType": "SMS", "Address": f"+1555000{i:04d}", "User": {"UserId": f"u{i % 10}"}}
        for i in range(100)  # 10 endpoints per user (a user may have 15)
    ]
    pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items})
    for item in items[::17]:
        got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId=item["Id"])["EndpointResponse"]
        assert got["Address"] == item["Address"] and got["User"] == item["User"]
    users = pinpoint.get_user_endpoints(ApplicationId=app_id, UserId="u1")["EndpointsResponse"]["Item"]
    assert sorted(e["Id"] for e in users) == sorted(i["Id"] for i in items if i["User"]["UserId"] == "u1")
    deleted = pinpoint.delete_endpoint(ApplicationId=app_id, EndpointId="e0")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202 and deleted["EndpointResponse"]["Id"] == "e0"
    with pytest.raises(pinpoint.exceptions.NotFoundException, match="e0"):
        pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="e0")
    gone = pinpoint.delete_user_endpoints(ApplicationId=app_id, UserId="u2")
    assert gone["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert len(gone["EndpointsResponse"]["Item"]) == 10
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_user_endpoints(ApplicationId=app_id, UserId="u2")


def test_endpoint_ids_with_reserved_characters(pinpoint, app_id) -> None:
    for endpoint_id in ("a/b", "x:y", "with space", "ümlaut"):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId=endpoint_id, EndpointRequest={"ChannelType": "SMS"})
        assert (
            pinpoint.get_endpoint(ApplicationId=app_id, EndpointId=endpoint_id)["EndpointResponse"]["Id"] == endpoint_id
        )


SEGMENT = {
    "Name": "engaged",
    "Dimensions": {
        "Attributes": {"Interests": {"AttributeType": "CONTAINS", "Values": ["sho"]}},
        "Behavior": {"Recency": {"Duration": "DAY_7", "RecencyType": "ACTIVE"}},
        "Demographic": {"Platform": {"DimensionType": "INCLUSIVE", "Values": ["android"]}},
        "Location": {
            "Country": {"DimensionType": "EXCLUSIVE", "Values": ["FRA"]},
            "GPSPoint": {"Coordinates": {"Latitude": 47.6, "Longitude": -122.3}, "RangeInKilometers": 50.0},
        },
        "Metrics": {"score": {"ComparisonOperator": "GREATER_THAN", "Value": 5.0}},
        "UserAttributes": {"FirstName": {"AttributeType": "INCLUSIVE", "Values": ["Mary"]}},
    },
    "tags": {"k": "v"},
}


def test_segment_round_trip_and_versions(pinpoint, app_id) -> None:
    created = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest=SEGMENT)["SegmentResponse"]
    assert created["Dimensions"] == SEGMENT["Dimensions"] and created["Name"] == "engaged"
    assert created["Version"] == 1 and created["SegmentType"] == "DIMENSIONAL" and created["tags"] == {"k": "v"}
    assert created["Arn"].endswith(f"apps/{app_id}/segments/{created['Id']}")
    assert pinpoint.get_segment(ApplicationId=app_id, SegmentId=created["Id"])["SegmentResponse"] == created
    groups = {
        "Groups": [
            {
                "Dimensions": [SEGMENT["Dimensions"]],
                "SourceSegments": [{"Id": created["Id"], "Version": 1}],
                "SourceType": "ANY",
                "Type": "ALL",
            }
        ],
        "Include": "ALL",
    }
    combined = pinpoint.create_segment(
        ApplicationId=app_id, WriteSegmentRequest={"Name": "group", "SegmentGroups": groups}
    )["SegmentResponse"]
    assert combined["SegmentGroups"] == groups
    updated = pinpoint.update_segment(
        ApplicationId=app_id, SegmentId=created["Id"], WriteSegmentRequest={"Name": "renamed"}
    )["SegmentResponse"]
    assert updated["Version"] == 2 and updated["Name"] == "renamed" and updated["Dimensions"] == SEGMENT["Dimensions"]
    v1 = pinpoint.get_segment_version(ApplicationId=app_id, SegmentId=created["Id"], Version="1")["SegmentResponse"]
    assert v1 == created
    versions = pinpoint.get_segment_versions(ApplicationId=app_id, SegmentId=created["Id"])["SegmentsResponse"]["Item"]
    assert [v["Version"] for v in versions] == [1, 2]
    listed = pinpoint.get_segments(ApplicationId=app_id)["SegmentsResponse"]["Item"]
    assert {s["Id"] for s in listed} == {created["Id"], combined["Id"]}
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="SourceSegments"):
        pinpoint.create_segment(
            ApplicationId=app_id,
            WriteSegmentRequest={"Name": "bad", "SegmentGroups": {"Groups": [{"SourceSegments": [{"Id": "f" * 32}]}]}},
        )
    pinpoint.delete_segment(ApplicationId=app_id, SegmentId=combined["Id"])
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_segment(ApplicationId=app_id, SegmentId=combined["Id"])


def _source_of(segment_id: str) -> dict[str, Any]:
    return {"Groups": [{"SourceSegments": [{"Id": segment_id}], "SourceType": "ANY"}], "Include": "ALL"}


def test_segments_that_cannot_be_evaluated_are_refused_when_written(pinpoint, app_id) -> None:
    """Before, these were stored, and a campaign on them stayed EXECUTING while its planning failed every second."""
    bad = pinpoint.exceptions.BadRequestException
    metric = {"Metrics": {"score": {"ComparisonOperator": "BOGUS", "Value": 1}}}
    with pytest.raises(bad, match=r"cannot be evaluated.*ComparisonOperator: unknown value 'BOGUS'"):
        pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "m", "Dimensions": metric})
    dated = {"Attributes": {"Joined": {"AttributeType": "BEFORE", "Values": ["yesterday"]}}}
    with pytest.raises(bad, match=r"Dimensions\.Attributes\.Joined\.Values must be an ISO 8601 date-time"):
        pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "d", "Dimensions": dated})
    between = {"Attributes": {"Joined": {"AttributeType": "BETWEEN", "Values": ["2026-01-01"]}}}
    with pytest.raises(bad, match="BETWEEN takes 2 date"):
        pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "b", "Dimensions": between})
    far = {"Location": {"GPSPoint": {"Coordinates": {"Latitude": 500.0, "Longitude": 0.0}}}}
    with pytest.raises(bad, match="Latitude must be from -90 to 90"):
        pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "g", "Dimensions": far})

    x = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "x"})["SegmentResponse"]["Id"]
    y = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "y", "SegmentGroups": _source_of(x)})
    y = y["SegmentResponse"]["Id"]
    with pytest.raises(bad, match="nest deeper than 10 levels \\(a cycle\\?\\)"):
        pinpoint.update_segment(ApplicationId=app_id, SegmentId=x, WriteSegmentRequest={"SegmentGroups": _source_of(y)})
    with pytest.raises(bad, match=f"Segment '{x}' is a source segment of segment\\(s\\) {y}"):
        pinpoint.delete_segment(ApplicationId=app_id, SegmentId=x)
    # A version that is no longer current still counts while something is written against it: here segment t takes
    # y's version 1 (which takes x) as its source. Before, only current versions were looked at, and x went.
    pinned = {"Groups": [{"SourceSegments": [{"Id": y, "Version": 1}]}]}
    t = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "t", "SegmentGroups": pinned})
    pinpoint.update_segment(ApplicationId=app_id, SegmentId=y, WriteSegmentRequest={"SegmentGroups": {"Groups": []}})
    with pytest.raises(bad, match=f"Segment '{x}' is a source segment of segment\\(s\\) {y} version 1"):
        pinpoint.delete_segment(ApplicationId=app_id, SegmentId=x)
    pinpoint.delete_segment(ApplicationId=app_id, SegmentId=t["SegmentResponse"]["Id"])
    pinpoint.delete_segment(ApplicationId=app_id, SegmentId=x)  # nothing can evaluate y's version 1 now
    pinpoint.delete_segment(ApplicationId=app_id, SegmentId=y)


def _segment(pinpoint, app_id: str) -> str:
    return pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "all"})["SegmentResponse"]["Id"]


FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:channel"


def campaign_request(segment_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "Name": "spring",
        "Description": "spring sale",
        "SegmentId": segment_id,
        "Schedule": {
            "StartTime": "2030-03-01T09:00:00.000Z",
            "EndTime": "2030-03-08T09:00:00.000Z",
            "Frequency": "DAILY",
            "Timezone": "UTC-05",
            "IsLocalTime": True,
            "QuietTime": {"Start": "22:00", "End": "08:00"},
        },
        "MessageConfiguration": {"CustomMessage": {"Data": '{"offer":"{{Attributes.Interests}}"}'}},
        "CustomDeliveryConfiguration": {"DeliveryUri": FUNCTION_ARN, "EndpointTypes": ["EMAIL", "SMS", "CUSTOM"]},
        "HoldoutPercent": 10,
        "AdditionalTreatments": [
            {
                "SizePercent": 30,
                "TreatmentName": "B",
                "TreatmentDescription": "variant",
                "MessageConfiguration": {"CustomMessage": {"Data": "b"}},
                "CustomDeliveryConfiguration": {"DeliveryUri": FUNCTION_ARN, "EndpointTypes": ["SMS"]},
            },
        ],
        "Hook": {"LambdaFunctionName": "filter-fn", "Mode": "FILTER"},
        "Limits": {"Daily": 1, "MaximumDuration": 3600, "MessagesPerSecond": 100, "Total": 5},
        "TreatmentName": "A",
        "Priority": 3,
        "tags": {"owner": "growth"},
        **extra,
    }


def test_campaign_round_trip_and_versions(pinpoint, app_id) -> None:
    segment_id = _segment(pinpoint, app_id)
    request = campaign_request(segment_id)
    response = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 201
    created = response["CampaignResponse"]
    for member, value in request.items():
        if member != "AdditionalTreatments":
            assert created[member] == value, member
    treatment = created["AdditionalTreatments"][0]
    assert treatment["Id"] == "1" and treatment["SizePercent"] == 30 and treatment["TreatmentName"] == "B"
    assert created["State"] == {"CampaignStatus": "SCHEDULED"} and created["Version"] == 1
    assert created["SegmentVersion"] == 1 and HEX32.match(created["Id"])
    assert created["Arn"] == f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/{app_id}/campaigns/{created['Id']}"
    assert pinpoint.get_campaign(ApplicationId=app_id, CampaignId=created["Id"])["CampaignResponse"] == created

    updated = pinpoint.update_campaign(
        ApplicationId=app_id, CampaignId=created["Id"], WriteCampaignRequest={"Name": "summer", "IsPaused": True}
    )["CampaignResponse"]
    assert updated["Version"] == 2 and updated["Name"] == "summer" and updated["Description"] == "spring sale"
    assert updated["State"] == {"CampaignStatus": "PAUSED"}
    v1 = pinpoint.get_campaign_version(ApplicationId=app_id, CampaignId=created["Id"], Version="1")["CampaignResponse"]
    assert v1 == created
    versions = pinpoint.get_campaign_versions(ApplicationId=app_id, CampaignId=created["Id"])["CampaignsResponse"]
    assert [v["Version"] for v in versions["Item"]] == [1, 2]
    activities = pinpoint.get_campaign_activities(ApplicationId=app_id, CampaignId=created["Id"])
    assert activities["ActivitiesResponse"]["Item"] == []

    with pytest.raises(pinpoint.exceptions.BadRequestException, match=created["Id"]):
        pinpoint.delete_segment(ApplicationId=app_id, SegmentId=segment_id)  # still used by the campaign
    deleted = pinpoint.delete_campaign(ApplicationId=app_id, CampaignId=created["Id"])["CampaignResponse"]
    assert deleted["Id"] == created["Id"]
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_campaign(ApplicationId=app_id, CampaignId=created["Id"])
    pinpoint.delete_segment(ApplicationId=app_id, SegmentId=segment_id)


def test_campaign_updates_are_checked_against_what_they_keep(pinpoint, app_id) -> None:
    """Members left out are kept, so an update is checked on the campaign as it will be: a new message needs no
    CustomDeliveryConfiguration when the campaign has one, and the holdout may not push the split past 100%."""
    created = pinpoint.create_campaign(
        ApplicationId=app_id, WriteCampaignRequest=campaign_request(_segment(pinpoint, app_id))
    )
    campaign_id = created["CampaignResponse"]["Id"]

    def update(**request: Any) -> dict[str, Any]:
        answer = pinpoint.update_campaign(ApplicationId=app_id, CampaignId=campaign_id, WriteCampaignRequest=request)
        return dict(answer["CampaignResponse"])

    message = {"CustomMessage": {"Data": "new"}}
    assert update(MessageConfiguration=message)["MessageConfiguration"] == message
    treatments = [{"SizePercent": 40, "MessageConfiguration": {"CustomMessage": {"Data": "c"}}}]  # the root's channel
    assert update(AdditionalTreatments=treatments)["AdditionalTreatments"][0]["SizePercent"] == 40
    assert update(HoldoutPercent=60)["HoldoutPercent"] == 60  # 40 + 60
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="add up to 101"):
        update(HoldoutPercent=61)
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="add up to 110"):
        update(AdditionalTreatments=[{"SizePercent": 50}])


def test_default_state_is_there_only_with_more_than_one_treatment(pinpoint, app_id) -> None:
    """botocore's model: DefaultState "exists only for campaigns that have more than one treatment"."""
    request = campaign_request(_segment(pinpoint, app_id))
    treatments = request.pop("AdditionalTreatments")
    single = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
    assert "DefaultState" not in single and single["State"] == {"CampaignStatus": "SCHEDULED"}

    def update(**change: Any) -> dict[str, Any]:
        answer = pinpoint.update_campaign(ApplicationId=app_id, CampaignId=single["Id"], WriteCampaignRequest=change)
        return dict(answer["CampaignResponse"])

    assert update(AdditionalTreatments=treatments)["DefaultState"] == {"CampaignStatus": "SCHEDULED"}
    assert "DefaultState" not in update(AdditionalTreatments=[])
    stored = pinpoint.get_campaign(ApplicationId=app_id, CampaignId=single["Id"])["CampaignResponse"]
    assert "DefaultState" not in stored


@pytest.mark.parametrize(
    ("change", "member"),
    [
        ({"SegmentId": "0" * 32}, "SegmentId"),
        ({"SegmentVersion": 7}, "SegmentVersion"),
        ({"Schedule": {"StartTime": "tomorrow"}}, "Schedule.StartTime"),
        ({"Schedule": {"StartTime": "2030-01-02T00:00:00Z", "EndTime": "2030-01-01T00:00:00Z"}}, "Schedule.EndTime"),
        ({"Schedule": {"StartTime": "IMMEDIATE", "Frequency": "DAILY"}}, "Schedule.EndTime"),
        ({"Schedule": {"StartTime": "IMMEDIATE", "Frequency": "EVENT"}}, "Schedule.Frequency EVENT"),
        ({"Schedule": {"StartTime": "IMMEDIATE", "Frequency": "IN_APP_EVENT"}}, "Schedule.Frequency IN_APP_EVENT"),
        ({"Schedule": {"StartTime": "IMMEDIATE", "Timezone": "Mars/Olympus"}}, "Schedule.Timezone"),
        ({"Schedule": {"StartTime": "IMMEDIATE", "QuietTime": {"Start": "25:00", "End": "01:00"}}}, "QuietTime.Start"),
        ({"CustomDeliveryConfiguration": {"DeliveryUri": "ftp://x", "EndpointTypes": ["SMS"]}}, "DeliveryUri"),
        ({"CustomDeliveryConfiguration": {"DeliveryUri": "arn:aws:sns:x", "EndpointTypes": ["SMS"]}}, "DeliveryUri"),
        (
            {"CustomDeliveryConfiguration": {"DeliveryUri": "channel", "EndpointTypes": ["SMS"]}},
            "DeliveryUri 'channel' must be an https:// URL or a Lambda function's full ARN",
        ),
        (
            {"CustomDeliveryConfiguration": {"DeliveryUri": "arn:aws:lambda:us-east-1:000000000000:function:channel"}},
            "CustomDeliveryConfiguration.EndpointTypes is required",
        ),
        (  # seed 000: "The MessageConfiguration object in the campaign must also contain a CustomMessage object"
            {"MessageConfiguration": {}},
            "MessageConfiguration.CustomMessage is required with a CustomDeliveryConfiguration",
        ),
        ({"Hook": {"Mode": "DELIVERY"}}, "Hook"),
        ({"Hook": {"LambdaFunctionName": "filter-fn"}}, "Hook.Mode is required"),
        ({"Hook": {"LambdaFunctionName": "f", "WebUrl": "https://x.example", "Mode": "FILTER"}}, "both"),
    ],
)
def test_campaign_refusals_name_the_member(pinpoint, app_id, change, member) -> None:
    request = campaign_request(_segment(pinpoint, app_id))
    request.update(change)
    with pytest.raises(pinpoint.exceptions.BadRequestException, match=re.escape(member)):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)


def test_put_events_updates_endpoint_and_reports_per_item(pinpoint, app_id) -> None:
    events = {
        "BatchItem": {
            "ep-events": {
                "Endpoint": {"ChannelType": "EMAIL", "Address": "a@example.com", "Attributes": {"Plan": ["pro"]}},
                "Events": {
                    "ev-1": {
                        "EventType": "purchase",
                        "Timestamp": "2026-11-01T10:00:00.000Z",
                        "Attributes": {"sku": "1"},
                        "Metrics": {"price": 9.5},
                        "Session": {"Id": "s1", "StartTimestamp": "2026-11-01T09:59:00.000Z"},
                    }
                },
            },
            "ep-bad": {
                "Endpoint": {"Attributes": {"x" * 51: ["v"]}},
                "Events": {"ev-2": {"EventType": "open", "Timestamp": "2026-11-01T10:00:00.000Z"}},
            },
        }
    }
    response = pinpoint.put_events(ApplicationId=app_id, EventsRequest=events)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 202
    results = response["EventsResponse"]["Results"]
    assert results["ep-events"]["EndpointItemResponse"]["StatusCode"] == 202
    assert results["ep-events"]["EventsItemResponse"]["ev-1"] == {"Message": "Accepted", "StatusCode": 202}
    assert results["ep-bad"]["EndpointItemResponse"]["StatusCode"] == 400
    assert "50" in results["ep-bad"]["EndpointItemResponse"]["Message"]
    got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep-events")["EndpointResponse"]
    assert got["Attributes"] == {"Plan": ["pro"]}
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep-bad")
    event = {"EventType": "open", "Timestamp": "2026-11-01T10:00:00.000Z"}
    answer = pinpoint.put_events(
        ApplicationId=app_id, EventsRequest={"BatchItem": {"": {"Endpoint": {}, "Events": {"e": event}}}}
    )
    item = answer["EventsResponse"]["Results"][""]["EndpointItemResponse"]
    assert item == {"Message": "EventsRequest.BatchItem: a key (the endpoint id) is required", "StatusCode": 400}
    # A bad Timestamp fails its own event, not the request: the other events of the item (and the others) land.
    bad = {"EventType": "open", "Timestamp": "0001-01-01T00:00:00+01:00"}  # year 0 in UTC
    answer = pinpoint.put_events(
        ApplicationId=app_id,
        EventsRequest={
            "BatchItem": {
                "ep-ts": {"Endpoint": {}, "Events": {"good": event, "bad": bad, "nope": {**event, "Timestamp": "nope"}}}
            }
        },
    )
    result = answer["EventsResponse"]["Results"]["ep-ts"]
    assert result["EndpointItemResponse"]["StatusCode"] == 202
    assert result["EventsItemResponse"]["good"] == {"Message": "Accepted", "StatusCode": 202}
    assert result["EventsItemResponse"]["bad"]["StatusCode"] == 400
    assert (
        "EventsRequest.BatchItem.ep-ts.Events.bad.Timestamp is out of range"
        in result["EventsItemResponse"]["bad"]["Message"]
    )
    assert result["EventsItemResponse"]["nope"]["StatusCode"] == 400
    assert "EventsRequest.BatchItem.ep-ts.Events.nope.Timestamp" in result["EventsItemResponse"]["nope"]["Message"]


def test_tags_by_arn(pinpoint, app_id) -> None:
    app_arn = pinpoint.get_app(ApplicationId=app_id)["ApplicationResponse"]["Arn"]
    segment = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "s"})["SegmentResponse"]
    for arn in (app_arn, segment["Arn"]):
        assert (
            pinpoint.tag_resource(ResourceArn=arn, TagsModel={"tags": {"a": "1", "b": "2"}})["ResponseMetadata"][
                "HTTPStatusCode"
            ]
            == 204
        )
        assert pinpoint.list_tags_for_resource(ResourceArn=arn)["TagsModel"]["tags"] == {"a": "1", "b": "2"}
        pinpoint.untag_resource(ResourceArn=arn, TagKeys=["a"])
        assert pinpoint.list_tags_for_resource(ResourceArn=arn)["TagsModel"]["tags"] == {"b": "2"}
    assert pinpoint.get_segment(ApplicationId=app_id, SegmentId=segment["Id"])["SegmentResponse"]["tags"] == {"b": "2"}
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.list_tags_for_resource(ResourceArn=app_arn.replace(ACCOUNT_ID, "999999999999"))
    with pytest.raises(pinpoint.exceptions.BadRequestException):
        pinpoint.list_tags_for_resource(ResourceArn="arn:aws:sns:us-east-1:123456789012:topic")


def test_updates_leave_tags_to_tag_resource(pinpoint, app_id) -> None:
    """botocore's model: WriteSegmentRequest.tags and WriteCampaignRequest.tags are "not processed" on updates (since
    2023-05-22, and no error is returned); TagResource and UntagResource change them."""
    segment = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "s", "tags": {"a": "1"}})
    segment_id = segment["SegmentResponse"]["Id"]
    arn = segment["SegmentResponse"]["Arn"]
    pinpoint.tag_resource(ResourceArn=arn, TagsModel={"tags": {"b": "2"}})
    updated = pinpoint.update_segment(
        ApplicationId=app_id, SegmentId=segment_id, WriteSegmentRequest={"Name": "t", "tags": {"aws:bad": "x"}}
    )["SegmentResponse"]
    assert updated["Name"] == "t" and updated["tags"] == {"a": "1", "b": "2"}
    assert pinpoint.list_tags_for_resource(ResourceArn=arn)["TagsModel"]["tags"] == {"a": "1", "b": "2"}
    request = campaign_request(segment_id)
    campaign = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest={**request, "tags": {"c": "3"}})
    campaign_id = campaign["CampaignResponse"]["Id"]
    changed = pinpoint.update_campaign(
        ApplicationId=app_id, CampaignId=campaign_id, WriteCampaignRequest={"Name": "renamed", "tags": {}}
    )["CampaignResponse"]
    assert changed["Name"] == "renamed" and changed["tags"] == {"c": "3"}


def test_missing_app_is_not_found_everywhere(pinpoint) -> None:
    missing = "f" * 32
    calls = [
        lambda: pinpoint.get_application_settings(ApplicationId=missing),
        lambda: pinpoint.update_endpoint(ApplicationId=missing, EndpointId="e", EndpointRequest={}),
        lambda: pinpoint.get_segments(ApplicationId=missing),
        lambda: pinpoint.get_campaigns(ApplicationId=missing),
        lambda: pinpoint.create_segment(ApplicationId=missing, WriteSegmentRequest={"Name": "x"}),
        lambda: pinpoint.put_events(ApplicationId=missing, EventsRequest={"BatchItem": {}}),
    ]
    for call in calls:
        with pytest.raises(pinpoint.exceptions.NotFoundException, match=missing):
            call()


def test_unsupported_operation_is_a_clear_4xx(pinpoint, app_id) -> None:
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="GetJourney is not supported"):
        pinpoint.get_journey(ApplicationId=app_id, JourneyId="x")
