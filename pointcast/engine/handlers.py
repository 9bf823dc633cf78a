"""HTTP edge for pointcast's own routes (``/pointcast/...``): run progress, outcomes, send events, the test clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request

from pointcast.apps import service as apps
from pointcast.aws.errors import BadRequest
from pointcast.channels.webhook.signing import new_secret
from pointcast.context import Context
from pointcast.engine import views


async def progress(ctx: Context, request: Request) -> Any:
    app_id, campaign_id = request.path_params["app_id"], request.path_params["campaign_id"]
    down = ctx.destinations_down()  # the runner's open circuit breakers (breaker.py)
    return await ctx.read(lambda conn: views.progress(conn, app_id, campaign_id, down))


async def outcomes(ctx: Context, request: Request) -> Any:
    app_id, campaign_id = request.path_params["app_id"], request.path_params["campaign_id"]
    token, size = request.query_params.get("token"), request.query_params.get("page-size")
    return await ctx.read(lambda conn: views.outcomes(conn, app_id, campaign_id, token, size))


async def attempts(ctx: Context, request: Request) -> Any:
    app_id, campaign_id = request.path_params["app_id"], request.path_params["campaign_id"]
    batch_id = request.path_params["batch_id"]
    return await ctx.read(lambda conn: views.attempts(conn, app_id, campaign_id, batch_id))


async def events(ctx: Context, request: Request) -> Any:
    app_id, campaign_id = request.path_params["app_id"], request.path_params["campaign_id"]
    token, size = request.query_params.get("token"), request.query_params.get("page-size")
    return await ctx.read(lambda conn: views.events(conn, app_id, campaign_id, ctx.account_id, token, size))


async def set_clock(ctx: Context, request: Request) -> Any:
    """Move the manual clock (only with POINTCAST_MANUAL_CLOCK=true): ``{"Now": "2030-01-01T00:00:00Z"}``."""
    if not ctx.clock.manual:
        raise BadRequest("The clock is the system clock; start pointcast with POINTCAST_MANUAL_CLOCK=true to set it")
    body = await request.json()
    try:
        moment = datetime.fromisoformat(body["Now"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest('Send {"Now": "<ISO 8601 date-time with offset>"}') from None
    if moment.tzinfo is None:
        raise BadRequest("Now must carry a time zone offset")
    ctx.clock.set(moment)
    ctx.wake_engine()
    return {"Now": moment.isoformat()}


ROUTES = [
    ("GET", "/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/progress", progress),
    ("GET", "/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/outcomes", outcomes),
    ("GET", "/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/events", events),
    ("GET", "/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/batches/{batch_id}/attempts", attempts),
    ("POST", "/pointcast/clock", set_clock),
]


async def rotate_webhook_secret(ctx: Context, request: Request) -> Any:
    """Create (or replace) the project's webhook signing secret and return it once."""
    app_id, secret = request.path_params["app_id"], new_secret()
    await ctx.write(lambda conn: apps.set_webhook_secret(conn, app_id, secret))
    ctx.secret_changed(app_id)  # the next batch signs with it (another server's engine: within SECRET_TTL)
    return {"ApplicationId": app_id, "Secret": secret, "Scheme": "https://www.standardwebhooks.com/"}


async def delete_webhook_secret(ctx: Context, request: Request) -> Any:
    app_id = request.path_params["app_id"]
    await ctx.write(lambda conn: apps.set_webhook_secret(conn, app_id, None))
    ctx.secret_changed(app_id)
    return {"ApplicationId": app_id}


ROUTES += [
    ("POST", "/pointcast/v1/apps/{app_id}/webhook-secret", rotate_webhook_secret),
    ("DELETE", "/pointcast/v1/apps/{app_id}/webhook-secret", delete_webhook_secret),
]
