"""Everything about a WriteCampaignRequest that botocore's model cannot say, checked before anything is stored."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pointcast.aws.errors import BadRequest
from pointcast.aws.wire import parse_instant
from pointcast.pinpoint import limits, targets

ROOT = "WriteCampaignRequest"
MIN_YEAR, MAX_YEAR = 1970, 9998
_UTC_OFFSET = re.compile(r"^UTC([+-](0\d|1[0-4])(:[0-5]\d)?)?\Z")


def parse_time(value: str, path: str) -> datetime:
    """A schedule's date-time in UTC. It must carry a time zone, and fall in the years 1970 to 9998 in UTC, so that
    the engine's arithmetic on it (periods, local time in every zone) stays within Python's dates."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{path} must be IMMEDIATE or an ISO 8601 date-time (got {value!r})") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{path} must carry a time zone, for example 2026-12-01T09:00:00.000Z (got {value!r})")
    utc = parse_instant(value, path)
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise BadRequest(f"{path} must fall in the years {MIN_YEAR} to {MAX_YEAR} (got {value!r})")
    return utc


def check_timezone(value: str, path: str) -> None:
    if _UTC_OFFSET.match(value):
        return
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"{path} must be UTC, UTC±HH[:MM] or an IANA time zone name (got {value!r})") from None


def check_schedule(schedule: dict[str, Any] | None, path: str, *, required: bool) -> None:
    if schedule is None:
        if required:
            raise BadRequest(f"{path} is required: say when the campaign runs (StartTime IMMEDIATE or a date-time)")
        return
    start = schedule["StartTime"]
    start_at = None if start == "IMMEDIATE" else parse_time(start, f"{path}.StartTime")
    end = schedule.get("EndTime")
    if end is not None:
        end_at = parse_time(end, f"{path}.EndTime")
        if start_at is not None and end_at <= start_at:
            raise BadRequest(f"{path}.EndTime must be after {path}.StartTime")
        if start_at is None and end_at <= datetime.now(UTC):
            raise BadRequest(f"{path}.EndTime has passed, so a campaign that starts IMMEDIATE would never run")
    frequency = schedule.get("Frequency", "ONCE")
    if frequency in ("EVENT", "IN_APP_EVENT"):
        raise BadRequest(
            f"{path}.Frequency {frequency}: campaigns triggered by events are not supported by pointcast yet "
            "(docs/api.md); use ONCE or a recurring frequency"
        )
    if frequency in ("HOURLY", "DAILY", "WEEKLY", "MONTHLY") and end is None:
        raise BadRequest(f"{path}.EndTime is required when {path}.Frequency is {frequency}")
    if schedule.get("Timezone"):
        check_timezone(schedule["Timezone"], f"{path}.Timezone")
    limits.check_quiet_time(schedule.get("QuietTime"), f"{path}.QuietTime")


def check_request(request: dict[str, Any], *, stored: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Check a CreateCampaign request, or an UpdateCampaign one against the ``stored`` campaign (members left out
    are kept, so the rules that tie members together are checked on the campaign as it will be). Returns the
    (field, url) webhook targets the request names that still need the HEAD check."""
    creating = stored is None
    if creating and not request.get("SegmentId"):
        raise BadRequest(f"{ROOT}.SegmentId is required")
    check_schedule(request.get("Schedule"), f"{ROOT}.Schedule", required=creating)
    limits.check_limits(request.get("Limits"), f"{ROOT}.Limits")
    if creating:  # on an update, tags are "not processed" (the model, since 2023-05-22): TagResource changes them
        limits.check_tags(request.get("tags"), f"{ROOT}.tags")
    given = request
    if stored is not None:
        kept = ("HoldoutPercent", "AdditionalTreatments", "MessageConfiguration", "CustomDeliveryConfiguration")
        request = {**{k: stored[k] for k in kept if k in stored}, **request}
    holdout = request.get("HoldoutPercent", 0)
    if not 0 <= holdout <= 100:
        raise BadRequest(f"{ROOT}.HoldoutPercent must be from 0 to 100 (got {holdout})")
    treatments = request.get("AdditionalTreatments") or []
    if len(treatments) + 1 > limits.MAX_TREATMENTS:
        raise BadRequest(
            f"{ROOT}.AdditionalTreatments has {len(treatments)} treatments; a campaign has at most "
            f"{limits.MAX_TREATMENTS} treatments in all, so at most {limits.MAX_TREATMENTS - 1} additional ones"
        )
    total = holdout
    for index, treatment in enumerate(treatments):
        size = treatment["SizePercent"]
        if not 0 <= size <= 100:
            raise BadRequest(f"{ROOT}.AdditionalTreatments[{index}].SizePercent must be from 0 to 100 (got {size})")
        total += size
    if total > 100:
        raise BadRequest(
            f"{ROOT}.AdditionalTreatments[].SizePercent plus {ROOT}.HoldoutPercent add up to {total}; "
            "they must be at most 100"
        )

    webhooks: list[tuple[str, str]] = []
    campaign_cdc = request.get("CustomDeliveryConfiguration")
    units = [(ROOT, request, None)] + [
        (f"{ROOT}.AdditionalTreatments[{i}]", t, campaign_cdc) for i, t in enumerate(treatments)
    ]
    for path, unit, inherited in units:
        message = unit.get("MessageConfiguration")
        limits.check_custom_data(message, f"{path}.MessageConfiguration")
        cdc = unit.get("CustomDeliveryConfiguration")
        if (message or {}).get("CustomMessage") is not None and not (cdc or inherited):
            raise BadRequest(
                f"{path}.CustomDeliveryConfiguration is required when {path}.MessageConfiguration.CustomMessage is set"
            )
        written = "CustomDeliveryConfiguration" in given if unit is request else "AdditionalTreatments" in given
        if unit is not request and written:
            check_schedule(unit.get("Schedule"), f"{path}.Schedule", required=False)
        if cdc and written:  # a stored target was checked when it was written
            effective = message or request.get("MessageConfiguration") or {}  # a treatment's, else the campaign's
            if effective.get("CustomMessage") is None:  # seed 000: "must also contain a CustomMessage object"
                raise BadRequest(
                    f"{path}.MessageConfiguration.CustomMessage is required with a CustomDeliveryConfiguration: the "
                    "custom channel's message (its Data is sent to the channel as it is)"
                )
            if not cdc.get("EndpointTypes"):  # seed 000: "specify ... EndpointTypes"; without it nobody is sent to
                raise BadRequest(
                    f"{path}.CustomDeliveryConfiguration.EndpointTypes is required: the types of endpoint the custom "
                    'channel sends to (for example ["CUSTOM"]); without it the campaign would send to no endpoint'
                )
            field = f"{path}.CustomDeliveryConfiguration.DeliveryUri"
            if targets.check_delivery_uri(cdc["DeliveryUri"], field):
                webhooks.append((field, cdc["DeliveryUri"]))
    webhooks += targets.check_hook(given.get("Hook"), f"{ROOT}.Hook")
    return webhooks
