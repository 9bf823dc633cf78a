"""A circuit breaker per destination (the URL: scheme, host, port and path), shared by every batch that POSTs there.

Without it a receiver that is down gets every batch's every attempt, and a campaign burns its attempts in the
seconds of a restart: each of thousands of batches fails for good although the host is back a minute later. With
it (DESIGN.md "Delivery policy defaults"):

- ``failures`` retryable failures in a row (a timeout, no connection, a 5xx) open the breaker: for a cool-down no
  request goes to that destination, and batches about to make an attempt wait instead. Waiting spends no attempt.
- When the cool-down ends, one waiting attempt goes through (the probe); the others wait for its answer. Success
  closes the breaker and they all go on. Failure opens it again, for twice as long (up to ``cap`` seconds).
- Waiting is bounded: once the destination has been down for ``outage_limit`` seconds (counted from when the
  breaker opened), attempts that find it open end at once with the reason (``HostDown``), and the batch fails with
  it: nothing waits for ever, and every endpoint still ends with an outcome. Past the limit there is no cool-down:
  an attempt made ``base`` seconds or more after the last failure goes as the probe (and those meanwhile wait for
  its answer), so a destination that comes back is used again at once, and a breaker nobody has tried for a while
  fails nothing on old news.
- The path is part of the destination: a receiver's path that answers 5xx must not stop its healthy neighbour on
  the same host and port (a timeout or a refused connection shows at each path in a few attempts).

A sender that queues batches can ask ``hold()`` before starting one, and leave it queued (holding no delivery slot)
while the answer is not 0; ``on_change`` tells it when to ask again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HostDown(Exception):
    """The destination has been down for longer than the outage limit; the attempt was not made."""


@dataclass(slots=True)
class Breaker:
    destination: str
    failures: int  # in a row, to open
    base: float  # the first cool-down, seconds
    cap: float  # the longest cool-down
    outage_limit: float  # seconds down after which attempts stop waiting
    clock: Callable[[], float] = time.monotonic
    failed: int = 0  # retryable failures in a row
    opened_at: float | None = None  # when the current outage began (None: closed)
    failed_at: float = 0.0  # when the last retryable failure came
    open_until: float = 0.0
    cool: float = 0.0
    probing: bool = False
    last_error: str = ""
    on_change: Callable[[], None] | None = None  # called when the breaker opens, closes, or its probe ends
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def closed(self) -> bool:
        return self.opened_at is None

    def hold(self) -> float:
        """Seconds before an attempt could go without waiting: 0 when closed, when the next attempt is the probe,
        and past the outage limit (it then goes as the probe or ends at once); while a probe is out, until its
        answer (``on_change``), at most ``cap``."""
        if self.opened_at is None:
            return 0.0
        if self.probing:
            return self.cap
        now = self.clock()
        if self._past_limit(now):
            return 0.0
        return max(0.0, self.open_until - now)

    def _past_limit(self, now: float) -> bool:
        return self.opened_at is not None and now - self.opened_at >= self.outage_limit

    def _tell(self) -> None:
        self._changed.set()
        if self.on_change is not None:
            self.on_change()

    async def admit(self, deadline: float | None = None) -> bool:
        """Wait until an attempt may go; True if this attempt is the probe. Raises HostDown past the outage limit
        when the last failure is fresh (``base`` seconds) and no probe is out, and TimeoutError once ``deadline``
        (on the breaker's clock) has passed."""
        while self.opened_at is not None:
            now = self.clock()
            if deadline is not None and now >= deadline:
                raise TimeoutError
            past = self._past_limit(now)
            if not self.probing and (now >= self.open_until or (past and now - self.failed_at >= self.base)):
                self.probing = True
                return True
            if past and not self.probing:
                raise HostDown(
                    f"{self.destination} is down: {self.failed} attempts in a row failed over "
                    f"{self.failed_at - self.opened_at:.0f} s (the last: {self.last_error})"
                )
            self._changed.clear()
            wait = self.cap if self.probing else self.open_until - now  # a probe's answer comes by _changed
            if not past:
                wait = min(wait, self.opened_at + self.outage_limit - now)
            if deadline is not None:
                wait = min(wait, deadline - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(wait, 0.001))
        return False

    def succeeded(self) -> None:
        opened = self.opened_at is not None
        self.failed, self.opened_at, self.probing, self.cool = 0, None, False, 0.0
        if opened:
            self._tell()

    def failed_with(self, error: str, probe: bool) -> None:
        """A retryable failure (``probe``: the attempt ``admit`` let through as the probe)."""
        self.failed += 1
        self.last_error = error
        now = self.failed_at = self.clock()
        if self.opened_at is not None:
            if probe:  # still down: rest longer before the next probe
                self.cool = min(self.cap, self.cool * 2)
                self.open_until = now + self.cool
                self.probing = False
                self._tell()
        elif self.failed >= self.failures:  # (a probe whose breaker another answer closed meanwhile counts here)
            self.opened_at, self.cool = now, self.base
            self.open_until = now + self.cool
            self._tell()

    def released(self) -> None:
        """The probe's attempt ended without an answer either way (cancelled): let another one probe."""
        if self.probing:
            self.probing = False
            self._tell()


def destination_of(url: str) -> str:
    """What a breaker is kept per: ``scheme://host:port/path`` (the default port spelled out; no query)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path or '/'}"


class Breakers:
    """The breakers of one sender, by destination; ``failures`` 0 turns them off."""

    def __init__(self, failures: int = 10, base: float = 1.0, cap: float = 30.0, outage_limit: float = 300.0) -> None:
        self.failures, self.base, self.cap, self.outage_limit = failures, base, cap, outage_limit
        self.on_change: Callable[[], None] | None = None  # told when any of them opens, closes or ends a probe
        self._by_url: dict[str, Breaker] = {}  # so that a batch does not parse its URL
        self._by_destination: dict[str, Breaker] = {}

    def for_url(self, url: str) -> Breaker | None:
        if self.failures <= 0:
            return None
        breaker = self._by_url.get(url)
        if breaker is None:
            destination = destination_of(url)
            breaker = self._by_destination.get(destination)
            if breaker is None:
                breaker = self._by_destination[destination] = Breaker(
                    destination, self.failures, self.base, self.cap, self.outage_limit, on_change=self._tell
                )
            if len(self._by_url) > 10_000:
                self._by_url.clear()
            self._by_url[url] = breaker
        return breaker

    def _tell(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def status(self) -> list[dict[str, object]]:
        """Open breakers, for the health endpoint: those with a probe out or a failure in the last outage limit (or
        ``cap``, if longer); one nobody has tried for longer says nothing of now."""
        now = time.monotonic()
        return [
            {
                "Destination": b.destination,
                "DownSeconds": round(now - b.opened_at, 1),
                "FailedInARow": b.failed,
                "LastError": b.last_error,
            }
            for b in self._by_destination.values()
            if b.opened_at is not None and (b.probing or now - b.failed_at <= max(b.cap, b.outage_limit))
        ]
