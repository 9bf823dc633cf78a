"""HTTP edge for applications and settings: parse nothing, check, call the service in one transaction."""

from __future__ import annotations

from typing import Any

from pointcast.apps import repository as apps_repo
from pointcast.apps import service
from pointcast.aws.arns import child_arn
from pointcast.aws.restjson import Call
from pointcast.context import Context
from pointcast.pinpoint import targets
from pointcast.pinpoint.paging import Page


async def create_app(ctx: Context, call: Call) -> Any:
    return await ctx.write(lambda conn: service.create(conn, call.body, ctx.region, ctx.account_id))


async def get_app(ctx: Context, call: Call) -> Any:
    return await ctx.read(lambda conn: service.get(conn, call.param("ApplicationId"), ctx.region, ctx.account_id))


async def get_apps(ctx: Context, call: Call) -> Any:
    page = Page.from_params(call.param("PageSize"), call.param("Token"))
    return await ctx.read(lambda conn: service.list_apps(conn, page, ctx.region, ctx.account_id))


async def delete_app(ctx: Context, call: Call) -> Any:
    return await ctx.write(lambda conn: service.delete(conn, call.param("ApplicationId"), ctx.region, ctx.account_id))


async def get_application_settings(ctx: Context, call: Call) -> Any:
    settings = await ctx.read(lambda conn: service.get_settings(conn, call.param("ApplicationId")))
    return service.public_settings(settings)


async def update_application_settings(ctx: Context, call: Call) -> Any:
    request = call.body
    service.check_settings(request)
    field = "WriteApplicationSettingsRequest.CampaignHook"
    await targets.check_webhooks(ctx, targets.check_hook(request.get("CampaignHook"), field))
    app_id = call.param("ApplicationId")
    await ctx.read(lambda conn: apps_repo.require(conn, app_id))
    # The project-wide form (seed 000): a default hook must be usable by any campaign of the project.
    every_campaign = child_arn(ctx.region, ctx.account_id, app_id, "campaigns", "*")
    await targets.check_functions(
        ctx, targets.function_targets(request, "WriteApplicationSettingsRequest"), every_campaign
    )
    return await ctx.write(lambda conn: service.update_settings(conn, call.param("ApplicationId"), request))


HANDLERS = {
    "CreateApp": create_app,
    "GetApp": get_app,
    "GetApps": get_apps,
    "DeleteApp": delete_app,
    "GetApplicationSettings": get_application_settings,
    "UpdateApplicationSettings": update_application_settings,
}
