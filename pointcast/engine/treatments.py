"""A campaign's treatments as the engine uses them: who lands where, and where each one delivers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pointcast.engine.messages import direct_configuration

# Which endpoint channel types a built-in message in MessageConfiguration reaches (when there is no custom channel).
_CHANNELS = {
    "EmailMessage": ("EMAIL",),
    "SMSMessage": ("SMS",),
    "ADMMessage": ("ADM",),
    "APNSMessage": ("APNS", "APNS_SANDBOX", "APNS_VOIP", "APNS_VOIP_SANDBOX"),
    "BaiduMessage": ("BAIDU",),
    "GCMMessage": ("GCM",),
    "DefaultMessage": ("ADM", "APNS", "APNS_SANDBOX", "APNS_VOIP", "APNS_VOIP_SANDBOX", "BAIDU", "GCM"),
}


@dataclass(frozen=True, slots=True)
class Treatment:
    """One treatment: its share of the audience (``low`` <= bucket < ``high``) and its delivery."""

    id: str
    low: float
    high: float
    endpoint_types: frozenset[str]
    delivery_uri: str | None
    data: str | None
    message: dict[str, Any]
    hook_message: dict[str, Any]  # ``message`` in the DirectMessageConfiguration shape, as a hook's event has it

    @property
    def is_webhook(self) -> bool:
        return bool(self.delivery_uri) and str(self.delivery_uri).startswith("https://")


def post_urls(hook: dict[str, Any] | None, treatment: Treatment) -> list[str]:
    """The https URLs a batch of ``treatment`` is POSTed to, with ``hook`` the campaign's effective hook: a FILTER
    hook's ``WebUrl``, then the treatment's webhook or, for a treatment without a custom channel, a DELIVERY hook's
    ``WebUrl``."""
    hook = hook or {}
    hook_url = "" if hook.get("LambdaFunctionName") else str(hook.get("WebUrl") or "")
    if not hook_url.startswith("https://"):
        hook_url = ""
    found = [hook_url] if hook_url and hook.get("Mode") == "FILTER" else []
    if treatment.is_webhook:
        found.append(str(treatment.delivery_uri))
    elif not treatment.delivery_uri and hook_url and hook.get("Mode") == "DELIVERY":
        found.append(hook_url)
    return found


def bucket(campaign_id: str, endpoint_id: str) -> float:
    """A stable number in [0, 100) per (campaign, endpoint): the same endpoint lands in the same treatment."""
    digest = hashlib.blake2b(f"{campaign_id}/{endpoint_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % 10_000) / 100


def _treatment(tid: str, low: float, high: float, unit: dict[str, Any], campaign: dict[str, Any]) -> Treatment:
    cdc = unit.get("CustomDeliveryConfiguration") or campaign.get("CustomDeliveryConfiguration")
    message = unit.get("MessageConfiguration") or campaign.get("MessageConfiguration") or {}
    if cdc:
        types = frozenset(cdc.get("EndpointTypes") or ())
    else:
        types = frozenset(t for key, channels in _CHANNELS.items() if message.get(key) for t in channels)
    return Treatment(
        id=tid,
        low=low,
        high=high,
        endpoint_types=types,
        delivery_uri=cdc.get("DeliveryUri") if cdc else None,
        data=(message.get("CustomMessage") or {}).get("Data"),
        message=message,
        hook_message=direct_configuration(message),
    )


def treatments_of(campaign: dict[str, Any]) -> tuple[float, list[Treatment]]:
    """The holdout percentage and the treatments, "0" (the campaign itself) first.

    Buckets [0, HoldoutPercent) are held out; each additional treatment takes the next SizePercent; treatment "0"
    gets the rest.
    """
    holdout = float(campaign.get("HoldoutPercent") or 0)
    low = holdout
    extra: list[Treatment] = []
    for treatment in campaign.get("AdditionalTreatments") or []:
        high = low + treatment["SizePercent"]
        extra.append(_treatment(treatment["Id"], low, high, treatment, campaign))
        low = high
    return holdout, [_treatment("0", low, 100.0, campaign, campaign), *extra]


def assign(treatments: list[Treatment], holdout: float, value: float) -> Treatment | None:
    """The treatment for a bucket value, or None when the endpoint is held out."""
    if value < holdout:
        return None
    for treatment in treatments:
        if treatment.low <= value < treatment.high:
            return treatment
    return treatments[0]
