"""Where a campaign delivers: webhook URLs are checked (syntax, then HEAD); function ARNs/names are recorded.

A ``DeliveryUri`` or ``Hook.WebUrl`` is either an ``https://`` URL (a webhook) or a Lambda function ARN/name.
"""

from __future__ import annotations

import re
from typing import Any

from pointcast.aws.errors import BadRequest
from pointcast.channels.webhook.verify import WebhookCheckError, check_webhook_head, validate_webhook_url
from pointcast.context import Context
from pointcast.functions.names import parse_ref

_FUNCTION_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:[a-zA-Z0-9-_]{1,64}(:[a-zA-Z0-9$_-]+)?\Z"
)


def is_function_arn(uri: str) -> bool:
    return bool(_FUNCTION_ARN.match(uri))


def check_delivery_uri(uri: str, field: str) -> bool:
    """Syntax of a DeliveryUri; returns True when it is a webhook URL (which then needs the HEAD check)."""
    if uri.startswith("arn:"):
        if not is_function_arn(uri):
            raise BadRequest(
                f"{field} '{uri}' is not a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)"
            )
        return False
    if not uri.startswith("https://") and parse_ref(uri) is not None:  # a function's name or partial ARN
        raise BadRequest(
            f"{field} '{uri}' must be an https:// URL or a Lambda function's full ARN "
            "(arn:aws:lambda:REGION:ACCOUNT:function:NAME); a name or partial ARN is taken only by "
            "CampaignHook.LambdaFunctionName"
        )
    _validate_url(uri, field)
    return True


def check_hook(hook: dict[str, Any] | None, field: str) -> list[tuple[str, str]]:
    """Syntax of a CampaignHook; returns the (field, url) pairs that need the HEAD check."""
    if not hook:
        return []
    name, url = hook.get("LambdaFunctionName"), hook.get("WebUrl")
    if name and parse_ref(name) is None:
        raise BadRequest(
            f"{field}.LambdaFunctionName '{name}' is not a function name, partial ARN (ACCOUNT:function:NAME) or ARN"
        )
    if hook.get("Mode") and not (name or url):
        raise BadRequest(f"{field} sets Mode but neither LambdaFunctionName nor WebUrl")
    if name and url:
        raise BadRequest(f"{field} sets both LambdaFunctionName and WebUrl; a hook calls one of them")
    if (name or url) and not hook.get("Mode"):
        raise BadRequest(f"{field}.Mode is required (FILTER or DELIVERY) when the hook names a function or WebUrl")
    if url:
        _validate_url(url, f"{field}.WebUrl")
        return [(f"{field}.WebUrl", url)]
    return []


def _validate_url(url: str, field: str) -> None:
    try:
        validate_webhook_url(url, field)
    except WebhookCheckError as exc:
        raise BadRequest(str(exc)) from None


async def check_webhooks(ctx: Context, targets: list[tuple[str, str]]) -> None:
    """HEAD each distinct webhook URL; each must answer with this account's X-Amz-Pinpoint-AccountId."""
    seen: set[str] = set()
    for field, url in targets:
        if url in seen:
            continue
        seen.add(url)
        try:
            await check_webhook_head(
                url,
                field=field,
                account_id=ctx.account_id,
                ssl_context=ctx.ssl_context,
                timeout=ctx.settings.webhook_check_timeout,
            )
        except WebhookCheckError as exc:
            raise BadRequest(str(exc)) from None


def function_targets(request: dict[str, Any], root: str) -> list[tuple[str, str]]:
    """The (field, function reference) pairs a campaign request names: DeliveryUri ARNs and Hook.LambdaFunctionName."""
    found: list[tuple[str, str]] = []
    units = [(root, request)] + [
        (f"{root}.AdditionalTreatments[{i}]", t) for i, t in enumerate(request.get("AdditionalTreatments") or [])
    ]
    for path, unit in units:
        uri = (unit.get("CustomDeliveryConfiguration") or {}).get("DeliveryUri")
        if uri and not uri.startswith("https://"):
            found.append((f"{path}.CustomDeliveryConfiguration.DeliveryUri", uri))
    name = (request.get("Hook") or request.get("CampaignHook") or {}).get("LambdaFunctionName")
    if name:
        member = "Hook" if request.get("Hook") else "CampaignHook"
        found.append((f"{root}.{member}.LambdaFunctionName", name))
    return found


async def check_functions(ctx: Context, targets: list[tuple[str, str]], source_arn: str) -> None:
    """Each function must let Pinpoint invoke it for ``source_arn`` (seeds 000/001: its resource policy)."""
    if not targets:
        return
    if ctx.functions is None:
        raise BadRequest(f"{targets[0][0]}: the function runtime is not running on this server")
    for field, ref in dict.fromkeys(targets):
        problem = await ctx.functions.permission_problem(ref, source_arn)
        if problem:
            raise BadRequest(f"{field}: {problem}")
