"""Pinpoint's quotas, enforced by the server (botocore's model carries none).

Each check raises ``BadRequest`` naming the member and the rule, so a caller knows exactly what to change.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from pointcast.aws.errors import BadRequest

MAX_BATCH_ITEMS = 100
MAX_ENDPOINT_ATTRIBUTES = 250
MAX_ATTRIBUTE_NAME = 50
MAX_ATTRIBUTE_VALUE = 100
MAX_ENDPOINT_BYTES = 15 * 1024
MAX_CUSTOM_DATA_BYTES = 5 * 1024
MAX_TREATMENTS = 5  # the default treatment plus at most four AdditionalTreatments (TreatmentId 0..4)
MAX_EVENTS = 100
MESSAGES_PER_SECOND = (1, 20_000)
MAX_DAILY_TOTAL_SESSION = 100
MIN_MAXIMUM_DURATION = 60
MAX_TAGS = 50
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d\Z")


_ENUMS = {"EndpointStatus": ("ACTIVE", "INACTIVE"), "OptOut": ("ALL", "NONE")}


def check_endpoint(item: dict[str, Any], path: str, *, size: int | None = None) -> None:
    """Attribute counts and sizes, the 15 KB endpoint size (``size``: its JSON length, when known), and the
    values Pinpoint gives ``EndpointStatus`` and ``OptOut`` (plain strings in the model)."""
    for member, allowed in _ENUMS.items():
        if item.get(member) not in allowed:
            raise BadRequest(f"{path}.{member} must be one of {', '.join(allowed)} (got {item.get(member)!r})")
    attributes = item.get("Attributes") or {}
    metrics = item.get("Metrics") or {}
    user_attributes = (item.get("User") or {}).get("UserAttributes") or {}
    count = len(attributes) + len(metrics) + len(user_attributes)
    if count > MAX_ENDPOINT_ATTRIBUTES:
        raise BadRequest(
            f"{path} has {count} attributes (Attributes + Metrics + User.UserAttributes); "
            f"at most {MAX_ENDPOINT_ATTRIBUTES} are allowed"
        )
    for member, mapping in (("Attributes", attributes), ("User.UserAttributes", user_attributes)):
        for name, values in mapping.items():
            _check_attribute_name(name, f"{path}.{member}")
            for index, value in enumerate(values):
                if len(value) > MAX_ATTRIBUTE_VALUE:
                    raise BadRequest(
                        f"{path}.{member}.{name}[{index}] is {len(value)} characters; "
                        f"an attribute value may have at most {MAX_ATTRIBUTE_VALUE}"
                    )
    for name in metrics:
        _check_attribute_name(name, f"{path}.Metrics")
    if size is None:
        size = len(orjson.dumps(item))
    if size > MAX_ENDPOINT_BYTES:
        raise BadRequest(f"{path} is {size} bytes; an endpoint may be at most {MAX_ENDPOINT_BYTES} bytes (15 KB)")


def _check_attribute_name(name: str, path: str) -> None:
    if len(name) > MAX_ATTRIBUTE_NAME:
        raise BadRequest(
            f"{path} name '{name[:20]}...' is {len(name)} characters; "
            f"an attribute name may have at most {MAX_ATTRIBUTE_NAME}"
        )
    if not name:
        raise BadRequest(f"{path} has an empty attribute name")


def check_limits(limits: dict[str, Any] | None, path: str) -> None:
    """Campaign or application ``Limits``."""
    if not limits:
        return
    for member in ("Daily", "Total", "Session"):
        value = limits.get(member)
        if value is not None and not 0 <= value <= MAX_DAILY_TOTAL_SESSION:
            raise BadRequest(f"{path}.{member} must be from 0 to {MAX_DAILY_TOTAL_SESSION} (got {value})")
    rate = limits.get("MessagesPerSecond")
    low, high = MESSAGES_PER_SECOND
    if rate is not None and not low <= rate <= high:
        raise BadRequest(f"{path}.MessagesPerSecond must be from {low} to {high} (got {rate})")
    duration = limits.get("MaximumDuration")
    if duration is not None and duration < MIN_MAXIMUM_DURATION:
        raise BadRequest(f"{path}.MaximumDuration must be at least {MIN_MAXIMUM_DURATION} seconds (got {duration})")


def check_quiet_time(quiet: dict[str, Any] | None, path: str) -> None:
    if not quiet:
        return
    for member in ("Start", "End"):
        value = quiet.get(member)
        if value is not None and not _HH_MM.match(value):
            raise BadRequest(f"{path}.{member} must be a time of day as HH:MM (got {value!r})")
    if bool(quiet.get("Start")) != bool(quiet.get("End")):
        raise BadRequest(f"{path} needs both Start and End")


def check_custom_data(message_configuration: dict[str, Any] | None, path: str) -> None:
    data = ((message_configuration or {}).get("CustomMessage") or {}).get("Data")
    if data is not None and len(data.encode()) > MAX_CUSTOM_DATA_BYTES:
        raise BadRequest(
            f"{path}.CustomMessage.Data is {len(data.encode())} bytes; "
            f"at most {MAX_CUSTOM_DATA_BYTES} (5 KB) are allowed"
        )


def check_tags(tags: dict[str, str] | None, path: str) -> None:
    if not tags:
        return
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"{path} has {len(tags)} tags; at most {MAX_TAGS} are allowed")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or key.startswith("aws:"):
            raise BadRequest(f"{path} key {key[:40]!r} must be 1 to 128 characters and must not start with 'aws:'")
        if len(value) > 256:
            raise BadRequest(f"{path}.{key[:40]} value is longer than 256 characters")
