"""SigV4 verification: recompute the signature with botocore's own signer and compare.

The algorithm is botocore's (``SigV4Auth``); this module only rebuilds the request a client signed from what
arrived on the wire (method, raw path, raw query, the signed headers, the body) and checks the result.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from pointcast.aws.errors import Forbidden

_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<sig>[0-9a-f]{64})"
)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the verifier learned about a request it accepted."""

    access_key: str
    region: str
    service: str


class Screened(NamedTuple):
    """What ``SigV4Verifier.screen`` found in a request's headers: who signs, their secret (None: any credentials
    are allowed), the request's X-Amz-Date and its parsed Authorization header (None without one)."""

    signer: SignedRequest
    secret: str | None
    amz_date: str
    match: re.Match[str] | None


class SigV4Verifier:
    """Verifies AWS Signature Version 4 ``Authorization`` headers against a set of known key pairs."""

    def __init__(self, keys: Mapping[str, str], *, max_skew_seconds: int = 900, allow_any: bool = False) -> None:
        self._keys = dict(keys)
        self._max_skew = max_skew_seconds
        self._allow_any = allow_any

    def verify(
        self,
        method: str,
        raw_path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: datetime | None = None,
        screened: Screened | None = None,
    ) -> SignedRequest:
        """Return who signed the request, or raise ``Forbidden`` saying why it is refused. ``screened``: what
        ``screen`` found in these headers before the body was read (else the headers are screened here)."""
        signer, secret, amz_date, match = screened or self.screen(headers, now=now)
        if secret is None or match is None:
            return signer  # any credentials allowed
        content_sha = headers.get("x-amz-content-sha256")
        # Only S3 defines UNSIGNED-PAYLOAD; a Pinpoint or Lambda request signed that way could be replayed with
        # another body, and no client of these services sends it.
        if content_sha == "UNSIGNED-PAYLOAD":
            raise Forbidden("X-Amz-Content-SHA256 UNSIGNED-PAYLOAD is for S3 only: sign the request's body")
        if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
            raise Forbidden("X-Amz-Content-SHA256 does not match the request body")
        signed_names = match["signed"].split(";")
        missing = [name for name in signed_names if name not in headers]
        if missing:
            raise Forbidden(f"Signed header(s) missing from the request: {', '.join(missing)}")
        request = AWSRequest(
            method=method,
            url=f"http://{headers.get('host', 'localhost')}{raw_path}" + (f"?{query}" if query else ""),
            headers={name: headers[name] for name in signed_names},
            data=body,
        )
        request.context["timestamp"] = amz_date
        auth = SigV4Auth(Credentials(signer.access_key, secret), signer.service, signer.region)
        canonical = auth.canonical_request(request)
        expected = auth.signature(auth.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match["sig"]):
            raise Forbidden(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        return signer

    def screen(self, headers: Mapping[str, str], *, now: datetime | None = None) -> Screened:
        """What the headers alone tell, or ``Forbidden`` for what they alone refuse (no signature, an unknown key,
        a date out of the allowed skew), so that such a request is answered before its body is read: unsigned
        callers could otherwise make the server hold up to 70 MB each. ``verify`` takes the result on."""
        authorization = headers.get("authorization")
        if not authorization:
            if self._allow_any:
                return Screened(SignedRequest("anonymous", "", ""), None, "", None)
            raise Forbidden("Missing Authentication Token: the request is not signed with AWS Signature Version 4")
        match = _AUTH_RE.match(authorization.strip())
        if not match:
            raise Forbidden("Authorization header is not a valid AWS4-HMAC-SHA256 signature")
        signer = SignedRequest(match["akid"], match["region"], match["service"])
        if self._allow_any:
            return Screened(signer, None, "", match)
        secret = self._keys.get(signer.access_key)
        if secret is None:
            raise Forbidden(
                f"The security token included in the request is invalid: unknown access key '{signer.access_key}'"
            )
        amz_date = headers.get("x-amz-date")
        if not amz_date:
            raise Forbidden("Missing X-Amz-Date header")
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise Forbidden(f"X-Amz-Date '{amz_date}' is not in the form YYYYMMDDTHHMMSSZ") from None
        if match["date"] != amz_date[:8]:
            raise Forbidden("Credential scope date does not match X-Amz-Date")
        skew = abs(((now or datetime.now(UTC)) - signed_at).total_seconds())
        if skew > self._max_skew:
            raise Forbidden(
                f"Signature expired: X-Amz-Date {amz_date} is {int(skew)} s away from the server time "
                f"(at most {self._max_skew} s allowed)"
            )
        return Screened(signer, secret, amz_date, match)


def parse_credentials(text: str) -> dict[str, str]:
    """Parse ``AKID:SECRET,AKID2:SECRET2`` (the ``POINTCAST_CREDENTIALS`` form)."""
    keys: dict[str, str] = {}
    for pair in text.split(","):
        pair = pair.strip()
        if not pair:
            continue
        akid, sep, secret = pair.partition(":")
        if not sep or not akid or not secret:
            raise ValueError(f"credential pair {pair[:6]!r}... is not in the form AKID:SECRET")
        keys[akid] = secret
    return keys
