"""rest-json request routing and parsing, driven by botocore's model of a service.

The model says, per operation, the HTTP method, the URI template, where each input member lives (uri, query
string, header, body) and the success status. This module turns that into a router over the raw (still
percent-encoded) path, so ids containing ``/`` or ``:`` route correctly, and into ``Call`` objects the feature
handlers receive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from botocore.model import OperationModel, ServiceModel

from pointcast.aws import shapes
from pointcast.aws.errors import BadRequest


@dataclass(slots=True)
class Call:
    """One parsed API call: the operation, its located members, and its (validated) body."""

    service: str
    operation: str
    params: dict[str, Any]
    body: Any
    request_id: str
    access_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> Any:
        return self.params.get(name)


@dataclass(slots=True)
class Route:
    operation: OperationModel
    pattern: re.Pattern[str]
    labels: dict[str, str]  # regex group name -> member name
    fixed_query: dict[str, str]
    status: int


def _template_regex(template: str) -> tuple[re.Pattern[str], dict[str, str], dict[str, str]]:
    path, _, query = template.partition("?")
    fixed_query = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    labels: dict[str, str] = {}
    regex = "^"
    pos = 0
    for match in re.finditer(r"\{([^}]+)\}", path):
        regex += re.escape(path[pos : match.start()])
        label = match.group(1)
        greedy = label.endswith("+")
        label = label.rstrip("+")
        group = f"g{len(labels)}"
        labels[group] = label
        regex += f"(?P<{group}>.+)" if greedy else f"(?P<{group}>[^/]+)"
        pos = match.end()
    regex += re.escape(path[pos:]) + r"/?\Z"
    return re.compile(regex), labels, fixed_query


class RestJsonRouter:
    """Matches (method, raw path) to an operation of one service model and parses the call."""

    def __init__(self, model: ServiceModel, service: str) -> None:
        self.model = model
        self.service = service
        self._routes: dict[str, list[Route]] = {}
        for name in model.operation_names:
            op = model.operation_model(name)
            pattern, labels, fixed = _template_regex(op.http["requestUri"])
            route = Route(op, pattern, labels, fixed, int(op.http.get("responseCode", 200)))
            self._routes.setdefault(op.http["method"], []).append(route)
        for routes in self._routes.values():
            # Literal segments before labels: the most specific template wins.
            routes.sort(key=lambda r: (-len(r.fixed_query), r.pattern.pattern.count("[^/]"), -len(r.pattern.pattern)))

    def match(self, method: str, raw_path: str, query: dict[str, list[str]]) -> tuple[Route, dict[str, str]] | None:
        """The route and its uri labels (decoded) for a request, or None. Raises MethodNotAllowed-worthy info."""
        for route in self._routes.get(method, []):
            found = route.pattern.match(raw_path)
            if found and all(query.get(k) == [v] or (v == "" and k in query) for k, v in route.fixed_query.items()):
                labels = {route.labels[g]: unquote(v) for g, v in found.groupdict().items()}
                for name, value in labels.items():
                    refuse_nul(value, name)
                return route, labels
        return None

    def allowed_methods(self, raw_path: str) -> list[str]:
        return sorted(m for m, routes in self._routes.items() if any(r.pattern.match(raw_path) for r in routes))

    def parse(
        self,
        route: Route,
        labels: dict[str, str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        request_id: str,
    ) -> Call:
        """Collect every input member from its location and validate the payload against the model."""
        op = route.operation
        params: dict[str, Any] = {}
        payload: Any = None
        input_shape = op.input_shape
        if input_shape is not None:
            body_members: dict[str, Any] = {}
            payload_name = input_shape.serialization.get("payload")
            for name, member in input_shape.members.items():
                location = member.serialization.get("location")
                wire = member.serialization.get("name", name)
                if location == "uri":
                    params[name] = labels.get(wire)
                elif location == "querystring":
                    values = query.get(wire)
                    if values is not None:
                        for text in values:
                            refuse_nul(text, f"Query parameter {wire}")
                        params[name] = shapes.validate(
                            self.service, member.name, _coerce(member.type_name, values, wire), root=wire
                        )
                elif location == "header":
                    value = headers.get(wire.lower())
                    if value is not None:
                        params[name] = shapes.validate(self.service, member.name, value, root=wire)
                elif name != payload_name:
                    body_members[name] = member
            missing = [
                n for n in input_shape.required_members if n != payload_name and n in params and params[n] in (None, "")
            ]
            if missing:
                raise BadRequest(f"{missing[0]} is required")
            if payload_name:
                payload_shape = input_shape.members[payload_name]
                if payload_shape.type_name == "blob":
                    payload = body  # raw bytes (Lambda's Invoke payload); the handler judges them
                elif payload_shape.type_name == "structure" and body.strip():
                    payload = shapes.parse_json(self.service, payload_shape.name, body, root=payload_name)
                    if b"\\u0000" in body:  # JSON carries NUL only escaped; no store keeps it in text
                        refuse_nul(payload, "The request body")
                else:
                    payload = _decode(body, required=payload_name in input_shape.required_members) or {}
                    if payload_shape.type_name == "structure":
                        shapes.validate(self.service, payload_shape.name, payload, root=payload_name)
            elif body_members:
                payload = _decode(body, required=False) or {}
                for name in payload:
                    if name not in body_members:
                        raise BadRequest(f"{name} is not a member of {input_shape.name}")
                shapes.validate(self.service, input_shape.name, {**params, **payload}, root=input_shape.name)
        return Call(self.service, op.name, params, payload, request_id, headers=headers)


def _decode(body: bytes, *, required: bool) -> Any:
    if not body.strip():
        if required:
            raise BadRequest("The request body is required and was empty")
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"The request body must be a JSON object, not {type(value).__name__}")
    if b"\\u0000" in body:  # JSON can carry NUL only escaped; no store keeps it in text
        refuse_nul(value, "The request body")
    return value


def refuse_nul(value: Any, path: str) -> None:
    """Refuse strings with NUL anywhere in a decoded JSON value: no store keeps NUL in text."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"{path} contains the NUL character (\\u0000), which strings may not contain")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key, f"{path} key {key[:20]!r}")
            refuse_nul(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            refuse_nul(item, f"{path}[{index}]")


def _coerce(type_name: str, values: list[str], wire: str) -> Any:
    if type_name == "list":
        return values
    value = values[-1]
    if type_name in ("integer", "long"):
        try:
            return int(value)
        except ValueError:
            raise BadRequest(f"Query parameter {wire} must be an integer (got {value!r})") from None
    if type_name == "boolean":
        if value.lower() not in ("true", "false"):
            raise BadRequest(f"Query parameter {wire} must be true or false (got {value!r})")
        return value.lower() == "true"
    return value
