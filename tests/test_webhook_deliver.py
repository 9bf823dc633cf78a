"""Delivering a batch to a real TLS receiver: success, retries (500, 429, timeouts, resets), no retry for 400."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from itertools import count

import pytest

from pointcast import __version__
from pointcast.channels.webhook.breaker import Breaker, Breakers, HostDown, destination_of
from pointcast.channels.webhook.deliver import (
    BATCH_ID_HEADER,
    DRAIN,
    MAX_ANSWER,
    RESPONSE_KEEP,
    RetryPolicy,
    Transport,
    client_name,
    delivery_client,
    post_batch,
)
from pointcast.channels.webhook.verify import make_ssl_context
from tests.support.tls import RequestRecord, TestCA, TLSReceiver, free_port

POLICY = RetryPolicy(attempts=4, base=0.01, cap=0.05, timeout=0.5)


@pytest.fixture
def receiver(test_ca: TestCA) -> Iterator[TLSReceiver]:
    with TLSReceiver(test_ca, account_id="123456789012") as rx:
        yield rx


@pytest.fixture(params=["curl", "aiohttp"])
def kind(request: pytest.FixtureRequest) -> str:
    """Every delivery test runs on both clients the runner can use (settings.delivery_client)."""
    return request.param


@contextlib.asynccontextmanager
async def client(kind: str, ca: TestCA) -> AsyncIterator[Transport]:
    session = delivery_client(kind, make_ssl_context(str(ca.ca_path)), None, 32, ca.ca_path.parent)  # type: ignore[arg-type]
    try:
        yield session
    finally:
        await session.close()


def deliver(
    receiver_url: str,
    ca: TestCA,
    kind: str,
    policy: RetryPolicy = POLICY,
    delays: list[float] | None = None,
    keep_body: bool = False,
):
    """One batch delivered with ``ca``'s trust; the waits between attempts are recorded in ``delays``, not slept."""

    async def main():
        recorded = delays if delays is not None else []

        async def sleep(seconds: float) -> None:
            recorded.append(seconds)

        async with client(kind, ca) as session:
            body = b'{"Endpoints":{}}'
            return await post_batch(session, receiver_url, body, "batch-1", policy, sleep=sleep, keep_body=keep_body)

    return asyncio.run(main())


def replies(*answers):
    """A responder answering with each (status, headers, body) in turn, then 200."""
    calls = count()

    def responder(_: RequestRecord):
        index = next(calls)
        return answers[index] if index < len(answers) else (200, {}, b"ok")

    return responder


def test_success_first_time(receiver, test_ca, kind) -> None:
    delivery = deliver(receiver.url, test_ca, kind)
    assert delivery.ok and len(delivery.attempts) == 1 and delivery.attempts[0].status == 200
    [request] = receiver.wait_for_requests(1, method="POST")
    assert request.headers[BATCH_ID_HEADER] == "batch-1" and request.body == b'{"Endpoints":{}}'
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"pointcast/{__version__}" and "Expect" not in request.headers


def test_500_then_success_keeps_the_batch_id(receiver, test_ca, kind) -> None:
    receiver.responder = replies((500, {}, b"boom"), (503, {}, b"busy"))
    delivery = deliver(receiver.url, test_ca, kind)
    assert delivery.ok and [a.status for a in delivery.attempts] == [500, 503, 200]
    assert delivery.attempts[0].response == "boom"
    posts = receiver.wait_for_requests(3, method="POST")
    assert {p.headers[BATCH_ID_HEADER] for p in posts} == {"batch-1"}


def test_429_honours_retry_after(receiver, test_ca, kind) -> None:
    receiver.responder = replies((429, {"Retry-After": "0.04"}, b""))
    delays: list[float] = []
    delivery = deliver(receiver.url, test_ca, kind, delays=delays)
    assert delivery.ok and [a.status for a in delivery.attempts] == [429, 200]
    assert delays == [0.04]


def test_400_is_final(receiver, test_ca, kind) -> None:
    receiver.responder = replies((400, {}, b"bad payload"))
    delivery = deliver(receiver.url, test_ca, kind)
    assert not delivery.ok and len(delivery.attempts) == 1
    assert delivery.reason == "HTTP 400 after 1 attempt(s)" and delivery.attempts[0].response == "bad payload"


def test_gives_up_after_the_attempts(receiver, test_ca, kind) -> None:
    receiver.responder = replies(*[(502, {}, b"")] * 10)
    delays: list[float] = []
    delivery = deliver(receiver.url, test_ca, kind, delays=delays)
    assert not delivery.ok and len(delivery.attempts) == 4 and len(delays) == 3
    assert all(0 <= d <= POLICY.cap for d in delays)


def test_timeout_is_retried(receiver, test_ca, kind) -> None:
    slow = {"n": 0}

    async def responder(_: RequestRecord):
        slow["n"] += 1
        if slow["n"] == 1:
            await asyncio.sleep(2)
        return 200, {}, b""

    receiver.responder = responder
    delivery = deliver(receiver.url, test_ca, kind)
    assert delivery.ok and delivery.attempts[0].error == "timed out after 0.5 s" and len(delivery.attempts) == 2


def test_connection_refused_is_retried_then_fails(test_ca, kind) -> None:
    delivery = deliver(f"https://127.0.0.1:{free_port()}/hook", test_ca, kind)
    assert not delivery.ok and len(delivery.attempts) == 4
    assert "could not connect" in delivery.reason and delivery.reason.endswith("; 4 attempt(s) made"), delivery.reason


# -- the circuit breaker per destination (breaker.py) -------------------------------------------------------------


def deliver_many(url: str, ca: TestCA, kind: str, batches: int, policy: RetryPolicy, breakers: Breakers | None):
    """``batches`` deliveries at once to ``url``, sharing the breakers (real sleeps: the breaker waits in time)."""

    async def main():
        async with client(kind, ca) as session:
            breaker = breakers.for_url(url) if breakers else None
            return await asyncio.wait_for(
                asyncio.gather(
                    *(
                        post_batch(session, url, b'{"Endpoints":{}}', f"batch-{i}", policy, breaker=breaker)
                        for i in range(batches)
                    )
                ),
                60,
            )

    return asyncio.run(main())


def down_for(seconds: float):
    """A responder answering 503 until ``seconds`` after its first request, then 200; it counts the 503s."""
    state = {"first": None, "refused": 0}

    def responder(_: RequestRecord):
        now = time.monotonic()
        state["first"] = state["first"] or now
        if now - state["first"] < seconds:
            state["refused"] += 1
            return 503, {}, b"restarting"
        return 200, {}, b"ok"

    return responder, state


QUICK = RetryPolicy(attempts=3, base=0.01, cap=0.02, timeout=2.0)


def test_a_short_outage_fails_every_batch_without_the_breaker(receiver, test_ca, kind) -> None:
    receiver.responder, state = down_for(0.8)
    deliveries = deliver_many(receiver.url, test_ca, kind, 30, QUICK, None)
    assert not any(d.ok for d in deliveries)  # each batch spent its 3 attempts in a few ms of the outage
    assert state["refused"] == 90


def test_the_breaker_holds_batches_through_an_outage(receiver, test_ca, kind) -> None:
    receiver.responder, state = down_for(0.8)
    breakers = Breakers(failures=5, base=0.1, cap=0.2, outage_limit=30)
    started = time.monotonic()
    deliveries = deliver_many(receiver.url, test_ca, kind, 30, QUICK, breakers)
    assert all(d.ok for d in deliveries), [d.reason for d in deliveries if not d.ok]
    assert time.monotonic() - started >= 0.8  # they waited for the destination to come back
    # the first attempts were all in flight before any failed; after that only one probe per cool-down went out
    assert 30 <= state["refused"] <= 30 + 8
    # waiting spent no attempt, nor did a failed probe: each batch spent one, in the first wave
    assert all(sum(a.status == 503 for a in d.attempts) >= 1 for d in deliveries)
    assert breakers.status() == []  # closed again


def test_the_breaker_gives_up_after_the_outage_limit(receiver, test_ca, kind) -> None:
    receiver.responder, state = down_for(3600)
    breakers = Breakers(failures=3, base=0.05, cap=0.1, outage_limit=0.6)
    started = time.monotonic()
    deliveries = deliver_many(receiver.url, test_ca, kind, 20, QUICK, breakers)
    assert time.monotonic() - started < 5
    assert not any(d.ok for d in deliveries)
    for delivery in deliveries:
        assert delivery.host_down is not None
        assert delivery.reason.startswith(f"{destination_of(receiver.url)} is down: ")
        assert "(the last: HTTP 503)" in delivery.reason and "attempt(s) made for this batch" in delivery.reason
    assert 20 <= state["refused"] <= 20 + 15  # the first wave, then about one probe per cool-down
    [down] = breakers.status()
    assert down["Destination"] == destination_of(receiver.url) and down["DownSeconds"] >= 0.6


def test_a_failing_path_does_not_stop_its_neighbour_on_the_same_host(receiver, test_ca, kind) -> None:
    """The breaker is per URL: a receiver's path answering 503 opened the breaker of its host and port, and a
    healthy path there got no POST at all, its batches failing as "down" past the outage limit."""
    receiver.responder = lambda request: (503, {}, b"broken") if request.path.endswith("/bad") else (200, {}, b"ok")
    base = receiver.url.rstrip("/")
    breakers = Breakers(failures=3, base=0.05, cap=0.1, outage_limit=0.3)

    async def wave(session, url: str, count: int):
        breaker = breakers.for_url(url)
        return await asyncio.gather(
            *(post_batch(session, url, b"{}", f"b{i}", QUICK, breaker=breaker) for i in range(count))
        )

    async def main():
        async with client(kind, test_ca) as session:
            failing = await wave(session, f"{base}/bad", 10)  # they end once it is past its outage limit
            return failing, await wave(session, f"{base}/good", 10)

    failing, healthy = asyncio.run(asyncio.wait_for(main(), 60))
    assert not any(d.ok for d in failing) and any(d.host_down for d in failing)
    assert all(d.ok and len(d.attempts) == 1 for d in healthy), [d.reason for d in healthy]
    assert [d["Destination"] for d in breakers.status()] == [destination_of(f"{base}/bad")]


def test_a_breaker_left_open_by_an_old_outage_fails_nothing_once_the_host_is_back(receiver, test_ca, kind) -> None:
    """An outage past its limit failed a campaign; nothing probed after it, and the next campaign to the host, back
    for a while, found the breaker open and failed all but its probe's batch at once ("down over 571 s")."""
    receiver.responder, _ = down_for(3600)
    breakers = Breakers(failures=3, base=0.05, cap=0.1, outage_limit=0.3)
    breaker = breakers.for_url(receiver.url)

    async def wave(session, count: int):
        return await asyncio.gather(
            *(post_batch(session, receiver.url, b"{}", f"b{i}", QUICK, breaker=breaker) for i in range(count))
        )

    async def main():
        async with client(kind, test_ca) as session:
            first = await wave(session, 10)
            receiver.responder = replies()  # back up; nothing is sent meanwhile
            await asyncio.sleep(0.3)
            return first, await wave(session, 20)

    first, later = asyncio.run(asyncio.wait_for(main(), 60))
    assert not any(d.ok for d in first)
    assert all(d.ok for d in later), [d.reason for d in later if not d.ok]
    assert breakers.status() == []


def test_no_attempt_starts_after_the_deadline(receiver, test_ca, kind) -> None:
    """A campaign's MaximumDuration: neither a backoff nor an open breaker makes a batch start late."""
    receiver.responder = replies(*[(503, {"Retry-After": "0.15"}, b"")] * 100)  # 0.15 s between attempts
    policy = RetryPolicy(attempts=5, base=0.15, cap=1.0, timeout=2.0)

    async def main(breakers: Breakers | None):
        async with client(kind, test_ca) as session:
            breaker = breakers.for_url(receiver.url) if breakers else None
            deadline = time.monotonic() + 0.4
            delivery = await post_batch(
                session, receiver.url, b"{}", "batch-1", policy, breaker=breaker, deadline=deadline
            )
            return delivery, time.monotonic() - deadline

    delivery, late = asyncio.run(main(None))  # backoffs: it stops before the attempt that would start late
    assert delivery.past_deadline and not delivery.ok and len(delivery.attempts) == 3  # at 0, 0.15, 0.3 s
    assert late < 0.1 and delivery.reason.startswith("the deadline passed; ") and "HTTP 503" in delivery.reason
    delivery, late = asyncio.run(main(Breakers(failures=1, base=5.0, cap=5.0, outage_limit=60)))
    assert delivery.past_deadline and len(delivery.attempts) == 1  # the breaker opened; the wait ended in time
    assert -0.05 < late < 0.1 and delivery.host_down is None


def test_breaker_states() -> None:
    """The breaker on its own clock: opening, probing, doubling, closing, and a probe overtaken by a success."""
    now = [100.0]
    breaker = Breaker("https://h:443", failures=3, base=1.0, cap=4.0, outage_limit=60, clock=lambda: now[0])

    def admit() -> bool:
        return asyncio.run(asyncio.wait_for(breaker.admit(), 1))

    for _ in range(2):
        breaker.failed_with("HTTP 500", probe=False)
    assert breaker.closed
    breaker.failed_with("HTTP 500", probe=False)
    assert not breaker.closed and breaker.open_until == 101.0  # three in a row
    now[0] = 101.0
    assert admit() is True and breaker.probing  # the probe
    breaker.failed_with("timed out", probe=True)
    assert breaker.open_until == 103.0 and not breaker.probing  # twice as long
    now[0] = 103.0
    assert admit() is True
    breaker.failed_with("timed out", probe=True)
    now[0] = 107.0  # 4 s: the cap
    assert admit() is True
    breaker.failed_with("timed out", probe=True)
    assert breaker.open_until == 111.0
    breaker.succeeded()  # an attempt made before it opened answered: the destination is up
    assert breaker.closed and breaker.failed == 0
    breaker.failed_with("timed out", probe=True)  # that probe's failure alone does not open it again
    assert breaker.closed and breaker.failed == 1
    for _ in range(2):
        breaker.failed_with("HTTP 502", probe=False)
    assert not breaker.closed and breaker.open_until == 108.0  # from the base again (the clock is at 107)
    now[0] = 167.0  # down for 60 s (the outage limit): an attempt goes as the probe, and the others wait for it
    assert admit() is True
    with pytest.raises(TimeoutError):
        admit()  # waits for the probe's answer
    breaker.failed_with("HTTP 502", probe=True)  # fresh news: every other attempt ends at once
    with pytest.raises(
        HostDown, match=r"https://h:443 is down: 4 attempts in a row failed over 60 s \(the last: HTTP 502\)"
    ):
        admit()
    now[0] = 168.0  # past the limit there is no cool-down: ``base`` after the last failure, the next one probes
    assert admit() is True
    breaker.failed_with("HTTP 502", probe=True)
    now[0] = 900.0  # nobody tried for 12 minutes: old news fails nothing, the next attempt probes
    assert admit() is True
    breaker.succeeded()
    assert breaker.closed


def test_breaker_hold_and_changes() -> None:
    """What a sender that queues batches asks before starting one (``hold``), and when it is told to ask again."""
    now = [100.0]
    told: list[bool] = []
    breakers = Breakers(failures=2, base=1.0, cap=4.0, outage_limit=10)
    breakers.on_change = lambda: told.append(True)
    breaker = breakers.for_url("https://h/hook")
    assert breaker is not None
    breaker.clock = lambda: now[0]
    assert breaker.hold() == 0.0  # closed
    breaker.failed_with("HTTP 500", probe=False)
    assert breaker.hold() == 0.0 and told == []
    breaker.failed_with("HTTP 500", probe=False)
    assert told == [True] and breaker.hold() == 1.0  # open: until the cool-down ends
    now[0] = 100.4
    assert breaker.hold() == pytest.approx(0.6)
    now[0] = 101.0
    assert breaker.hold() == 0.0  # the next attempt is the probe
    assert asyncio.run(breaker.admit()) is True
    assert breaker.hold() == pytest.approx(4.0)  # a probe is out: until told, at most the cap
    breaker.failed_with("HTTP 500", probe=True)
    assert told == [True, True] and breaker.hold() == pytest.approx(2.0)  # twice the cool-down
    now[0] = 110.0
    assert breaker.hold() == 0.0  # past the outage limit: an attempt ends at once
    breaker.succeeded()
    assert told == [True, True, True] and breaker.closed


def test_waits_between_attempts_are_wrapped_in_idle(receiver, test_ca, kind) -> None:
    """``idle`` is entered around each back-off and each wait for the breaker, and around nothing else."""
    receiver.responder = replies((503, {}, b""), (503, {}, b""), (503, {}, b""))
    events: list[str] = []

    class Idle:
        async def __aenter__(self) -> None:
            events.append("away")

        async def __aexit__(self, *exc: object) -> None:
            events.append("back")

    async def main():
        async with client(kind, test_ca) as session:
            breaker = Breakers(failures=2, base=0.05, cap=0.05, outage_limit=10).for_url(receiver.url)
            policy = RetryPolicy(attempts=5, base=0.01, cap=0.01, timeout=2.0)
            return await post_batch(session, receiver.url, b"{}", "b", policy, breaker=breaker, idle=Idle)

    delivery = asyncio.run(main())
    assert delivery.ok and [a.status for a in delivery.attempts] == [503, 503, 503, 200]
    # 503, back-off, 503 (the breaker opens), back-off, a wait for the cool-down, the probe: 503 (it opens again),
    # a wait for the cool-down, the probe: 200
    assert events == ["away", "back"] * 4


# -- both clients word and keep the same things (settings.delivery_client) ----------------------------------------


ONCE = RetryPolicy(attempts=1, base=0.01, cap=0.01, timeout=2.0)


def post_once(kind: str, ca: TestCA, url: str, *, keep_body: bool = False, ssl_ca: TestCA | None = None):
    """One attempt, with ``ssl_ca``'s trust when given (else ``ca``'s)."""
    return deliver(url, ssl_ca or ca, kind, ONCE, keep_body=keep_body)


def test_an_untrusted_certificate_is_named(receiver, test_ca, kind, tmp_path) -> None:
    delivery = post_once(kind, test_ca, receiver.url, ssl_ca=TestCA(tmp_path))  # another CA's trust only
    assert not delivery.ok and delivery.attempts[0].status is None
    assert delivery.attempts[0].error.startswith("TLS certificate verification failed ("), delivery.attempts[0].error
    assert receiver.requests == []


def test_a_refused_connection_is_worded_alike(test_ca, kind) -> None:
    delivery = post_once(kind, test_ca, f"https://127.0.0.1:{free_port()}/hook")
    assert delivery.attempts[0].error == "could not connect (Connection refused)"


@contextlib.contextmanager
def hanging_up(ca: TestCA, answer: bytes = b"", reset: bool = False) -> Iterator[str]:
    """A TLS server on 127.0.0.1 that reads each request's first bytes, writes ``answer`` (nothing, by default) and
    closes the connection, or with ``reset`` resets it (SO_LINGER 0)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    context = ca.server_ssl_context()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), raw:
                raw.settimeout(2)
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(1024)
                    if answer:
                        conn.sendall(answer)
                        time.sleep(0.1)
                    if reset:
                        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, name="hanging_up", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_connection_closed_without_an_answer_is_named(test_ca, kind) -> None:
    with hanging_up(test_ca) as url:
        delivery = post_once(kind, test_ca, url)
    assert delivery.attempts[0].error == "the server closed the connection without a response"


def test_a_connection_reset_before_or_during_the_answer_is_worded_alike(test_ca, kind) -> None:
    """libcurl and aiohttp name a broken connection in the same words (aiohttp gave "ClientOSError: [Errno 104] …"
    and "ClientPayloadError: Response payload is not completed …", libcurl "Recv failure: …")."""
    with hanging_up(test_ca, reset=True) as url:
        before = post_once(kind, test_ca, url)
    assert before.attempts[0].error == "the server closed the connection without a response"
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"
    with hanging_up(test_ca, answer=partial, reset=True) as url:
        during = post_once(kind, test_ca, url)
    assert not during.ok
    assert during.attempts[0].error.startswith("the connection broke while the answer was read ("), during.attempts


def test_the_body_is_kept_whole_only_when_asked_and_successful(receiver, test_ca, kind) -> None:
    big = b"x" * 5000
    receiver.responder = replies((500, {}, big), (200, {}, big), (200, {}, big))
    failed = post_once(kind, test_ca, receiver.url, keep_body=True)
    assert failed.attempts[0].response == "x" * 1024 and failed.body is None
    answered = post_once(kind, test_ca, receiver.url, keep_body=True)
    assert answered.ok and answered.body == big and answered.attempts[0].response == "x" * 1024
    plain = post_once(kind, test_ca, receiver.url)
    assert plain.ok and plain.body is None and plain.attempts[0].response == "x" * 1024


async def endless(chunk: bytes = b"y" * 16384, most: int = 2000):
    """A body that goes on (bounded: 2,000 chunks at 5 ms, 10 s) until the client stops reading it."""
    for _ in range(most):
        yield chunk
        await asyncio.sleep(0.005)


def test_a_body_that_does_not_end_is_cut_off_after_its_first_bytes(receiver, test_ca, kind) -> None:
    receiver.responder = replies((500, {}, endless()))
    delivery = post_once(kind, test_ca, receiver.url)
    [attempt] = delivery.attempts
    assert attempt.status == 500 and attempt.error is None and attempt.response == "y" * RESPONSE_KEEP
    assert attempt.duration_ms < 1000  # not read until the attempt's timeout (ONCE: 2 s)


def test_libcurl_reads_a_short_body_to_its_end_and_reuses_the_connection(receiver, test_ca) -> None:
    """(aiohttp reuses a connection only if the whole body had arrived when its first 1 KiB was read.)"""
    receiver.responder = replies((500, {}, b"z" * (DRAIN // 2)))
    delivery = deliver(receiver.url, test_ca, "curl")
    assert delivery.ok and [a.status for a in delivery.attempts] == [500, 200]
    assert delivery.attempts[0].response == "z" * RESPONSE_KEEP
    first, second = receiver.wait_for_requests(2, method="POST")
    assert first.peer == second.peer  # one connection for both


def test_a_hook_answer_may_be_as_large_as_a_lambda_response_and_no_larger(receiver, test_ca, kind) -> None:
    receiver.responder = replies((200, {}, b"a" * MAX_ANSWER), (200, {}, b"b" * (MAX_ANSWER + 1)))
    largest = post_once(kind, test_ca, receiver.url, keep_body=True)
    assert largest.ok and largest.body == b"a" * MAX_ANSWER
    larger = post_once(kind, test_ca, receiver.url, keep_body=True)
    assert not larger.ok and larger.body is None
    assert larger.attempts[0].error == f"the answer is larger than {MAX_ANSWER} bytes"


def test_a_retry_after_date_is_followed(receiver, test_ca, kind) -> None:
    later = email.utils.formatdate(time.time() + 10, usegmt=True)  # an HTTP date: whole seconds
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    receiver.responder = replies((503, {"Retry-After": later}, b""), (429, {"Retry-After": past}, b""))
    delays: list[float] = []
    delivery = deliver(receiver.url, test_ca, kind, RetryPolicy(attempts=4, base=0.01, cap=60, timeout=0.5), delays)
    assert delivery.ok and [a.status for a in delivery.attempts] == [503, 429, 200]
    assert 8.5 <= delays[0] <= 10 and delays[1] == 0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-3", "Wed, 32 Oct 2026 07:28:00 GMT"])
def test_a_retry_after_that_is_neither_seconds_nor_a_date_falls_back_to_the_backoff(
    receiver, test_ca, kind, value
) -> None:
    receiver.responder = replies((503, {"Retry-After": value}, b""))
    delays: list[float] = []
    delivery = deliver(receiver.url, test_ca, kind, delays=delays)
    assert delivery.ok and len(delays) == 1 and 0 <= delays[0] <= POLICY.base


def test_proxies_in_the_environment_are_not_used(receiver, test_ca, kind, monkeypatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert post_once(kind, test_ca, receiver.url).ok


def test_a_cancelled_post_leaves_the_client_usable(receiver, test_ca, kind) -> None:
    async def slow_then_quick(record: RequestRecord):
        if record.headers[BATCH_ID_HEADER] == "slow":
            await asyncio.sleep(3)
        return 200, {}, b"ok"

    receiver.responder = slow_then_quick

    async def main():
        async with client(kind, test_ca) as session:
            policy = RetryPolicy(attempts=1, base=0.01, cap=0.01, timeout=5.0)
            slow = asyncio.create_task(post_batch(session, receiver.url, b"{}", "slow", policy))
            await asyncio.sleep(0.3)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            started = time.monotonic()
            quick = [await post_batch(session, receiver.url, b"{}", f"quick-{i}", policy) for i in range(3)]
            return quick, time.monotonic() - started, getattr(session, "_waiting", {})

    quick, seconds, waiting = asyncio.run(main())
    assert all(d.ok for d in quick) and seconds < 2 and not waiting


def test_a_ca_bundle_directory_is_trusted(receiver, test_ca, kind, tmp_path) -> None:
    """POINTCAST_CA_BUNDLE may name a directory of certificates named by their subject hash (`openssl rehash`);
    libcurl looks there after the system's directory (the two joined with ":")."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command, to name the test CA's certificate by its subject hash")
    command = [openssl, "x509", "-subject_hash", "-noout", "-in", str(test_ca.ca_path)]
    digest = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    directory = tmp_path / "cas"
    directory.mkdir()
    shutil.copy(test_ca.ca_path, directory / f"{digest}.0")

    async def main():
        trust = make_ssl_context(str(directory))
        session = delivery_client(kind, trust, str(directory), 4, tmp_path)  # type: ignore[arg-type]
        try:
            return await post_batch(session, receiver.url, b"{}", "b", ONCE)
        finally:
            await session.close()

    delivery = asyncio.run(main())
    assert delivery.ok, delivery.reason


def test_the_client_names_itself(test_ca, kind) -> None:
    async def main() -> str:
        async with client(kind, test_ca) as session:
            return client_name(session)

    assert asyncio.run(main()).startswith("libcurl/8." if kind == "curl" else "aiohttp/3.")
