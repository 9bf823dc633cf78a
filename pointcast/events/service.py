"""PutEvents, item by item: each endpoint and each event gets its own status, as Pinpoint reports them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.errors import AwsError, BadRequest
from pointcast.aws.wire import parse_instant
from pointcast.endpoints import repository as endpoint_repository
from pointcast.endpoints import service as endpoints
from pointcast.events import repository
from pointcast.pinpoint import limits

_ACCEPTED = {"Message": "Accepted", "StatusCode": 202}


def check(request: dict[str, Any]) -> None:
    batch = request["BatchItem"]
    if len(batch) > limits.MAX_EVENTS:
        raise BadRequest(f"EventsRequest.BatchItem has {len(batch)} items; at most {limits.MAX_EVENTS} are allowed")
    count = sum(len(item["Events"]) for item in batch.values())
    if count > limits.MAX_EVENTS:
        raise BadRequest(f"EventsRequest has {count} events in all; at most {limits.MAX_EVENTS} are allowed per call")


def put_events(conn: sa.Connection, app_id: str, request: dict[str, Any]) -> dict[str, Any]:
    apps.require(conn, app_id)
    # All at once, with the users the items name (each item's endpoints.write then holds them): locks taken item by
    # item could deadlock with another writer's.
    items = request["BatchItem"].values()
    endpoints.lock_ids(conn, app_id, request["BatchItem"], endpoints.named_users(i["Endpoint"] for i in items))
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for endpoint_id, item in request["BatchItem"].items():
        path = f"EventsRequest.BatchItem.{endpoint_id}"
        try:
            endpoints.check_id(endpoint_id, path if endpoint_id else "EventsRequest.BatchItem: a key (the endpoint id)")
            with conn.begin_nested():
                endpoints.write(conn, app_id, [(endpoint_id, item["Endpoint"])], f"{path}.Endpoint", held=True)
        except AwsError as exc:
            failed = {"Message": exc.message, "StatusCode": exc.status}
            results[endpoint_id] = {
                "EndpointItemResponse": failed,
                "EventsItemResponse": {event_id: failed for event_id in item["Events"]},
            }
            continue
        answers: dict[str, Any] = {}
        for event_id, event in item["Events"].items():
            try:  # one event's bad Timestamp fails that event alone
                parse_instant(event["Timestamp"], f"{path}.Events.{event_id}.Timestamp")
            except AwsError as exc:
                answers[event_id] = {"Message": exc.message, "StatusCode": exc.status}
                continue
            answers[event_id] = dict(_ACCEPTED)
            rows.append(
                {
                    "app_id": app_id,
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "event_type": event["EventType"],
                    "timestamp": event["Timestamp"],
                    "doc": event,
                }
            )
        results[endpoint_id] = {"EndpointItemResponse": dict(_ACCEPTED), "EventsItemResponse": answers}
    repository.insert_many(conn, rows)
    latest: dict[str, str] = {}
    for row in rows:
        at = endpoints.instant(row["timestamp"], "Timestamp")
        latest[row["endpoint_id"]] = max(at, latest.get(row["endpoint_id"], at))
    endpoint_repository.touch(conn, app_id, latest)
    return {"Results": results}
