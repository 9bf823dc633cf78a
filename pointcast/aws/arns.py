"""Amazon Resource Names for the resources pointcast serves."""

from __future__ import annotations

from dataclasses import dataclass

from pointcast.aws.errors import BadRequest


@dataclass(frozen=True, slots=True)
class PinpointArn:
    """``arn:aws:mobiletargeting:REGION:ACCOUNT:apps/APP[/KIND/ID]`` taken apart."""

    region: str
    account: str
    app_id: str
    kind: str | None = None  # "campaigns", "segments", "journeys", ...
    resource_id: str | None = None


def app_arn(region: str, account: str, app_id: str) -> str:
    return f"arn:aws:mobiletargeting:{region}:{account}:apps/{app_id}"


def child_arn(region: str, account: str, app_id: str, kind: str, resource_id: str) -> str:
    return f"{app_arn(region, account, app_id)}/{kind}/{resource_id}"


def parse_pinpoint_arn(arn: str) -> PinpointArn:
    """Parse a Pinpoint ARN; both ``apps/...`` and the older ``/apps/...`` resource forms are accepted."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "mobiletargeting":
        raise BadRequest(f"'{arn}' is not an Amazon Pinpoint ARN (arn:aws:mobiletargeting:REGION:ACCOUNT:apps/ID)")
    resource = parts[5].lstrip("/").split("/")
    if len(resource) not in (2, 4) or resource[0] != "apps" or not resource[1]:
        raise BadRequest(f"'{arn}' does not name an application or a resource inside one")
    if len(resource) == 4:
        return PinpointArn(parts[3], parts[4], resource[1], resource[2], resource[3])
    return PinpointArn(parts[3], parts[4], resource[1])
