"""Signing raw requests the way botocore does, for tests that must send what boto3 never would."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.server import KEY_ID, REGION, SECRET


def signed_request(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    when: datetime | None = None,
    key: str = KEY_ID,
    secret: str = SECRET,
    service: str = "mobiletargeting",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one SigV4-signed request (optionally dated ``when``) with httpx and return the response."""
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
    moment = when or datetime.now(UTC)
    timestamp = moment.strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = timestamp
    request.headers["X-Amz-Date"] = timestamp
    request.headers["Host"] = httpx.URL(url).netloc.decode()
    auth = SigV4Auth(Credentials(key, secret), service, REGION)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    return httpx.request(method, url, content=body, headers=dict(request.headers.items()), timeout=10)
