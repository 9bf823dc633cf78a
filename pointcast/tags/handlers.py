"""HTTP edge for tags."""

from __future__ import annotations

from typing import Any

from pointcast.aws.errors import BadRequest
from pointcast.aws.restjson import Call
from pointcast.context import Context
from pointcast.tags import service


async def tag_resource(ctx: Context, call: Call) -> Any:
    arn, tags = call.param("ResourceArn"), call.body["tags"]
    await ctx.write(lambda conn: service.tag(conn, arn, tags, ctx.region, ctx.account_id))


async def untag_resource(ctx: Context, call: Call) -> Any:
    arn, keys = call.param("ResourceArn"), call.param("TagKeys")
    if not keys:
        raise BadRequest("tagKeys is required: name at least one tag key to remove")
    await ctx.write(lambda conn: service.untag(conn, arn, keys, ctx.region, ctx.account_id))


async def list_tags_for_resource(ctx: Context, call: Call) -> Any:
    arn = call.param("ResourceArn")
    tags = await ctx.read(lambda conn: service.get_tags(conn, arn, ctx.region, ctx.account_id))
    return service.tags_model(tags)


HANDLERS = {
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
}
