"""A campaign created through the API runs: every targeted endpoint reaches the webhook once, in batches of 50."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import ACCOUNT_ID, Server
from tests.support.signing import signed_request
from tests.support.tls import TestCA, TLSReceiver

CHANNELS = ["SMS", "CUSTOM", "EMAIL", "GCM"]


@pytest.fixture
def receiver(test_ca: TestCA) -> Iterator[TLSReceiver]:
    with TLSReceiver(test_ca, account_id=ACCOUNT_ID) as rx:
        yield rx


def endpoints(count: int) -> list[dict[str, Any]]:
    items = []
    for i in range(count):
        item: dict[str, Any] = {
            "Id": f"ep-{i:04d}",
            "ChannelType": CHANNELS[i % 4],
            "Address": f"addr-{i}",
            "Attributes": {"Team": ["blue" if i % 3 else "red"]},
            "User": {"UserId": f"user-{i}"},
        }
        if i % 17 == 0:
            item["EndpointStatus"] = "INACTIVE"
        if i % 19 == 0:
            item["OptOut"] = "ALL"
        items.append(item)
    return items


def load(pinpoint, app_id: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 100):
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items[start : start + 100]})


def wait_for_state(
    pinpoint, app_id: str, campaign_id: str, state: str, timeout: float = 60, server=None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        campaign = pinpoint.get_campaign(ApplicationId=app_id, CampaignId=campaign_id)["CampaignResponse"]
        if campaign["State"]["CampaignStatus"] == state:
            return campaign
        time.sleep(0.2)
    progress = own(server, f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/progress") if server else None
    raise AssertionError(f"campaign did not reach {state}: {campaign['State']}; progress {progress}")


def own(server: Server, path: str) -> Any:
    response = signed_request("GET", f"{server.url}{path}")
    assert response.status_code == 200, response.text
    return response.json()


def test_webhook_campaign_end_to_end(server, pinpoint, app_id, receiver) -> None:
    items = endpoints(437)
    load(pinpoint, app_id, items)
    segment = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "blue",
            "Dimensions": {"Attributes": {"Team": {"AttributeType": "INCLUSIVE", "Values": ["blue"]}}},
        },
    )["SegmentResponse"]
    data = '{"text": "hello {{User.UserId}}"}'
    campaign = pinpoint.create_campaign(
        ApplicationId=app_id,
        WriteCampaignRequest={
            "Name": "run",
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": data}},
            "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["SMS", "CUSTOM"]},
        },
    )["CampaignResponse"]
    wait_for_state(pinpoint, app_id, campaign["Id"], "COMPLETED", server=server)

    in_segment = [i for i in items if i["Attributes"]["Team"] == ["blue"]]
    expected = {
        i["Id"]
        for i in in_segment
        if i["ChannelType"] in ("SMS", "CUSTOM")
        and i.get("EndpointStatus", "ACTIVE") == "ACTIVE"
        and i.get("OptOut", "NONE") == "NONE"
    }
    posts = [r for r in receiver.requests if r.method == "POST"]
    delivered: list[str] = []
    activity_ids = set()
    for post in posts:
        payload = json.loads(post.body)
        assert list(payload) == [
            "Message",
            "Data",
            "ApplicationId",
            "CampaignId",
            "TreatmentId",
            "ActivityId",
            "ScheduledTime",
            "Endpoints",
        ]
        assert payload["Message"] == {} and payload["Data"] == data  # passed through verbatim
        assert payload["ApplicationId"] == app_id and payload["CampaignId"] == campaign["Id"]
        assert payload["TreatmentId"] == "0"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["ScheduledTime"])
        assert 1 <= len(payload["Endpoints"]) <= 50
        assert post.headers["X-Pointcast-Batch-Id"]
        activity_ids.add(payload["ActivityId"])
        for endpoint_id, definition in payload["Endpoints"].items():
            got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId=endpoint_id)["EndpointResponse"]
            assert definition == {
                k: v for k, v in got.items() if k not in ("Id", "ApplicationId", "CohortId", "RequestId")
            }
            delivered.append(endpoint_id)
    assert sorted(delivered) == sorted(expected)  # every targeted endpoint once and only once
    assert len(posts) == -(-len(expected) // 50)

    [activity] = pinpoint.get_campaign_activities(ApplicationId=app_id, CampaignId=campaign["Id"])[
        "ActivitiesResponse"
    ]["Item"]
    assert activity["Id"] in activity_ids and activity["State"] == "COMPLETED" and activity["Result"] == "SUCCESS"
    assert activity["TotalEndpointCount"] == len(expected) == activity["SuccessfulEndpointCount"]
    assert activity["TreatmentId"] == "0" and activity["Start"] and activity["End"]

    outcomes = own(server, f"/pointcast/v1/apps/{app_id}/campaigns/{campaign['Id']}/outcomes")["Item"]
    by_id = {o["EndpointId"]: o for o in outcomes}
    assert set(by_id) == {i["Id"] for i in in_segment}  # every segment member has an outcome
    for item in in_segment:
        outcome = by_id[item["Id"]]
        if item["Id"] in expected:
            assert outcome["Status"] == "SENT"
        elif item.get("EndpointStatus") == "INACTIVE":
            assert (outcome["Status"], outcome["Reason"]) == ("SKIPPED", "ENDPOINT_INACTIVE")
        elif item.get("OptOut") == "ALL":
            assert (outcome["Status"], outcome["Reason"]) == ("SKIPPED", "OPTED_OUT")
        else:
            assert (outcome["Status"], outcome["Reason"]) == ("SKIPPED", "CHANNEL_NOT_TARGETED")
    events = own(server, f"/pointcast/v1/apps/{app_id}/campaigns/{campaign['Id']}/events")["Item"]
    sent = [e for e in events if e["attributes"]["campaign_send_status"] == "SUCCESS"]
    assert len(sent) == len(expected)
    assert sent[0]["event_type"] == "_campaign.send" and sent[0]["attributes"]["delivery_type"] == "CUSTOM"
    assert sent[0]["awsAccountId"] == ACCOUNT_ID and sent[0]["client"]["client_id"] in expected
    assert json.loads(sent[0]["client_context"]["custom"]["endpoint"])["ChannelType"] in ("SMS", "CUSTOM")


def test_signed_webhooks_verify_with_the_standard_library(server, pinpoint, app_id, receiver) -> None:
    from standardwebhooks.webhooks import Webhook

    created = signed_request("POST", f"{server.url}/pointcast/v1/apps/{app_id}/webhook-secret")
    assert created.status_code == 200, created.text
    secret = created.json()["Secret"]
    assert secret.startswith("whsec_")
    assert "_WebhookSecret" not in json.dumps(pinpoint.get_application_settings(ApplicationId=app_id))
    load(pinpoint, app_id, endpoints(120))
    segment = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "all"})["SegmentResponse"]
    campaign = pinpoint.create_campaign(
        ApplicationId=app_id,
        WriteCampaignRequest={
            "Name": "signed",
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
            "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["SMS"]},
        },
    )["CampaignResponse"]
    wait_for_state(pinpoint, app_id, campaign["Id"], "COMPLETED", server=server)
    posts = [r for r in receiver.requests if r.method == "POST"]
    assert posts
    for post in posts:
        headers = dict(post.headers)
        payload = Webhook(secret).verify(post.body, headers)  # raises if the signature is wrong
        assert payload["CampaignId"] == campaign["Id"]
        assert headers["webhook-id"] == headers["X-Pointcast-Batch-Id"]
        with pytest.raises(Exception, match="signature"):
            Webhook(secret).verify(post.body + b" ", headers)

    # A rotated secret signs the very next campaign's batches, and once deleted they go unsigned. The engine kept
    # the secret it had read for 5 s: a receiver checking with the one just printed refused them.
    def campaign_posts(name: str) -> list[Any]:
        before = len(receiver.requests)
        request = {
            "Name": name,
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": name}},
            "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["SMS"]},
        }
        made = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
        wait_for_state(pinpoint, app_id, made["Id"], "COMPLETED", server=server)
        return [r for r in list(receiver.requests)[before:] if r.method == "POST"]

    rotated = signed_request("POST", f"{server.url}/pointcast/v1/apps/{app_id}/webhook-secret").json()["Secret"]
    posts = campaign_posts("rotated")
    assert posts and all(Webhook(rotated).verify(p.body, dict(p.headers)) for p in posts)
    assert signed_request("DELETE", f"{server.url}/pointcast/v1/apps/{app_id}/webhook-secret").status_code == 200
    posts = campaign_posts("unsigned")
    assert posts and not any("webhook-signature" in p.headers for p in posts)


def test_recency_uses_effective_date_and_events(server, pinpoint, app_id, receiver) -> None:
    from datetime import UTC, datetime, timedelta

    old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    for endpoint_id in ("stale", "revived"):
        pinpoint.update_endpoint(
            ApplicationId=app_id,
            EndpointId=endpoint_id,
            EndpointRequest={"ChannelType": "SMS", "Address": "+1", "EffectiveDate": old},
        )
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="fresh", EndpointRequest={"ChannelType": "SMS"})
    pinpoint.put_events(
        ApplicationId=app_id,
        EventsRequest={
            "BatchItem": {
                "revived": {
                    "Endpoint": {},
                    "Events": {"e1": {"EventType": "_session.start", "Timestamp": datetime.now(UTC).isoformat()}},
                }
            }
        },
    )
    segment = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "active",
            "Dimensions": {"Behavior": {"Recency": {"Duration": "DAY_7", "RecencyType": "ACTIVE"}}},
        },
    )["SegmentResponse"]
    campaign = pinpoint.create_campaign(
        ApplicationId=app_id,
        WriteCampaignRequest={
            "Name": "recent",
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
            "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["SMS"]},
        },
    )["CampaignResponse"]
    wait_for_state(pinpoint, app_id, campaign["Id"], "COMPLETED", server=server)
    delivered = {e for r in receiver.requests if r.method == "POST" for e in json.loads(r.body)["Endpoints"]}
    assert delivered == {"revived", "fresh"}


def test_a_segment_sql_cannot_wholly_decide_reaches_exactly_its_audience(server, pinpoint, app_id, receiver) -> None:
    """The store narrows the audience in SQL and asks the segment's predicate about the rest (dates, a metric at its
    bound, a platform outside ASCII): the endpoints reached are exactly those the segment describes."""
    platforms = ["iOS", "android", "\u212aindle"]  # KELVIN SIGN K: casefolds to "kindle"
    items = [
        {
            "Id": f"mix-{i:02d}",
            "ChannelType": "CUSTOM",
            "Address": f"a{i}",
            "Attributes": {"Joined": [f"2024-0{1 + i % 6}-15T00:00:00Z"]},
            "Demographic": {"Platform": platforms[i % 3]},
            "Metrics": {"score": i / 10},
        }
        for i in range(60)
    ]
    pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": items})
    segment = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "mixed",
            "Dimensions": {"Metrics": {"score": {"ComparisonOperator": "GREATER_THAN_OR_EQUAL", "Value": 1.5}}},
            "SegmentGroups": {
                "Include": "ALL",
                "Groups": [
                    {
                        "Type": "ANY",
                        "Dimensions": [
                            {"Attributes": {"Joined": {"AttributeType": "AFTER", "Values": ["2024-04-01"]}}},
                            {"Demographic": {"Platform": {"Values": ["KINDLE"]}}},
                        ],
                    }
                ],
            },
        },
    )["SegmentResponse"]
    campaign = pinpoint.create_campaign(
        ApplicationId=app_id,
        WriteCampaignRequest={
            "Name": "mixed",
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
            "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["CUSTOM"]},
        },
    )["CampaignResponse"]
    wait_for_state(pinpoint, app_id, campaign["Id"], "COMPLETED", server=server)
    delivered = [e for r in receiver.requests if r.method == "POST" for e in json.loads(r.body)["Endpoints"]]
    expected = {f"mix-{i:02d}" for i in range(15, 60) if i % 6 >= 3 or i % 3 == 2}
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == expected
