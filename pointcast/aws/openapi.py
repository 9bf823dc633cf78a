"""An OpenAPI 3.1 description of the operations pointcast serves, generated from botocore's models.

The repository keeps a copy (docs/openapi.json); a test checks it matches what the server serves.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from botocore.model import Shape

from pointcast import __version__

if TYPE_CHECKING:
    from pointcast.api import Api

_SCALARS = {
    "integer": "integer",
    "long": "integer",
    "double": "number",
    "float": "number",
    "boolean": "boolean",
    "timestamp": "string",
    "blob": "string",
    "string": "string",
}


def _schema(shape: Shape, components: dict[str, Any]) -> dict[str, Any]:
    kind = shape.type_name
    if kind == "structure":
        if shape.name not in components:
            components[shape.name] = {}  # placeholder first: guards against cycles
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {name: _schema(member, components) for name, member in shape.members.items()},
                "additionalProperties": False,
            }
            if shape.required_members:
                schema["required"] = list(shape.required_members)
            components[shape.name] = schema
        return {"$ref": f"#/components/schemas/{shape.name}"}
    if kind == "list":
        return {"type": "array", "items": _schema(shape.member, components)}
    if kind == "map":
        return {"type": "object", "additionalProperties": _schema(shape.value, components)}
    schema = {"type": _SCALARS.get(kind, "string")}
    if shape.metadata.get("enum"):
        schema["enum"] = list(shape.metadata["enum"])
    return schema


def openapi_document(apis: list[Api]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for api in apis:
        model = api.router.model
        for name in sorted(api.handlers):
            op = model.operation_model(name)
            path = re.sub(r"\{([^}+]+)\+?\}", r"{\1}", op.http["requestUri"].split("?")[0])
            parameters = []
            body = None
            input_shape = op.input_shape
            payload_name = input_shape.serialization.get("payload") if input_shape else None
            for member_name, member in input_shape.members.items() if input_shape else []:
                location = member.serialization.get("location")
                if location in ("uri", "querystring", "header"):
                    parameters.append(
                        {
                            "name": member.serialization.get("name", member_name),
                            "in": {"uri": "path", "querystring": "query", "header": "header"}[location],
                            "required": location == "uri" or member_name in input_shape.required_members,
                            "schema": _schema(member, components),
                        }
                    )
                elif member_name == payload_name:
                    body = _schema(member, components)
            status = str(op.http.get("responseCode", 200))
            output = op.output_shape
            out_payload = output.serialization.get("payload") if output else None
            response: dict[str, Any] = {"description": "Success"}
            if out_payload:
                response["content"] = {"application/json": {"schema": _schema(output.members[out_payload], components)}}
            operation: dict[str, Any] = {
                "operationId": name,
                "tags": [api.model],
                "parameters": parameters,
                "responses": {status: response, "4XX": {"$ref": "#/components/responses/Error"}},
            }
            if body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                }
            paths.setdefault(path, {})[op.http["method"].lower()] = operation
    components["AwsError"] = {
        "type": "object",
        "properties": {"Message": {"type": "string"}, "RequestID": {"type": "string"}},
        "required": ["Message", "RequestID"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pointcast",
            "version": __version__,
            "description": "The Amazon Pinpoint REST API operations pointcast serves (AWS SigV4 signed).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {
                "Error": {
                    "description": "An AWS error envelope; the x-amzn-ErrorType header names the error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AwsError"}}},
                }
            },
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4",
                }
            },
        },
        "security": [{"sigv4": []}],
    }
