"""HTTP edge for endpoints."""

from __future__ import annotations

from typing import Any

from pointcast.aws.errors import BadRequest
from pointcast.aws.restjson import Call
from pointcast.context import Context
from pointcast.endpoints import service
from pointcast.pinpoint import limits


def _accepted(call: Call) -> dict[str, Any]:
    return {"Message": "Accepted", "RequestID": call.request_id}


async def update_endpoint(ctx: Context, call: Call) -> Any:
    app_id, endpoint_id = (
        call.param("ApplicationId"),
        service.check_id(call.param("EndpointId"), "EndpointId"),
    )
    items = [(endpoint_id, _with_request_id(call.body, call))]
    await ctx.write(lambda conn: service.write(conn, app_id, items, "EndpointRequest"))
    return _accepted(call)


async def update_endpoints_batch(ctx: Context, call: Call) -> Any:
    batch = call.body.get("Item")
    if batch is None:
        raise BadRequest("EndpointBatchRequest.Item is required")
    if not batch:
        raise BadRequest("EndpointBatchRequest.Item must contain at least one endpoint")
    if len(batch) > limits.MAX_BATCH_ITEMS:
        raise BadRequest(
            f"EndpointBatchRequest.Item has {len(batch)} endpoints; "
            f"at most {limits.MAX_BATCH_ITEMS} are allowed per call"
        )
    items = [
        (service.check_id(item.get("Id"), f"EndpointBatchRequest.Item[{i}].Id"), _with_request_id(item, call))
        for i, item in enumerate(batch)
    ]
    await ctx.write(
        lambda conn: service.write(conn, call.param("ApplicationId"), items, "EndpointBatchRequest.Item[{index}]")
    )
    return _accepted(call)


def _with_request_id(request: dict[str, Any], call: Call) -> dict[str, Any]:
    """EndpointResponse.RequestId is "the unique identifier for the most recent request to update the endpoint":
    the client's own RequestId when it gave one, else this API request's id."""
    return request if request.get("RequestId") else {**request, "RequestId": call.request_id}


async def get_endpoint(ctx: Context, call: Call) -> Any:
    return await ctx.read(lambda conn: service.get(conn, call.param("ApplicationId"), call.param("EndpointId")))


async def delete_endpoint(ctx: Context, call: Call) -> Any:
    return await ctx.write(lambda conn: service.delete(conn, call.param("ApplicationId"), call.param("EndpointId")))


async def get_user_endpoints(ctx: Context, call: Call) -> Any:
    items = await ctx.read(lambda conn: service.user_endpoints(conn, call.param("ApplicationId"), call.param("UserId")))
    return {"Item": items}


async def delete_user_endpoints(ctx: Context, call: Call) -> Any:
    items = await ctx.write(lambda conn: service.delete_user(conn, call.param("ApplicationId"), call.param("UserId")))
    return {"Item": items}


HANDLERS = {
    "UpdateEndpoint": update_endpoint,
    "UpdateEndpointsBatch": update_endpoints_batch,
    "GetEndpoint": get_endpoint,
    "DeleteEndpoint": delete_endpoint,
    "GetUserEndpoints": get_user_endpoints,
    "DeleteUserEndpoints": delete_user_endpoints,
}
