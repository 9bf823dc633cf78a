"""Optional webhook signatures in the Standard Webhooks scheme, with a per-project secret.

When a project has a secret (``POST /pointcast/v1/apps/{app}/webhook-secret``), every webhook POST of its campaigns
carries ``webhook-id`` (the batch id, stable across retries), ``webhook-timestamp`` (seconds, per attempt) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``), so a receiver verifies it with the
``standardwebhooks`` library (or any Standard Webhooks implementation) and drops duplicates by id.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_headers(secret: str, message_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    signature = Webhook(secret).sign(message_id, moment, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.replace(tzinfo=UTC).timestamp())),
        "webhook-signature": signature,
    }
