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
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
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


Members = dict[str, msgspec.Raw]  # a definition's members, each value the function's own JSON text


@dataclass(slots=True)
class Filtered:
    definitions: dict[str, Members]  # what the function returned, endpoint members only
    kept: list[str]  # in the batch's order
    dropped: list[str]  # left out by the function
    rejected: list[str]  # ids the function returned that are not in the batch
    raw: bytes | None = None  # the answer itself, when it is exactly the kept map in the batch's order

    def endpoints_json(self) -> bytes:
        """The kept endpoints in the batch's order, each member's value as the function wrote it (or the answer's
        own bytes, when they are that)."""
        if self.raw is not None:
            return self.raw
        return b"{" + b",".join(orjson.dumps(i) + b":" + _members_json(self.definitions[i]) for i in self.kept) + b"}"


def _members_json(members: Members) -> bytes:
    return b"{" + b",".join(orjson.dumps(k) + b":" + bytes(v) for k, v in members.items()) + b"}"


# The answer is read two levels deep (ids, then members) and every value below stays the function's own JSON text
# (msgspec.Raw, still checked to be JSON): a 35 KB answer costs the server ~45 us instead of the ~125 us of
# building every attribute list and metric as Python objects, with far less for the collector to look at.
_DEFINITIONS = msgspec.json.Decoder(dict[str, Members])
_OBJECT = msgspec.json.Decoder(Members)
_ENCODE = msgspec.json.Encoder().encode


def _object(raw: bytes | msgspec.Raw) -> Members | None:
    """A JSON object's members, or None if the text is another JSON value."""
    try:
        return _OBJECT.decode(raw)
    except msgspec.ValidationError:
        return None


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}
_JSON_KINDS[bool] = "a boolean"


def _kind(raw: bytes | msgspec.Raw) -> str:
    """What a JSON value is, in JSON's words (a Node.js function's author knows no NoneType)."""
    value = msgspec.json.decode(raw)
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def _definitions(payload: bytes, wanted: set[str]) -> tuple[dict[str, Members], bool]:
    """``{id: members}`` of the answer, or of its ``Endpoints`` when the whole event came back (then False)."""
    try:
        answer = _DEFINITIONS.decode(payload)  # the usual answer, in one pass
        if "Endpoints" not in answer or "Endpoints" in wanted:
            return answer, True
    except msgspec.ValidationError:
        pass  # some value is not an object: the whole event, an id not in the batch, or a broken definition
    except msgspec.DecodeError as exc:
        raise FilterError(f"the function's return value is not JSON ({exc})") from None
    top = _object(payload)
    if top is None:
        raise FilterError(f"the function returned {_kind(payload)}, not a map of endpoint id to endpoint definition")
    whole = True
    inner = top.get("Endpoints")
    if inner is not None and "Endpoints" not in wanted and (endpoints := _object(inner)) is not None:
        top, whole = endpoints, False  # the whole event handed back: only its endpoints count
    if top and wanted.isdisjoint(top) and any(_object(raw) is None for raw in top.values()):
        # Not a map of endpoint id to definition that happens to keep no one (that is {}, or ids not in the batch
        # with definitions): some other object, e.g. an API Gateway-style {"statusCode": 200, "body": "ok"}.
        raise FilterError(
            f"the function returned an object with no endpoint id of the batch among its keys ({_keys(top)}), "
            "not a map of endpoint id to endpoint definition"
        )
    found: dict[str, Members] = {}
    for endpoint_id, raw in top.items():
        members = _object(raw) if endpoint_id in wanted else {}  # ids not in the batch are rejected, whatever they hold
        if members is None:
            raise FilterError(f"endpoint {endpoint_id!r}: the definition is {_kind(raw)}, not an object")
        found[endpoint_id] = members
    return found, whole


def _keys(top: Members) -> str:
    names = [repr(k) for k in list(top)[:5]]
    return ", ".join(names) + (", ..." if len(top) > 5 else "")


def _written_as(payload: bytes, value: dict[str, Members]) -> bool:
    """Whether ``payload`` is exactly ``value`` written compactly (no space, no escape in a name, and no name twice:
    JSON readers keep a repeated name's last value, so the bytes of an earlier one, which might be anything, must
    not reach the channel). Encoding the decoded value again costs ~11 us for 50 endpoints: its members are the
    answer's own JSON text (msgspec.Raw), copied as they are."""
    return _ENCODE(value) == payload


def decode_filter(payload: bytes, ids: list[str]) -> Filtered:
    """Take the endpoint definitions back from a FILTER hook's return value (and nothing else)."""
    try:
        return _decode_filter(payload, ids)
    except RecursionError:  # valid JSON nested deeper than a decoder goes: as unusable as text that is not JSON
        raise FilterError("the function's return value is nested too deeply to be decoded") from None


def _decode_filter(payload: bytes, ids: list[str]) -> Filtered:
    wanted = set(ids)
    value, whole = _definitions(payload, wanted)  # whole: the answer is the map itself (the channel can have it)
    if (
        whole
        and list(value) == ids
        and all(map(ENDPOINT_MEMBERS.issuperset, value.values()))
        and _written_as(payload, value)
    ):
        return Filtered(value, list(ids), [], [], payload)  # the usual answer: every endpoint back, in order, clean
    definitions: dict[str, Members] = {}
    rejected: list[str] = []
    for endpoint_id, members in value.items():
        if endpoint_id not in wanted:
            rejected.append(endpoint_id)
            continue
        if not members.keys() <= ENDPOINT_MEMBERS:
            members = {k: v for k, v in members.items() if k in ENDPOINT_MEMBERS}
            whole = False
        definitions[endpoint_id] = members
    kept = [i for i in ids if i in definitions]
    raw = payload if whole and not rejected and list(definitions) == kept and _written_as(payload, value) else None
    return Filtered(definitions, kept, [i for i in ids if i not in definitions], rejected, raw)


@dataclass(slots=True)
class Outage:
    """A function in AWS Lambda that throttles its calls or is out of reach: since when, when last, and what it said
    then (monotonic seconds)."""

    since: float
    last: float
    said: str


@dataclass(slots=True)
class Called:
    """What calling a hook or function channel came to: the answer of the last try, and every try."""

    ok: bool
    reason: str | None
    payload: bytes = b""
    attempts: list[Attempt] = field(default_factory=list)
    past_deadline: bool = False  # the next attempt was not made: the run's MaximumDuration had passed


async def call(
    deps: ExecuteDeps,
    target: str,
    event: bytes,
    *,
    kind: str,
    source_arn: str,
    batch_id: str,
    timeout: float | None = None,
    sign: Callable[[str, bytes], dict[str, str]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    deadline: float | None = None,
) -> Called:
    """Invoke a function (by name or ARN) or POST to an https:// hook, up to ``deps.function_attempts`` times; no
    attempt starts after ``deadline`` (``time.monotonic()``; a campaign's MaximumDuration). ``sign`` makes an https://
    hook's signature headers from its message id and body."""
    attempts = deps.function_attempts
    if target.startswith("https://"):
        policy = RetryPolicy(attempts, deps.policy.base, deps.policy.cap, timeout or deps.policy.timeout)
        message_id = f"{batch_id}.{kind.lower()}"  # X-Pointcast-Batch-Id and, when signed, webhook-id
        delivery = await post_batch(
            deps.session,
            target,
            event,
            message_id,
            policy,
            sign=(lambda data: sign(message_id, data)) if sign else None,
            keep_body=True,
            breaker=deps.breakers.for_url(target),
            idle=deps.idle_for(batch_id),
            deadline=deadline,
        )
        ok = delivery.ok
        reason = None if ok else delivery.reason
        final = delivery.attempts[-1] if delivery.attempts else None
        if ok and kind == "FILTER" and not (delivery.body or b"").strip():
            status = final.status if final is not None else "?"
            # Not "the function's return value is not JSON": a URL's answer is an HTTP answer.
            reason = f"the hook answered {status} with an empty body, not a map of endpoint id to endpoint definition"
            return Called(False, reason, b"", delivery.attempts)
        return Called(ok, reason, delivery.body or b"", delivery.attempts, delivery.past_deadline)
    if deps.functions is None:
        return Called(False, f"the function runtime is not running on this server ({target})")
    tries: list[Attempt] = []
    idle = deps.idle_for(batch_id)
    waiting = idle or contextlib.nullcontext
    outage_limit = deps.breakers.outage_limit  # POINTCAST_DELIVERY_OUTAGE_LIMIT
    # When AWS Lambda began throttling this function's calls or being out of reach, and the last time it did: kept
    # for every batch that calls it (deps.unavailable), so that the outage limit is the function's, as a webhook's is
    # its destination's, not each batch's in turn (a million endpoints would otherwise take days to fail).
    outages = deps.unavailable
    waits = 0
    unavailable = ""  # what the last such call said

    def too_late() -> Called:
        error = tries[-1].error if tries else unavailable
        last = f", the last: {error}" if error else ""
        reason = f"the deadline passed; {len(tries)} attempt(s) made for this batch{last}"
        return Called(False, reason, attempts=tries, past_deadline=True)

    number = 0
    while number < attempts:
        if deadline is not None and time.monotonic() >= deadline:
            return too_late()
        outage = outages.get(target)
        now = time.monotonic()
        if outage is not None and now - outage.since >= outage_limit and now - outage.last < deps.policy.cap:
            # Down past the limit, and seen so lately that another call would only find it so again: fail now
            # (after a quiet spell of the backoff cap, the next call goes, and finds out).
            reason = (
                f"{outage.said} (the function has been out of reach or throttled for {now - outage.since:.0f} s, "
                f"past POINTCAST_DELIVERY_OUTAGE_LIMIT; {len(tries)} attempt(s) made)"
            )
            return Called(False, reason, attempts=tries)
        started = time.time()
        result = await deps.functions.invoke(
            target, event, kind=kind, source_arn=source_arn, timeout=timeout, idle=idle
        )
        if result.unavailable and not result.ok:
            # AWS Lambda throttled the call or could not be reached: the function did not run, so no attempt is
            # spent; the batch waits (back-off with jitter, AWS's Retry-After) until the outage limit.
            now = time.monotonic()
            unavailable = result.error_message
            outage = outages.get(target)
            if outage is None:
                outage = outages[target] = Outage(now, now, unavailable)
            outage.last, outage.said = now, unavailable
            if now - outage.since >= outage_limit:
                reason = (
                    f"{unavailable} (still after {now - outage.since:.0f} s of waiting, past "
                    f"POINTCAST_DELIVERY_OUTAGE_LIMIT; {len(tries)} attempt(s) made)"
                )
                return Called(False, reason, attempts=tries)
            waits += 1
            delay = max(0.0, min(deps.policy.delay(waits, result.retry_after), outage.since + outage_limit - now))
            if deadline is not None and now + delay >= deadline:
                return too_late()
            async with waiting():
                await sleep(delay)
            continue
        outages.pop(target, None)  # the function ran (or AWS answered for it): it is within reach
        number += 1
        attempt = Attempt(number, started, result.duration_ms, request_id=result.request_id or None)
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
            delay = deps.policy.delay(number, None)
            if deadline is not None and time.monotonic() + delay >= deadline:
                return too_late()  # the next attempt could not start in time
            async with waiting():  # the batch's delivery slot may be lent out meanwhile, as for a webhook's back-off
                await sleep(delay)
    last = tries[-1].error if tries else "not attempted"
    return Called(False, f"{last} (after {len(tries)} attempt(s))", attempts=tries)
