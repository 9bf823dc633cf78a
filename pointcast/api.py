"""The APIs pointcast serves, each a botocore model plus the handlers for the operations it supports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pointcast.apps.handlers import HANDLERS as APPS
from pointcast.aws.errors import AwsError, BadRequest, PayloadTooLarge
from pointcast.aws.restjson import Call, RestJsonRouter
from pointcast.aws.shapes import service_model
from pointcast.campaigns.handlers import HANDLERS as CAMPAIGNS
from pointcast.context import Context
from pointcast.endpoints.handlers import HANDLERS as ENDPOINTS
from pointcast.events.handlers import HANDLERS as EVENTS
from pointcast.functions.errors import InvalidParameterValue, RequestTooLarge
from pointcast.functions.handlers import HANDLERS as LAMBDA
from pointcast.imports.handlers import HANDLERS as IMPORTS
from pointcast.segments.handlers import HANDLERS as SEGMENTS
from pointcast.tags.handlers import HANDLERS as TAGS

Handler = Callable[[Context, Call], Awaitable[Any]]


@dataclass(frozen=True)
class Api:
    """One AWS API: its botocore model name, signing name, path prefixes, router and handlers."""

    model: str
    signing_name: str
    prefixes: tuple[str, ...]
    handlers: dict[str, Handler]
    router: RestJsonRouter
    max_body: int = 8 * 1024 * 1024
    bad_request: type[AwsError] = BadRequest  # the model's own type for a malformed request
    too_large: type[AwsError] = PayloadTooLarge  # ... and for a body over ``max_body``
    typed_errors: bool = False  # error bodies carry ``Type`` (User or Service), as Lambda's do

    def owns(self, raw_path: str) -> bool:
        return raw_path.startswith(self.prefixes)


def _api(model: str, prefixes: tuple[str, ...], *handler_maps: Mapping[str, Handler], **options: Any) -> Api:
    service = service_model(model)
    handlers: dict[str, Handler] = {}
    for mapping in handler_maps:
        handlers.update(mapping)
    unknown = set(handlers) - set(service.operation_names)
    if unknown:
        raise RuntimeError(f"handlers for operations the {model} model does not have: {sorted(unknown)}")
    return Api(model, service.signing_name, prefixes, handlers, RestJsonRouter(service, model), **options)


def _prefixes(model: str) -> tuple[str, ...]:
    """The first path segments of every operation of a model (Lambda's are dates: ``/2015-03-31/``, ...)."""
    service = service_model(model)
    return tuple(
        sorted(
            {"/" + service.operation_model(op).http["requestUri"].split("/")[1] + "/" for op in service.operation_names}
        )
    )


def build_apis() -> list[Api]:
    return [
        _api("pinpoint", ("/v1/",), APPS, ENDPOINTS, SEGMENTS, CAMPAIGNS, EVENTS, TAGS, IMPORTS),
        # Lambda takes code in the request: a 50 MB zip is 67 MB in base64 (AWS's own limit is 70 MB).
        _api(
            "lambda",
            _prefixes("lambda"),
            LAMBDA,
            max_body=70 * 1024 * 1024,
            bad_request=InvalidParameterValue,
            too_large=RequestTooLarge,
            typed_errors=True,
        ),
    ]
