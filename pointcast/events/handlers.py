"""HTTP edge for PutEvents."""

from __future__ import annotations

from typing import Any

from pointcast.aws.restjson import Call
from pointcast.context import Context
from pointcast.events import service


async def put_events(ctx: Context, call: Call) -> Any:
    service.check(call.body)
    return await ctx.write(lambda conn: service.put_events(conn, call.param("ApplicationId"), call.body))


HANDLERS = {"PutEvents": put_events}
