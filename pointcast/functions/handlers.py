"""HTTP edge of the Lambda API subset: references resolved, one transaction per call, the pool told of changes."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import uuid
from typing import Any

import orjson
from starlette.responses import Response

from pointcast.aws.errors import TooManyRequests
from pointcast.aws.restjson import Call
from pointcast.context import Context
from pointcast.functions import service
from pointcast.functions.code import decode_zip
from pointcast.functions.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    ResourceNotFound,
    ServiceError,
)
from pointcast.functions.host import LOG_KEEP, FunctionHost, Invocation
from pointcast.functions.names import function_arn, parse_ref
from pointcast.functions.routes import code_token

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024  # Lambda's limit for a RequestResponse payload
MAX_EVENT_PAYLOAD = 1024 * 1024  # ... and for an Event one
MAX_CLIENT_CONTEXT = 3583  # bytes of base64 in X-Amz-Client-Context (botocore's lambda model)


def _name(ctx: Context, call: Call) -> str:
    name = service.local_name(call.param("FunctionName"), ctx.region, ctx.account_id)
    qualifier = call.param("Qualifier")
    if qualifier not in (None, "", "$LATEST"):
        service.local_name(f"{name}:{qualifier}", ctx.region, ctx.account_id)  # raises: only $LATEST exists
    return name


def _host(ctx: Context) -> FunctionHost:
    if ctx.functions is None:
        raise ServiceError("The function runtime is not running on this pointcast server")
    return ctx.functions  # type: ignore[no-any-return]


def _changed(ctx: Context, name: str, *, workers: bool = True) -> None:
    if ctx.functions is not None:
        ctx.functions.forget(name, workers=workers)


async def _unzipped(encoded: Any) -> bytes | None:
    """``Code.ZipFile`` decoded and checked on a thread, before the write transaction: inflating a 50 MB zip to
    test it takes seconds, and every other write of the server would wait for it."""
    return await asyncio.to_thread(decode_zip, encoded) if isinstance(encoded, str) and encoded else None


async def create_function(ctx: Context, call: Call) -> Any:
    node = _host(ctx).node_available
    data = await _unzipped((call.body.get("Code") or {}).get("ZipFile"))
    return await ctx.write(
        lambda conn: service.create(conn, call.body, ctx.region, ctx.account_id, node_available=node, data=data)
    )


async def get_function(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    row = await ctx.read(lambda conn: service.require(conn, name, ctx.region, ctx.account_id))
    token = code_token(ctx, name, row.doc["CodeSha256"])
    url = f"{ctx.settings.public_url()}/pointcast/v1/functions/{name}/code?token={token}"
    return await ctx.read(lambda conn: service.get_function(conn, name, ctx.region, ctx.account_id, url))


async def get_function_configuration(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    return (await ctx.read(lambda conn: service.require(conn, name, ctx.region, ctx.account_id))).doc


async def list_functions(ctx: Context, call: Call) -> Any:
    return await ctx.read(lambda conn: service.list_functions(conn, call.param("Marker"), call.param("MaxItems")))


async def update_function_code(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    data = await _unzipped(call.body.get("ZipFile"))
    doc = await ctx.write(
        lambda conn: service.update_code(conn, name, call.body, ctx.region, ctx.account_id, data=data)
    )
    _changed(ctx, name)
    return doc


async def update_function_configuration(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    node = _host(ctx).node_available
    doc = await ctx.write(
        lambda conn: service.update_configuration(
            conn, name, call.body, ctx.region, ctx.account_id, node_available=node
        )
    )
    _changed(ctx, name)
    return doc


async def delete_function(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    parsed = parse_ref(call.param("FunctionName"))
    if "$LATEST" in (call.param("Qualifier"), parsed.qualifier if parsed else None):
        raise InvalidParameterValue("$LATEST version cannot be deleted without deleting the function.")
    await ctx.write(lambda conn: service.delete(conn, name, ctx.region, ctx.account_id))
    _changed(ctx, name)
    return Response(status_code=204)


async def add_permission(ctx: Context, call: Call) -> Any:
    ref = parse_ref(call.param("FunctionName"))
    if call.param("Qualifier") == "$LATEST" or (ref is not None and ref.qualifier == "$LATEST"):
        raise InvalidParameterValue("We currently do not support adding policies for $LATEST.")  # Lambda's words
    name = _name(ctx, call)
    request = {**call.body, "Qualifier": call.param("Qualifier")}
    result = await ctx.write(lambda conn: service.add_permission(conn, name, request, ctx.region, ctx.account_id))
    _changed(ctx, name, workers=False)
    return result


async def remove_permission(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    sid, revision = call.param("StatementId"), call.param("RevisionId")
    await ctx.write(lambda conn: service.remove_permission(conn, name, sid, ctx.region, ctx.account_id, revision))
    _changed(ctx, name, workers=False)
    return Response(status_code=204)


async def get_policy(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    return await ctx.read(lambda conn: service.get_policy(conn, name, ctx.region, ctx.account_id))


def tail(result: Invocation, memory_mb: int) -> str:
    """The log as Lambda shows it: START, what the function wrote, END, REPORT (the billed duration is the duration
    rounded up to the next millisecond, as Lambda bills; ``Max Memory Used`` and, on a worker's first call, its
    ``Init Duration``, as Lambda adds them)."""
    used = "" if result.max_memory_mb is None else f"Max Memory Used: {result.max_memory_mb} MB\t"
    init = "" if result.init_ms is None else f"Init Duration: {result.init_ms:.2f} ms\t"
    logs = result.logs if not result.logs or result.logs.endswith("\n") else result.logs + "\n"  # END: a line
    return (
        f"START RequestId: {result.request_id} Version: $LATEST\n{logs}"
        f"END RequestId: {result.request_id}\n"
        f"REPORT RequestId: {result.request_id}\tDuration: {result.duration_ms:.2f} ms\t"
        f"Billed Duration: {max(1, math.ceil(result.duration_ms))} ms\tMemory Size: {memory_mb} MB\t{used}{init}\n"
    )


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _client_context(encoded: str) -> str:
    """The ``X-Amz-Client-Context`` header as the handler gets it: base64 of a JSON object, at most 3,583 bytes
    (botocore's model); anything else is refused here rather than failing inside the function."""
    if len(encoded) > MAX_CLIENT_CONTEXT:
        raise InvalidParameterValue(
            f"X-Amz-Client-Context is {len(encoded)} bytes; it may have at most {MAX_CLIENT_CONTEXT} bytes of base64"
        )
    try:
        text = base64.b64decode(encoded, validate=True).decode()
        document = json.loads(text)
    except ValueError:
        raise InvalidParameterValue("X-Amz-Client-Context must be base64-encoded JSON") from None
    if not isinstance(document, dict):
        raise InvalidParameterValue("X-Amz-Client-Context must be base64-encoded JSON of an object")
    return text


async def invoke(ctx: Context, call: Call) -> Any:
    name = _name(ctx, call)
    host = _host(ctx)
    payload: bytes = call.body if isinstance(call.body, bytes) else b""
    kind = call.param("InvocationType") or "RequestResponse"
    if kind not in ("RequestResponse", "Event", "DryRun"):
        raise InvalidParameterValue(f"InvocationType must be RequestResponse, Event or DryRun (got {kind!r})")
    limit = MAX_EVENT_PAYLOAD if kind == "Event" else MAX_SYNC_PAYLOAD
    if len(payload) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the {kind} invocation type")
    if payload.strip():
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            try:  # JSON orjson refuses but Lambda takes (a lone surrogate's escape); the worker decodes it the same way
                json.loads(payload, parse_constant=_not_json)  # (NaN and Infinity are Python's, not JSON)
            except ValueError:
                raise InvalidRequestContent("Could not parse request body into json: the payload is not JSON") from None
    else:
        payload = b"{}"
    row = await ctx.read(lambda conn: service.require(conn, name, ctx.region, ctx.account_id))
    request_id = str(uuid.uuid4())  # the invocation's: the context's aws_request_id and the response's
    headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id}
    if kind == "DryRun":
        return Response(status_code=204, headers=headers)
    if kind == "Event":
        if not host.invoke_later(name, payload, request_id):
            raise TooManyRequests("Rate Exceeded: too many Event invocations are waiting to run; try again later")
        return Response(status_code=202, headers=headers)
    client_context = call.param("ClientContext")
    if client_context:
        client_context = _client_context(client_context)
    result = await host.invoke(
        name,
        payload,
        client_context=client_context,
        request_id=request_id,
        hosted_only=True,
        queue_timeout=ctx.settings.invoke_queue_seconds,
    )
    if result.refused:  # deleted while the call waited for a worker
        raise ResourceNotFound(f"Function not found: {function_arn(ctx.region, ctx.account_id, name)}")
    if result.throttled:  # as Lambda answers a call past the function's concurrency; clients retry it
        raise TooManyRequests(json.loads(result.payload)["errorMessage"])
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if call.param("LogType") == "Tail":
        text = tail(result, int(row.doc["MemorySize"])).encode()[-LOG_KEEP:]
        headers["X-Amz-Log-Result"] = base64.b64encode(text).decode()
    return Response(result.payload, status_code=200, headers=headers, media_type="application/json")


HANDLERS = {
    "CreateFunction": create_function,
    "GetFunction": get_function,
    "GetFunctionConfiguration": get_function_configuration,
    "ListFunctions": list_functions,
    "UpdateFunctionCode": update_function_code,
    "UpdateFunctionConfiguration": update_function_configuration,
    "DeleteFunction": delete_function,
    "AddPermission": add_permission,
    "RemovePermission": remove_permission,
    "GetPolicy": get_policy,
    "Invoke": invoke,
}
