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
    if "EndpointStatus" not in request:  # "set to ACTIVE when you create an endpoint or update an existing one"
        doc["EndpointStatus"] = "ACTIVE"
    doc.setdefault("OptOut", "NONE")
    doc.setdefault("CreationDate", now)
    if "EffectiveDate" not in request:
        doc["EffectiveDate"] = now
    return {k: doc[k] for k in _ORDER if k in doc}


LOCK_BUCKETS = 128  # an application's endpoints are locked in this many groups (by a hash of the id)


def lock_ids(conn: sa.Connection, app_id: str, ids: Iterable[str], users: Iterable[str] = ()) -> None:
    """Hold these endpoints (and these users' sets of endpoints) until the transaction ends
    (``pointcast.store.lock``): what a transaction reads of them next is what it rewrites, with no other writer's
    change in between.

    The lock is on the id's group (one of ``LOCK_BUCKETS`` per application), not on the id itself: PostgreSQL keeps
    advisory locks in a shared table of ``max_locks_per_transaction`` (64) times ``max_connections`` entries, and an
    import's chunk of 500 endpoints, on many connections at once, would fill it. Two writers of different endpoints
    of one group take turns; their transactions are short. Users are grouped the same way."""
    lock(
        conn, *(("endpoints", app_id, _group(i)) for i in set(ids)), *(("users", app_id, _group(u)) for u in set(users))
    )


def _group(key: str) -> str:
    return str(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % LOCK_BUCKETS)


MAX_ENDPOINTS_PER_USER = 15
# Push channels: a 16th endpoint of one of them takes the place of the user's oldest push endpoint.
PUSH_CHANNELS = frozenset({"ADM", "APNS", "APNS_SANDBOX", "APNS_VOIP", "APNS_VOIP_SANDBOX", "BAIDU", "GCM"})


def write(conn: sa.Connection, app_id: str, items: list[tuple[str, dict[str, Any]]], path: str) -> None:
    """Create or update each (id, EndpointRequest) of a batch in two statements; later items win over earlier.

    ``path`` names the items in error messages; ``{index}`` in it is replaced by the item's position. The batch's
    endpoints (and the users it names) are locked first (``lock_ids``), so concurrent writes of one endpoint merge
    one after the other. A user may have 15 endpoints (``_per_user``).
    """
    apps.require(conn, app_id)
    named_users = [u for _, request in items if isinstance(u := (request.get("User") or {}).get("UserId"), str)]
    lock_ids(conn, app_id, [endpoint_id for endpoint_id, _ in items], named_users)
    now = now_iso()
    stored = repository.docs_by_id(conn, app_id, [endpoint_id for endpoint_id, _ in items])
    merged: dict[str, dict[str, Any]] = {}
    rows: dict[str, tuple[Any, ...]] = {}
    joined: list[tuple[int, str, str]] = []  # (index, endpoint id, user id): an endpoint that joins a user here
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
        if user_id and user_id != ((previous or {}).get("User") or {}).get("UserId"):
            joined.append((index, endpoint_id, user_id))
        effective = instant(doc["EffectiveDate"], path.replace("{index}", str(index)) + ".EffectiveDate")
        rows[endpoint_id] = _row(app_id, endpoint_id, doc, text.decode(), request_id, effective)
    if joined:
        rows.update(_per_user(conn, app_id, merged, joined, path, now))
    repository.upsert(conn, list(rows.values()))


def _row(app_id: str, endpoint_id: str, doc: dict[str, Any], text: str, request_id: str | None, effective: str) -> Any:
    """The stored row of an endpoint (``repository.UPSERT_COLUMNS``)."""
    return (
        app_id,
        endpoint_id,
        (doc.get("User") or {}).get("UserId"),
        doc.get("ChannelType"),
        doc["EndpointStatus"],
        doc["OptOut"],
        request_id,
        text,
        (doc.get("Demographic") or {}).get("Timezone"),
        effective,
    )


def _per_user(
    conn: sa.Connection,
    app_id: str,
    merged: dict[str, dict[str, Any]],
    joined: list[tuple[int, str, str]],
    path: str,
    now: str,
) -> dict[str, tuple[Any, ...]]:
    """Pinpoint's quota of 15 endpoints per ``User.UserId`` ("Managing an audience member's maximum number of
    endpoints"), for the endpoints that join a user in this write: past 15, a push endpoint (ADM, APNS..., BAIDU,
    GCM) takes the place of the user's push endpoint with the oldest ``EffectiveDate``, which is made INACTIVE and
    loses its ``UserId``; any other endpoint, or a push one when the user has no other push endpoint, is a
    BadRequest. Returns the rows of the endpoints that lost their place."""
    users = {user_id for _, _, user_id in joined}
    others: dict[str, list[dict[str, Any]]] = {
        user_id: [] for user_id in users
    }  # the users' endpoints not written here
    for endpoint_id, user_id, text, request_id in repository.user_rows(conn, app_id, sorted(users)):
        if endpoint_id not in merged:
            others[user_id].append({"Id": endpoint_id, "RequestId": request_id, **orjson.loads(text)})
    # Counted in the batch's order: the endpoints the users have, then each that joins one here (a later item of
    # the batch that names the same endpoint again is not a new member).
    members = {user_id: len(found) for user_id, found in others.items()}
    joining = {endpoint_id for _, endpoint_id, _ in joined}
    for endpoint_id, written in merged.items():
        owner = (written.get("User") or {}).get("UserId")
        if owner in members and endpoint_id not in joining:
            members[owner] += 1
    evicted: dict[str, tuple[Any, ...]] = {}
    counted: set[str] = set()
    for index, endpoint_id, user_id in joined:
        if endpoint_id in counted or (merged[endpoint_id].get("User") or {}).get("UserId") != user_id:
            continue  # named again later in the batch, or given to another user by a later item
        counted.add(endpoint_id)
        members[user_id] += 1
        if members[user_id] <= MAX_ENDPOINTS_PER_USER:
            continue
        push = [d for d in others[user_id] if d.get("ChannelType") in PUSH_CHANNELS]
        if merged[endpoint_id].get("ChannelType") not in PUSH_CHANNELS or not push:
            where = path.replace("{index}", str(index))
            raise BadRequest(
                f"{where}.User.UserId: user '{user_id}' already has {MAX_ENDPOINTS_PER_USER} endpoints, the most one "
                "user may have; delete one of them (DeleteEndpoint) or give this endpoint to no user"
                + (
                    ""
                    if merged[endpoint_id].get("ChannelType") not in PUSH_CHANNELS
                    else " (none of them is a push endpoint that could give up its place)"
                )
            )
        oldest = min(push, key=lambda d: str(d.get("EffectiveDate") or ""))
        others[user_id].remove(oldest)
        members[user_id] -= 1
        endpoint = {k: v for k, v in oldest.items() if k not in ("Id", "RequestId")}
        endpoint["EndpointStatus"] = "INACTIVE"
        endpoint["User"] = {k: v for k, v in (endpoint.get("User") or {}).items() if k != "UserId"}
        doc = {k: endpoint[k] for k in _ORDER if k in endpoint}
        effective = instant(str(doc.get("EffectiveDate") or now), "EffectiveDate")
        evicted[oldest["Id"]] = _row(
            app_id, oldest["Id"], doc, orjson.dumps(doc).decode(), oldest["RequestId"], effective
        )
    return evicted


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
