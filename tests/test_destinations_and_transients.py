"""Two small decisions, as functions: which hosts a campaign's progress watches (engine.views.destinations), and
which failures of a call to AWS Lambda may pass (functions.remote.is_transient)."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from pointcast.engine.views import destinations
from pointcast.functions.remote import is_transient

CHANNEL = {"DeliveryUri": "https://channel.example/hook", "EndpointTypes": ["CUSTOM"]}


def test_a_delivery_hook_counts_only_where_a_treatment_has_no_channel() -> None:
    hook = {"WebUrl": "https://hook.example/x", "Mode": "DELIVERY"}
    inherited = {
        "CustomDeliveryConfiguration": CHANNEL,
        "AdditionalTreatments": [{"Id": "1", "SizePercent": 10}],
        "Hook": hook,
    }
    assert destinations(inherited, {}) == {"https://channel.example:443/hook"}  # the campaign's channel
    built_in = {"MessageConfiguration": {"SMSMessage": {"Body": "x"}}}
    assert destinations(built_in, {"CampaignHook": hook}) == {"https://hook.example:443/x"}  # the project's hook
    filtering = {**inherited, "Hook": {**hook, "Mode": "FILTER"}}
    assert destinations(filtering, {}) == {"https://channel.example:443/hook", "https://hook.example:443/x"}


def test_only_throttles_outages_and_the_network_are_transient() -> None:
    def client_error(status: int, code: str) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetPolicy")

    assert is_transient(client_error(429, "TooManyRequestsException"))
    assert is_transient(client_error(503, "ServiceException"))
    assert is_transient(EndpointConnectionError(endpoint_url="https://lambda.example"))
    assert is_transient(ConnectTimeoutError(endpoint_url="https://lambda.example"))
    assert is_transient(ReadTimeoutError(endpoint_url="https://lambda.example"))
    assert not is_transient(client_error(404, "ResourceNotFoundException"))
    assert not is_transient(client_error(403, "AccessDeniedException"))
    assert not is_transient(NoCredentialsError())
    assert not is_transient(ParamValidationError(report="bad"))
