"""The Swagger 2.0 -> OpenAPI 3.0 converter used for Adobe's Schema Registry spec."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator

from tests.contract.openapi_specs import load_spec_document
from tests.contract.swagger2 import convert_schema, swagger2_to_openapi3

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.contract


def _swagger(**overrides: Any) -> dict[str, Any]:
    """A small Swagger 2.0 document using every construct the converter supports."""
    document: dict[str, Any] = {
        "swagger": "2.0",
        "info": {"title": "t", "version": "1"},
        "host": "platform.example",
        "basePath": "/data/x",
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "tags": [{"name": "Things"}],
        "parameters": {
            "token": {"name": "Authorization", "in": "header", "required": True, "type": "string"},
            "thingPayload": {"name": "body", "in": "body", "required": True, "schema": {"$ref": "#/definitions/thing"}},
        },
        "definitions": {
            "thing": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "x-nullable": True},
                    "$ref": {"type": "string"},
                    "parts": {"type": "array", "items": {"$ref": "#/definitions/part"}},
                },
                "example": {"$ref": "#/definitions/not-a-reference"},
            },
            "part": {
                "allOf": [{"$ref": "#/definitions/thing"}],
                "additionalProperties": {"$ref": "#/definitions/part"},
            },
        },
        "paths": {
            "/things/{ID}": {
                "parameters": [{"$ref": "#/parameters/token"}],
                "get": {
                    "operationId": "getThing",
                    "produces": ["application/vnd.thing+json"],
                    "parameters": [
                        {"name": "ID", "in": "path", "required": True, "type": "string"},
                        {"name": "limit", "in": "query", "required": False, "type": "number"},
                    ],
                    "responses": {
                        200: {"x-summary": "ok", "description": "the thing", "schema": {"$ref": "#/definitions/thing"}},
                        "404": {"description": "missing"},
                    },
                },
                "put": {
                    "operationId": "putThing",
                    "consumes": ["application/json", "application/merge+json"],
                    "parameters": [{"$ref": "#/parameters/thingPayload"}],
                    "responses": {"200": {"description": "ok"}},
                },
            }
        },
    }
    document.update(overrides)
    return document


def test_servers_parameters_body_and_responses_are_converted() -> None:
    converted = swagger2_to_openapi3(_swagger())

    assert converted["openapi"] == "3.0.3"
    assert converted["servers"] == [{"url": "https://platform.example/data/x"}]
    assert converted["tags"] == [{"name": "Things"}]
    assert converted["components"]["parameters"] == {
        "token": {"name": "Authorization", "in": "header", "required": True, "schema": {"type": "string"}}
    }
    item = converted["paths"]["/things/{ID}"]
    assert item["parameters"] == [{"$ref": "#/components/parameters/token"}]
    get = item["get"]
    assert get["parameters"] == [
        {"name": "ID", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "number"}},
    ]
    assert get["responses"]["200"] == {
        "x-summary": "ok",
        "description": "the thing",
        "content": {"application/vnd.thing+json": {"schema": {"$ref": "#/components/schemas/thing"}}},
    }
    assert get["responses"]["404"] == {"description": "missing"}
    put = item["put"]
    assert "parameters" not in put
    assert put["requestBody"] == {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/thing"}},
            "application/merge+json": {"schema": {"$ref": "#/components/schemas/thing"}},
        },
    }


def test_schemas_rewrite_references_only_in_schema_positions() -> None:
    schemas = swagger2_to_openapi3(_swagger())["components"]["schemas"]

    thing = schemas["thing"]
    assert thing["properties"]["parts"]["items"] == {"$ref": "#/components/schemas/part"}
    assert thing["properties"]["$ref"] == {"type": "string"}, "a property named $ref stays a property"
    assert thing["example"] == {"$ref": "#/definitions/not-a-reference"}, "examples are data, not schemas"
    assert thing["properties"]["name"] == {"type": "string", "nullable": True}
    assert schemas["part"] == {
        "allOf": [{"$ref": "#/components/schemas/thing"}],
        "additionalProperties": {"$ref": "#/components/schemas/part"},
    }


def test_the_input_document_is_not_modified() -> None:
    document = _swagger()
    before = copy.deepcopy(document)
    swagger2_to_openapi3(document)
    assert document == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(swagger="3.0"), "not a Swagger 2.0 document"),
        (lambda d: d.update(securityDefinitions={}), "unsupported top-level fields"),
        (
            lambda d: d["paths"]["/things/{ID}"]["get"]["parameters"].append(
                {"name": "f", "in": "formData", "type": "string"}
            ),
            "'in: formData' are not supported",
        ),
        (
            lambda d: d["paths"]["/things/{ID}"]["get"]["parameters"].append(
                {"name": "q", "in": "query", "type": "array", "items": {"type": "string"}, "collectionFormat": "csv"}
            ),
            "unsupported parameter fields ['collectionFormat']",
        ),
        (lambda d: d["definitions"]["thing"]["properties"].update(f={"type": "file"}), "'type: file'"),
        (
            lambda d: d["paths"]["/things/{ID}"]["put"]["parameters"].append(
                {"name": "other", "in": "body", "schema": {}}
            ),
            "more than one body parameter",
        ),
        (
            lambda d: d["definitions"]["part"]["allOf"].append({"$ref": "other.yaml#/x"}),
            "unsupported $ref 'other.yaml#/x'",
        ),
        (
            lambda d: d["paths"]["/things/{ID}"]["get"]["responses"]["404"].update(headers={}),
            "unsupported fields ['headers']",
        ),
        (
            lambda d: d["paths"]["/things/{ID}"]["get"].update(security=[]),
            "unsupported operation fields ['security']",
        ),
        (
            lambda d: d["paths"]["/things/{ID}"]["parameters"].append({"$ref": "#/parameters/thingPayload"}),
            "path-level body",
        ),
    ],
    ids=[
        "not-swagger-2",
        "security-definitions",
        "form-data",
        "collection-format",
        "file-type",
        "two-bodies",
        "external-ref",
        "response-headers",
        "operation-security",
        "path-level-body",
    ],
)
def test_unsupported_constructs_are_refused(change: Any, message: str) -> None:
    document = _swagger()
    change(document)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("$", r"\$")):
        swagger2_to_openapi3(document)


def test_convert_schema_passes_non_schema_values_through() -> None:
    assert convert_schema(True) is True
    assert convert_schema({"enum": [{"$ref": "#/definitions/x"}]}) == {"enum": [{"$ref": "#/definitions/x"}]}


def test_schema_registry_spec_converts_to_a_valid_openapi_3_document(spec_dir: Path) -> None:
    original = load_spec_document(spec_dir / "schema-registry.yaml")
    converted = swagger2_to_openapi3(original)

    errors = [f"{list(e.absolute_path)}: {e.message}" for e in OpenAPIV30SpecValidator(converted).iter_errors()]
    assert errors == []

    def operations(document: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {
            (path, method, operation["operationId"])
            for path, item in document["paths"].items()
            for method, operation in item.items()
            if method != "parameters"
        }

    assert operations(converted) == operations(original)
    assert converted["servers"] == [{"url": "https://platform.adobe.io/data/foundation/schemaregistry"}]
    create = converted["paths"]["/tenant/schemas"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/createSchema"
    }
    assert {"$ref": "#/components/parameters/x-api-key"} in create["parameters"]
