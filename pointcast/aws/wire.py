"""Small wire-format helpers: ids, timestamps, JSON responses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response


def new_id() -> str:
    """A Pinpoint-style id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def iso_ms(moment: datetime) -> str:
    """ISO 8601 with milliseconds and ``Z``, the form Pinpoint uses for every date."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def now_iso() -> str:
    return iso_ms(datetime.now(UTC))


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = b"" if payload is None else orjson.dumps(payload)
    return Response(body, status_code=status, headers=headers, media_type="application/json")
