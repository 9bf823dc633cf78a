"""POSTing one batch to a webhook, with Pinpoint's payload, retries and a record of every attempt.

Policy (DESIGN.md "Delivery policy defaults"): 2xx is success; timeouts, connection errors, 408, 429 and 5xx are
retried with exponential backoff and full jitter, honouring ``Retry-After`` (capped); any other status is final.
A destination that keeps failing is given a rest by its circuit breaker (breaker.py).
The batch id travels in ``X-Pointcast-Batch-Id`` and stays the same across retries and restarts, so a receiver can
drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from pointcast import __version__
from pointcast.channels.webhook.breaker import Breaker, HostDown
from pointcast.channels.webhook.curl import (
    BROKEN_ANSWER,
    KEEPALIVE_SECONDS,
    NO_ANSWER,
    CurlSession,
    PostFailed,
    Reply,
    pycurl,
    retry_after,
    trust_of,
)
from pointcast.channels.webhook.verify import certificate_reason

Transport = aiohttp.ClientSession | CurlSession  # the client of deliveries: libcurl, or aiohttp

BATCH_ID_HEADER = "X-Pointcast-Batch-Id"
RETRYABLE = frozenset({408, 429})
RESPONSE_KEEP = 1024  # bytes of a response body kept with an attempt
DRAIN = 64 * 1024  # bytes of a response body read in all when only RESPONSE_KEEP are kept (the connection is reused)
MAX_ANSWER = 6_291_556  # bytes a hook's answer may have (keep_body), as a Lambda function's response
USER_AGENT = f"pointcast/{__version__}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all, delays from ``base`` doubling up to ``cap`` seconds."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    timeout: float = 10.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1): the answer's Retry-After, if
        it gave one, else full jitter. (The exponent stops growing long before the cap: 2 ** 1025 is more than a
        float holds, and a function in AWS may be waited for that many times.)"""
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.cap)
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt - 1, 64)))


@dataclass(slots=True)
class Attempt:
    """One try: when, how long, and what came back."""

    number: int
    started: float
    duration_ms: float
    status: int | None = None
    error: str | None = None
    response: str | None = None
    request_id: str | None = None  # a function's: its invocation's (the record `pointcast functions logs` shows)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(slots=True)
class Delivery:
    """The result of delivering one batch: success, and every attempt made."""

    attempts: list[Attempt] = field(default_factory=list)
    body: bytes | None = None  # the successful response's whole body, when asked for (a FILTER hook's answer)
    host_down: str | None = None  # why the next attempt was not made (the destination's breaker, breaker.py)
    past_deadline: bool = False  # the next attempt was not made: the deadline had passed

    @property
    def ok(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].ok

    @property
    def reason(self) -> str:
        last = self.attempts[-1] if self.attempts else None
        if self.host_down:
            return f"{self.host_down}; {len(self.attempts)} attempt(s) made for this batch"
        if self.past_deadline:
            return f"the deadline passed; {len(self.attempts)} attempt(s) made for this batch" + (
                f", the last: {last.error or f'HTTP {last.status}'}" if last else ""
            )
        if last is None:
            return "not attempted"
        if last.error:  # "timed out after 10.0 s; 3 attempt(s) made", not "... after 10.0 s after 3 attempt(s)"
            return f"{last.error}; {len(self.attempts)} attempt(s) made"
        return f"HTTP {last.status} after {len(self.attempts)} attempt(s)"


def delivery_client(
    kind: Literal["auto", "curl", "aiohttp"], trust: ssl.SSLContext, ca_bundle: str | None, limit: int, data_dir: Path
) -> Transport:
    """The runner's client (settings.delivery_client), trusting what ``trust`` does; call it on the event loop.
    libcurl reads that trust from a file written under ``data_dir``.

    "auto" is libcurl when pycurl imports, else aiohttp; "curl" without pycurl raises RuntimeError.
    """
    if kind == "curl" and pycurl is None:
        raise RuntimeError("delivery_client is curl, but pycurl cannot be imported (pip install pycurl)")
    if kind != "aiohttp" and pycurl is not None:
        cainfo, capath = trust_of(trust, ca_bundle, data_dir / "tls" / "trusted.pem")
        return CurlSession(limit=limit, cainfo=cainfo, capath=capath, user_agent=USER_AGENT)
    connector = aiohttp.TCPConnector(ssl=trust, limit=limit, keepalive_timeout=KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


def client_name(session: Transport) -> str:
    """Which client delivers, and its version (``/pointcast/health``): ``libcurl/8.x.y`` or ``aiohttp/3.x.y``."""
    if isinstance(session, CurlSession):
        return next(part for part in pycurl.version.split() if part.startswith("libcurl/"))
    return f"aiohttp/{aiohttp.__version__}"


async def _post(
    session: Transport, url: str, body: bytes, headers: dict[str, str], timeout: float, keep_body: bool
) -> Reply:
    """One POST over either client, its failure worded the same way (PostFailed). ``keep_body``: the whole answer
    (at most MAX_ANSWER bytes; a longer 2xx answer is a failure), else its first RESPONSE_KEEP bytes."""
    keep = MAX_ANSWER if keep_body else RESPONSE_KEEP
    if isinstance(session, CurlSession):
        lines = [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Expect:")  # no 100-continue round trip for a large body
        reply = await session.post(url, body, lines, timeout, keep, DRAIN)  # read on to DRAIN, or to keep if more
    else:
        reply = await _aiohttp_post(session, url, body, headers, timeout, keep)
    if reply.cut and keep_body and 200 <= reply.status < 300:
        raise PostFailed(f"the answer is larger than {MAX_ANSWER} bytes")
    return reply


async def _aiohttp_post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], timeout: float, keep: int
) -> Reply:
    answered = False  # a status line came: a broken connection from now on broke the answer, not the request
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            answered = True
            # Not read to its end, the connection is closed rather than reused (aiohttp's release).
            most = keep if 200 <= response.status < 300 else min(keep, RESPONSE_KEEP)
            text = await _read_at_most(response.content, most + 1)
            retry = retry_after(response.headers.get("Retry-After"))
            return Reply(response.status, text[:most], retry, len(text) > most)
    except TimeoutError:
        raise PostFailed(f"timed out after {timeout} s") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise PostFailed(certificate_reason(exc)) from None
    except aiohttp.ClientConnectorError as exc:
        number = getattr(exc.os_error, "errno", None)
        raise PostFailed(f"could not connect ({os.strerror(number) if number else exc.os_error})") from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
        if answered:  # in libcurl's words for a reset while reading (curl.py: _reason)
            raise PostFailed(f"{BROKEN_ANSWER} ({exc})") from None
        raise PostFailed(NO_ANSWER) from None
    except aiohttp.ClientError as exc:
        raise PostFailed(f"{type(exc).__name__}: {exc}") from None


async def _read_at_most(content: aiohttp.StreamReader, size: int) -> bytes:
    """Up to ``size`` bytes of a body (``StreamReader.read(n)`` returns what has arrived, which may be fewer)."""
    chunks: list[bytes] = []
    while size > 0 and (chunk := await content.read(size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


async def post_batch(
    session: Transport,
    url: str,
    body: bytes,
    batch_id: str,
    policy: RetryPolicy,
    *,
    headers: dict[str, str] | None = None,
    sign: Callable[[bytes], dict[str, str]] | None = None,
    sleep: Callable[[float], object] = asyncio.sleep,
    keep_body: bool = False,
    breaker: Breaker | None = None,
    deadline: float | None = None,
    idle: Callable[[], AbstractAsyncContextManager[None]] | None = None,
) -> Delivery:
    """POST ``body`` until it succeeds, fails for good, or the attempts run out.

    ``sign``, when given, makes the signature headers for each attempt (their timestamp is the attempt's).
    ``breaker``, when given, is the destination's: an attempt waits while it is open (breaker.py).
    ``deadline`` (``time.monotonic()``): no attempt starts after it (a campaign's MaximumDuration).
    ``idle``, when given, is entered around each wait between attempts (the breaker's, a back-off): the caller's
    runner may lend the batch's delivery slot out meanwhile.
    """
    waiting = idle or contextlib.nullcontext
    delivery = Delivery()
    base_headers = {"Content-Type": "application/json", BATCH_ID_HEADER: batch_id, **(headers or {})}
    number = spent = 0  # attempts made, and those that count against policy.attempts (a failed probe does not)
    while spent < policy.attempts:
        number += 1
        probe = False
        if breaker is not None and not breaker.closed:
            try:
                async with waiting():
                    probe = await breaker.admit(deadline)
            except HostDown as exc:
                delivery.host_down = str(exc)
                return delivery
            except TimeoutError:
                delivery.past_deadline = True
                return delivery
        if deadline is not None and time.monotonic() >= deadline:
            delivery.past_deadline = True
            return delivery
        started = time.monotonic()
        attempt = Attempt(number, time.time(), 0.0)
        retry_after = None
        request_headers = {**base_headers, **sign(body)} if sign else base_headers
        try:
            reply = await _post(session, url, body, request_headers, policy.timeout, keep_body)
        except PostFailed as exc:
            attempt.error = exc.reason
        except BaseException:
            if probe and breaker is not None:
                breaker.released()  # cancelled mid-probe: another attempt may probe
            raise
        else:
            attempt.status = reply.status
            if keep_body and attempt.ok:
                delivery.body = reply.body
            attempt.response = reply.body[:RESPONSE_KEEP].decode("utf-8", "replace") or None
            retry_after = reply.retry_after
        attempt.duration_ms = (time.monotonic() - started) * 1000
        if breaker is not None:
            if attempt.status is not None and attempt.status < 500:
                breaker.succeeded()  # the destination answered (even a 4xx or a 429 says it is up)
            else:
                breaker.failed_with(attempt.error or f"HTTP {attempt.status}", probe)
        delivery.attempts.append(attempt)
        if attempt.ok:
            return delivery
        final = attempt.status is not None and attempt.status < 500 and attempt.status not in RETRYABLE
        if final:
            return delivery
        if probe and breaker is not None and not breaker.closed:
            continue  # the probe tried the destination for every batch waiting on it: the breaker paces the next
        spent += 1
        if spent == policy.attempts:
            return delivery
        delay = policy.delay(spent, retry_after)
        if deadline is not None and time.monotonic() + delay >= deadline:
            delivery.past_deadline = True  # the next attempt could not start in time
            return delivery
        pause = sleep(delay)
        if asyncio.iscoroutine(pause):
            async with waiting():
                await pause
    return delivery
