from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import fastjsonschema
import jsonschema
import orjson
import pytest

from airflow_provider_capillary.testing.xdm_registry import (
    EXPERIENCE_EVENT_CLASS_ID,
    PROFILE_CLASS_ID,
    XDMDefinitionError,
    XDMDefinitions,
    compatibility_name,
    flatten_fields,
    to_compatibility_mode,
)

if TYPE_CHECKING:
    from pathlib import Path

IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap"
DEMOGRAPHIC = "https://ns.adobe.com/xdm/context/profile-person-details"
PERSONAL_CONTACT = "https://ns.adobe.com/xdm/context/profile-personal-details"
LOYALTY = "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details"
COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
LOYALTY_EVENT = "https://ns.adobe.com/xdm/context/experienceevent-loyalty-details"
PROFILE_GROUPS = [DEMOGRAPHIC, PERSONAL_CONTACT, IDENTITY_MAP, LOYALTY]
EVENT_GROUPS = [COMMERCE, LOYALTY_EVENT]

#: Keywords that constrain data; the builtin subset must agree with the official definitions on each.
CONSTRAINTS = ("type", "format", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "const")

TENANT_GROUP: dict[str, Any] = {
    "$id": "https://ns.adobe.com/acmecorp/mixins/abc123",
    "type": "object",
    "title": "Capillary Loyalty Extension",
    "meta:intendedToExtend": [PROFILE_CLASS_ID],
    "definitions": {
        "capillary": {
            "properties": {
                "_acmecorp": {
                    "type": "object",
                    "properties": {
                        "capillary": {
                            "type": "object",
                            "properties": {
                                "customerId": {"type": "string"},
                                "tierExpiry": {"type": "string", "format": "date-time"},
                                "pointsBalance": {"type": "number"},
                            },
                        }
                    },
                }
            }
        }
    },
    "allOf": [{"$ref": "#/definitions/capillary"}],
}


@pytest.fixture(scope="module")
def xdm_root(shared_dir: Path) -> Path:
    return shared_dir / "reference" / "xdm"


@pytest.fixture(scope="module")
def official(xdm_root: Path) -> XDMDefinitions:
    return XDMDefinitions.from_directory(xdm_root)


@pytest.fixture(scope="module")
def profile_schema(official: XDMDefinitions) -> dict[str, Any]:
    return official.resolve(PROFILE_CLASS_ID, PROFILE_GROUPS)


@pytest.fixture(scope="module")
def event_schema(official: XDMDefinitions) -> dict[str, Any]:
    return official.resolve(EXPERIENCE_EVENT_CLASS_ID, EVENT_GROUPS)


def _examples(xdm_root: Path, relative: str) -> list[Path]:
    found = sorted((xdm_root / "components").glob(f"{relative}.example.*.json"))
    assert found, f"no Adobe examples for {relative}"
    return found


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("xdm:points", ("points",)),
        ("@id", ("_id",)),
        ("repo:createDate", ("_repo", "createDate")),
        ("schema:latitude", ("_schema", "latitude")),
        ("_acmecorp", ("_acmecorp",)),
        ("https://data.adobe.io/entities/namespace/4", ("https://data.adobe.io/entities/namespace/4",)),
        ("Email", ("Email",)),
    ],
)
def test_compatibility_name(name: str, expected: tuple[str, ...]) -> None:
    assert compatibility_name(name) == expected


def test_to_compatibility_mode_keeps_identity_map_keys() -> None:
    instance = {
        "@id": "x",
        "xdm:identityMap": {"Email": [{"xdm:id": "a@example.com", "xdm:primary": True}]},
        "repo:createDate": "2020-01-01T00:00:00Z",
    }
    assert to_compatibility_mode(instance) == {
        "_id": "x",
        "identityMap": {"Email": [{"id": "a@example.com", "primary": True}]},
        "_repo": {"createDate": "2020-01-01T00:00:00Z"},
    }


def test_lookups(official: XDMDefinitions) -> None:
    assert official.has(LOYALTY)
    assert not official.has("https://ns.adobe.com/xdm/context/nothing-here")
    assert official.title(LOYALTY) == "Loyalty Details"
    assert official.intended_to_extend(LOYALTY) == [PROFILE_CLASS_ID]
    assert official.is_class(PROFILE_CLASS_ID)
    assert not official.is_class(LOYALTY)
    with pytest.raises(XDMDefinitionError, match="unknown XDM resource"):
        official.title("https://ns.adobe.com/xdm/context/nothing-here")


def test_from_directory_rejects_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(XDMDefinitionError, match="does not exist"):
        XDMDefinitions.from_directory(tmp_path / "absent")
    with pytest.raises(XDMDefinitionError, match=r"no \*\.schema\.json"):
        XDMDefinitions.from_directory(tmp_path)


def test_profile_resolution_has_compatibility_mode_fields(profile_schema: dict[str, Any]) -> None:
    fields = flatten_fields(profile_schema)
    assert fields["loyalty.points"] == "number"
    assert fields["loyalty.loyaltyID[]"] == "string"
    assert fields["loyalty.joinDate"] == "string:date-time"
    assert fields["personalEmail.address"] == "string:email"
    assert fields["person.name.firstName"] == "string"
    assert fields["person.birthDate"] == "string:date"
    assert fields["_id"] == "string"
    assert fields["_repo.createDate"] == "string:date-time"
    assert fields["identityMap.*"] == "array"
    assert fields["identityMap.*[].id"] == "string"
    assert fields["identityMap.*[].authenticatedState"] == "string"
    assert fields["identityMap.*[].primary"] == "boolean"
    assert not any(":" in path.split(".")[-1] for path in fields if not path.startswith("identityMap.*"))
    assert profile_schema["properties"]["loyalty"]["meta:xdmField"] == "xdm:loyalty"
    assert profile_schema["properties"]["_id"]["meta:xdmField"] == "@id"


def test_event_resolution_has_class_fields(event_schema: dict[str, Any]) -> None:
    fields = flatten_fields(event_schema)
    assert fields["_id"] == "string"
    assert fields["timestamp"] == "string:date-time"
    assert fields["eventType"] == "string"
    assert fields["identityMap.*[].id"] == "string"
    assert fields["commerce.order.priceTotal"] == "number"
    assert fields["loyalty.pointsGained[].value"] == "number"
    assert event_schema["required"] == ["_id", "timestamp"]


def test_resolution_is_valid_draft07(profile_schema: dict[str, Any], event_schema: dict[str, Any]) -> None:
    for schema in (profile_schema, event_schema):
        jsonschema.Draft7Validator.check_schema(schema)
        assert "$ref" not in orjson.dumps(schema).decode()
        assert "allOf" not in orjson.dumps(schema).decode()


@pytest.mark.parametrize(
    ("relative", "schema_name"),
    [
        ("fieldgroups/profile/profile-loyalty-details", "profile_schema"),
        ("fieldgroups/profile/profile-personal-details", "profile_schema"),
        ("fieldgroups/profile/profile-person-details", "profile_schema"),
        ("classes/profile", "profile_schema"),
        ("fieldgroups/experience-event/experienceevent-commerce", "event_schema"),
        ("fieldgroups/experience-event/experienceevent-loyalty-details", "event_schema"),
        ("classes/experienceevent", "event_schema"),
    ],
)
def test_adobe_examples_validate(
    relative: str, schema_name: str, xdm_root: Path, request: pytest.FixtureRequest
) -> None:
    schema = request.getfixturevalue(schema_name)
    validate = fastjsonschema.compile(schema)
    checker = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    for path in _examples(xdm_root, relative):
        instance = to_compatibility_mode(orjson.loads(path.read_bytes()))
        if schema_name == "event_schema":
            # Field-group examples are fragments: add the class's required fields.
            instance.setdefault("_id", "example-1")
            instance.setdefault("timestamp", "2026-01-14T10:32:05Z")
        validate(instance)
        assert list(checker.iter_errors(instance)) == [], path.name


def test_identity_map_examples_validate(profile_schema: dict[str, Any], xdm_root: Path) -> None:
    validate = fastjsonschema.compile(profile_schema)
    for path in _examples(xdm_root, "fieldgroups/shared/identitymap"):
        # Adobe's identityMap examples are the map itself.
        instance = to_compatibility_mode({"xdm:identityMap": orjson.loads(path.read_bytes())})
        assert instance["identityMap"]
        validate(instance)


@pytest.mark.parametrize(
    "bad",
    [
        {"loyalty": {"points": "many"}},
        {"loyalty": {"loyaltyID": "L1"}},
        {"loyalty": {"joinDate": "yesterday"}},
        {"personalEmail": {"address": "not-an-email"}},
        {"identityMap": {"Email": [{"id": 5}]}},
        {"identityMap": {"Email": [{"id": "a", "authenticatedState": "maybe"}]}},
        {"person": {"gender": "unknown"}},
    ],
)
def test_wrong_types_fail(profile_schema: dict[str, Any], bad: dict[str, Any]) -> None:
    validate = fastjsonschema.compile(profile_schema)
    checker = jsonschema.Draft7Validator(profile_schema, format_checker=jsonschema.FormatChecker())
    assert list(checker.iter_errors(bad))
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate(bad)


def test_event_without_required_fields_fails(event_schema: dict[str, Any]) -> None:
    validate = fastjsonschema.compile(event_schema)
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="_id"):
        validate({"timestamp": "2026-01-14T10:32:05Z"})


def test_tenant_field_group_is_merged(official: XDMDefinitions) -> None:
    group = copy.deepcopy(TENANT_GROUP)
    schema = official.resolve(PROFILE_CLASS_ID, [LOYALTY, group["$id"]], tenant_field_groups=[group])
    fields = flatten_fields(schema)
    assert fields["_acmecorp.capillary.customerId"] == "string"
    assert fields["_acmecorp.capillary.tierExpiry"] == "string:date-time"
    assert fields["loyalty.points"] == "number"
    assert group == TENANT_GROUP
    anonymous = {key: value for key, value in group.items() if key != "$id"}
    schema = official.resolve(PROFILE_CLASS_ID, [], tenant_field_groups=[anonymous])
    assert flatten_fields(schema)["_acmecorp.capillary.pointsBalance"] == "number"


def test_unknown_field_group_is_an_error(official: XDMDefinitions) -> None:
    with pytest.raises(XDMDefinitionError, match="nothing-here"):
        official.resolve(PROFILE_CLASS_ID, ["https://ns.adobe.com/xdm/context/nothing-here"])


def _constraint_nodes(node: dict[str, Any], path: str, out: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out[path] = {key: node[key] for key in (*CONSTRAINTS, "required") if key in node}
    for name, sub in node.get("properties", {}).items():
        _constraint_nodes(sub, f"{path}.{name}" if path else name, out)
    if isinstance(node.get("items"), dict):
        _constraint_nodes(node["items"], path + "[]", out)
    if isinstance(node.get("additionalProperties"), dict):
        _constraint_nodes(node["additionalProperties"], path + ".{map values}", out)
    return out


@pytest.mark.parametrize(
    ("class_id", "groups"),
    [
        (PROFILE_CLASS_ID, []),
        *[(PROFILE_CLASS_ID, [group]) for group in PROFILE_GROUPS],
        (EXPERIENCE_EVENT_CLASS_ID, []),
        *[(EXPERIENCE_EVENT_CLASS_ID, [group]) for group in EVENT_GROUPS],
    ],
)
def test_builtin_subset_matches_official(official: XDMDefinitions, class_id: str, groups: list[str]) -> None:
    builtin = XDMDefinitions.builtin()
    ours = _constraint_nodes(builtin.resolve(class_id, groups), "", {})
    theirs = _constraint_nodes(official.resolve(class_id, groups), "", {})
    assert len(ours) > 1
    for path, constraints in ours.items():
        assert path in theirs, f"builtin field {path!r} is not in the official definitions"
        required = set(constraints.pop("required", []))
        assert required <= set(theirs[path].get("required", [])), path
        assert constraints == {k: v for k, v in theirs[path].items() if k != "required"}, path


def test_builtin_metadata() -> None:
    builtin = XDMDefinitions.builtin()
    for resource_id in (PROFILE_CLASS_ID, EXPERIENCE_EVENT_CLASS_ID, *PROFILE_GROUPS, *EVENT_GROUPS):
        assert builtin.has(resource_id)
    assert builtin.title(LOYALTY_EVENT) == "Loyalty Event Details"
    assert builtin.intended_to_extend(COMMERCE) == [EXPERIENCE_EVENT_CLASS_ID]
    assert builtin.is_class(EXPERIENCE_EVENT_CLASS_ID)
    assert not builtin.is_class(LOYALTY)
