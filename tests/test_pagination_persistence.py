"""Pagination over hundreds of items, and a restart that keeps everything."""

from __future__ import annotations

import pytest

from tests.conftest import make_server


def _all_pages(call, key: str, **kwargs) -> tuple[list[dict], int]:
    items, pages, token = [], 0, None
    while True:
        response = call(**kwargs, **({"Token": token} if token else {}))[key]
        items += response["Item"]
        pages += 1
        token = response.get("NextToken")
        if not token:
            return items, pages


def test_pagination_over_250_items(pinpoint, app_id) -> None:
    segment_ids = [
        pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": f"s{i}"})["SegmentResponse"]["Id"]
        for i in range(260)
    ]
    items, pages = _all_pages(pinpoint.get_segments, "SegmentsResponse", ApplicationId=app_id, PageSize="40")
    assert [s["Id"] for s in items] == segment_ids  # every one, once, in creation order
    assert pages == 7
    default, _ = _all_pages(pinpoint.get_segments, "SegmentsResponse", ApplicationId=app_id)
    assert len(default) == 260
    for bad in ("0", "abc", "1001"):
        with pytest.raises(pinpoint.exceptions.BadRequestException, match="page-size"):
            pinpoint.get_segments(ApplicationId=app_id, PageSize=bad)
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="token"):
        pinpoint.get_segments(ApplicationId=app_id, Token="garbage")


def test_app_and_campaign_pagination(pinpoint, app_id) -> None:
    segment_id = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "s"})["SegmentResponse"][
        "Id"
    ]
    request = {"SegmentId": segment_id, "Schedule": {"StartTime": "IMMEDIATE"}, "Name": "c"}
    ids = [
        pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]["Id"]
        for _ in range(30)
    ]
    items, pages = _all_pages(pinpoint.get_campaigns, "CampaignsResponse", ApplicationId=app_id, PageSize="7")
    assert [c["Id"] for c in items] == ids and pages == 5
    apps, _ = _all_pages(pinpoint.get_apps, "ApplicationsResponse", PageSize="3")
    assert app_id in {a["Id"] for a in apps}
    assert len({a["Id"] for a in apps}) == len(apps)


def test_restart_keeps_everything(backend, ca_bundle, tmp_path) -> None:
    server, schema = make_server(backend, tmp_path / "restart", ca_bundle)
    try:
        server.start()
        pp = server.pinpoint()
        app = pp.create_app(CreateApplicationRequest={"Name": "durable", "tags": {"t": "1"}})["ApplicationResponse"]
        items = [
            {"Id": f"e{i}", "ChannelType": "EMAIL", "Address": f"{i}@x.io", "Attributes": {"n": [str(i)]}}
            for i in range(100)
        ]
        pp.update_endpoints_batch(ApplicationId=app["Id"], EndpointBatchRequest={"Item": items})
        settings = pp.update_application_settings(
            ApplicationId=app["Id"], WriteApplicationSettingsRequest={"Limits": {"Daily": 5}}
        )["ApplicationSettingsResource"]
        segment = pp.create_segment(ApplicationId=app["Id"], WriteSegmentRequest={"Name": "s"})["SegmentResponse"]
        campaign = pp.create_campaign(
            ApplicationId=app["Id"],
            WriteCampaignRequest={
                "Name": "c",
                "SegmentId": segment["Id"],
                "Schedule": {"StartTime": "IMMEDIATE"},
                "IsPaused": True,
            },
        )["CampaignResponse"]
        endpoint = pp.get_endpoint(ApplicationId=app["Id"], EndpointId="e42")["EndpointResponse"]

        server.stop()
        server.start()
        pp = server.pinpoint()
        assert pp.get_app(ApplicationId=app["Id"])["ApplicationResponse"] == app
        assert pp.get_application_settings(ApplicationId=app["Id"])["ApplicationSettingsResource"] == settings
        assert pp.get_endpoint(ApplicationId=app["Id"], EndpointId="e42")["EndpointResponse"] == endpoint
        assert pp.get_segment(ApplicationId=app["Id"], SegmentId=segment["Id"])["SegmentResponse"] == segment
        assert pp.get_campaign(ApplicationId=app["Id"], CampaignId=campaign["Id"])["CampaignResponse"] == campaign
        for item in items[::9]:
            got = pp.get_endpoint(ApplicationId=app["Id"], EndpointId=item["Id"])["EndpointResponse"]
            assert got["Attributes"] == item["Attributes"]
    finally:
        server.stop()
        if schema:
            schema.drop()
