"""Webhook URL checks of custom channels: syntax rules and the HEAD account-id check."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pointcast.channels.webhook.verify import (
    MAX_URL_LENGTH,
    WebhookCheckError,
    check_webhook_head,
    make_ssl_context,
    validate_webhook_url,
)
from tests.support.tls import TestCA, TLSReceiver, free_port, silent_server

FIELD = "CustomDeliveryConfiguration.DeliveryUri"
ACCOUNT = "000000000000"


# -- syntax ---------------------------------------------------------------------------------

VALID_URLS = [
    "https://example.com",
    "https://example.com/",
    "https://example.com/hook",
    "https://hooks.example.com:8443/a/b_c-d.e~f",
    "https://127.0.0.1:4443/hook",
    "https://example.com/path;params",
    "https://example.com/a:b;c",
    "https://example.com/hook?token",
    "https://example.com/hook?a?b/c:d",
    "https://example.com/hook#fragment",
    "https://example.com/hook?x#frag/with?chars:and;more",
    "https://EXAMPLE.com/UPPER/Case",
    "https://localhost",
]


@pytest.mark.parametrize("url", VALID_URLS)
def test_valid_urls_pass(url: str) -> None:
    validate_webhook_url(url, FIELD)


INVALID_URLS = [
    # (url, expected fragment of the message)
    ("http://example.com/hook", "must begin with https://"),
    ("HTTPS://example.com/hook", "must begin with https://"),
    ("ftp://example.com", "must begin with https://"),
    ("example.com/hook", "must begin with https://"),
    ("", "must begin with https://"),
    ("https://example.com/a%20b", "not allowed: '%'"),
    ("https://example.com/a b", "not allowed: ' '"),
    ("https://example.com/hook?a=1&b=2", "not allowed: '='"),
    ("https://example.com/hook?a&b", "not allowed: '&'"),
    ("https://user@example.com/hook", "not allowed: '@'"),
    ("https://example.com/caf\u00e9", "not allowed: '\u00e9'"),
    ("https://example.com/\u0661", "not allowed"),  # non-ASCII digit
    ("https://example.com/a\nb", "not allowed: '\\n'"),
    ("https://exa mple.com", "not allowed: ' '"),
    # IPv6 literals need '[' and ']', which the documented character set lacks.
    ("https://[::1", "not allowed: '['"),
    ("https://[::1]:443/hook", "not allowed: '['"),
    # Allowed characters only, but not RFC 3986.
    ("https://example.com:abc/hook", "is not a valid RFC 3986 URI"),
    ("https://example.com:1:2/hook", "is not a valid RFC 3986 URI"),
    ("https://example.com:99999/hook", "is not a valid RFC 3986 URI"),
    ("https://example.com/a#b#c", "is not a valid RFC 3986 URI"),
    ("https:///hook", "is not a valid RFC 3986 URI: it has no host"),
    ("https://", "is not a valid RFC 3986 URI: it has no host"),
    ("https://:443/hook", "is not a valid RFC 3986 URI: it has no host"),
]


@pytest.mark.parametrize(("url", "reason"), INVALID_URLS)
def test_invalid_urls_fail_with_reason(url: str, reason: str) -> None:
    with pytest.raises(WebhookCheckError) as info:
        validate_webhook_url(url, FIELD)
    message = str(info.value)
    assert reason in message
    assert message.startswith(FIELD)
    assert repr(url) in message
    assert info.value.field == FIELD
    assert info.value.url == url
    assert isinstance(info.value, ValueError)


def test_length_limit() -> None:
    base = "https://example.com/"
    validate_webhook_url(base + "a" * (MAX_URL_LENGTH - len(base)), FIELD)
    too_long = base + "a" * (MAX_URL_LENGTH - len(base) + 1)
    with pytest.raises(WebhookCheckError, match="maximum is 2048") as info:
        validate_webhook_url(too_long, FIELD)
    assert info.value.url == too_long
    assert len(str(info.value)) < 200


def test_field_name_is_in_the_message() -> None:
    with pytest.raises(WebhookCheckError, match=r"^Other\.Field 'http://x' must begin with https://$"):
        validate_webhook_url("http://x", "Other.Field")


# -- TLS context ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def test_make_ssl_context_loads_the_extra_bundle(ca: TestCA) -> None:
    plain = make_ssl_context(None)
    extended = make_ssl_context(str(ca.ca_path))
    assert plain.verify_mode == ssl.CERT_REQUIRED
    assert plain.check_hostname
    assert extended.cert_store_stats()["x509_ca"] == plain.cert_store_stats()["x509_ca"] + 1


def test_make_ssl_context_rejects_a_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load the CA bundle"):
        make_ssl_context(str(tmp_path / "missing.pem"))


# -- HEAD check against a real TLS receiver -------------------------------------------------


@pytest.fixture
def receiver(ca: TestCA) -> Iterator[TLSReceiver]:
    with TLSReceiver(ca, account_id=ACCOUNT) as rx:
        yield rx


@pytest.fixture(scope="module")
def trusting_context(ca: TestCA) -> ssl.SSLContext:
    return make_ssl_context(str(ca.ca_path))


def head(url: str, ctx: ssl.SSLContext, account_id: str = ACCOUNT, timeout: float = 5.0) -> None:
    async def run() -> None:
        try:
            await check_webhook_head(url, field=FIELD, account_id=account_id, ssl_context=ctx, timeout=timeout)
        finally:
            # aiohttp closes a connection it will not reuse in the background (TLS close_notify
            # round trip); give that a moment before asyncio.run closes the loop, or the socket
            # is reported as an unclosed-transport ResourceWarning. A long-lived loop needs nothing.
            await asyncio.sleep(0.02)

    asyncio.run(run())


def head_error(url: str, ctx: ssl.SSLContext, account_id: str = ACCOUNT, timeout: float = 5.0) -> str:
    with pytest.raises(WebhookCheckError) as info:
        head(url, ctx, account_id, timeout)
    assert info.value.field == FIELD
    assert info.value.url == url
    message = str(info.value)
    assert message.startswith(f"{FIELD}: HEAD {url} ")
    return message


def test_right_account_id_passes(receiver: TLSReceiver, trusting_context: ssl.SSLContext) -> None:
    head(receiver.url, trusting_context)
    (record,) = receiver.requests
    assert record.method == "HEAD"
    assert record.path == "/hook"
    assert record.body == b""


def test_account_id_compared_after_strip(receiver: TLSReceiver, trusting_context: ssl.SSLContext) -> None:
    receiver.account_id = f" {ACCOUNT} "
    head(receiver.url, trusting_context, account_id=f"{ACCOUNT}\n")


def test_query_and_fragment_are_fine(receiver: TLSReceiver, trusting_context: ssl.SSLContext) -> None:
    head(receiver.url + "?token#frag", trusting_context)
    (record,) = receiver.requests
    assert record.query_string == "token"


@pytest.mark.parametrize("status", [200, 204, 302, 403, 404, 499])
def test_any_status_below_500_with_the_header_passes(
    receiver: TLSReceiver, trusting_context: ssl.SSLContext, status: int
) -> None:
    receiver.head_status = status
    head(receiver.url, trusting_context)


def test_wrong_account_id_fails(receiver: TLSReceiver, trusting_context: ssl.SSLContext) -> None:
    receiver.account_id = "111111111111"
    message = head_error(receiver.url, trusting_context)
    expected = "X-Amz-Pinpoint-AccountId '111111111111' does not match this account's id '000000000000'"
    assert expected in message


def test_missing_header_fails(receiver: TLSReceiver, trusting_context: ssl.SSLContext) -> None:
    receiver.account_id = None
    message = head_error(receiver.url, trusting_context)
    assert message.endswith("answered with status 200, without the X-Amz-Pinpoint-AccountId header")
    receiver.head_status = 404  # a route that takes only POST: the status is the clue
    assert "answered with status 404, without the X-Amz-Pinpoint-AccountId header" in head_error(
        receiver.url, trusting_context
    )


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_fails_even_with_the_header(
    receiver: TLSReceiver, trusting_context: ssl.SSLContext, status: int
) -> None:
    receiver.head_status = status
    message = head_error(receiver.url, trusting_context)
    assert f"answered with status {status}" in message


def test_redirect_is_not_followed(receiver: TLSReceiver, trusting_context: ssl.SSLContext) -> None:
    receiver.head_responder = lambda rec: (301, {"Location": "/elsewhere"}, b"")
    message = head_error(receiver.url, trusting_context)
    assert "answered with status 301 (it was not followed), without the X-Amz-Pinpoint-AccountId header" in message
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_untrusted_ca_fails(receiver: TLSReceiver) -> None:
    message = head_error(receiver.url, make_ssl_context(None))
    assert "TLS certificate verification failed" in message
    assert receiver.requests == []


def test_wrong_host_name_fails(tmp_path: Path) -> None:
    other = TestCA(tmp_path)
    other.server_cert = other.ca.issue_cert("pointcast.invalid")
    with TLSReceiver(other, account_id=ACCOUNT) as rx:
        message = head_error(rx.url, other.client_ssl_context())
    assert "TLS certificate verification failed" in message
    assert "mismatch" in message.lower()


def test_refused_port_fails(trusting_context: ssl.SSLContext) -> None:
    url = f"https://127.0.0.1:{free_port()}/hook"
    message = head_error(url, trusting_context)
    assert message.endswith("failed: connection refused")


def test_silent_server_times_out(trusting_context: ssl.SSLContext) -> None:
    with silent_server() as silent:
        started = time.monotonic()
        message = head_error(silent.url, trusting_context, timeout=1.0)
        elapsed = time.monotonic() - started
    assert message.endswith("timed out after 1.0 s")
    assert 0.9 <= elapsed < 3.0  # generous upper bound for loaded CI machines


def test_invalid_syntax_is_rejected_before_any_request(receiver: TLSReceiver, trusting_context: ssl.SSLContext) -> None:
    url = receiver.url.replace("https://", "http://")
    with pytest.raises(WebhookCheckError, match="must begin with https://"):
        head(url, trusting_context)
    assert receiver.requests == []


# -- the receiver itself (it is reused by delivery tests) ----------------------------------------


def test_receiver_records_posts_and_uses_the_responder(ca: TestCA) -> None:
    import aiohttp

    async def slow(rec: object) -> tuple[int, dict[str, str], bytes]:
        await asyncio.sleep(0.05)
        return 429, {"Retry-After": "1"}, b"slow down"

    async def post_many(url: str, ctx: ssl.SSLContext, n: int) -> list[int]:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for i in range(n):
                async with session.post(url, data=f"msg-{i}".encode(), ssl=ctx) as resp:
                    await resp.read()
                    statuses.append(resp.status)
            return statuses

    with TLSReceiver(ca, account_id=ACCOUNT) as rx:
        ctx = ca.client_ssl_context()
        assert asyncio.run(post_many(rx.url, ctx, 20)) == [200] * 20
        records = rx.wait_for_requests(20, timeout=1.0, method="POST")
        assert [r.body for r in records] == [f"msg-{i}".encode() for i in range(20)]
        assert records[0].headers["content-type"] == "application/octet-stream"

        rx.responder = lambda rec: (500, [("X-Test", "1")], "boom")
        assert asyncio.run(post_many(rx.url, ctx, 1)) == [500]
        rx.responder = slow
        assert asyncio.run(post_many(rx.url, ctx, 1)) == [429]
        assert len(rx.requests) == 22
        rx.clear()
        assert rx.requests == []
