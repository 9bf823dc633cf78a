"""Deploying functions the way users do: a zip in memory, CreateFunction, AddPermission for Pinpoint."""

from __future__ import annotations

from typing import Any

from pointcast.functions.code import zip_files
from tests.support.server import ACCOUNT_ID, REGION

EVERY_APP = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/*"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/pointcast-test"
NOOP = "def handler(event, context):\n    return {'ok': True}\n"


def zip_code(files: dict[str, str]) -> bytes:
    return zip_files(files)


def deploy(
    lam: Any,
    name: str,
    code: str | dict[str, str] = NOOP,
    *,
    handler: str = "index.handler",
    runtime: str = "python3.12",
    allow: str | None = EVERY_APP,
    principal: str = f"pinpoint.{REGION}.amazonaws.com",
    **config: Any,
) -> dict[str, Any]:
    """Create a function (``code`` is index.py's text, or files by name) and, unless ``allow`` is None, let
    Pinpoint invoke it for source ARNs matching ``allow``."""
    files = {"index.js" if runtime.startswith("nodejs") else "index.py": code} if isinstance(code, str) else code
    created: dict[str, Any] = lam.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": zip_code(files)},
        **config,
    )
    if allow is not None:
        lam.add_permission(
            FunctionName=name,
            StatementId="pinpoint",
            Action="lambda:InvokeFunction",
            Principal=principal,
            SourceArn=allow,
        )
    return created


def ensure(lam: Any, name: str, code: str = NOOP) -> None:
    """Deploy ``name`` unless the (shared) server already has it."""
    try:
        lam.get_function(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        deploy(lam, name, code)


def function_campaign_request(segment_id: str, function: str) -> dict[str, Any]:
    """A CreateCampaign request for a custom channel to ``function`` (hosted here), starting long after any test."""
    return {
        "Name": "c",
        "SegmentId": segment_id,
        "Schedule": {"StartTime": "2099-01-01T00:00:00Z", "Frequency": "ONCE"},
        "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
        "CustomDeliveryConfiguration": {
            "DeliveryUri": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function}",
            "EndpointTypes": ["SMS"],
        },
    }
