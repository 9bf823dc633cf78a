"""Checks Pinpoint applies to the webhook URL of a custom channel.

Pinpoint's contract for ``CustomDeliveryConfiguration.DeliveryUri``:

* The URL must begin with ``https://`` (lowercase scheme, as documented).
* It may contain only ASCII letters and digits plus ``- . _ ~ ? / # :`` and ``;``.
  The documentation lists "semicolon (:)": the character shown is a colon, which
  any URL with a port needs, while the name says semicolon. Both ``:`` and ``;``
  are accepted (recorded in docs/contract.md). A consequence of the documented
  set is that ``%`` (percent-encoding), ``@`` (user info), ``&``/``=`` (query
  pairs) and ``[``/``]`` (IPv6 literals) are all rejected.
* It must be a valid RFC 3986 URI with a non-empty host; at most 2048 characters.
* When a campaign uses the webhook, Pinpoint sends ``HEAD`` to the URL and the
  response must carry ``X-Amz-Pinpoint-AccountId`` equal to the account id.
  Any status below 500 is accepted with the right header; a 5xx is a failure.
  Redirects are not followed.
"""

from __future__ import annotations

import errno
import os
import ssl
import string

import aiohttp
import rfc3986
from rfc3986 import exceptions as rfc3986_exceptions
from rfc3986 import validators as rfc3986_validators

from pointcast.channels.webhook.curl import NO_ANSWER

__all__ = [
    "ACCOUNT_ID_HEADER",
    "MAX_URL_LENGTH",
    "WebhookCheckError",
    "check_webhook_head",
    "make_ssl_context",
    "validate_webhook_url",
]

ACCOUNT_ID_HEADER = "X-Amz-Pinpoint-AccountId"
MAX_URL_LENGTH = 2048
_PREFIX = "https://"
_ALLOWED_CHARS = frozenset(string.ascii_letters + string.digits + "-._~?/#:;")


class WebhookCheckError(ValueError):
    """A webhook URL failed one of Pinpoint's checks; the message says which."""

    def __init__(self, field: str, url: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.url = url


def _syntax_error(field: str, url: str, problem: str) -> WebhookCheckError:
    return WebhookCheckError(field, url, f"{field} {url!r} {problem}")


def _head_error(field: str, url: str, problem: str) -> WebhookCheckError:
    return WebhookCheckError(field, url, f"{field}: HEAD {url} {problem}")


def validate_webhook_url(url: str, field: str) -> None:
    """Check the syntax rules for a webhook URL; raise WebhookCheckError if one fails."""
    if not isinstance(url, str):
        raise WebhookCheckError(field, str(url), f"{field} must be a string, not {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        shown = url[:64] + "..."
        raise WebhookCheckError(
            field, url, f"{field} {shown!r} is {len(url)} characters long; the maximum is {MAX_URL_LENGTH}"
        )
    if not url.startswith(_PREFIX):
        raise _syntax_error(field, url, f"must begin with {_PREFIX}")
    for ch in url:
        if ch not in _ALLOWED_CHARS:
            raise _syntax_error(field, url, f"contains a character that is not allowed: {ch!r}")

    ref = rfc3986.uri_reference(url)
    validator = (
        rfc3986_validators.Validator()
        .require_presence_of("scheme", "host")
        .check_validity_of("scheme", "userinfo", "host", "port", "path", "query", "fragment")
    )
    try:
        validator.validate(ref)
    except rfc3986_exceptions.MissingComponentError:
        detail = "it has no host"
        if ref.authority:
            detail = f"the authority {ref.authority!r} is not a valid host[:port]"
        raise _syntax_error(field, url, f"is not a valid RFC 3986 URI: {detail}") from None
    except rfc3986_exceptions.InvalidComponentsError as exc:
        parts = ", ".join(sorted(exc.args[2])) if len(exc.args) > 2 else "a component"
        raise _syntax_error(field, url, f"is not a valid RFC 3986 URI: its {parts} is not valid") from None
    except rfc3986_exceptions.ValidationError as exc:
        raise _syntax_error(field, url, f"is not a valid RFC 3986 URI: {exc.args[0]}") from None
    if not ref.host:
        raise _syntax_error(field, url, "is not a valid RFC 3986 URI: it has no host")


def make_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Client TLS context: system trust, certifi's bundle if installed, plus ``ca_bundle``.

    ``ca_bundle`` (the project's POINTCAST_CA_BUNDLE) may be a PEM file or a
    directory of hashed certificates; a bundle that cannot be loaded raises ValueError.
    """
    ctx = ssl.create_default_context()
    try:
        import certifi
    except ImportError:
        pass
    else:
        ctx.load_verify_locations(cafile=certifi.where())
    if ca_bundle:
        try:
            if os.path.isdir(ca_bundle):
                ctx.load_verify_locations(capath=ca_bundle)
            else:
                ctx.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA bundle {ca_bundle!r}: {exc}") from exc
    return ctx


def _connector_reason(exc: aiohttp.ClientConnectorError) -> str:
    """Describe why a connection could not be made."""
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"the host name could not be resolved ({os_error.strerror or os_error})"
    if getattr(os_error, "errno", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "the host is unreachable"
    reason = getattr(os_error, "strerror", None) or str(os_error) or type(os_error).__name__
    return f"could not connect ({reason})"


def certificate_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    cert_error = exc.certificate_error
    detail = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None) or cert_error
    return f"TLS certificate verification failed ({detail})"


async def check_webhook_head(
    url: str,
    *,
    field: str,
    account_id: str,
    ssl_context: ssl.SSLContext,
    timeout: float = 5.0,
) -> None:
    """Send Pinpoint's HEAD check to ``url``; raise WebhookCheckError unless it passes.

    The URL's syntax is validated first. Redirects are not followed.
    """
    validate_webhook_url(url, field)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.head(url, allow_redirects=False, ssl=ssl_context) as response,
        ):
            status = response.status
            received = response.headers.get(ACCOUNT_ID_HEADER)
    except TimeoutError:
        # aiohttp's ServerTimeoutError/ConnectionTimeoutError are TimeoutError subclasses too.
        raise _head_error(field, url, f"timed out after {timeout} s") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise _head_error(field, url, f"failed: {certificate_reason(exc)}") from None
    except aiohttp.ClientConnectorSSLError as exc:
        detail = getattr(exc.os_error, "reason", None) or exc.os_error
        raise _head_error(field, url, f"failed: TLS handshake failed ({detail})") from None
    except aiohttp.ClientConnectorError as exc:
        raise _head_error(field, url, f"failed: {_connector_reason(exc)}") from None
    except aiohttp.ServerDisconnectedError:
        raise _head_error(field, url, f"failed: {NO_ANSWER}") from None
    except aiohttp.ClientResponseError as exc:
        raise _head_error(field, url, f"failed: the response was not valid HTTP ({exc.message})") from None
    except aiohttp.ClientError as exc:
        raise _head_error(field, url, f"failed: {exc or type(exc).__name__}") from None
    except (OSError, ssl.SSLError) as exc:
        raise _head_error(field, url, f"failed: {exc}") from None

    if status >= 500:
        raise _head_error(field, url, f"answered with status {status}, a server error")
    if received is None:
        hint = " (it was not followed)" if 300 <= status < 400 else ""
        raise _head_error(field, url, f"answered with status {status}{hint}, without the {ACCOUNT_ID_HEADER} header")
    expected = account_id.strip()
    if received.strip() != expected:
        raise _head_error(
            field,
            url,
            f"answered, but its {ACCOUNT_ID_HEADER} {received.strip()!r} does not match this account's id {expected!r}",
        )
