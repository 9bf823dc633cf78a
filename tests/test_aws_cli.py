"""The AWS CLI (awscli v1 from PyPI) against a real server: the commands users type, and the JSON they get back.

Each ``aws`` process costs about half a second, so every test runs a whole workflow (about 27 per backend).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ACCOUNT_ID, REGION

# Campaign requests here name functions ("x", "channel", "filter-fn"); pointcast checks they exist and allow it.
pytestmark = pytest.mark.usefixtures("stock_functions")

LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:x"
START = "2099-01-01T09:00:00.000Z"  # far enough ahead that nothing runs while the test looks
ACCEPTED = {"Message": "Accepted", "StatusCode": 202}


def arg(value: Any) -> str:
    """A structure argument as users pass it inline."""
    return json.dumps(value)


def pinpoint_cli(server: Any, command: str, **options: str) -> Any:
    """``aws pinpoint COMMAND --option value ...``; keyword ``application_id`` becomes ``--application-id``."""
    args = [item for name, value in options.items() for item in (f"--{name.replace('_', '-')}", value)]
    return server.cli("pinpoint", command, *args)


def failing_cli(server: Any, command: str, *args: str) -> str:
    """Run a command that must fail; return its stderr."""
    result = server.cli("pinpoint", command, *args, check=False)
    assert result.returncode != 0, result.stdout
    return str(result.stderr)


def test_apps_settings_and_tags(server):
    created = pinpoint_cli(
        server, "create-app", create_application_request=arg({"Name": "cli-app", "tags": {"team": "growth"}})
    )["ApplicationResponse"]
    app_id, arn = created["Id"], created["Arn"]
    assert created["Name"] == "cli-app"
    assert created["tags"] == {"team": "growth"}
    assert arn == f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/{app_id}"
    assert created["CreationDate"].endswith("Z")

    assert pinpoint_cli(server, "get-app", application_id=app_id)["ApplicationResponse"] == created
    listed = pinpoint_cli(server, "get-apps", page_size="1000")["ApplicationsResponse"]["Item"]
    assert created in listed

    written = {
        "Limits": {"Daily": 5, "Total": 20, "MessagesPerSecond": 50, "MaximumDuration": 600},
        "QuietTime": {"Start": "22:00", "End": "07:00"},
    }
    settings = pinpoint_cli(
        server, "update-application-settings", application_id=app_id, write_application_settings_request=arg(written)
    )["ApplicationSettingsResource"]
    assert settings["ApplicationId"] == app_id
    assert settings["Limits"] == written["Limits"]
    assert settings["QuietTime"] == written["QuietTime"]
    assert settings["LastModifiedDate"].endswith("Z")
    assert pinpoint_cli(server, "get-application-settings", application_id=app_id) == {
        "ApplicationSettingsResource": settings
    }

    assert pinpoint_cli(server, "tag-resource", resource_arn=arn, tags_model=arg({"tags": {"stage": "prod"}})) is None
    tags = pinpoint_cli(server, "list-tags-for-resource", resource_arn=arn)
    assert tags == {"TagsModel": {"tags": {"team": "growth", "stage": "prod"}}}
    assert pinpoint_cli(server, "untag-resource", resource_arn=arn, tag_keys="team") is None
    assert pinpoint_cli(server, "list-tags-for-resource", resource_arn=arn) == {
        "TagsModel": {"tags": {"stage": "prod"}}
    }

    deleted = pinpoint_cli(server, "delete-app", application_id=app_id)["ApplicationResponse"]
    assert deleted["Id"] == app_id and deleted["Name"] == "cli-app"

    stderr = failing_cli(server, "get-app", "--application-id", app_id)
    assert "NotFoundException" in stderr
    assert app_id in stderr


def test_endpoints_and_events(server, pinpoint, app_id, tmp_path: Path):
    batch = {
        "Item": [
            {
                "Id": "ep-1",
                "ChannelType": "CUSTOM",
                "Address": "device-1",
                "Attributes": {"plan": ["pro"]},
                "User": {"UserId": "user-1", "UserAttributes": {"name": ["Ada"]}},
            },
            {
                "Id": "ep-2",
                "ChannelType": "CUSTOM",
                "Address": "device-2",
                "Metrics": {"visits": 3.0},
                "User": {"UserId": "user-1"},
            },
        ]
    }
    batch_file = tmp_path / "batch.json"
    batch_file.write_text(json.dumps(batch))
    accepted = pinpoint_cli(
        server, "update-endpoints-batch", application_id=app_id, endpoint_batch_request=f"file://{batch_file}"
    )["MessageBody"]
    assert accepted["Message"] == "Accepted" and accepted["RequestID"]

    update = {"Attributes": {"colour": ["blue"]}, "Location": {"City": "Oslo", "Country": "NO"}}
    accepted = pinpoint_cli(
        server, "update-endpoint", application_id=app_id, endpoint_id="ep-1", endpoint_request=arg(update)
    )["MessageBody"]
    assert accepted["Message"] == "Accepted"

    endpoint = pinpoint_cli(server, "get-endpoint", application_id=app_id, endpoint_id="ep-1")["EndpointResponse"]
    assert endpoint["ApplicationId"] == app_id and endpoint["Id"] == "ep-1"
    assert endpoint["ChannelType"] == "CUSTOM" and endpoint["Address"] == "device-1"
    assert endpoint["Attributes"] == {"plan": ["pro"], "colour": ["blue"]}  # merged key by key
    assert endpoint["Location"] == {"City": "Oslo", "Country": "NO"}
    assert endpoint["User"] == {"UserId": "user-1", "UserAttributes": {"name": ["Ada"]}}
    assert endpoint["EndpointStatus"] == "ACTIVE" and endpoint["OptOut"] == "NONE"
    assert 0 <= int(endpoint["CohortId"]) <= 99

    users = pinpoint_cli(server, "get-user-endpoints", application_id=app_id, user_id="user-1")["EndpointsResponse"]
    assert [item["Id"] for item in users["Item"]] == ["ep-1", "ep-2"]
    assert users["Item"][1]["Metrics"] == {"visits": 3.0}

    events = {
        "BatchItem": {
            "ep-3": {
                "Endpoint": {"ChannelType": "CUSTOM", "Address": "device-3", "User": {"UserId": "user-2"}},
                "Events": {
                    "ev-1": {"EventType": "app.open", "Timestamp": "2024-05-01T10:00:00Z"},
                    "ev-2": {"EventType": "purchase", "Timestamp": "2024-05-01T10:01:00Z", "Metrics": {"price": 9.5}},
                },
            }
        }
    }
    results = pinpoint_cli(server, "put-events", application_id=app_id, events_request=arg(events))
    assert results == {
        "EventsResponse": {
            "Results": {
                "ep-3": {"EndpointItemResponse": ACCEPTED, "EventsItemResponse": {"ev-1": ACCEPTED, "ev-2": ACCEPTED}}
            }
        }
    }
    made = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep-3")["EndpointResponse"]
    assert made["Address"] == "device-3" and made["User"] == {"UserId": "user-2"}

    deleted = pinpoint_cli(server, "delete-endpoint", application_id=app_id, endpoint_id="ep-2")["EndpointResponse"]
    assert deleted["Id"] == "ep-2" and deleted["Metrics"] == {"visits": 3.0}
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="ep-2")


def test_segments_and_campaigns(server, pinpoint, app_id):
    def dimensions(*plans: str) -> dict[str, Any]:
        return {"Attributes": {"plan": {"AttributeType": "INCLUSIVE", "Values": list(plans)}}}

    segment = pinpoint_cli(
        server,
        "create-segment",
        application_id=app_id,
        write_segment_request=arg({"Name": "pros", "Dimensions": dimensions("pro")}),
    )["SegmentResponse"]
    segment_id = segment["Id"]
    assert segment["ApplicationId"] == app_id and segment["Name"] == "pros"
    assert segment["Version"] == 1 and segment["SegmentType"] == "DIMENSIONAL"
    assert segment["Dimensions"] == dimensions("pro")
    assert segment["Arn"] == f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/{app_id}/segments/{segment_id}"

    updated = pinpoint_cli(
        server,
        "update-segment",
        application_id=app_id,
        segment_id=segment_id,
        write_segment_request=arg({"Name": "pros and teams", "Dimensions": dimensions("pro", "team")}),
    )["SegmentResponse"]
    assert updated["Id"] == segment_id and updated["Version"] == 2
    assert updated["Dimensions"] == dimensions("pro", "team")

    versions = pinpoint_cli(server, "get-segment-versions", application_id=app_id, segment_id=segment_id)
    items = versions["SegmentsResponse"]["Item"]
    assert [(v["Version"], v["Name"]) for v in items] == [(1, "pros"), (2, "pros and teams")]

    request = {
        "Name": "launch",
        "SegmentId": segment_id,
        "Schedule": {"StartTime": START, "Frequency": "ONCE", "Timezone": "UTC"},
        "MessageConfiguration": {"CustomMessage": {"Data": '{"hello": "world"}'}},
        "CustomDeliveryConfiguration": {"DeliveryUri": LAMBDA, "EndpointTypes": ["CUSTOM"]},
        "Limits": {"MessagesPerSecond": 100, "Daily": 1},
        "HoldoutPercent": 10,
        "tags": {"owner": "cli"},
    }
    campaign = pinpoint_cli(server, "create-campaign", application_id=app_id, write_campaign_request=arg(request))[
        "CampaignResponse"
    ]
    campaign_id = campaign["Id"]
    assert campaign["ApplicationId"] == app_id and campaign["Name"] == "launch"
    assert campaign["SegmentId"] == segment_id and campaign["SegmentVersion"] == 2  # the latest when not given
    assert campaign["Version"] == 1
    assert campaign["State"] == {"CampaignStatus": "SCHEDULED"}
    for member in ("Schedule", "MessageConfiguration", "CustomDeliveryConfiguration", "Limits", "HoldoutPercent"):
        assert campaign[member] == request[member], member
    assert campaign["tags"] == {"owner": "cli"}
    assert campaign["Arn"].endswith(f":apps/{app_id}/campaigns/{campaign_id}")

    got = pinpoint_cli(server, "get-campaign", application_id=app_id, campaign_id=campaign_id)
    assert got == {"CampaignResponse": campaign}
    listed = pinpoint_cli(server, "get-campaigns", application_id=app_id)
    assert listed == {"CampaignsResponse": {"Item": [campaign]}}
    activities = pinpoint_cli(server, "get-campaign-activities", application_id=app_id, campaign_id=campaign_id)
    assert activities == {"ActivitiesResponse": {"Item": []}}

    no_segment = {key: value for key, value in request.items() if key != "SegmentId"}
    stderr = failing_cli(
        server, "create-campaign", "--application-id", app_id, "--write-campaign-request", arg(no_segment)
    )
    assert "BadRequestException" in stderr
    assert "SegmentId" in stderr

    deleted = pinpoint_cli(server, "delete-campaign", application_id=app_id, campaign_id=campaign_id)
    assert deleted["CampaignResponse"]["Id"] == campaign_id
    deleted = pinpoint_cli(server, "delete-segment", application_id=app_id, segment_id=segment_id)
    assert deleted["SegmentResponse"]["Id"] == segment_id and deleted["SegmentResponse"]["Version"] == 2
    assert pinpoint.get_campaigns(ApplicationId=app_id)["CampaignsResponse"]["Item"] == []
    assert pinpoint.get_segments(ApplicationId=app_id)["SegmentsResponse"]["Item"] == []
