"""Small wire-format helpers: ids, timestamps, JSON responses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

from pointcast.aws.errors import BadRequest


def new_id() -> str:
    """A Pinpoint-style id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def iso_ms(moment: datetime) -> str:
    """ISO 8601 with milliseconds and ``Z``, the form Pinpoint uses for every date."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def parse_instant(value: Any, path: str) -> datetime:
    """An ISO 8601 date-time as an aware UTC datetime (naive times are UTC), or BadRequest naming ``path``: for
    text that is not a date-time, and for one that does not fit Python's years 1-9999 once it is moved to UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{path} must be an ISO 8601 date-time (got {str(value)[:40]!r})") from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise BadRequest(
            f"{path} is out of range: in UTC it falls outside the years 1 to 9999 (got {value!r})"
        ) from None


def now_iso() -> str:
    return iso_ms(datetime.now(UTC))


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = b"" if payload is None else orjson.dumps(payload)
    return Response(body, status_code=status, headers=headers, media_type="application/json")
