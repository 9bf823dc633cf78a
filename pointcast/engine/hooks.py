"""Functions in a campaign's path: the CampaignHook (FILTER before delivery, DELIVERY instead of built-in channels)
and the custom channel whose DeliveryUri is a function ARN.

Seed 003 (FILTER): the function gets each batch and returns ``{endpointId: definition}``; that map replaces the
batch. Only endpoint definitions are taken back; the batch fails if the function takes longer than the hook timeout
(15 s), its return value cannot be decoded, or it needs more than 3 attempts. Seed 001 (DELIVERY): the function gets
``MessageConfiguration`` and ``Message`` and delivers; a successful invoke is a successful send. ``WebUrl`` hooks get
the same event over HTTPS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from pointcast.channels.webhook.deliver import Attempt, RetryPolicy, post_batch

if TYPE_CHECKING:
    from pointcast.engine.execute import ExecuteDeps

# What an endpoint definition may hold when a FILTER hook hands it back (EndpointResponse without Id/ApplicationId),
# plus the two per-endpoint message overrides seed 003 names.
ENDPOINT_MEMBERS = frozenset(
    {
        "Address",
        "Attributes",
        "ChannelType",
        "CohortId",
        "CreationDate",
        "Demographic",
        "EffectiveDate",
        "EndpointStatus",
        "Location",
        "Metrics",
        "OptOut",
        "RequestId",
        "User",
        "TitleOverride",
        "BodyOverride",
    }
)
FILTERED = "FILTERED_BY_HOOK"


def effective_hook(campaign: dict[str, Any], app_settings: dict[str, Any]) -> dict[str, Any] | None:
    """The campaign's own hook if it names a function or URL, else the project's default; None if neither acts.

    A hook without ``Mode`` does nothing (docs/contract.md).
    """
    for hook in (campaign.get("Hook"), app_settings.get("CampaignHook")):
        if hook and (hook.get("LambdaFunctionName") or hook.get("WebUrl")):
            return hook if hook.get("Mode") in ("FILTER", "DELIVERY") else None
    return None


def delivery_message(configuration: dict[str, Any]) -> dict[str, Any]:
    """``Message`` as seed 001's messenger example reads it: ``{"smsmessage": {"body": ...}}``, keys lower-cased."""

    def lower(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).lower(): lower(v) for k, v in value.items()}
        if isinstance(value, list):
            return [lower(v) for v in value]
        return value

    return {key.lower(): lower(value) for key, value in configuration.items() if isinstance(value, dict)}


def endpoints_json(docs: dict[str, str], ids: list[str]) -> bytes:
    """``{id: definition, ...}`` with the stored definitions spliced in without re-encoding."""
    return b"{" + b",".join(orjson.dumps(i) + b":" + docs[i].encode() for i in ids) + b"}"


def hook_event(header: dict[str, Any], endpoints: bytes) -> bytes:
    """A hook's event: the header members, then the endpoints (``endpoints_json`` or a FILTER hook's answer)."""
    return orjson.dumps(header)[:-1] + b',"Endpoints":' + endpoints + b"}"


class FilterError(Exception):
    """The FILTER hook's return value cannot be used."""


@dataclass(slots=True)
class Filtered:
    definitions: dict[str, dict[str, Any]]  # what the function returned, endpoint members only
    kept: list[str]  # in the batch's order
    dropped: list[str]  # left out by the function
    rejected: list[str]  # ids the function returned that are not in the batch
    raw: bytes | None = None  # the answer itself, when it is exactly the kept map in the batch's order

    def endpoints_json(self) -> bytes:
        """The kept endpoints in the batch's order, encoded once (or the answer's own bytes, when they are that)."""
        if self.raw is not None:
            return self.raw
        return orjson.dumps({i: self.definitions[i] for i in self.kept})


def decode_filter(payload: bytes, ids: list[str]) -> Filtered:
    """Take the endpoint definitions back from a FILTER hook's return value (and nothing else)."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise FilterError(f"the function's return value is not JSON ({exc})") from None
    wanted = set(ids)
    whole = True  # the answer is the map itself (its bytes can be the channel's, if nothing is taken out)
    if isinstance(value, dict) and isinstance(value.get("Endpoints"), dict) and "Endpoints" not in wanted:
        value = value["Endpoints"]  # the whole event handed back: only its endpoints count
        whole = False
    if not isinstance(value, dict):
        raise FilterError(
            f"the function returned {type(value).__name__}, not a map of endpoint id to endpoint definition"
        )
    definitions: dict[str, dict[str, Any]] = {}
    rejected: list[str] = []
    for endpoint_id, definition in value.items():
        if endpoint_id not in wanted:
            rejected.append(endpoint_id)
            continue
        if not isinstance(definition, dict):
            raise FilterError(f"endpoint {endpoint_id!r}: the definition is {type(definition).__name__}, not an object")
        if not definition.keys() <= ENDPOINT_MEMBERS:
            definition = {k: v for k, v in definition.items() if k in ENDPOINT_MEMBERS}
            whole = False
        definitions[endpoint_id] = definition
    kept = [i for i in ids if i in definitions]
    raw = payload if whole and not rejected and list(definitions) == kept else None
    return Filtered(definitions, kept, [i for i in ids if i not in definitions], rejected, raw)


@dataclass(slots=True)
class Called:
    """What calling a hook or function channel came to: the answer of the last try, and every try."""

    ok: bool
    reason: str | None
    payload: bytes = b""
    attempts: list[Attempt] = field(default_factory=list)


async def call(
    deps: ExecuteDeps,
    target: str,
    event: bytes,
    *,
    kind: str,
    source_arn: str,
    batch_id: str,
    timeout: float | None = None,
    sign: Callable[[bytes], dict[str, str]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Called:
    """Invoke a function (by name or ARN) or POST to an https:// hook, up to ``deps.function_attempts`` times."""
    attempts = deps.function_attempts
    if target.startswith("https://"):
        policy = RetryPolicy(attempts, deps.policy.base, deps.policy.cap, timeout or deps.policy.timeout)
        delivery = await post_batch(
            deps.session, target, event, f"{batch_id}.{kind.lower()}", policy, sign=sign, keep_body=True
        )
        ok = delivery.ok
        return Called(ok, None if ok else delivery.reason, delivery.body or b"", delivery.attempts)
    if deps.functions is None:
        return Called(False, f"the function runtime is not running on this server ({target})")
    tries: list[Attempt] = []
    for number in range(1, attempts + 1):
        started = time.time()
        result = await deps.functions.invoke(target, event, kind=kind, source_arn=source_arn, timeout=timeout)
        attempt = Attempt(number, started, result.duration_ms)
        if result.ok:
            attempt.status = 200
            attempt.response = result.payload[:1024].decode("utf-8", "replace") or None
            tries.append(attempt)
            return Called(True, None, result.payload, tries)
        attempt.error = result.error_message
        tries.append(attempt)
        if result.refused:
            return Called(False, result.refused, attempts=tries)
        if number < attempts:
            await sleep(deps.policy.delay(number, None))
    last = tries[-1].error if tries else "not attempted"
    return Called(False, f"{last} (after {len(tries)} attempt(s))", attempts=tries)
