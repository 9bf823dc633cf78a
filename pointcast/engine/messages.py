"""A campaign's MessageConfiguration as a hook's event carries it: "the same structure as the
DirectMessageConfiguration in the Messages resource" (seeds 001 and 003), from botocore's ``pinpoint`` shapes.

A campaign stores its messages in the campaign shapes (``CampaignEmailMessage``, ``CampaignSmsMessage``, ``Message``
for push); a hook is written against the direct ones (``EmailMessage.SimpleEmail``, ``SMSMessage``, ``GCMMessage``,
...). Members with no place in the direct shape are left out; ``CustomMessage`` and ``InAppMessage``, which the
direct configuration has no member for, are passed as the campaign has them (a custom channel's hook needs its
``Data``).
"""

from __future__ import annotations

from typing import Any

_SMS = ("Body", "MessageType", "OriginationNumber", "SenderId", "EntityId", "TemplateId")
# The campaign's push Message members each direct push shape has, under the direct shape's name.
_PUSH_COMMON = {
    "Action": "Action",
    "Body": "Body",
    "RawContent": "RawContent",
    "SilentPush": "SilentPush",
    "Title": "Title",
    "Url": "Url",
}
_PUSH = {
    "APNSMessage": _PUSH_COMMON | {"MediaUrl": "MediaUrl", "TimeToLive": "TimeToLive"},
    "GCMMessage": _PUSH_COMMON
    | {
        "ImageIconUrl": "ImageIconUrl",
        "ImageSmallIconUrl": "SmallImageIconUrl",
        "ImageUrl": "ImageUrl",
        "TimeToLive": "TimeToLive",
    },
    "ADMMessage": _PUSH_COMMON
    | {"ImageIconUrl": "ImageIconUrl", "ImageSmallIconUrl": "SmallImageIconUrl", "ImageUrl": "ImageUrl"},
    "BaiduMessage": _PUSH_COMMON
    | {
        "ImageIconUrl": "ImageIconUrl",
        "ImageSmallIconUrl": "SmallImageIconUrl",
        "ImageUrl": "ImageUrl",
        "TimeToLive": "TimeToLive",
    },
}
_DEFAULT_PUSH = {"Action": "Action", "Body": "Body", "SilentPush": "SilentPush", "Title": "Title", "Url": "Url"}
_PASSED = ("CustomMessage", "InAppMessage")


def _pick(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names[key]: value for key, value in message.items() if key in names and value is not None}


def _email(message: dict[str, Any]) -> dict[str, Any]:
    simple: dict[str, Any] = {}
    for source, part in (("Title", "Subject"), ("HtmlBody", "HtmlPart"), ("Body", "TextPart")):
        if message.get(source) is not None:
            simple[part] = {"Data": message[source]}
    if message.get("Headers"):
        simple["Headers"] = message["Headers"]
    direct: dict[str, Any] = {}
    if message.get("FromAddress") is not None:
        direct["FromAddress"] = message["FromAddress"]
    if simple:
        direct["SimpleEmail"] = simple
    return direct


def direct_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    """``configuration`` (a campaign's or treatment's MessageConfiguration) in the DirectMessageConfiguration shape."""
    direct: dict[str, Any] = {}
    for key, message in configuration.items():
        if not isinstance(message, dict):
            continue
        if key == "EmailMessage":
            direct[key] = _email(message)
        elif key == "SMSMessage":
            direct[key] = {name: message[name] for name in _SMS if message.get(name) is not None}
        elif key in _PUSH:
            direct[key] = _pick(message, _PUSH[key])
        elif key == "DefaultMessage":
            if message.get("Body") is not None:
                direct["DefaultMessage"] = {"Body": message["Body"]}
            direct["DefaultPushNotificationMessage"] = _pick(message, _DEFAULT_PUSH)
        elif key in _PASSED:
            direct[key] = message
    return direct
