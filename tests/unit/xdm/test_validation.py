from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_capillary.xdm.validation import (
    MAX_STREAMING_RECORD_BYTES,
    check_record_size,
    compile_validator,
)

SCHEMA: dict[str, Any] = {
    "$id": "https://ns.adobe.com/acmecorp/schemas/abc",
    "$schema": "http://json-schema.org/draft-06/schema#",
    "type": "object",
    "meta:class": "https://ns.adobe.com/xdm/context/experienceevent",
    "meta:altId": "_acmecorp.schemas.abc",
    "required": ["_id", "timestamp"],
    "properties": {
        "_id": {"type": "string", "meta:xdmField": "@id"},
        "timestamp": {"type": "string", "format": "date-time"},
        "person": {"type": "object", "properties": {"birthDate": {"type": "string", "format": "date"}}},
        "web": {"type": "object", "properties": {"url": {"type": "string", "format": "uri-reference"}}},
        "odd": {"type": "string", "format": "x-adobe-custom"},
        "identityMap": {
            "type": "object",
            "meta:xdmType": "map",
            "additionalProperties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "primary": {"type": "boolean"}},
                },
            },
        },
        "points": {"type": "number"},
    },
}

GOOD = {
    "_id": "1",
    "timestamp": "2025-06-01T09:40:00Z",
    "person": {"birthDate": "1988-04-12"},
    "odd": "anything",
    "identityMap": {"CAPLOYALTY": [{"id": "5", "primary": True}]},
    "points": 12.5,
}


def test_accepts_a_conforming_entity_of_an_aep_style_schema() -> None:
    assert compile_validator(SCHEMA).validate(GOOD) is None


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"points": "12.5"}, "/points"),
        ({"timestamp": "2025-06-01 09:40"}, "/timestamp"),
        ({"person": {"birthDate": "1988-02-30"}}, "/person/birthDate"),
        ({"identityMap": {"Email": [{"id": 5}]}}, "/identityMap/Email/0/id"),
        ({"_id": None}, "/_id"),
    ],
)
def test_reports_the_path_of_the_first_violation(change: dict[str, Any], path: str) -> None:
    issue = compile_validator(SCHEMA).validate({**GOOD, **change})
    assert issue is not None
    assert issue.path == path
    assert issue.message


def test_missing_required_field_is_reported_on_the_entity() -> None:
    entity = dict(GOOD)
    del entity["timestamp"]
    issue = compile_validator(SCHEMA).validate(entity)
    assert issue is not None and issue.path == "" and "timestamp" in issue.message


def test_compiled_validators_are_cached_by_content() -> None:
    first = compile_validator(SCHEMA)
    assert compile_validator(dict(SCHEMA)) is first
    assert compile_validator({**SCHEMA, "title": "other"}) is not first
    assert first.schema_id == SCHEMA["$id"]


def test_record_size() -> None:
    assert check_record_size(b"x" * 10) is None
    assert check_record_size(b"x" * MAX_STREAMING_RECORD_BYTES) is None
    message = check_record_size(b"x" * (MAX_STREAMING_RECORD_BYTES + 1))
    assert message is not None and "1000001" in message
    assert check_record_size(b"x" * 11, limit=10) is not None
