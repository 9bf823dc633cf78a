"""pointcast's own function routes: invocation records (signed, for the CLI) and code downloads (by token).

``GetFunction`` returns ``Code.Location``, which in AWS is a presigned URL anyone holding it may fetch; here it is
a URL carrying an HMAC of the function's name and code hash, so it needs no signature and stops working when the
code changes.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pointcast.aws.errors import BadRequest, Forbidden, NotFound
from pointcast.context import Context
from pointcast.functions import repository, service
from pointcast.functions.names import function_arn, parse_ref


def code_token(ctx: Context, name: str, code_sha256: str) -> str:
    key = ctx.credentials[1].encode()
    return hmac.new(key, f"{name}\n{code_sha256}".encode(), hashlib.sha256).hexdigest()


async def invocations(ctx: Context, request: Request) -> Any:
    """The newest invocations of a function (a hosted one by name, partial or full ARN; another by its ARN), oldest
    first. A hosted function that does not exist and has no records is a 404."""
    function = request.path_params["name"]
    parsed = parse_ref(function)
    if parsed is None:
        raise BadRequest(f"{function!r} is not a function's name, partial ARN or ARN")
    local = parsed.is_local(ctx.region, ctx.account_id)
    if local:
        if parsed.qualifier not in (None, "$LATEST"):  # as the Lambda API answers it: only $LATEST is served
            qualified = f"{parsed.name}:{parsed.qualifier}"
            raise NotFound(f"Function not found: {function_arn(ctx.region, ctx.account_id, qualified)}")
        function = parsed.name  # hosted functions' invocations are recorded under their name
    raw = request.query_params.get("limit", "20")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise BadRequest(f"limit must be an integer from 1 to 1000 (got {raw!r})")
    if ctx.functions is not None:
        await ctx.functions.flush()
    rows = await ctx.read(lambda conn: service.invocation_rows(conn, function, int(raw)))
    if not rows and local and not await ctx.read(lambda conn: repository.get(conn, function) is not None):
        raise NotFound(f"Function not found: {function_arn(ctx.region, ctx.account_id, function)}")
    return {"FunctionName": function, "Invocations": rows}


async def download_code(ctx: Context, request: Request) -> Response:
    name = request.path_params["name"]
    row = await ctx.read(lambda conn: service.require(conn, name, ctx.region, ctx.account_id, with_code=True))
    expected = code_token(ctx, name, row.doc["CodeSha256"])
    if not hmac.compare_digest(request.query_params.get("token", ""), expected):
        raise Forbidden("The code URL is not valid (or the code changed since it was issued); call GetFunction again")
    return Response(row.code, media_type="application/zip")


ROUTES = [("GET", "/pointcast/v1/functions/{name}/invocations", invocations)]
PUBLIC_ROUTES = [("GET", "/pointcast/v1/functions/{name}/code", download_code)]
