"""Record validation of the AEP emulator against the official XDM definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_provider_capillary.testing.aep_emulator.validation import (
    RecordInvalid,
    check,
    closed_schema,
    compile_validator,
)
from airflow_provider_capillary.testing.xdm_registry import (
    EXPERIENCE_EVENT_CLASS_ID,
    PROFILE_CLASS_ID,
    XDMDefinitions,
    to_compatibility_mode,
)

FIELD_GROUPS = {
    "fieldgroups/profile/profile-loyalty-details": "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details",
    "fieldgroups/profile/profile-personal-details": "https://ns.adobe.com/xdm/context/profile-personal-details",
    "fieldgroups/profile/profile-person-details": "https://ns.adobe.com/xdm/context/profile-person-details",
    "fieldgroups/experience-event/experienceevent-loyalty-details": (
        "https://ns.adobe.com/xdm/context/experienceevent-loyalty-details"
    ),
}


@pytest.fixture(scope="module")
def official(shared_dir: Path) -> XDMDefinitions:
    return XDMDefinitions.from_directory(shared_dir / "reference" / "xdm")


@pytest.mark.parametrize("relative", sorted(FIELD_GROUPS))
def test_adobe_examples_pass_closed_schema(official: XDMDefinitions, shared_dir: Path, relative: str) -> None:
    group = FIELD_GROUPS[relative]
    class_id = EXPERIENCE_EVENT_CLASS_ID if "experience-event" in relative else PROFILE_CLASS_ID
    validator = compile_validator(closed_schema(official.resolve(class_id, [group])))
    examples = sorted((shared_dir / "reference" / "xdm" / "components").glob(f"{relative}.example.*.json"))
    assert examples
    for path in examples:
        record: dict[str, Any] = to_compatibility_mode(orjson.loads(path.read_bytes()))
        record.update({"_id": "example", "timestamp": "2026-01-14T10:32:05Z"} if class_id != PROFILE_CLASS_ID else {})
        check(validator, record)
        with pytest.raises(RecordInvalid, match="extraneous key \\[unknownField\\]") as caught:
            check(validator, {**record, "unknownField": 1})
        assert caught.value.keyword == "additionalProperties"
        assert caught.value.pointer == "#"


def test_required_identity_path(official: XDMDefinitions) -> None:
    schema = official.resolve(PROFILE_CLASS_ID, [FIELD_GROUPS["fieldgroups/profile/profile-personal-details"]])
    validator = compile_validator(closed_schema(schema, [("personalEmail", "address")]))
    check(validator, {"personalEmail": {"address": "a@example.com"}})
    with pytest.raises(RecordInvalid, match="personalEmail") as caught:
        check(validator, {})
    assert caught.value.keyword == "required"
    with pytest.raises(RecordInvalid, match="address"):
        check(validator, {"personalEmail": {}})


def test_violation_report_shape(official: XDMDefinitions) -> None:
    schema = official.resolve(PROFILE_CLASS_ID, [FIELD_GROUPS["fieldgroups/profile/profile-loyalty-details"]])
    validator = compile_validator(closed_schema(schema))
    with pytest.raises(RecordInvalid) as caught:
        check(validator, {"loyalty": {"pointsExpiration": [{"pointsExpiring": "x"}]}})
    report = caught.value.report()
    (violation,) = report["causingExceptions"]
    assert violation["pointerToViolation"] == "#/loyalty/pointsExpiration/0/pointsExpiring"
    assert violation["schemaLocation"] == (
        "#/properties/loyalty/properties/pointsExpiration/items/properties/pointsExpiring/type"
    )
    assert violation["message"] == "expected type: Number, found: String"
