"""A campaign's MessageConfiguration in the DirectMessageConfiguration shape a hook's event has (seeds 001, 003)."""

from __future__ import annotations

import botocore.session

from pointcast.engine.messages import direct_configuration

MODEL = botocore.session.get_session().get_service_model("pinpoint")


def members(shape: str) -> set[str]:
    return set(MODEL.shape_for(shape).members)


def test_every_message_lands_in_its_direct_shape() -> None:
    push = {
        "Action": "URL",
        "Body": "b",
        "Title": "t",
        "Url": "https://x.example",
        "ImageIconUrl": "i",
        "ImageSmallIconUrl": "s",
        "ImageUrl": "u",
        "JsonBody": '{"k": "v"}',
        "MediaUrl": "m",
        "RawContent": "{}",
        "SilentPush": False,
        "TimeToLive": 60,
    }
    campaign = {
        "SMSMessage": {"Body": "hi", "MessageType": "PROMOTIONAL", "SenderId": "me"},
        "EmailMessage": {
            "FromAddress": "a@x.example",
            "Title": "T",
            "HtmlBody": "<b>H</b>",
            "Headers": [{"Name": "X", "Value": "1"}],
        },
        "GCMMessage": push,
        "APNSMessage": push,
        "ADMMessage": push,
        "BaiduMessage": push,
        "DefaultMessage": push,
        "CustomMessage": {"Data": "d"},
    }
    direct = direct_configuration(campaign)
    assert set(direct) - {"CustomMessage"} <= members("DirectMessageConfiguration")
    for key, shape in [
        ("SMSMessage", "SMSMessage"),
        ("EmailMessage", "EmailMessage"),
        ("GCMMessage", "GCMMessage"),
        ("APNSMessage", "APNSMessage"),
        ("ADMMessage", "ADMMessage"),
        ("BaiduMessage", "BaiduMessage"),
        ("DefaultMessage", "DefaultMessage"),
        ("DefaultPushNotificationMessage", "DefaultPushNotificationMessage"),
    ]:
        assert set(direct[key]) <= members(shape), (key, set(direct[key]) - members(shape))
    assert direct["SMSMessage"] == campaign["SMSMessage"]
    assert direct["EmailMessage"] == {
        "FromAddress": "a@x.example",
        "SimpleEmail": {
            "Subject": {"Data": "T"},
            "HtmlPart": {"Data": "<b>H</b>"},
            "Headers": [{"Name": "X", "Value": "1"}],
        },
    }
    assert direct["GCMMessage"]["SmallImageIconUrl"] == "s" and direct["GCMMessage"]["Title"] == "t"
    assert direct["APNSMessage"]["MediaUrl"] == "m" and "ImageUrl" not in direct["APNSMessage"]
    assert direct["DefaultMessage"] == {"Body": "b"}
    assert direct["DefaultPushNotificationMessage"] == {
        "Action": "URL",
        "Body": "b",
        "SilentPush": False,
        "Title": "t",
        "Url": "https://x.example",
    }
    assert direct["CustomMessage"] == {"Data": "d"}  # no direct member: as the campaign has it
