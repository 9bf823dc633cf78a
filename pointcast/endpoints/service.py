"""Creating, merging, reading and deleting endpoints, as UpdateEndpoint and friends do it.

Merge rule (docs/contract.md): members given in a request replace the stored ones; for ``Attributes``,
``Metrics`` and ``User.UserAttributes`` the given keys replace those keys and the other keys are kept;
``Demographic`` and ``Location`` merge member by member. ``CreationDate`` is kept, ``EffectiveDate`` is the given
one or the time of the update.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable
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


def named_users(requests: Iterable[dict[str, Any]]) -> list[str]:
    """The ``User.UserId`` values the requests set: the users a write must hold (``lock_ids``)."""
    return [u for request in requests if isinstance(u := (request.get("User") or {}).get("UserId"), str) and u]


Refused = Callable[[int, str], None]
"""Told of an item ``write`` leaves out (its index and the reason, its path first) instead of failing the batch."""


def write(
    conn: sa.Connection,
    app_id: str,
    items: list[tuple[str, dict[str, Any]]],
    path: str,
    *,
    refused: Refused | None = None,
    held: bool = False,
) -> None:
    """Create or update each (id, EndpointRequest) of a batch in two statements; later items win over earlier.

    ``path`` names the items in error messages; ``{index}`` in it is replaced by the item's position. The batch's
    endpoints and the users it names are locked first (``lock_ids``; ``held``: the caller already holds them, having
    locked the same ids and users earlier in the transaction, so no lock is asked for again), and the stored
    rows are read ``FOR UPDATE``: concurrent writes of one endpoint merge one after the other. A user may have 15
    endpoints (``_per_user``); an item past that is a BadRequest, or, with ``refused``, left out and reported.
    """
    apps.require(conn, app_id)
    if not held:
        lock_ids(conn, app_id, [endpoint_id for endpoint_id, _ in items], named_users(r for _, r in items))
    now = now_iso()
    stored = repository.docs_by_id(conn, app_id, [endpoint_id for endpoint_id, _ in items], for_update=True)
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
        _per_user(conn, app_id, merged, rows, joined, path, refused)
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
    rows: dict[str, tuple[Any, ...]],
    joined: list[tuple[int, str, str]],
    path: str,
    refused: Refused | None,
) -> None:
    """Pinpoint's quota of 15 endpoints per ``User.UserId`` ("Managing an audience member's maximum number of
    endpoints"), for the endpoints that join a user in this write, in the batch's order: past 15, a push endpoint
    (ADM, APNS..., BAIDU, GCM) takes the place of the user's push endpoint with the oldest ``EffectiveDate``, which
    is made INACTIVE and loses its ``UserId`` (its row is added to ``rows``); any other endpoint, or a push one when
    the user has no other push endpoint, is refused.

    The users are held (``lock_ids``): no endpoint joins them meanwhile, so their endpoints read here can only have
    left them. The one that gives up its place is read again ``FOR UPDATE`` before it is rewritten, so that a
    concurrent write of it (which holds its own group, not the user) is neither lost nor undoes the eviction."""
    users = {user_id for _, _, user_id in joined}
    others: dict[str, dict[str, tuple[str, str]]] = {u: {} for u in users}  # not written here: id -> (channel, date)
    for endpoint_id, user_id, text in repository.user_rows(conn, app_id, sorted(users)):
        if endpoint_id not in merged:
            doc = orjson.loads(text)
            effective = doc.get("EffectiveDate") or doc.get("CreationDate") or ""
            with contextlib.suppress(BadRequest):  # stored canonical, but an older store may differ: as UTC
                effective = instant(str(effective), "EffectiveDate")
            others[user_id][endpoint_id] = (str(doc.get("ChannelType") or ""), str(effective))
    members = {user_id: len(found) for user_id, found in others.items()}
    joining = {endpoint_id for _, endpoint_id, _ in joined}
    for endpoint_id, written in merged.items():
        owner = (written.get("User") or {}).get("UserId")
        if owner in members and endpoint_id not in joining:
            members[owner] += 1
    counted: set[str] = set()
    for index, endpoint_id, user_id in joined:
        if endpoint_id in counted or (merged[endpoint_id].get("User") or {}).get("UserId") != user_id:
            continue  # named again later in the batch, or given to another user by a later item
        counted.add(endpoint_id)
        members[user_id] += 1
        if members[user_id] <= MAX_ENDPOINTS_PER_USER:
            continue
        pushing = merged[endpoint_id].get("ChannelType") in PUSH_CHANNELS
        if pushing and _evict_oldest_push(conn, app_id, user_id, others[user_id], rows):
            members[user_id] -= 1
            continue
        where = path.replace("{index}", str(index))
        reason = (
            f"{where}.User.UserId: user '{user_id}' already has {MAX_ENDPOINTS_PER_USER} endpoints, the most one user "
            "may have; delete one of them (DeleteEndpoint) or give this endpoint to no user"
            + (" (none of them is a push endpoint that could give up its place)" if pushing else "")
        )
        if refused is None:
            raise BadRequest(reason)
        refused(index, reason)
        rows.pop(endpoint_id, None)
        members[user_id] -= 1


def _evict_oldest_push(
    conn: sa.Connection, app_id: str, user_id: str, others: dict[str, tuple[str, str]], rows: dict[str, Any]
) -> bool:
    """Make the user's push endpoint with the oldest EffectiveDate (in UTC, canonical: ordered as text) INACTIVE and
    take its UserId away; False if the user has none."""
    while True:
        push = [(date, i) for i, (channel, date) in others.items() if channel in PUSH_CHANNELS]
        if not push:
            return False
        _, oldest = min(push)
        del others[oldest]
        found = repository.docs_by_id(conn, app_id, [oldest], for_update=True).get(oldest)
        if found is None:
            continue  # deleted meanwhile
        endpoint = orjson.loads(found[0])
        if (endpoint.get("User") or {}).get("UserId") != user_id or endpoint.get("ChannelType") not in PUSH_CHANNELS:
            continue  # moved to another user or channel meanwhile
        endpoint["EndpointStatus"] = "INACTIVE"
        endpoint["User"] = {k: v for k, v in (endpoint.get("User") or {}).items() if k != "UserId"}
        effective = instant(str(endpoint.get("EffectiveDate") or now_iso()), "EffectiveDate")
        rows[oldest] = _row(app_id, oldest, endpoint, orjson.dumps(endpoint).decode(), found[1], effective)
        return True


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
