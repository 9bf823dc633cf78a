"""HTTP edge for import jobs."""

from __future__ import annotations

from typing import Any

from pointcast.aws.restjson import Call
from pointcast.context import Context
from pointcast.imports import jobs, service
from pointcast.pinpoint.paging import Page


async def create_import_job(ctx: Context, call: Call) -> Any:
    await jobs.resume_orphans(ctx)
    app_id = call.param("ApplicationId")
    doc = await ctx.write(lambda conn: service.create(conn, app_id, call.body, jobs.OWNER, jobs.lease_until()))
    jobs.start(ctx, doc["Id"])
    return doc


async def get_import_job(ctx: Context, call: Call) -> Any:
    await jobs.resume_orphans(ctx)
    app_id, job_id = call.param("ApplicationId"), call.param("JobId")
    return await ctx.read(lambda conn: service.get(conn, app_id, job_id))


async def get_import_jobs(ctx: Context, call: Call) -> Any:
    await jobs.resume_orphans(ctx)
    app_id, page = call.param("ApplicationId"), Page.from_params(call.param("PageSize"), call.param("Token"))
    return await ctx.read(lambda conn: service.page(conn, app_id, page))


async def get_segment_import_jobs(ctx: Context, call: Call) -> Any:
    await jobs.resume_orphans(ctx)
    app_id, segment_id = call.param("ApplicationId"), call.param("SegmentId")
    page = Page.from_params(call.param("PageSize"), call.param("Token"))
    return await ctx.read(lambda conn: service.segment_page(conn, app_id, segment_id, page))


HANDLERS = {
    "CreateImportJob": create_import_job,
    "GetImportJob": get_import_job,
    "GetImportJobs": get_import_jobs,
    "GetSegmentImportJobs": get_segment_import_jobs,
}
