"""Function resource policies: statements as AddPermission writes them, and the check Pinpoint makes before invoking.

A campaign may invoke a function only if the policy has an ``Allow`` statement for ``lambda:InvokeFunction`` whose
principal is the Pinpoint service (``pinpoint.REGION.amazonaws.com`` or ``pinpoint.amazonaws.com``) and whose
``AWS:SourceArn`` condition matches the campaign's ARN (seeds 000 and 001). A matching ``Deny`` wins over any
``Allow``, as in IAM.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

INVOKE_ACTION = "lambda:InvokeFunction"
_SOURCE_ARN = "aws:sourcearn"
_SOURCE_ACCOUNT = "aws:sourceaccount"


def statement(
    *,
    sid: str,
    action: str,
    principal: str,
    resource: str,
    source_arn: str | None = None,
    source_account: str | None = None,
    principal_org_id: str | None = None,
    event_source_token: str | None = None,
    function_url_auth_type: str | None = None,
    invoked_via_function_url: bool = False,
) -> dict[str, Any]:
    """The statement AWS Lambda's AddPermission stores (and returns as a JSON string). Each optional member is a
    condition, as Lambda writes it; a condition on a key a Pinpoint invocation does not carry never holds for it
    (``pinpoint_may_invoke``)."""
    if principal == "*":
        who: Any = "*"
    elif re.fullmatch(r"\d{12}", principal):
        who = {"AWS": f"arn:aws:iam::{principal}:root"}
    elif principal.startswith("arn:"):
        who = {"AWS": principal}
    else:
        who = {"Service": principal}
    doc: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Principal": who, "Action": action, "Resource": resource}
    condition: dict[str, Any] = {}
    equals = {
        key: value
        for key, value in (
            ("AWS:SourceAccount", source_account),
            ("aws:PrincipalOrgID", principal_org_id),
            ("lambda:EventSourceToken", event_source_token),
            ("lambda:FunctionUrlAuthType", function_url_auth_type),
        )
        if value
    }
    if equals:
        condition["StringEquals"] = equals
    if source_arn:
        condition["ArnLike"] = {"AWS:SourceArn": source_arn}
    if invoked_via_function_url:
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    if condition:
        doc["Condition"] = condition
    return doc


def document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole policy as GetPolicy returns it."""
    return {"Version": "2012-10-17", "Id": "default", "Statement": statements}


def pinpoint_may_invoke(statements: list[dict[str, Any]], region: str, source_arn: str, account: str) -> str | None:
    """None when the policy lets Pinpoint (in ``region``) invoke for ``source_arn``; otherwise why not, statement by
    statement.

    ``AWS:SourceArn`` holds for the campaign's ARN or its project's (``.../apps/PROJECT``): seed 000 restricts a
    policy to a project by writing the project's id in place of the ``*`` of ``apps/*``, which under ArnLike alone
    would match no campaign (docs/contract.md).
    """
    if not statements:
        return "the function has no resource policy (add one with lambda add-permission)"
    principals = {f"pinpoint.{region}.amazonaws.com", "pinpoint.amazonaws.com"}
    project = _project_of(source_arn)
    allowed = False
    why: list[str] = []
    for stmt in statements:
        sid = stmt.get("Sid")
        if not _names_invoke(stmt):
            why.append(f"statement {sid!r} allows {stmt.get('Action')!r}, not lambda:InvokeFunction")
            continue
        if not _names_principal(stmt, principals):
            why.append(f"statement {sid!r} is for {_principal_text(stmt)}, not pinpoint.{region}.amazonaws.com")
            continue
        condition = stmt.get("Condition") or {}
        failed = _failed_condition(condition, [source_arn, project] if project else [source_arn], account)
        if failed:
            why.append(f"statement {sid!r}: {failed}")
            continue
        if stmt.get("Effect") == "Deny":
            return f"statement {sid!r} denies it"
        if stmt.get("Effect") == "Allow":
            if _has_source_arn(stmt):
                allowed = True
            else:
                why.append(f"statement {sid!r} has no AWS:SourceArn condition, which Pinpoint requires")
    if allowed:
        return None
    detail = "; ".join(why[:5]) + (f" (and {len(why) - 5} more)" if len(why) > 5 else "")
    return (
        f"no statement allows lambda:InvokeFunction to pinpoint.{region}.amazonaws.com with an AWS:SourceArn "
        f"condition matching {source_arn}" + (f": {detail}" if detail else "")
    )


def _project_of(source_arn: str) -> str | None:
    """``arn:...:apps/PROJECT`` for a campaign's ``arn:...:apps/PROJECT/campaigns/ID``; None for anything else."""
    head, _, rest = source_arn.rpartition(":")
    parts = rest.lstrip("/").split("/")
    return f"{head}:apps/{parts[1]}" if len(parts) == 4 and parts[0] == "apps" and parts[2] == "campaigns" else None


def _principal_text(stmt: dict[str, Any]) -> str:
    who = stmt.get("Principal")
    if isinstance(who, dict):
        return ", ".join(str(v) for v in who.values())
    return str(who)


def _names_invoke(stmt: dict[str, Any]) -> bool:
    """Whether the statement's ``Action`` covers ``lambda:InvokeFunction``: IAM compares action names without
    regard to case, with ``*`` and ``?`` wildcards (``lambda:invokefunction``, ``lambda:*``, ``Lambda:Invoke*``)."""
    actions = stmt.get("Action")
    actions = [actions] if isinstance(actions, str) else actions or []
    return any(isinstance(a, str) and _action(a).fullmatch(INVOKE_ACTION) is not None for a in actions)


def _names_principal(stmt: dict[str, Any], services: set[str]) -> bool:
    who = stmt.get("Principal")
    if who == "*":
        return True
    if not isinstance(who, dict):
        return False
    named = who.get("Service")
    named = [named] if isinstance(named, str) else named or []
    return any(n in services for n in named) or who.get("AWS") == "*"


def _has_source_arn(stmt: dict[str, Any]) -> bool:
    return any(
        key.lower() == _SOURCE_ARN
        for values in (stmt.get("Condition") or {}).values()
        if isinstance(values, dict)
        for key in values
    )


def _failed_condition(condition: dict[str, Any], source_arns: list[str], account: str) -> str | None:
    """None when every condition in the block holds (IAM: AND across operators and keys, OR across a key's values);
    otherwise the first that does not, in words. ``AWS:SourceArn`` holds for any of ``source_arns``."""
    for operator, entries in condition.items():
        if not isinstance(entries, dict):
            return f"condition {operator} is not a map of keys to values"
        for key, expected in entries.items():
            values = [expected] if isinstance(expected, str) else [str(v) for v in expected or []]
            lowered = key.lower()
            if lowered == _SOURCE_ARN:
                actual = source_arns
            elif lowered == _SOURCE_ACCOUNT:
                actual = [account]
            else:
                return f"{operator} {key} cannot hold for Pinpoint, which gives no {key}"
            if not any(_compare(operator, v, a) for v in values for a in actual):
                shown = ", ".join(values[:3])
                return f"{operator} {key} {shown} does not match {actual[0]}"
    return None


def _compare(operator: str, expected: str, actual: str) -> bool:
    if operator in ("ArnLike", "ArnEquals"):
        return arn_like(expected, actual, wildcards=operator == "ArnLike")
    if operator == "StringEquals":
        return expected == actual
    if operator == "StringLike":
        return _wildcard(expected).fullmatch(actual) is not None
    return False  # an operator this check does not know cannot be shown to hold


def arn_like(pattern: str, arn: str, *, wildcards: bool = True) -> bool:
    """IAM's ArnLike: each of the six colon-separated parts matches, ``*`` and ``?`` wildcards within a part.

    Pinpoint resources appear both as ``apps/...`` and the older ``/apps/...``; the leading slash is not
    significant for either side.
    """
    want, have = pattern.split(":", 5), arn.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        return False
    want[5], have[5] = want[5].lstrip("/"), have[5].lstrip("/")
    if not wildcards:
        return want == have
    return all(_wildcard(w).fullmatch(h) is not None for w, h in zip(want, have, strict=True))


@lru_cache(maxsize=1024)
def _action(pattern: str) -> re.Pattern[str]:
    return re.compile(_wildcard(pattern).pattern, re.DOTALL | re.IGNORECASE)


@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)
