"""Request validation driven by botocore's service models.

Every structure in a model becomes a pydantic ``TypedDict`` validator (strict types, enums as ``Literal``,
required members required, unknown members refused), so a request body is checked against exactly the shape
botocore describes, and a failure names the member path and the rule it broke. The model's ``min`` and ``max`` hold
for numbers, strings and lists (botocore's client checks only ``min``), and an ``integer`` is AWS's 32-bit one, a
``long`` 64-bit. (Patterns are not checked: they are Java regular expressions.)
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, NotRequired, Required

import botocore.session
import orjson
from botocore.model import ServiceModel, Shape
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from pointcast.aws.errors import BadRequest

_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


@cache
def service_model(name: str) -> ServiceModel:
    """botocore's model for a service (``pinpoint``, ``lambda``, ...), loaded once."""
    return botocore.session.get_session().get_service_model(name)


class ShapeTypes:
    """Builds (and caches) Python types for one service model's shapes."""

    def __init__(self, model: ServiceModel) -> None:
        self._model = model
        self._types: dict[str, Any] = {}

    def type_for(self, shape: Shape) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return self._structure(shape)
        if kind == "list":
            return _bounded(list[self.type_for(shape.member)], shape, "length")  # type: ignore[misc]
        if kind == "map":
            return dict[str, self.type_for(shape.value)]  # type: ignore[misc]
        if kind == "string":
            enum = shape.metadata.get("enum")
            return Literal[tuple(enum)] if enum else _bounded(str, shape, "length")
        if kind in ("integer", "long"):
            bits = 31 if kind == "integer" else 63
            return _bounded(int, shape, "value", -(2**bits), 2**bits - 1)
        if kind in ("double", "float"):
            return _bounded(float, shape, "value")
        if kind == "boolean":
            return bool
        if kind in ("timestamp", "blob"):
            return str
        return Any

    def _structure(self, shape: Shape) -> Any:
        if shape.name in self._types:
            return self._types[shape.name]
        required = set(shape.required_members)
        fields = {
            name: (Required if name in required else NotRequired)[self.type_for(member)]
            for name, member in shape.members.items()
        }
        typed = TypedDict(shape.name, fields, total=False)  # type: ignore[misc, operator]
        typed.__pydantic_config__ = _CONFIG  # type: ignore[attr-defined]
        self._types[shape.name] = typed
        return typed


def _bounded(base: Any, shape: Shape, what: str, low: float | None = None, high: float | None = None) -> Any:
    """``base`` within the shape's ``min``/``max`` (and ``low``/``high``, the type's own range)."""
    least, most = shape.metadata.get("min"), shape.metadata.get("max")
    if least is not None:
        low = least if low is None else max(low, least)
    if most is not None:
        high = most if high is None else min(high, most)
    if low is None and high is None:
        return base
    if what == "length":
        return Annotated[base, Field(min_length=_int(low), max_length=_int(high))]
    return Annotated[base, Field(ge=low, le=high)]


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


@cache
def _adapter(service: str, shape_name: str) -> TypeAdapter[Any]:
    model = service_model(service)
    return TypeAdapter(ShapeTypes(model).type_for(model.shape_for(shape_name)))


def validate(service: str, shape_name: str, value: Any, *, root: str | None = None) -> dict[str, Any]:
    """Check ``value`` against a model shape; raise ``BadRequest`` naming the first broken member and rule."""
    try:
        _adapter(service, shape_name).validate_python(value)
    except ValidationError as exc:
        raise BadRequest(describe(exc, root or shape_name)) from None
    return value  # type: ignore[no-any-return]


def parse_json(service: str, shape_name: str, body: bytes, *, root: str) -> dict[str, Any]:
    """Parse and check a JSON body in one pass (no throw-away copy); the result is plain dicts and lists."""
    try:
        value: dict[str, Any] = _adapter(service, shape_name).validate_json(body)
    except ValidationError as exc:
        try:  # pydantic's parser is more lenient than RFC 8259 (NaN, Infinity); orjson is the judge
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequest(f"The request body is not valid JSON: {error}") from None
        if not isinstance(parsed, dict):
            raise BadRequest(f"The request body must be a JSON object, not {type(parsed).__name__}") from None
        raise BadRequest(describe(exc, root)) from None
    return value


def describe(exc: ValidationError, root: str) -> str:
    """Turn pydantic's errors into one message: ``Root.Member[2].Child: rule`` for up to three errors."""
    parts = []
    errors = exc.errors(include_url=False)
    for error in errors[:3]:
        path = root
        loc = list(error["loc"])
        # Literal/TypedDict errors carry pydantic's own tags in the loc; keep only the member names and indexes.
        for item in loc:
            if isinstance(item, int):
                path += f"[{item}]"
            elif item.startswith("literal[") or item.startswith("function-") or item in ("str", "int"):
                continue
            else:
                path += f".{item}"
        kind = error["type"]
        if kind == "missing":
            rule = "is required"
        elif kind == "extra_forbidden":
            rule = "is not a member of this shape"
        elif kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            rule = f"must be one of {expected} (got {error.get('input')!r})"
        else:
            rule = f"{error['msg'][0].lower()}{error['msg'][1:]} (got {_short(error.get('input'))})"
        parts.append(f"{path} {rule}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
