"""Convert the Swagger 2.0 constructs used by Adobe's Schema Registry spec to OpenAPI 3.0.

openapi-core validates OpenAPI 3 only, and ``schema-registry.yaml`` is the one Adobe spec still written in
Swagger 2.0. The converter handles exactly the constructs that file uses and refuses everything else with a
``ValueError`` naming the construct, so a future edit of the spec cannot be converted silently wrong:

* ``host`` + ``basePath`` (+ optional ``schemes``) -> ``servers``;
* ``definitions`` -> ``components/schemas`` (``$ref`` ``#/definitions/X`` -> ``#/components/schemas/X``);
* shared and inline ``path`` / ``header`` / ``query`` parameters -> OpenAPI 3 parameters with a ``schema``;
* ``body`` parameters (shared or inline) -> ``requestBody`` with one media type per ``consumes`` entry;
* responses with a ``schema`` -> ``content`` with one media type per ``produces`` entry.
"""

from __future__ import annotations

import copy
from typing import Any

_SCHEMA_FIELDS_OF_PARAMETER = frozenset(
    {"type", "format", "items", "enum", "default", "minimum", "maximum", "pattern", "minLength", "maxLength"}
)
_PARAMETER_FIELDS = frozenset({"name", "in", "description", "required"}) | _SCHEMA_FIELDS_OF_PARAMETER
_OPERATION_FIELDS_KEPT = frozenset({"tags", "summary", "description", "operationId", "deprecated"})
_OPERATION_FIELDS_CONVERTED = frozenset({"parameters", "responses", "consumes", "produces"})
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})
_RESPONSE_FIELDS = frozenset({"description", "schema"})
_TOP_LEVEL_FIELDS = frozenset(
    {"swagger", "info", "host", "basePath", "schemes", "tags", "consumes", "produces", "paths"}
    | {"parameters", "definitions"}
)


def _rewrite_ref(ref: str) -> str:
    """Point a Swagger 2.0 local reference at its OpenAPI 3 location.

    :param ref: the ``$ref`` value, e.g. ``#/definitions/createSchema``.
    """
    if ref.startswith("#/definitions/"):
        return "#/components/schemas/" + ref.removeprefix("#/definitions/")
    if ref.startswith("#/parameters/"):
        return "#/components/parameters/" + ref.removeprefix("#/parameters/")
    raise ValueError(f"unsupported $ref {ref!r}: only #/definitions/ and #/parameters/ are converted")


def convert_schema(schema: Any) -> Any:
    """Return a Schema Object with its references rewritten for OpenAPI 3.

    Only keyword positions that hold sub-schemas are walked (``properties`` values, ``items``,
    ``additionalProperties``, ``allOf``/``anyOf``/``oneOf``, ``not``); ``example``, ``enum`` and ``default``
    values are copied untouched, and a *property named* ``$ref`` stays a property. ``x-nullable`` becomes
    ``nullable``.

    :param schema: a Swagger 2.0 Schema Object (a dict; booleans and other values are returned as they are).
    """
    if not isinstance(schema, dict):
        return copy.deepcopy(schema)
    if schema.get("type") == "file":
        raise ValueError("Swagger 2.0 'type: file' schemas are not supported by this converter")
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            converted[key] = _rewrite_ref(value)
        elif key == "properties" and isinstance(value, dict):
            converted[key] = {name: convert_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            converted[key] = convert_schema(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            converted[key] = [convert_schema(sub) for sub in value]
        elif key == "x-nullable":
            converted["nullable"] = value
        else:
            converted[key] = copy.deepcopy(value)
    return converted


def _convert_parameter(parameter: dict[str, Any], where: str) -> dict[str, Any]:
    """Convert one non-body Swagger 2.0 parameter.

    :param parameter: the Swagger 2.0 Parameter Object (``in`` is ``path``, ``header`` or ``query``).
    :param where: a location used in error messages.
    """
    if parameter["in"] not in ("path", "header", "query"):
        raise ValueError(f"{where}: parameters 'in: {parameter['in']}' are not supported by this converter")
    unknown = set(parameter) - _PARAMETER_FIELDS
    if unknown:
        raise ValueError(f"{where}: unsupported parameter fields {sorted(unknown)}")
    converted: dict[str, Any] = {
        key: parameter[key] for key in ("name", "in", "description", "required") if key in parameter
    }
    converted["schema"] = convert_schema(
        {key: value for key, value in parameter.items() if key in _SCHEMA_FIELDS_OF_PARAMETER}
    )
    return converted


def _request_body(parameter: dict[str, Any], consumes: list[str]) -> dict[str, Any]:
    """Build an OpenAPI 3 ``requestBody`` from a Swagger 2.0 ``in: body`` parameter.

    :param parameter: the body parameter (``schema``, optional ``required`` and ``description``).
    :param consumes: the media types the operation accepts.
    """
    schema = convert_schema(parameter["schema"])
    body: dict[str, Any] = {"content": {media_type: {"schema": schema} for media_type in consumes}}
    if "description" in parameter:
        body["description"] = parameter["description"]
    if parameter.get("required"):
        body["required"] = True
    return body


def _convert_responses(responses: dict[str, Any], produces: list[str], where: str) -> dict[str, Any]:
    """Convert an operation's Responses Object.

    :param responses: Swagger 2.0 responses keyed by status code.
    :param produces: the media types the operation returns.
    :param where: a location used in error messages.
    """
    converted: dict[str, Any] = {}
    for status, response in responses.items():
        unknown = {key for key in response if not key.startswith("x-")} - _RESPONSE_FIELDS
        if unknown:
            raise ValueError(f"{where} response {status}: unsupported fields {sorted(unknown)}")
        result = {key: value for key, value in response.items() if key.startswith("x-")}
        result["description"] = response.get("description", "")
        if "schema" in response:
            schema = convert_schema(response["schema"])
            result["content"] = {media_type: {"schema": schema} for media_type in produces}
        converted[str(status)] = result
    return converted


def swagger2_to_openapi3(document: dict[str, Any]) -> dict[str, Any]:
    """Convert a Swagger 2.0 document (as used by ``schema-registry.yaml``) to an OpenAPI 3.0.3 document.

    :param document: the parsed Swagger 2.0 document; it is not modified.
    :raises ValueError: if the document is not Swagger 2.0 or uses a construct the converter does not handle.
    """
    if document.get("swagger") != "2.0":
        raise ValueError(f"not a Swagger 2.0 document (swagger: {document.get('swagger')!r})")
    unknown = {key for key in document if not key.startswith("x-")} - _TOP_LEVEL_FIELDS
    if unknown:
        raise ValueError(f"unsupported top-level fields {sorted(unknown)}")
    scheme = document.get("schemes", ["https"])[0]
    shared_parameters: dict[str, dict[str, Any]] = document.get("parameters", {})
    components: dict[str, Any] = {
        "schemas": {name: convert_schema(schema) for name, schema in document.get("definitions", {}).items()},
        "parameters": {
            name: _convert_parameter(parameter, f"#/parameters/{name}")
            for name, parameter in shared_parameters.items()
            if parameter["in"] != "body"
        },
    }
    global_consumes = document.get("consumes", ["application/json"])
    global_produces = document.get("produces", ["application/json"])

    def body_parameter(parameter: dict[str, Any]) -> dict[str, Any] | None:
        if "$ref" in parameter:
            name = parameter["$ref"].removeprefix("#/parameters/")
            if name not in shared_parameters:
                raise ValueError(f"unresolved parameter reference {parameter['$ref']!r}")
            parameter = shared_parameters[name]
        return parameter if parameter["in"] == "body" else None

    def convert_parameter_list(parameters: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        converted = []
        for parameter in parameters:
            if body_parameter(parameter) is not None:
                continue
            if "$ref" in parameter:
                converted.append({"$ref": _rewrite_ref(parameter["$ref"])})
            else:
                converted.append(_convert_parameter(parameter, where))
        return converted

    paths: dict[str, Any] = {}
    for path, item in document["paths"].items():
        path_parameters = item.get("parameters", [])
        if any(body_parameter(parameter) is not None for parameter in path_parameters):
            raise ValueError(f"{path}: path-level body parameters are not supported by this converter")
        new_item: dict[str, Any] = {}
        if path_parameters:
            new_item["parameters"] = convert_parameter_list(path_parameters, path)
        for method, operation in item.items():
            if method == "parameters":
                continue
            if method not in _HTTP_METHODS:
                raise ValueError(f"{path}: unsupported path item field {method!r}")
            where = f"{method.upper()} {path}"
            unknown = (
                {key for key in operation if not key.startswith("x-")}
                - _OPERATION_FIELDS_KEPT
                - _OPERATION_FIELDS_CONVERTED
            )
            if unknown:
                raise ValueError(f"{where}: unsupported operation fields {sorted(unknown)}")
            new_operation = {
                key: copy.deepcopy(value)
                for key, value in operation.items()
                if key in _OPERATION_FIELDS_KEPT or key.startswith("x-")
            }
            parameters = operation.get("parameters", [])
            bodies = [body for body in map(body_parameter, parameters) if body is not None]
            if len(bodies) > 1:
                raise ValueError(f"{where}: more than one body parameter")
            converted_parameters = convert_parameter_list(parameters, where)
            if converted_parameters:
                new_operation["parameters"] = converted_parameters
            if bodies:
                new_operation["requestBody"] = _request_body(bodies[0], operation.get("consumes", global_consumes))
            new_operation["responses"] = _convert_responses(
                operation["responses"], operation.get("produces", global_produces), where
            )
            new_item[method] = new_operation
        paths[path] = new_item

    converted_document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": copy.deepcopy(document["info"]),
        "servers": [{"url": f"{scheme}://{document['host']}{document.get('basePath', '')}"}],
        "paths": paths,
        "components": components,
    }
    if "tags" in document:
        converted_document["tags"] = copy.deepcopy(document["tags"])
    return converted_document
