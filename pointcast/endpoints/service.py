"""Creating, merging, reading and deleting endpoints, as UpdateEndpoint and friends do it.

Merge rule (docs/contract.md): members given in a request replace the stored ones; for ``Attributes``,
``Metrics`` and ``User.UserAttributes`` the given keys replace those keys and the other keys are kept;
``Demographic`` and ``Location`` merge member by member. ``CreationDate`` is kept, ``EffectiveDate`` is the given
one or the time of the update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson
import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.errors import BadRequest, NotFound
from pointcast.aws.wire import iso_ms, now_iso, parse_instant
from pointcast.endpoints import repository
from pointcast.pinpoint import limits
from pointcast.store import lock

# The order of members in a stored endpoint definition (and so in a campaign payload).
_ORDER = (
    "ChannelType",
    "Address",
    "EndpointStatus",
    "OptOut",
    "Location",
    "Demographic",
    "EffectiveDate",
    "Attributes",
    "Metrics",
    "User",
    "CreationDate",
)
_MERGED = ("Attributes", "Metrics", "Demographic", "Location")  # merged key by key


def cohort_id(endpoint_id: str) -> str:
    """Pinpoint's CohortId: a stable bucket 0..99 derived from the endpoint id."""
    digest = hashlib.blake2b(endpoint_id.encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big") % 100)


def merge(stored: dict[str, Any] | None, request: dict[str, Any], now: str) -> dict[str, Any]:
    """The endpoint definition after applying ``request`` to ``stored`` (None for a new endpoint)."""
    doc = dict(stored) if stored else {}
    for member, value in request.items():
        if member in ("RequestId", "Id"):
            continue
        if member in _MERGED and isinstance(doc.get(member), dict):
            doc[member] = {**doc[member], **value}
        elif member == "User" and isinstance(doc.get("User"), dict):
            user = {**doc["User"], **{k: v for k, v in value.items() if k != "UserAttributes"}}
            if "UserAttributes" in value:
                user["UserAttributes"] = {**doc["User"].get("UserAttributes", {}), **value["UserAttributes"]}
            doc["User"] = user
        else:
            doc[member] = value
    doc.setdefault("EndpointStatus", "ACTIVE")
    doc.setdefault("OptOut", "NONE")
    doc.setdefault("CreationDate", now)
    if "EffectiveDate" not in request:
        doc["EffectiveDate"] = now
    return {k: doc[k] for k in _ORDER if k in doc}


LOCK_BUCKETS = 128  # an application's endpoints are locked in this many groups (by a hash of the id)


def lock_ids(conn: sa.Connection, app_id: str, ids: Iterable[str]) -> None:
    """Hold these endpoints until the transaction ends (``pointcast.store.lock``): what a transaction reads of them
    next is what it rewrites, with no other writer's change in between.

    The lock is on the id's group (one of ``LOCK_BUCKETS`` per application), not on the id itself: PostgreSQL keeps
    advisory locks in a shared table of ``max_locks_per_transaction`` (64) times ``max_connections`` entries, and an
    import's chunk of 500 endpoints, on many connections at once, would fill it. Two writers of different endpoints
    of one group take turns; their transactions are short."""
    groups = {hashlib.blake2b(endpoint_id.encode(), digest_size=4).digest() for endpoint_id in ids}
    lock(conn, *(("endpoints", app_id, str(int.from_bytes(g, "big") % LOCK_BUCKETS)) for g in groups))


def write(conn: sa.Connection, app_id: str, items: list[tuple[str, dict[str, Any]]], path: str) -> None:
    """Create or update each (id, EndpointRequest) of a batch in two statements; later items win over earlier.

    ``path`` names the items in error messages; ``{index}`` in it is replaced by the item's position. The batch's
    endpoints are locked first (``lock_ids``), so concurrent writes of one endpoint merge one after the other.
    """
    apps.require(conn, app_id)
    lock_ids(conn, app_id, [endpoint_id for endpoint_id, _ in items])
    now = now_iso()
    stored = repository.docs_by_id(conn, app_id, [endpoint_id for endpoint_id, _ in items])
    merged: dict[str, dict[str, Any]] = {}
    rows: dict[str, tuple[Any, ...]] = {}
    for index, (endpoint_id, request) in enumerate(items):
        previous = merged.get(endpoint_id)
        if previous is None and endpoint_id in stored:
            previous = orjson.loads(stored[endpoint_id][0])
        doc = merge(previous, request, now)
        text = orjson.dumps(doc)
        limits.check_endpoint(doc, path.replace("{index}", str(index)), size=len(text))
        merged[endpoint_id] = doc
        request_id = request.get("RequestId") or (stored.get(endpoint_id) or ("", None))[1]
        user_id = (doc.get("User") or {}).get("UserId")
        effective = instant(doc["EffectiveDate"], path.replace("{index}", str(index)) + ".EffectiveDate")
        rows[endpoint_id] = (
            app_id,
            endpoint_id,
            user_id,
            doc.get("ChannelType"),
            doc["EndpointStatus"],
            doc["OptOut"],
            request_id,
            text.decode(),
            (doc.get("Demographic") or {}).get("Timezone"),
            effective,
        )
    repository.upsert(conn, list(rows.values()))


def instant(value: str, path: str) -> str:
    """An ISO 8601 time in pointcast's canonical form (UTC, milliseconds, Z); naive times are UTC."""
    return iso_ms(parse_instant(value, path))


def check_id(endpoint_id: str | None, path: str) -> str:
    if not endpoint_id:
        raise BadRequest(f"{path} is required")
    if len(endpoint_id) > 256:
        raise BadRequest(f"{path} '{endpoint_id[:20]}...' is longer than 256 characters")
    return endpoint_id


def response(app_id: str, endpoint_id: str, doc_text: str, request_id: str | None) -> dict[str, Any]:
    doc = orjson.loads(doc_text)
    result: dict[str, Any] = {
        "ApplicationId": app_id,
        "Id": endpoint_id,
        "CohortId": cohort_id(endpoint_id),
        **doc,
    }
    if request_id:
        result["RequestId"] = request_id
    return result


def get(conn: sa.Connection, app_id: str, endpoint_id: str) -> dict[str, Any]:
    apps.require(conn, app_id)
    found = repository.docs_by_id(conn, app_id, [endpoint_id]).get(endpoint_id)
    if found is None:
        raise NotFound(f"Endpoint '{endpoint_id}' not found in application '{app_id}'")
    return response(app_id, endpoint_id, *found)


def delete(conn: sa.Connection, app_id: str, endpoint_id: str) -> dict[str, Any]:
    lock_ids(conn, app_id, [endpoint_id])
    result = get(conn, app_id, endpoint_id)
    repository.delete(conn, app_id, [endpoint_id])
    return result


def user_endpoints(conn: sa.Connection, app_id: str, user_id: str) -> list[dict[str, Any]]:
    apps.require(conn, app_id)
    rows = repository.by_user(conn, app_id, user_id)
    if not rows:
        raise NotFound(f"No endpoints with User.UserId '{user_id}' in application '{app_id}'")
    return [response(app_id, row.id, row.doc, row.request_id) for row in rows]


def delete_user(conn: sa.Connection, app_id: str, user_id: str) -> list[dict[str, Any]]:
    """Delete the user's endpoints, as they are once locked: one moved to another user meanwhile is kept, and the
    answer shows each deleted endpoint as it was when deleted."""
    found = {item["Id"] for item in user_endpoints(conn, app_id, user_id)}
    lock_ids(conn, app_id, found)
    items = [item for item in user_endpoints(conn, app_id, user_id) if item["Id"] in found]
    if not items:
        raise NotFound(f"No endpoints with User.UserId '{user_id}' in application '{app_id}'")
    repository.delete(conn, app_id, [item["Id"] for item in items])
    return items
