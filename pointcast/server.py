"""The ASGI application: one port, every API; SigV4 at the door, AWS error envelopes on the way out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route, request_response

from pointcast import __version__
from pointcast.api import Api, build_apis
from pointcast.aws.errors import AwsError, BadRequest, Forbidden, MethodNotAllowed, NotFound, PayloadTooLarge
from pointcast.aws.openapi import openapi_document
from pointcast.aws.sigv4 import SigV4Verifier
from pointcast.aws.wire import json_response, new_id
from pointcast.context import Context
from pointcast.engine import handlers as engine_handlers
from pointcast.engine.leader import Engine
from pointcast.engine.runner import Runner
from pointcast.functions import routes as function_routes
from pointcast.functions.host import FunctionHost
from pointcast.functions.remote import RemoteLambda
from pointcast.functions.runtime.pool import WorkerPool
from pointcast.imports import jobs as import_jobs

log = logging.getLogger("pointcast.server")

MAX_BODY_BYTES = 8 * 1024 * 1024
_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]


def error_response(exc: AwsError, request_id: str, api: Api | None = None) -> Response:
    """The envelope botocore's rest-json parser reads: the type header, and Message/RequestID in the body (and, for
    an API whose errors have it, Lambda's, ``Type``: User for a client's error, Service for the server's)."""
    body = {"Message": exc.message, "RequestID": request_id}
    if api is not None and api.typed_errors:
        body["Type"] = "User" if exc.status < 500 else "Service"
    return json_response(
        body,
        status=exc.status,
        headers={"x-amzn-ErrorType": exc.code, "x-amzn-RequestId": request_id},
    )


def build_function_host(ctx: Context, node: str | None, node_ric: Path | None) -> FunctionHost:
    """The worker pool and AWS Lambda client; workers' boto3 clients reach this server with its own credentials.
    ``node`` runs Node.js workers, under AWS's aws-lambda-ric at ``node_ric`` (None: bootstrap.js)."""
    settings = ctx.settings
    akid, secret = ctx.credentials
    base_env = {
        "AWS_ENDPOINT_URL": settings.public_url(),
        "AWS_ACCESS_KEY_ID": akid,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
    }
    pool = WorkerPool(
        work_dir=settings.data_dir / "workers",
        base_env=base_env,
        max_workers=settings.function_max_workers,
        idle_seconds=settings.function_idle_seconds,
        node=node,
        transport=settings.function_transport,
        node_ric=node_ric,
        batch_scheduling=settings.function_batch_scheduling,
    )
    log.info("Node.js functions run under %s", node_ric or "pointcast's bootstrap.js (aws-lambda-ric not installed)")
    return FunctionHost(ctx, pool, RemoteLambda(settings) if settings.remote_lambda else None)


def create_app(ctx: Context, verifier: SigV4Verifier, node: str | None, node_ric: Path | None) -> FastAPI:
    apis = build_apis()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        functions = build_function_host(ctx, node, node_ric)
        await functions.start()
        ctx.functions = functions
        # The campaign engine runs on one server of a store at a time (engine/leader.py); the others stand by.
        engine = Engine(ctx, lambda: Runner(ctx, ctx.clock)) if ctx.settings.engine_enabled else None
        app.state.engine = engine
        if engine:
            await engine.start()
            ctx.wake_engine = engine.wake
            ctx.destinations_down = engine.destinations_down
            ctx.secret_changed = engine.secret_changed
        await import_jobs.resume_orphans(ctx)
        yield
        if engine:
            await engine.stop()
        await functions.stop()
        ctx.functions = None
        ctx.db.dispose()

    app = FastAPI(
        title="pointcast",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx

    async def health(_: Request) -> Response:
        engine = app.state.engine.status() if app.state.engine else None
        functions = ctx.functions.status() if ctx.functions else None
        return json_response({"status": "ok", "version": __version__, "engine": engine, "functions": functions})

    async def openapi(_: Request) -> Response:
        return json_response(openapi_document(apis))

    async def dispatch(request: Request) -> Response:
        request_id = new_id()
        try:
            payload, status = await _handle(ctx, verifier, apis, request, request_id)
        except AwsError as exc:
            return error_response(exc, request_id, _api_of(apis, request))
        except Exception:
            return _unexpected(request, request_id, _api_of(apis, request))
        headers = {"x-amzn-RequestId": request_id}
        if isinstance(payload, Response):
            payload.headers.setdefault("x-amzn-RequestId", request_id)  # Invoke's is the invocation's id
            return payload
        if status == 204 or payload is None:
            return Response(status_code=status, headers=headers)
        return json_response(payload, status=status, headers=headers)

    def own(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            request_id = new_id()
            try:
                _refuse_nul_in_url(request)
                scope = request.scope
                raw_path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or scope["path"]
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                screened = verifier.screen(headers)  # before the body is read
                body = await _body(request, headers, MAX_BODY_BYTES, PayloadTooLarge)
                query = scope.get("query_string", b"").decode("latin-1")
                verifier.verify(request.method, raw_path, query, headers, body, screened=screened)
                payload = await handler(ctx, request)
            except AwsError as exc:
                return error_response(exc, request_id)
            except Exception:
                return _unexpected(request, request_id)
            return json_response(payload, headers={"x-amzn-RequestId": request_id})

        return endpoint

    def public(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            request_id = new_id()
            try:
                _refuse_nul_in_url(request)
                return await handler(ctx, request)  # type: ignore[no-any-return]
            except AwsError as exc:
                return error_response(exc, request_id)
            except Exception:
                return _unexpected(request, request_id)

        return endpoint

    app.router.routes.append(Route("/pointcast/health", health, methods=["GET"]))
    for method, path, handler in engine_handlers.ROUTES + function_routes.ROUTES:
        app.router.routes.append(Route(path, own(handler), methods=[method]))
    for method, path, handler in function_routes.PUBLIC_ROUTES:
        app.router.routes.append(Route(path, public(handler), methods=[method]))
    app.router.routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    app.router.routes.append(Route("/{path:path}", dispatch, methods=_METHODS))
    app.router.default = request_response(dispatch)  # what {path:path} does not match (a newline in the path)
    return app


def _api_of(apis: list[Api], request: Request) -> Api | None:
    raw_path = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or request.scope["path"]
    return next((a for a in apis if a.owns(raw_path)), None)


def _unexpected(request: Request, request_id: str, api: Api | None = None) -> Response:
    log.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, request_id)
    return error_response(AwsError("Internal server error; the server log has the details"), request_id, api)


def _refuse_nul_in_url(request: Request) -> None:
    """pointcast's own routes take names and tokens from the path and query; no store keeps NUL in text."""
    if "\x00" in request.url.path or "\x00" in unquote(request.scope.get("query_string", b"").decode("latin-1")):
        raise BadRequest("The request's path or query contains the NUL character (%00), which it may not contain")


async def _body(request: Request, headers: dict[str, str], limit: int, too_large: type[AwsError]) -> bytes:
    """The request's body, read no further than ``limit`` bytes (a chunked body has no Content-Length to refuse)."""
    length = headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise too_large(f"The request body is {length} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"The request body is over {limit} bytes; at most {limit} are accepted")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what Request.body() returns from now on (the stream is consumed)
    return body


async def _handle(
    ctx: Context, verifier: SigV4Verifier, apis: list[Api], request: Request, request_id: str
) -> tuple[Any, int]:
    scope = request.scope
    raw_path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or scope["path"]
    query_string = scope.get("query_string", b"").decode("latin-1")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    api = next((a for a in apis if a.owns(raw_path)), None)
    limit = api.max_body if api else MAX_BODY_BYTES
    too_large = api.too_large if api else PayloadTooLarge
    screened = verifier.screen(headers)  # before the body is read
    body = await _body(request, headers, limit, too_large)

    signer = verifier.verify(request.method, raw_path, query_string, headers, body, screened=screened)
    if api is None:
        raise NotFound(f"No API of pointcast serves {request.method} {raw_path}")
    if signer.service and signer.service != api.signing_name:
        raise Forbidden(
            f"Credential should be scoped to correct service: '{api.signing_name}' (got '{signer.service}')"
        )
    query = parse_qs(query_string, keep_blank_values=True)
    found = api.router.match(request.method, raw_path, query)
    if found is None:
        allowed = api.router.allowed_methods(raw_path)
        if allowed:
            raise MethodNotAllowed(f"{request.method} is not allowed on {raw_path}; use {', '.join(allowed)}")
        raise NotFound(f"No {api.model} operation matches {request.method} {raw_path}")
    route, labels = found
    handler = api.handlers.get(route.operation.name)
    if handler is None:
        raise api.bad_request(f"{route.operation.name} is not supported by pointcast yet (docs/api.md lists what is)")
    try:
        call = api.router.parse(route, labels, query, headers, body, request_id)
    except BadRequest as exc:
        raise api.bad_request(exc.message) from None
    call.access_key = signer.access_key
    return await handler(ctx, call), route.status
