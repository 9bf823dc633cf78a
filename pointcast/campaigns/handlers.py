"""HTTP edge for campaigns: model-free checks and webhook HEAD checks first, then one write transaction."""

from __future__ import annotations

from typing import Any

from pointcast.apps import repository as apps
from pointcast.aws.arns import child_arn
from pointcast.aws.restjson import Call
from pointcast.aws.wire import new_id
from pointcast.campaigns import checks, service
from pointcast.campaigns.repository import activities_page, campaigns
from pointcast.context import Context
from pointcast.pinpoint import targets
from pointcast.pinpoint.paging import Page


async def create_campaign(ctx: Context, call: Call) -> Any:
    app_id = call.param("ApplicationId")
    await ctx.read(lambda conn: apps.require(conn, app_id))
    await targets.check_webhooks(ctx, checks.check_request(call.body))
    campaign_id = new_id()
    arn = child_arn(ctx.region, ctx.account_id, app_id, "campaigns", campaign_id)
    await targets.check_functions(ctx, targets.function_targets(call.body, checks.ROOT), arn)
    created = await ctx.write(
        lambda conn: service.create(conn, app_id, call.body, ctx.region, ctx.account_id, campaign_id=campaign_id)
    )
    ctx.wake_engine()
    return created


async def update_campaign(ctx: Context, call: Call) -> Any:
    app_id, campaign_id = call.param("ApplicationId"), call.param("CampaignId")
    current = await ctx.read(lambda conn: campaigns.get(conn, app_id, campaign_id))
    await targets.check_webhooks(ctx, checks.check_request(call.body, stored=current))
    await targets.check_functions(ctx, targets.function_targets(call.body, checks.ROOT), current["Arn"])
    updated = await ctx.write(lambda conn: service.update(conn, app_id, campaign_id, call.body))
    ctx.wake_engine()
    return updated


async def get_campaign(ctx: Context, call: Call) -> Any:
    app_id, campaign_id = call.param("ApplicationId"), call.param("CampaignId")
    return await ctx.read(lambda conn: campaigns.get(conn, app_id, campaign_id))


async def get_campaigns(ctx: Context, call: Call) -> Any:
    app_id, page = call.param("ApplicationId"), Page.from_params(call.param("PageSize"), call.param("Token"))
    return await ctx.read(lambda conn: campaigns.page(conn, app_id, page))


async def get_campaign_version(ctx: Context, call: Call) -> Any:
    app_id, campaign_id, version = (
        call.param("ApplicationId"),
        call.param("CampaignId"),
        call.param("Version"),
    )
    return await ctx.read(lambda conn: campaigns.version(conn, app_id, campaign_id, version))


async def get_campaign_versions(ctx: Context, call: Call) -> Any:
    app_id, campaign_id = call.param("ApplicationId"), call.param("CampaignId")
    page = Page.from_params(call.param("PageSize"), call.param("Token"))
    return await ctx.read(lambda conn: campaigns.version_page(conn, app_id, campaign_id, page))


async def get_campaign_activities(ctx: Context, call: Call) -> Any:
    app_id, campaign_id = call.param("ApplicationId"), call.param("CampaignId")
    page = Page.from_params(call.param("PageSize"), call.param("Token"))

    def work(conn: Any) -> Any:
        campaigns.get(conn, app_id, campaign_id)
        return activities_page(conn, app_id, campaign_id, page)

    return await ctx.read(work)


async def delete_campaign(ctx: Context, call: Call) -> Any:
    app_id, campaign_id = call.param("ApplicationId"), call.param("CampaignId")
    deleted = await ctx.write(lambda conn: service.delete(conn, app_id, campaign_id))
    ctx.wake_engine()  # the engine drops its runs' batches now, not at the next interval
    return deleted


HANDLERS = {
    "CreateCampaign": create_campaign,
    "UpdateCampaign": update_campaign,
    "GetCampaign": get_campaign,
    "GetCampaigns": get_campaigns,
    "GetCampaignVersion": get_campaign_version,
    "GetCampaignVersions": get_campaign_versions,
    "GetCampaignActivities": get_campaign_activities,
    "DeleteCampaign": delete_campaign,
}
