"""The APIs pointcast serves, each a botocore model plus the handlers for the operations it supports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pointcast.apps.handlers import HANDLERS as APPS
from pointcast.aws.restjson import Call, RestJsonRouter
from pointcast.aws.shapes import service_model
from pointcast.campaigns.handlers import HANDLERS as CAMPAIGNS
from pointcast.context import Context
from pointcast.endpoints.handlers import HANDLERS as ENDPOINTS
from pointcast.events.handlers import HANDLERS as EVENTS
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

    def owns(self, raw_path: str) -> bool:
        return raw_path.startswith(self.prefixes)


def _api(model: str, prefixes: tuple[str, ...], *handler_maps: Mapping[str, Handler]) -> Api:
    service = service_model(model)
    handlers: dict[str, Handler] = {}
    for mapping in handler_maps:
        handlers.update(mapping)
    unknown = set(handlers) - set(service.operation_names)
    if unknown:
        raise RuntimeError(f"handlers for operations the {model} model does not have: {sorted(unknown)}")
    return Api(model, service.signing_name, prefixes, handlers, RestJsonRouter(service, model))


def build_apis() -> list[Api]:
    return [_api("pinpoint", ("/v1/",), APPS, ENDPOINTS, SEGMENTS, CAMPAIGNS, EVENTS, TAGS, IMPORTS)]
