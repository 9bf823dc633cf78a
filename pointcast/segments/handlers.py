"""HTTP edge for segments."""

from __future__ import annotations

from typing import Any

from pointcast.aws.restjson import Call
from pointcast.context import Context
from pointcast.pinpoint.paging import Page
from pointcast.segments import service
from pointcast.segments.repository import segments


async def create_segment(ctx: Context, call: Call) -> Any:
    app_id = call.param("ApplicationId")
    return await ctx.write(lambda conn: service.create(conn, app_id, call.body, ctx.region, ctx.account_id))


async def update_segment(ctx: Context, call: Call) -> Any:
    app_id, segment_id = call.param("ApplicationId"), call.param("SegmentId")
    return await ctx.write(lambda conn: service.update(conn, app_id, segment_id, call.body))


async def get_segment(ctx: Context, call: Call) -> Any:
    app_id, segment_id = call.param("ApplicationId"), call.param("SegmentId")
    return await ctx.read(lambda conn: segments.get(conn, app_id, segment_id))


async def get_segments(ctx: Context, call: Call) -> Any:
    app_id, page = call.param("ApplicationId"), Page.from_params(call.param("PageSize"), call.param("Token"))
    return await ctx.read(lambda conn: segments.page(conn, app_id, page))


async def get_segment_version(ctx: Context, call: Call) -> Any:
    app_id, segment_id, version = call.param("ApplicationId"), call.param("SegmentId"), call.param("Version")
    return await ctx.read(lambda conn: segments.version(conn, app_id, segment_id, version))


async def get_segment_versions(ctx: Context, call: Call) -> Any:
    app_id, segment_id = call.param("ApplicationId"), call.param("SegmentId")
    page = Page.from_params(call.param("PageSize"), call.param("Token"))
    return await ctx.read(lambda conn: segments.version_page(conn, app_id, segment_id, page))


async def delete_segment(ctx: Context, call: Call) -> Any:
    app_id, segment_id = call.param("ApplicationId"), call.param("SegmentId")
    return await ctx.write(lambda conn: service.delete(conn, app_id, segment_id))


HANDLERS = {
    "CreateSegment": create_segment,
    "UpdateSegment": update_segment,
    "GetSegment": get_segment,
    "GetSegments": get_segments,
    "GetSegmentVersion": get_segment_version,
    "GetSegmentVersions": get_segment_versions,
    "DeleteSegment": delete_segment,
}
