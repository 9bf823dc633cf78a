"""Pinpoint's webhook check at create/update, against a real TLS receiver on loopback (seed 000)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import ACCOUNT_ID
from tests.support.tls import TestCA, TLSReceiver, free_port, silent_server


@pytest.fixture
def receiver(test_ca: TestCA) -> Iterator[TLSReceiver]:
    with TLSReceiver(test_ca, account_id=ACCOUNT_ID) as rx:
        yield rx


@pytest.fixture
def segment_id(pinpoint, app_id: str) -> str:
    return str(
        pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "s"})["SegmentResponse"]["Id"]
    )


def webhook_campaign(segment_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "Name": "hook",
        "SegmentId": segment_id,
        "Schedule": {"StartTime": "IMMEDIATE"},
        "MessageConfiguration": {"CustomMessage": {"Data": "d"}},
        "CustomDeliveryConfiguration": {"DeliveryUri": url, "EndpointTypes": ["SMS"]},
        **extra,
    }


def test_right_account_id_passes_and_head_was_sent(pinpoint, app_id, segment_id, receiver) -> None:
    created = pinpoint.create_campaign(
        ApplicationId=app_id, WriteCampaignRequest=webhook_campaign(segment_id, receiver.url)
    )["CampaignResponse"]
    assert created["CustomDeliveryConfiguration"]["DeliveryUri"] == receiver.url
    heads = receiver.wait_for_requests(1, method="HEAD")
    assert heads[0].path == "/hook"


def test_update_checks_again(pinpoint, app_id, segment_id, receiver) -> None:
    created = pinpoint.create_campaign(
        ApplicationId=app_id, WriteCampaignRequest=webhook_campaign(segment_id, receiver.url)
    )["CampaignResponse"]
    receiver.account_id = "999999999999"
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="does not match"):
        pinpoint.update_campaign(
            ApplicationId=app_id,
            CampaignId=created["Id"],
            WriteCampaignRequest=webhook_campaign(segment_id, receiver.url),
        )
    assert pinpoint.get_campaign(ApplicationId=app_id, CampaignId=created["Id"])["CampaignResponse"]["Version"] == 1


@pytest.mark.parametrize(
    ("account_id", "head_status", "reason"),
    [
        ("999999999999", 200, "'999999999999' does not match this account's id '123456789012'"),
        (None, 200, "without the X-Amz-Pinpoint-AccountId header"),
        (ACCOUNT_ID, 503, "status 503"),
    ],
)
def test_wrong_answers_refuse_the_campaign(
    pinpoint, app_id, segment_id, receiver, account_id, head_status, reason
) -> None:
    receiver.account_id = account_id
    receiver.head_status = head_status
    with pytest.raises(pinpoint.exceptions.BadRequestException) as error:
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=webhook_campaign(segment_id, receiver.url))
    message = error.value.response["Error"]["Message"]
    assert reason in message and "CustomDeliveryConfiguration.DeliveryUri" in message
    assert pinpoint.get_campaigns(ApplicationId=app_id)["CampaignsResponse"]["Item"] == []


def test_receiver_not_answering_at_all(pinpoint, app_id, segment_id) -> None:
    with silent_server() as silent:
        with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"timed out after 2\.0 s"):
            pinpoint.create_campaign(
                ApplicationId=app_id, WriteCampaignRequest=webhook_campaign(segment_id, silent.url)
            )
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="connection refused"):
        pinpoint.create_campaign(
            ApplicationId=app_id,
            WriteCampaignRequest=webhook_campaign(segment_id, f"https://127.0.0.1:{free_port()}/hook"),
        )


def test_untrusted_certificate(pinpoint, app_id, segment_id, tmp_path) -> None:
    with TLSReceiver(TestCA(tmp_path), account_id=ACCOUNT_ID) as stranger:
        with pytest.raises(pinpoint.exceptions.BadRequestException, match="certificate verification failed"):
            pinpoint.create_campaign(
                ApplicationId=app_id, WriteCampaignRequest=webhook_campaign(segment_id, stranger.url)
            )


def test_treatment_and_hook_urls_are_checked(pinpoint, app_id, segment_id, receiver, test_ca) -> None:
    with TLSReceiver(test_ca, account_id=None, path="/bad") as bad:
        treatment = {
            "SizePercent": 50,
            "CustomDeliveryConfiguration": {"DeliveryUri": bad.url, "EndpointTypes": ["SMS"]},
        }
        request = webhook_campaign(segment_id, receiver.url, AdditionalTreatments=[treatment])
        with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"AdditionalTreatments\[0\]"):
            pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)
        hook = webhook_campaign(segment_id, receiver.url, Hook={"Mode": "FILTER", "WebUrl": bad.url})
        with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"Hook\.WebUrl"):
            pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=hook)
        with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"CampaignHook\.WebUrl"):
            pinpoint.update_application_settings(
                ApplicationId=app_id,
                WriteApplicationSettingsRequest={"CampaignHook": {"Mode": "DELIVERY", "WebUrl": bad.url}},
            )
    settings = pinpoint.update_application_settings(
        ApplicationId=app_id,
        WriteApplicationSettingsRequest={"CampaignHook": {"Mode": "DELIVERY", "WebUrl": receiver.url}},
    )["ApplicationSettingsResource"]
    assert settings["CampaignHook"]["WebUrl"] == receiver.url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "must begin with https://"),
        ("https://127.0.0.1/hook?a=b", "not allowed: '='"),
        ("https://127.0.0.1/ho%20ok", "not allowed: '%'"),
        ("https://user@127.0.0.1/hook", "not allowed: '@'"),
    ],
)
def test_url_syntax_is_refused_before_any_head(pinpoint, app_id, segment_id, url, reason) -> None:
    with pytest.raises(pinpoint.exceptions.BadRequestException, match=reason):
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=webhook_campaign(segment_id, url))
