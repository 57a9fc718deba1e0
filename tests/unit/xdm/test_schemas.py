"""Schema specs, and fidelity: every payload validates against the schema assembled from the official XDM."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from xdm_support import TENANT, Row

from airflow_provider_capillary.testing.xdm_registry import XDMDefinitions
from airflow_provider_capillary.xdm.mapping import Mapper, MappingOptions
from airflow_provider_capillary.xdm.schemas import schema_spec, tenant_field_group
from airflow_provider_capillary.xdm.validation import Validator

SYNTHETIC = Path(__file__).resolve().parents[2] / "benchmarks" / "synthetic.py"


def _synthetic() -> Any:
    """The benchmarks' synthetic extract generator (a script beside them, not a package module)."""
    spec = importlib.util.spec_from_file_location("synthetic", SYNTHETIC)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def undeclared(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths in a payload that the schema does not declare (AEP schemas list every field)."""
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if properties is not None and key in properties:
                found += undeclared(child, properties[key], f"{path}/{key}")
            elif isinstance(extra, dict):
                found += undeclared(child, extra, f"{path}/{key}")
            else:
                found.append(f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += undeclared(item, schema.get("items", {}), f"{path}/{index}")
    return found


def test_customer_schema_spec() -> None:
    spec = schema_spec("customer", "acmecorp")
    assert spec.class_id == "https://ns.adobe.com/xdm/context/profile"
    assert spec.field_group_ids == (
        "https://ns.adobe.com/xdm/context/profile-person-details",
        "https://ns.adobe.com/xdm/context/profile-personal-details",
        "https://ns.adobe.com/xdm/context/identitymap",
        "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details",
    )
    assert spec.title == "Capillary Loyalty Profiles"
    assert spec.identity_descriptor is not None
    descriptor = spec.identity_descriptor
    assert (descriptor.source_property, descriptor.namespace, descriptor.is_primary) == (
        "/_acmecorp/capillary/customerId",
        "CAPLOYALTY",
        True,
    )


@pytest.mark.parametrize("record_type", ["transaction", "loyalty_event"])
def test_event_schema_specs_mark_the_primary_identity_in_identity_map_only(record_type: str) -> None:
    spec = schema_spec(record_type, "_acmecorp", title="Custom title")
    assert spec.class_id == "https://ns.adobe.com/xdm/context/experienceevent"
    assert spec.identity_descriptor is None
    assert spec.title == "Custom title"
    assert "https://ns.adobe.com/xdm/context/experienceevent-loyalty-details" in spec.field_group_ids


def test_tenant_field_group_body_follows_the_registry_shape() -> None:
    body = tenant_field_group("loyalty_event", "acmecorp")
    assert body["meta:intendedToExtend"] == ["https://ns.adobe.com/xdm/context/experienceevent"]
    assert body["allOf"] == [{"$ref": "#/definitions/capillary"}]
    tenant = body["definitions"]["capillary"]["properties"]["_acmecorp"]
    assert "loyaltyEvent" in tenant["properties"]["capillary"]["properties"]
    titles = {tenant_field_group(name, "acmecorp")["title"] for name in ("customer", "transaction", "loyalty_event")}
    assert len(titles) == 3


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
def test_every_sample_payload_conforms_to_the_official_schema(
    record_type: str,
    sample_rows: dict[str, list[Row]],
    resolved_schemas: dict[str, dict[str, Any]],
    validators: dict[str, Validator],
) -> None:
    options = MappingOptions(tenant_id=TENANT, org_id="50001", default_currency="GBP", fallback_primary="Phone")
    mapper = Mapper(record_type, options)
    chunk = mapper.map_chunk(sample_rows[record_type])
    records = chunk.records + [record for batch in mapper.finish() for record in batch]
    assert records
    for record in records:
        assert validators[record_type].validate(record.entity) is None, record.row.line
        assert undeclared(record.entity, resolved_schemas[record_type]) == [], record.row.line


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
def test_hashed_payloads_conform_too(
    record_type: str, sample_rows: dict[str, list[Row]], validators: dict[str, Validator]
) -> None:
    options = MappingOptions(tenant_id=TENANT, org_id="50001", hash_identities=True)
    mapper = Mapper(record_type, options, validator=validators[record_type])
    mapper.map_chunk(sample_rows[record_type])
    list(mapper.finish())
    assert mapper.counts.records > 0
    assert mapper.counts.dead_letters == {"customer": 3, "transaction": 2, "loyalty_event": 4}[record_type]


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
def test_a_generated_corpus_conforms(
    record_type: str, resolved_schemas: dict[str, dict[str, Any]], validators: dict[str, Validator]
) -> None:
    rows = []
    for line, values in enumerate(_synthetic().generate_rows(record_type, 1500, seed=11), start=2):
        if record_type != "transaction":
            values = {key: (value or None) for key, value in values.items()}
        rows.append(Row(values, "generated", line))
    mapper = Mapper(record_type, MappingOptions(tenant_id=TENANT, org_id="50001"), validator=validators[record_type])
    chunk = mapper.map_chunk(rows)
    records = chunk.records + [record for batch in mapper.finish() for record in batch]
    assert mapper.counts.balanced
    assert {d.reason for d in chunk.dead_letters} <= {"invalid_datetime"}
    assert len(records) > 1400 if record_type != "customer" else len(records) > 1300
    for record in records[:300]:
        assert undeclared(record.entity, resolved_schemas[record_type]) == []


def test_a_deliberately_wrong_payload_fails(
    sample_rows: dict[str, list[Row]], validators: dict[str, Validator], resolved_schemas: dict[str, dict[str, Any]]
) -> None:
    entity = Mapper("transaction", MappingOptions(tenant_id=TENANT)).map_row(sample_rows["transaction"][0])
    validator = validators["transaction"]
    assert validator.validate(entity) is None
    wrong_type = copy.deepcopy(entity)
    wrong_type["commerce"]["order"]["priceTotal"] = "159.00"
    issue = validator.validate(wrong_type)
    assert issue is not None and issue.path == "/commerce/order/priceTotal"
    wrong_currency = copy.deepcopy(entity)
    wrong_currency["productListItems"][0]["currencyCode"] = "gbp"
    issue = validator.validate(wrong_currency)
    assert issue is not None and issue.path == "/productListItems/0/currencyCode"
    no_timestamp = copy.deepcopy(entity)
    del no_timestamp["timestamp"]
    assert validator.validate(no_timestamp) is not None
    bad_state = copy.deepcopy(entity)
    bad_state["identityMap"]["CAPLOYALTY"][0]["authenticatedState"] = "yes"
    assert validator.validate(bad_state) is not None
    unknown = copy.deepcopy(entity)
    unknown["loyalty"]["pointsEarned"] = 5
    assert undeclared(unknown, resolved_schemas["transaction"]) == ["/loyalty/pointsEarned"]


def test_schema_of_another_tenant_does_not_declare_our_fields(
    xdm_definitions: XDMDefinitions, sample_rows: dict[str, list[Row]]
) -> None:
    spec = schema_spec("loyalty_event", "othertenant")
    schema = xdm_definitions.resolve(spec.class_id, spec.field_group_ids, tenant_field_groups=[spec.tenant_field_group])
    entity = Mapper("loyalty_event", MappingOptions(tenant_id=TENANT)).map_row(sample_rows["loyalty_event"][0])
    assert "/_acmecorp" in undeclared(entity, schema)
