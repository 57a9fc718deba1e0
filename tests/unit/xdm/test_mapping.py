from __future__ import annotations

import hashlib
import json
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdm_support import Row

from airflow_provider_capillary.extracts.records import ColumnarRows
from airflow_provider_capillary.xdm.identity import IdentityNamespaces
from airflow_provider_capillary.xdm.mapping import (
    DeadLetter,
    MappedChunk,
    MappedRecord,
    Mapper,
    MappingOptions,
)
from airflow_provider_capillary.xdm.record_types import get_record_type
from airflow_provider_capillary.xdm.record_types.base import (
    EXPERIENCE_EVENT_CLASS,
    Behavior,
    Column,
    ColumnType,
    RecordType,
    SchemaDefinition,
)
from airflow_provider_capillary.xdm.record_types.loyalty_event import EVENTS as LOYALTY_EVENTS
from airflow_provider_capillary.xdm.validation import Validator, compile_validator
from airflow_provider_capillary.xdm.values import FieldError, to_json_number

OPTIONS = MappingOptions(tenant_id="acmecorp", org_id="50001", default_currency="GBP")
PHONE_FALLBACK = MappingOptions(tenant_id="acmecorp", org_id="50001", default_currency="GBP", fallback_primary="Phone")


def run(
    record_type: str, rows: list[Row], options: MappingOptions = OPTIONS, validator: Validator | None = None
) -> tuple[list[MappedRecord], list[DeadLetter], Mapper]:
    mapper = Mapper(record_type, options, validator=validator)
    chunk = mapper.map_chunk(rows)
    records = chunk.records + [record for batch in mapper.finish() for record in batch]
    return records, chunk.dead_letters, mapper


def by_line(records: list[MappedRecord]) -> dict[int, dict[str, Any]]:
    return {record.row.line: record.entity for record in records}


# ------------------------------------------------------------------------------------------ expected counts


def test_customers_expected_counts(sample_rows: dict[str, list[Row]], validators: dict[str, Validator]) -> None:
    records, dead, mapper = run("customer", sample_rows["customer"], validator=validators["customer"])
    counts = mapper.counts
    assert (counts.rows, counts.records, counts.duplicates, counts.superseded, counts.dead_letters) == (
        22,
        17,
        1,
        1,
        3,
    )
    assert counts.pending == 0
    assert counts.balanced
    assert [(d.line, d.code) for d in dead] == [
        (10, "invalid_datetime:registered_on"),
        (17, "missing_primary_key:customer_id"),
        (19, "invalid_date:date_of_birth"),
    ]
    assert len({record.entity["_acmecorp"]["capillary"]["customerId"] for record in records}) == 17


def test_customer_later_version_wins_and_exact_duplicate_is_counted(sample_rows: dict[str, list[Row]]) -> None:
    records, _, _ = run("customer", sample_rows["customer"])
    lines = by_line(records)
    assert 3 not in lines  # superseded by line 21
    assert 20 not in lines  # exact duplicate of line 2
    jose = lines[21]
    assert jose["loyalty"]["tier"] == "Gold"
    assert jose["loyalty"]["points"] == 3640
    assert jose["_acmecorp"]["capillary"]["updatedAt"] == "2025-06-01T18:26:03Z"
    assert lines[2]["_acmecorp"]["capillary"]["customerId"] == "564100001"


def test_transactions_expected_counts(sample_rows: dict[str, list[Row]], validators: dict[str, Validator]) -> None:
    records, dead, mapper = run("transaction", sample_rows["transaction"], validator=validators["transaction"])
    counts = mapper.counts
    assert (counts.rows, counts.records, counts.duplicates, counts.superseded, counts.dead_letters) == (
        20,
        17,
        1,
        0,
        2,
    )
    assert counts.balanced
    assert [(d.line, d.code) for d in dead] == [(9, "no_identity:customer_id"), (10, "invalid_datetime:billing_time")]
    assert 6 not in by_line(records)


@pytest.mark.parametrize(
    ("options", "valid", "dead_codes"),
    [
        (
            OPTIONS,
            28,
            [
                (15, "missing_primary_key:customer_id"),
                (22, "negative_points_for_credit_event:points"),
                (25, "invalid_datetime:event_time"),
                (27, "unsupported_event_name:event_name"),
            ],
        ),
        (
            PHONE_FALLBACK,
            29,
            [
                (22, "negative_points_for_credit_event:points"),
                (25, "invalid_datetime:event_time"),
                (27, "unsupported_event_name:event_name"),
            ],
        ),
    ],
    ids=["no-fallback", "phone-fallback"],
)
def test_loyalty_events_expected_counts(
    sample_rows: dict[str, list[Row]],
    validators: dict[str, Validator],
    options: MappingOptions,
    valid: int,
    dead_codes: list[tuple[int, str]],
) -> None:
    records, dead, mapper = run("loyalty_event", sample_rows["loyalty_event"], options, validators["loyalty_event"])
    counts = mapper.counts
    assert (counts.rows, counts.records, counts.duplicates, counts.dead_letters) == (33, valid, 1, len(dead_codes))
    assert counts.balanced
    assert [(d.line, d.code) for d in dead] == dead_codes
    assert 34 not in by_line(records)


def test_dead_letters_keep_the_row_field_and_value(sample_rows: dict[str, list[Row]]) -> None:
    _, dead, _ = run("loyalty_event", sample_rows["loyalty_event"])
    letter = next(d for d in dead if d.line == 25)
    assert letter.file == "loyalty_events.csv"
    assert (letter.reason, letter.field, letter.value) == ("invalid_datetime", "event_time", "2025/06/01 25:61")
    assert letter.row["event_id"] == "a7cee5ac-5261-5b49-968e-cf6c9ed24071"
    assert letter.payload is None
    assert letter.detail


@pytest.mark.parametrize("size", [1, 3, 7])
def test_chunking_does_not_change_the_outcome(sample_rows: dict[str, list[Row]], size: int) -> None:
    for record_type, rows in sample_rows.items():
        whole_records, whole_dead, whole = run(record_type, rows)
        mapper = Mapper(record_type, OPTIONS)
        records: list[MappedRecord] = []
        dead: list[DeadLetter] = []
        for start in range(0, len(rows), size):
            chunk = mapper.map_chunk(rows[start : start + size])
            records += chunk.records
            dead += chunk.dead_letters
        records += [record for batch in mapper.finish() for record in batch]
        assert [r.body for r in records] == [r.body for r in whole_records]
        assert dead == whole_dead
        assert mapper.counts == whole.counts


def test_finish_releases_profiles_in_batches(sample_rows: dict[str, list[Row]]) -> None:
    mapper = Mapper("customer", OPTIONS, finish_chunk_size=5)
    chunk = mapper.map_chunk(sample_rows["customer"])
    assert chunk.records == []
    assert mapper.counts.pending == 17
    batches = list(mapper.finish())
    assert [len(batch) for batch in batches] == [5, 5, 5, 2]
    assert mapper.counts.pending == 0 and mapper.counts.records == 17
    released = batches[0][0]
    assert released.row.file == "customers.csv" and released.row.line == 2
    assert released.row.values["customer_id"] == "564100001"
    assert released.id == released.entity["_id"]
    with pytest.raises(RuntimeError):
        mapper.map_chunk([])
    assert list(mapper.finish()) == []


def test_time_series_types_hold_nothing(sample_rows: dict[str, list[Row]]) -> None:
    mapper = Mapper("transaction", OPTIONS)
    chunk = mapper.map_chunk(sample_rows["transaction"])
    assert len(chunk.records) == 17
    assert list(mapper.finish()) == []


# ------------------------------------------------------------------------------------------ field mapping


def test_customer_payload(sample_rows: dict[str, list[Row]]) -> None:
    lines = by_line(run("customer", sample_rows["customer"])[0])
    olivia = lines[2]
    assert olivia["identityMap"] == {
        "CAPLOYALTY": [{"id": "564100001", "authenticatedState": "authenticated", "primary": True}],
        "Email": [{"id": "olivia.bennett@example.com", "authenticatedState": "ambiguous", "primary": False}],
        "Phone": [{"id": "+447700900101", "authenticatedState": "ambiguous", "primary": False}],
    }
    assert olivia["loyalty"] == {
        "joinDate": "2021-03-14T10:22:05Z",
        "status": "active",
        "program": "Acme Rewards",
        "tier": "Gold",
        "nextTier": "Platinum",
        "tierExpiryDate": "2026-03-31T23:59:59Z",
        "points": 12850,
        "lifetimePoints": 16250,
        "pointsRedeemed": 3400,
        "expiredPoints": 0,
        "lifetimePurchases": 8420.5,
        "loyaltyID": ["564100001"],
        "cardsDetails": [{"number": "AC9000000001"}],
    }
    assert olivia["person"] == {
        "name": {"firstName": "Olivia", "lastName": "Bennett"},
        "gender": "female",
        "birthDate": "1988-04-12",
    }
    assert olivia["personalEmail"] == {"address": "olivia.bennett@example.com", "primary": True}
    assert olivia["mobilePhone"] == {"number": "+447700900101"}
    assert olivia["_acmecorp"]["capillary"]["tierNumber"] == 2
    assert olivia["_acmecorp"]["capillary"]["emailOptIn"] is True
    # no e-mail: no Email identity, no personalEmail
    priya = lines[6]
    assert set(priya["identityMap"]) == {"CAPLOYALTY", "Phone"}
    assert "personalEmail" not in priya
    # padded / spaced identities are normalised
    liam = lines[8]
    assert liam["identityMap"]["Email"][0]["id"] == "liam.walker@example.com"
    assert liam["mobilePhone"]["number"] == "+447700900107"
    # NON_LOYALTY: no tier or program
    hannah = lines[9]
    assert hannah["loyalty"]["status"] == "non_loyalty"
    assert not {"tier", "program", "nextTier"} & set(hannah["loyalty"])
    assert "birthDate" not in hannah["person"]


def test_unicode_and_quoted_values_round_trip(sample_rows: dict[str, list[Row]]) -> None:
    lines = by_line(run("customer", sample_rows["customer"])[0])
    assert lines[4]["person"]["name"] == {"firstName": "Zoë", "lastName": "Ångström"}
    assert lines[5]["person"]["name"] == {"firstName": "太郎", "lastName": "山田"}
    assert lines[7]["person"]["name"]["lastName"] == "O'Connor, Jr."
    records = run("customer", sample_rows["customer"])[0]
    body = next(r.body for r in records if r.row.line == 5)
    assert "山田".encode() in body


def test_transaction_payloads(sample_rows: dict[str, list[Row]]) -> None:
    lines = by_line(run("transaction", sample_rows["transaction"])[0])
    first = lines[1]
    assert first["eventType"] == "commerce.purchases"
    assert first["timestamp"] == "2025-06-01T09:32:05Z"
    assert first["commerce"]["purchases"] == {"value": 1}
    assert first["commerce"]["order"]["purchaseID"] == "LDN001-20250601-0001"
    assert first["productListItems"] == [
        {
            "SKU": "SKU-100235",
            "name": "LED Bath Light",
            "quantity": 1,
            "priceTotal": 159,
            "discountAmount": 0,
            "currencyCode": "GBP",
        }
    ]
    assert first["loyalty"]["pointsGained"] == [
        {"value": 159, "transactionId": "901200001", "loyaltyProgramId": "1001"}
    ]
    # bill-level discount, points redeemed and two payment modes
    order = lines[7]["commerce"]["order"]
    assert (order["priceTotal"], order["discountAmount"]) == (100, 20)
    assert order["payments"] == [
        {"paymentType": "points", "currencyCode": "GBP", "paymentAmount": 5},
        {"paymentType": "card", "currencyCode": "GBP", "paymentAmount": 95},
    ]
    assert lines[7]["loyalty"]["pointsRedemption"][0]["value"] == 500
    # numbers as strings are coerced; phone with spaces normalised
    eight = lines[8]
    assert eight["commerce"]["order"]["priceTotal"] == 19.98
    assert eight["productListItems"][0]["quantity"] == 2
    assert eight["identityMap"]["Phone"][0]["id"] == "+447700900107"
    # RETURN
    ret = lines[12]
    assert ret["eventType"] == "commerce.returns"
    assert ret["commerce"]["order"]["returns"] == {
        "returnID": "LDN001-20250601-0001-R1",
        "purchaseID": "LDN001-20250601-0001",
    }
    assert ret["_acmecorp"]["capillary"]["pointsEarned"] == -159
    assert "pointsGained" not in ret.get("loyalty", {})
    assert "purchases" not in ret["commerce"]
    # no line items
    assert "productListItems" not in lines[13]
    # missing currency → default; coupon
    fourteen = lines[14]
    assert fourteen["commerce"]["order"]["currencyCode"] == "GBP"
    assert fourteen["loyalty"]["couponRedemption"] == [{"id": "WELC10AB", "series": "353122"}]
    # +05:30 to UTC
    assert lines[15]["timestamp"] == "2025-06-01T09:40:00Z"
    assert lines[15]["_acmecorp"]["capillary"]["customFields"] == {"channel": "pos", "note": "till clock set to IST"}


def test_loyalty_event_payloads(sample_rows: dict[str, list[Row]]) -> None:
    lines = by_line(run("loyalty_event", sample_rows["loyalty_event"], PHONE_FALLBACK)[0])
    expired = lines[2]
    assert expired["eventType"] == "loyalty.pointsExpired"
    assert expired["timestamp"] == "2025-05-31T23:05:00Z"
    assert expired["_acmecorp"]["capillary"]["loyaltyEvent"]["points"] == -120
    assert "loyalty" not in expired
    redeemed = lines[12]
    assert redeemed["loyalty"] == {
        "pointsRedemption": [{"value": 2500, "loyaltyProgramId": "1001", "transactionId": "RDM-8HJ4T"}]
    }
    assert redeemed["_acmecorp"]["capillary"]["loyaltyEvent"]["points"] == -2500
    issued = lines[10]
    assert issued["eventType"] == "loyalty.pointsEarned"
    assert issued["loyalty"]["pointsGained"] == [
        {"value": 159, "loyaltyProgramId": "1001", "transactionId": "901200001"}
    ]
    assert lines[20]["timestamp"] == "2025-06-01T09:40:02Z"  # +05:30
    tier = lines[29]
    assert tier["eventType"] == "loyalty.tierUpgraded"
    event = tier["_acmecorp"]["capillary"]["loyaltyEvent"]
    assert (event["fromTier"], event["toTier"], event["tierExpiryDate"]) == ("Silver", "Gold", "2026-07-31T22:59:59Z")
    assert lines[30]["loyalty"] == {"couponRedemption": [{"id": "WELC10AB", "series": "353122"}]}
    assert lines[7]["eventType"] == "loyalty.rewardIssued"
    assert lines[5]["eventType"] == "loyalty.pointsExpiryReminder"
    assert lines[5]["_acmecorp"]["capillary"]["loyaltyEvent"]["pointsExpiryDate"] == "2025-06-30"
    # fractional points stay exact
    assert lines[32]["loyalty"]["pointsGained"][0]["value"] == 333.333
    assert lines[33]["_acmecorp"]["capillary"]["loyaltyEvent"]["balanceAfter"] == 1688.333
    assert b'"balanceAfter":1688.333' in orjson.dumps(lines[33])
    # phone-only row with the Phone fallback
    assert lines[15]["identityMap"] == {
        "Phone": [{"id": "+447700900120", "authenticatedState": "ambiguous", "primary": True}]
    }


# ------------------------------------------------------------------------------------------ ids and replays


def test_ids_are_deterministic_across_runs(sample_rows: dict[str, list[Row]]) -> None:
    for record_type, rows in sample_rows.items():
        first = [r.entity["_id"] for r in run(record_type, rows)[0]]
        second = [r.entity["_id"] for r in run(record_type, rows)[0]]
        assert first == second
        assert len(set(first)) == len(first)
    event_id = run("loyalty_event", sample_rows["loyalty_event"])[0][0].entity["_id"]
    assert event_id == hashlib.sha256(b"capillary|50001|loyalty_event|c51a30d2-849b-5ebf-8f2d-d595c1ce7147").hexdigest()
    txn_id = run("transaction", sample_rows["transaction"])[0][0].entity["_id"]
    assert txn_id == hashlib.sha256(b"capillary|50001|transaction|901200001-REGULAR").hexdigest()


def test_org_id_falls_back_to_the_row(sample_rows: dict[str, list[Row]]) -> None:
    records = run("transaction", sample_rows["transaction"], MappingOptions(tenant_id="acmecorp"))[0]
    assert records[0].entity["_id"] == hashlib.sha256(b"capillary|50001|transaction|901200001-REGULAR").hexdigest()


def test_same_id_with_different_content_is_a_conflict(sample_rows: dict[str, list[Row]]) -> None:
    original = sample_rows["loyalty_event"][9]
    changed = Row({**original.values, "points": "160"}, original.file, 99)
    records, dead, mapper = run("loyalty_event", [original, changed, original])
    assert len(records) == 1
    assert [(d.line, d.reason, d.field) for d in dead] == [(99, "duplicate_id_conflict", "_id")]
    assert dead[0].payload is not None
    assert mapper.counts.duplicates == 1


def test_profile_version_tie_keeps_the_later_row(sample_rows: dict[str, list[Row]]) -> None:
    row = sample_rows["customer"][0]
    same_time = Row({**row.values, "tier": "Platinum"}, row.file, 50)
    older = Row({**row.values, "updated_at": "2025-05-01T00:00:00Z"}, row.file, 51)
    records, _, mapper = run("customer", [row, same_time, older])
    assert [r.row.line for r in records] == [50]
    assert mapper.counts.superseded == 2


# ------------------------------------------------------------------------------------------ options


def test_hashed_identities(sample_rows: dict[str, list[Row]]) -> None:
    options = MappingOptions(tenant_id="acmecorp", org_id="50001", hash_identities=True)
    records = run("customer", sample_rows["customer"], options)[0]
    liam = by_line(records)[8]
    assert liam["identityMap"]["Email_LC_SHA256"] == [
        {
            "id": hashlib.sha256(b"liam.walker@example.com").hexdigest(),
            "authenticatedState": "ambiguous",
            "primary": False,
        }
    ]
    assert liam["identityMap"]["Phone_SHA256_E164"][0]["id"] == hashlib.sha256(b"+447700900107").hexdigest()
    assert "personalEmail" not in liam and "mobilePhone" not in liam
    for record in records:
        assert b"@example.com" not in record.body
        assert b"+4477" not in record.body


def test_custom_namespaces_and_email_fallback(sample_rows: dict[str, list[Row]]) -> None:
    options = MappingOptions(
        tenant_id="_acmecorp",
        fallback_primary="Email",
        identity_namespaces=IdentityNamespaces(customer="CRMID", email="EMAIL"),
    )
    row = sample_rows["loyalty_event"][0]
    no_id = Row({**row.values, "customer_id": None, "event_id": "other"}, row.file, row.line)
    records, dead, _ = run("loyalty_event", [row, no_id], options)
    assert not dead
    assert records[0].entity["identityMap"]["CRMID"][0]["primary"] is True
    assert records[1].entity["identityMap"]["EMAIL"][0]["primary"] is True
    phone_only = Row({**row.values, "customer_id": None, "email": None}, row.file, 5)
    _, dead, _ = run("loyalty_event", [phone_only], options)
    assert dead[0].code == "missing_primary_key:customer_id"


def test_customer_rows_never_use_the_fallback(sample_rows: dict[str, list[Row]]) -> None:
    _, dead, _ = run("customer", [sample_rows["customer"][15]], PHONE_FALLBACK)
    assert dead[0].code == "missing_primary_key:customer_id"


def test_naive_timestamps_with_a_configured_zone(sample_rows: dict[str, list[Row]]) -> None:
    row = sample_rows["transaction"][0]
    naive = Row({**row.values, "billing_time": "2025-06-01 10:32:05"}, row.file, row.line)
    _, dead, _ = run("transaction", [naive])
    assert dead[0].code == "invalid_datetime:billing_time"
    options = MappingOptions(tenant_id="acmecorp", timezone_for_naive="Europe/London")
    records, _, _ = run("transaction", [naive], options)
    assert records[0].entity["timestamp"] == "2025-06-01T09:32:05Z"


def test_extra_event_types(sample_rows: dict[str, list[Row]]) -> None:
    card = sample_rows["loyalty_event"][25]
    assert card.values["event_name"] == "cardUpdated"
    options = MappingOptions(tenant_id="acmecorp", extra_event_types={"cardUpdated": "loyalty.cardUpdated"})
    records, dead, _ = run("loyalty_event", [card], options)
    assert not dead
    assert records[0].entity["eventType"] == "loyalty.cardUpdated"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant_id": ""},
        {"tenant_id": "acme corp"},
        {"tenant_id": "acme", "fallback_primary": "ECID"},
        {"tenant_id": "acme", "default_currency": "pounds"},
        {"tenant_id": "acme", "timezone_for_naive": "Mars/Olympus"},
        {"tenant_id": "acme", "max_record_bytes": 0},
    ],
)
def test_invalid_options_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MappingOptions(**kwargs)


# ------------------------------------------------------------------------------------------ rules


def _event(sample_rows: dict[str, list[Row]], **changes: Any) -> Row:
    row = sample_rows["loyalty_event"][8]  # pointsIssued 159
    return Row({**row.values, **changes}, row.file, row.line)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"event_name": "pointsRedeemed"}, "positive_points_for_debit_event:points"),
        ({"event_name": "pointsExpiryReminder", "points": "0"}, "non_positive_points_for_expiry_reminder:points"),
        ({"points": None}, "missing_required_field:points"),
        ({"points": "1,5"}, "invalid_number:points"),
        ({"event_id": None}, "missing_required_field:event_id"),
        ({"event_id": "   "}, "missing_required_field:event_id"),
        ({"customer_id": "abc"}, "invalid_id:customer_id"),
        ({"email": "nobody"}, "invalid_email:email"),
        ({"mobile": "07700 900101"}, "invalid_phone:mobile"),
        ({"customer_id": None, "email": None, "mobile": None}, "no_identity:customer_id"),
        ({"points_expiry_date": "30/06/2026"}, "invalid_date:points_expiry_date"),
        ({"event_name": "CouponRedeem", "coupon_code": None}, "missing_required_field:coupon_code"),
    ],
)
def test_rule_violations(sample_rows: dict[str, list[Row]], changes: dict[str, Any], code: str) -> None:
    records, dead, _ = run("loyalty_event", [_event(sample_rows, **changes)])
    assert records == []
    assert [d.code for d in dead] == [code]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"type": "MIXED"}, "invalid_enum:type"),
        ({"line_items": [{"item_code": "X", "qty": "1.5"}]}, "invalid_integer:line_items[0].qty"),
        ({"line_items": [{"description": "no sku"}]}, "missing_required_field:line_items[0].item_code"),
        ({"line_items": "not json"}, "invalid_value:line_items"),
        ({"payment_modes": [5]}, "invalid_value:payment_modes[0]"),
        (
            {"payment_modes": [{"mode": "CARD", "value": 1}, {"mode": "CASH", "value": "x"}]},
            "invalid_number:payment_modes[1].value",
        ),
        (
            {"line_items": [{"item_code": "A"}, {"item_code": "B"}, {"item_code": True}]},
            "invalid_value:line_items[2].item_code",
        ),
        ({"coupons": [{"code": "C1"}, {"series_id": "9"}]}, "missing_required_field:coupons[1].code"),
        ({"currency": "POUND"}, "invalid_currency:currency"),
        ({"amount": None}, "missing_required_field:amount"),
        ({"transaction_id": -5}, "invalid_id:transaction_id"),
    ],
)
def test_transaction_rule_violations(sample_rows: dict[str, list[Row]], changes: dict[str, Any], code: str) -> None:
    row = sample_rows["transaction"][0]
    _, dead, _ = run("transaction", [Row({**row.values, **changes}, row.file, row.line)])
    assert [d.code for d in dead] == [code]


def test_json_text_arrays_in_csv_are_accepted(sample_rows: dict[str, list[Row]]) -> None:
    row = sample_rows["transaction"][0]
    values = {
        key: json.dumps(value) if isinstance(value, list | dict) else (None if value is None else str(value))
        for key, value in row.values.items()
    }
    records, dead, _ = run("transaction", [Row(values, "transactions.csv", 2)])
    assert not dead
    assert records[0].entity == run("transaction", [row])[0][0].entity


def test_schema_violation_and_size_limit(sample_rows: dict[str, list[Row]]) -> None:
    strict = compile_validator(
        {
            "type": "object",
            "properties": {
                "_acmecorp": {
                    "type": "object",
                    "properties": {
                        "capillary": {
                            "type": "object",
                            "properties": {
                                "loyaltyEvent": {"type": "object", "properties": {"points": {"type": "string"}}}
                            },
                        }
                    },
                }
            },
        }
    )
    row = _event(sample_rows)
    _, dead, _ = run("loyalty_event", [row], validator=strict)
    assert [(d.reason, d.field) for d in dead] == [("schema_violation", "/_acmecorp/capillary/loyaltyEvent/points")]
    assert dead[0].payload is not None and "string" in dead[0].detail
    small = MappingOptions(tenant_id="acmecorp", max_record_bytes=200)
    _, dead, _ = run("loyalty_event", [row], small)
    assert dead[0].reason == "record_too_large"
    assert dead[0].value > 200


def test_unexpected_failures_become_dead_letters() -> None:
    def explode(*_: Any) -> None:
        raise RuntimeError("boom")

    broken = RecordType(
        name="broken",
        behavior=Behavior.TIME_SERIES,
        columns=(
            Column("id", ColumnType.STRING, required=True),
            Column("at", ColumnType.DATETIME, required=True),
            Column("customer_id", ColumnType.ID),
            Column("email", ColumnType.EMAIL),
            Column("mobile", ColumnType.PHONE),
        ),
        natural_key=lambda parsed: parsed["id"],
        build=explode,
        schema=SchemaDefinition("Broken", EXPERIENCE_EVENT_CLASS, (), {}),
        timestamp_column="at",
    )
    mapper = Mapper(broken, OPTIONS)
    not_a_mapping: Any = ["x"]
    chunk = mapper.map_chunk(
        [Row({"id": "1", "at": "2025-06-01T00:00:00Z", "customer_id": "1"}, "f", 2), Row(not_a_mapping, "f", 3)]
    )
    assert [(d.line, d.reason) for d in chunk.dead_letters] == [(2, "mapping_error"), (3, "invalid_value")]
    assert "boom" in chunk.dead_letters[0].detail
    assert mapper.counts.balanced


def test_a_new_record_type_is_just_a_spec() -> None:
    def build(parsed: Any, raw: Any, entity: dict[str, Any], ctx: Any) -> None:
        entity["eventType"] = "loyalty.badgeEarned"

    badge = RecordType(
        name="badge",
        behavior=Behavior.TIME_SERIES,
        columns=(
            Column("badge_id", ColumnType.STRING, required=True, targets=("_tenant.capillary.badge.id",)),
            Column("earned_at", ColumnType.DATETIME, required=True),
            Column("customer_id", ColumnType.ID),
            Column("email", ColumnType.EMAIL),
            Column("mobile", ColumnType.PHONE),
        ),
        natural_key=lambda parsed: parsed["badge_id"],
        build=build,
        schema=SchemaDefinition("Badges", EXPERIENCE_EVENT_CLASS, (), {}),
        timestamp_column="earned_at",
    )
    mapper = Mapper(badge, OPTIONS)
    chunk = mapper.map_chunk(
        [Row({"badge_id": "B1", "earned_at": "2025-06-01T10:00:00+02:00", "customer_id": 7}, "f", 2)]
    )
    entity = chunk.records[0].entity
    assert entity["timestamp"] == "2025-06-01T08:00:00Z"
    assert entity["_acmecorp"] == {"capillary": {"badge": {"id": "B1"}}}
    assert entity["identityMap"]["CAPLOYALTY"][0]["id"] == "7"


def test_every_row_lands_in_exactly_one_bucket(sample_rows: dict[str, list[Row]]) -> None:
    for record_type, rows in sample_rows.items():
        records, dead, mapper = run(record_type, rows, PHONE_FALLBACK)
        lines = Counter([r.row.line for r in records] + [d.line for d in dead])
        assert all(count == 1 for count in lines.values())
        assert len(lines) + mapper.counts.duplicates + mapper.counts.superseded == len(rows)


# ------------------------------------------------------------------------------------------ properties

_VALID_BY_TYPE: dict[ColumnType, Any] = {
    ColumnType.STRING: st.text(min_size=1, max_size=12),
    ColumnType.ID: st.one_of(st.integers(min_value=0, max_value=10**12), st.from_regex(r"[0-9]{1,12}", fullmatch=True)),
    ColumnType.DATETIME: st.builds(
        lambda day, hour, offset: f"2025-06-{day:02d}T{hour:02d}:15:30{offset}",
        st.integers(1, 30),
        st.integers(0, 23),
        st.sampled_from(["Z", "+00:00", "+05:30", "-04:00", "+0100"]),
    ),
    ColumnType.DATE: st.dates().map(lambda d: d.isoformat()),
    ColumnType.DECIMAL: st.one_of(
        st.integers(-(10**6), 10**6),
        st.decimals(min_value=-(10**6), max_value=10**6, places=3).map("{:f}".format),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda number: round(number, 2)),
    ),
    ColumnType.INTEGER: st.integers(0, 100),
    ColumnType.BOOLEAN: st.sampled_from(["true", "false", True, False]),
    ColumnType.CURRENCY: st.sampled_from(["GBP", "usd", "EUR"]),
    ColumnType.EMAIL: st.sampled_from(["a@example.com", " B.C@Example.COM ", "x.y+z@mail.example.org"]),
    ColumnType.PHONE: st.sampled_from(["447700900101", "+44 7700 900107", "0044 7700 900108", "919740000000"]),
    ColumnType.ARRAY: st.just([]),
    ColumnType.OBJECT: st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers())),
}
_JUNK = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=8),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_SPECIAL: dict[str, Any] = {
    "event_name": st.sampled_from([*sorted(LOYALTY_EVENTS), "cardUpdated"]),
    "type": st.sampled_from(["REGULAR", "RETURN", "NOT_INTERESTED", "regular"]),
    "loyalty_type": st.sampled_from(["LOYALTY", "NON_LOYALTY"]),
    "gender": st.sampled_from(["M", "F", "O", "female"]),
    "line_items": st.lists(
        st.fixed_dictionaries(
            {
                "item_code": st.text(min_size=1, max_size=6),
                "qty": st.integers(1, 5),
                "amount": st.decimals(0, 999, places=2).map(float),
            },
            optional={"description": st.text(max_size=10), "discount": st.integers(0, 5)},
        ),
        max_size=3,
    ),
    "payment_modes": st.lists(
        st.fixed_dictionaries({"mode": st.sampled_from(["CARD", "CASH", "POINTS"]), "value": st.integers(0, 500)}),
        max_size=2,
    ),
    "coupons": st.lists(
        st.fixed_dictionaries({"code": st.text(min_size=1, max_size=6), "series_id": st.integers(1, 999)}), max_size=2
    ),
}


def _row_strategy(record_type: str) -> Any:
    """A plausible row (optional columns sometimes missing) with zero to two columns replaced by junk."""
    columns = get_record_type(record_type).columns
    fields = {}
    for column in columns:
        valid = _SPECIAL.get(column.name, _VALID_BY_TYPE[column.type])
        fields[column.name] = valid if column.required else st.one_of(valid, valid, st.none())
    names = [column.name for column in columns]

    @st.composite
    def messy(draw: Any) -> dict[str, Any]:
        row = draw(st.fixed_dictionaries(fields))
        for name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
            row[name] = draw(_JUNK)
        return row

    return messy()


#: The columns of each record type's natural key (the ``_id``, or the profile a version belongs to).
_KEY_COLUMNS = {"customer": ("customer_id",), "transaction": ("transaction_id", "type"), "loyalty_event": ("event_id",)}


def _draw_rows(data: st.DataObject, record_type: str, *, max_size: int, replays: int) -> list[Row]:
    """Messy generated rows (lines 2, 3, ...), then up to ``replays`` exact repeats of some of them and up to
    ``replays`` other rows given the natural key of one of them (same ``_id`` or profile, other content)."""
    values = data.draw(st.lists(_row_strategy(record_type), min_size=1, max_size=max_size))
    rows = [Row(v, "generated", line) for line, v in enumerate(values, start=2)]
    repeats = data.draw(st.lists(st.sampled_from(rows), max_size=replays))
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(rows), st.sampled_from(rows)), max_size=replays))
    line = len(rows) + len(repeats) + 2
    keyed = [
        Row({**other.values, **{name: row.values.get(name) for name in _KEY_COLUMNS[record_type]}}, "generated", at)
        for at, (row, other) in enumerate(pairs, start=line)
    ]
    return rows + data.draw(st.permutations([*repeats, *keyed]))


_KNOWN_REASONS = {
    "missing_required_field", "invalid_datetime", "invalid_date", "invalid_number", "invalid_integer",
    "invalid_boolean", "invalid_currency", "invalid_id", "invalid_enum", "invalid_value", "invalid_email",
    "invalid_phone", "missing_primary_key", "no_identity", "unsupported_event_name",
    "negative_points_for_credit_event", "positive_points_for_debit_event", "non_positive_points_for_expiry_reminder",
    "duplicate_id_conflict",
}  # fmt: skip


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mapping_never_raises_and_never_drops_a_row(
    record_type: str, data: st.DataObject, validators: dict[str, Validator]
) -> None:
    rows = _draw_rows(data, record_type, max_size=8, replays=3)
    mapper = Mapper(record_type, PHONE_FALLBACK, validator=validators[record_type])
    chunk = mapper.map_chunk(rows)
    records = chunk.records + [record for batch in mapper.finish() for record in batch]
    counts = mapper.counts
    assert counts.balanced and counts.pending == 0
    assert counts.rows == len(rows) == len(records) + len(chunk.dead_letters) + counts.duplicates + counts.superseded
    for letter in chunk.dead_letters:
        assert letter.reason in _KNOWN_REASONS, letter
        assert letter.detail
    for record in records:
        assert validators[record_type].validate(record.entity) is None
        assert record.id == record.entity["_id"]


def _mapped(mapper: Mapper, row: Row) -> bytes | str:
    try:
        return orjson.dumps(mapper.map_row(row))
    except FieldError as err:
        return f"{err.reason}:{err.field}"


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
def test_parse_memos_do_not_change_results(
    record_type: str, sample_rows: dict[str, list[Row]], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = sample_rows[record_type] * 3
    reference = Mapper(record_type, OPTIONS)
    expected = [_mapped(reference, row) for row in rows]
    monkeypatch.setattr("airflow_provider_capillary.xdm.mapping._MEMO_LIMIT", 3)
    mapper = Mapper(record_type, OPTIONS)
    for row, result in zip(rows, expected, strict=True):
        assert _mapped(mapper, row) == result
        mapper._seq += 1
    assert any(memo is None for memo in mapper._memos)  # some memo was dropped ...
    assert any(memo for memo in mapper._memos)  # ... and another one kept (repeated values)


_TRICKY = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "\t", " 42 ", "0042", "4\u00b2", "\u0661\u0662", "12a", " x ", "\u00a0", "-1", "+7"]),
    st.text(max_size=6),
    st.integers(min_value=-5, max_value=10**20),
    st.booleans(),
    st.floats(allow_nan=False),
)


def _outcome(parse: Any, raw: Any, name: str) -> Any:
    try:
        return ("value", parse(raw, name))
    except FieldError as err:
        return ("error", err.reason, err.field)


@settings(max_examples=300, deadline=None)
@given(customer_id=_TRICKY, event_id=_TRICKY, store_code=_TRICKY, program_id=_TRICKY)
def test_the_generated_column_parser_agrees_with_each_columns_parse_function(
    customer_id: Any, event_id: Any, store_code: Any, program_id: Any
) -> None:
    """The generated parser's inline fast paths (text, id columns) give what the column's parser gives."""
    mapper = Mapper("loyalty_event", OPTIONS)
    columns = {column.name: column for column in mapper._columns}
    values = {
        "event_name": "pointsIssued",
        "event_time": "2025-06-01T10:00:00Z",
        "customer_id": customer_id,
        "event_id": event_id,
        "store_code": store_code,
        "program_id": program_id,
    }
    expected: dict[str, Any] = {}
    failure = None
    for column in mapper._columns:  # the declared order: the first failing column is the one reported
        if column.name not in values or values[column.name] is None:
            if column.required and failure is None:
                failure = ("error", "missing_required_field", column.name)
            continue
        outcome = _outcome(columns[column.name].parse, values[column.name], column.name)
        if outcome[0] == "error" or outcome[1] is None:
            if failure is None and (outcome[0] == "error" or column.required):
                failure = outcome if outcome[0] == "error" else ("error", "missing_required_field", column.name)
            continue
        expected[column.name] = outcome[1]
    try:
        parsed, _ = mapper._parse_columns(values)
    except FieldError as err:
        assert failure == ("error", err.reason, err.field)
    else:
        assert failure is None
        assert parsed == expected


def test_custom_fields_become_a_string_map(sample_rows: dict[str, list[Row]]) -> None:
    row = sample_rows["transaction"][0]
    custom = {"channel": "pos", "n": 5, "flag": True, "nested": {"a": 1}, "none": None, "big": 2**70}
    records, dead, _ = run("transaction", [Row({**row.values, "custom_fields": custom}, row.file, row.line)])
    assert not dead
    assert records[0].entity["_acmecorp"]["capillary"]["customFields"] == {
        "channel": "pos",
        "n": "5",
        "flag": "true",
        "nested": '{"a":1}',
        "big": "1180591620717411303424",
    }


def test_dead_letters_are_json_serialisable(sample_rows: dict[str, list[Row]]) -> None:
    for record_type, rows in sample_rows.items():
        _, dead, _ = run(record_type, rows)
        for letter in dead:
            orjson.dumps(letter._asdict())
    _, dead, _ = run("loyalty_event", sample_rows["loyalty_event"])
    assert next(d for d in dead if d.line == 22).value == "-50"


def test_external_id_namespace_is_optional(sample_rows: dict[str, list[Row]], validators: dict[str, Validator]) -> None:
    row = sample_rows["transaction"][0]
    assert "CRMID" not in run("transaction", [row])[0][0].entity["identityMap"]
    options = MappingOptions(tenant_id="acmecorp", identity_namespaces=IdentityNamespaces(external="CRMID"))
    records, _, _ = run("transaction", [row], options, validators["transaction"])
    assert records[0].entity["identityMap"]["CRMID"] == [
        {"id": "ACME-0001", "authenticatedState": "authenticated", "primary": False}
    ]


def _fates(mapper: Mapper, chunks: list[list[Row]]) -> tuple[list[tuple[int, bytes]], list[tuple[int, str]], Any]:
    records: list[tuple[int, bytes]] = []
    dead: list[tuple[int, str]] = []
    for rows in chunks:
        chunk = mapper.map_chunk(rows)
        records += [(record.row.line, record.body) for record in chunk.records]
        dead += [(letter.line, letter.code) for letter in chunk.dead_letters]
    records += [(record.row.line, record.body) for batch in mapper.finish() for record in batch]
    return records, dead, mapper.counts


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
def test_results_do_not_depend_on_where_the_index_keeps_its_keys(
    record_type: str, sample_rows: dict[str, list[Row]], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # Replays far apart, and conflicting rows, must be recognised after the keys moved to the disk tier.
    rows = sample_rows[record_type]
    changed = [Row({**row.values, "store_code": "ELSEWHERE"}, row.file, row.line + 1000) for row in rows]
    chunks = [rows[:5], rows[5:], rows, changed, rows[::-1]]
    expected = _fates(Mapper(record_type, OPTIONS), chunks)
    assert expected[2].duplicates > 0 and expected[2].balanced
    if record_type != "customer":
        assert any(code == "duplicate_id_conflict:_id" for _, code in expected[1])
    else:
        assert expected[2].superseded > 0

    from airflow_provider_capillary.xdm import mapping
    from airflow_provider_capillary.xdm.dedupe import DigestIndex

    created: list[DigestIndex] = []

    def tiny_index(value_size: int, *, spill_dir: str | None = None) -> DigestIndex:
        created.append(DigestIndex(value_size, spill_dir=str(tmp_path), memory_keys=2))
        return created[-1]

    monkeypatch.setattr(mapping, "DigestIndex", tiny_index)
    mapper = Mapper(record_type, OPTIONS)
    chunk = mapper.map_chunk(rows)
    assert chunk.rows == len(rows) and created[0]._on_disk > 0
    mapper.close()
    assert _fates(Mapper(record_type, OPTIONS), chunks) == expected
    assert list(tmp_path.iterdir()) == []  # finish() deleted the index file


def test_the_collector_is_paused_per_chunk_and_restored(sample_rows: dict[str, list[Row]]) -> None:
    import gc

    states: list[bool] = []

    class Spy(dict):  # type: ignore[type-arg]
        def get(self, key: str, default: Any = None) -> Any:
            states.append(gc.isenabled())
            return super().get(key, default)

    rows = [Row(Spy(row.values), row.file, row.line) for row in sample_rows["loyalty_event"][:2]]
    assert gc.isenabled()
    Mapper("loyalty_event", OPTIONS).map_chunk(rows)
    assert states and not any(states)
    assert gc.isenabled()
    gc.disable()
    try:
        Mapper("loyalty_event", OPTIONS).map_chunk(rows)
        assert not gc.isenabled()  # a collector paused by the caller stays paused
    finally:
        gc.enable()
    with pytest.raises(AttributeError):
        Mapper("loyalty_event", OPTIONS).map_chunk([object()])  # type: ignore[list-item]
    assert gc.isenabled()


def test_finish_reads_its_batches_with_the_collector_paused(
    sample_rows: dict[str, list[Row]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import types

    from airflow_provider_capillary.xdm import mapping

    states: list[bool] = []

    def loads(data: bytes) -> Any:
        states.append(gc.isenabled())
        return orjson.loads(data)

    monkeypatch.setattr(mapping, "orjson", types.SimpleNamespace(dumps=orjson.dumps, loads=loads))
    mapper = Mapper("customer", OPTIONS, finish_chunk_size=2)
    mapper.map_chunk(sample_rows["customer"])
    batches = []
    for batch in mapper.finish():
        assert gc.isenabled()  # restored before each batch is handed out
        batches.append(batch)
    assert len(batches) > 1 and states and not any(states)
    assert mapper.counts.pending == 0 and mapper.counts.balanced


def _row_by_row(mapper: Mapper, rows: list[Row]) -> MappedChunk:
    """The reference the chunk-wise mapping must agree with: every row through the row path alone."""
    chunk = MappedChunk()
    for row in rows:
        chunk.rows += 1
        mapper._seq += 1
        mapper._map_one(row, chunk)
    return chunk


def _everything(mapper: Mapper, chunks: list[list[Row]], map_chunk: Any) -> Any:
    outcome = []
    for rows in chunks:
        chunk = map_chunk(mapper, rows)
        outcome.append(
            (
                [
                    (record.id, record.row.file, record.row.line, dict(record.row.values), record.body)
                    for record in chunk.records
                ],
                [letter._replace(row=dict(letter.row)) for letter in chunk.dead_letters],
                chunk.duplicates,
                chunk.superseded,
                chunk.rows,
            )
        )
    outcome.append([(record.row.line, record.body) for batch in mapper.finish() for record in batch])
    return outcome


_OPTION_VARIANTS = [
    OPTIONS,
    PHONE_FALLBACK,
    MappingOptions(tenant_id="acmecorp", hash_identities=True, fallback_primary="Email"),
    MappingOptions(
        tenant_id="_acme", timezone_for_naive="Europe/London", extra_event_types={"pointsTransferred": "loyalty.x"}
    ),
]


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_chunk_wise_mapping_agrees_with_row_by_row(
    record_type: str, data: st.DataObject, validators: dict[str, Validator]
) -> None:
    # Messy rows, replays and exact duplicates across chunks, every option that changes the mapping, and memos
    # small enough to be dropped and refilled: records, dead letters and counts are those of the row path.
    rows = _draw_rows(data, record_type, max_size=12, replays=4)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    chunks = [rows[start:end] for start, end in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    options = data.draw(st.sampled_from(_OPTION_VARIANTS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("airflow_provider_capillary.xdm.mapping._MEMO_LIMIT", data.draw(st.sampled_from([2, 4096])))
        patch.setattr("airflow_provider_capillary.xdm.mapping._SLICE_ROWS", data.draw(st.sampled_from([1, 3, 256])))
        expected = _everything(Mapper(record_type, options, validator=validators[record_type]), chunks, _row_by_row)
        mapper = Mapper(record_type, options, validator=validators[record_type])
        assert _everything(mapper, chunks, Mapper.map_chunk) == expected
    assert mapper.counts.balanced


def test_a_record_the_row_path_keeps_makes_later_rows_with_its_id_duplicates(
    sample_rows: dict[str, list[Row]], validators: dict[str, Validator]
) -> None:
    # A phone-only event is kept by the row path (fallback primary); a later row of the same event with its
    # customer_id, built column-wise in the same slice, conflicts with it, and a repeat of it is a duplicate.
    event = next(
        row for row in sample_rows["loyalty_event"] if Mapper("loyalty_event", OPTIONS).map_chunk([row]).records
    )
    phone_only = Row({**event.values, "customer_id": None}, "f", 2)
    rows = [phone_only, Row(dict(event.values), "f", 3), phone_only._replace(line=4)]
    validator = validators["loyalty_event"]
    expected = _everything(Mapper("loyalty_event", PHONE_FALLBACK, validator=validator), [rows], _row_by_row)
    records, dead_letters, duplicates = expected[0][:3]
    assert [record[2] for record in records] == [2]
    assert [(letter.line, letter.reason) for letter in dead_letters] == [(3, "duplicate_id_conflict")]
    assert duplicates == 1
    mapper = Mapper("loyalty_event", PHONE_FALLBACK, validator=validator)
    assert _everything(mapper, [rows], Mapper.map_chunk) == expected


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
def test_chunk_wise_mapping_of_the_samples_agrees_with_row_by_row(
    record_type: str, sample_rows: dict[str, list[Row]], validators: dict[str, Validator]
) -> None:
    rows = sample_rows[record_type]
    chunks = [rows, rows[::-1], rows[3:9]]
    expected = _everything(Mapper(record_type, OPTIONS, validator=validators[record_type]), chunks, _row_by_row)
    assert any(outcome[1] for outcome in expected[:-1])  # the samples' messy rows are dead letters ...
    assert any(outcome[2] for outcome in expected[:-1])  # ... and their replays duplicates
    assert _everything(Mapper(record_type, OPTIONS, validator=validators[record_type]), chunks, Mapper.map_chunk) == (
        expected
    )


_TRICKY_BY_TYPE = {
    ColumnType.DECIMAL: st.one_of(
        st.text(alphabet="0123456789.-+ ", max_size=17),
        st.from_regex(r"-?[0-9]{0,9}(\.[0-9]{0,7})?", fullmatch=True),
        st.sampled_from(["-0", "-0.0", "1.", ".5", "007", "123456789012.50", "99999999999.999", "999999999999999"]),
        _TRICKY,
    ),
    ColumnType.PHONE: st.one_of(
        st.text(alphabet="0123456789+ -\u0663", max_size=18),
        st.integers(min_value=-5, max_value=10**17),
        st.sampled_from(["1234567", "12345678", "123456789012345", "1234567890123456", "+12345678", "0044 7700 9"]),
    ),
    ColumnType.DATETIME: st.one_of(
        st.text(alphabet="0123456789-T:+Z ", max_size=26),
        st.sampled_from(
            [
                "2025-06-01T10:00:00Z",
                "2025-06-01 23:59:59-04:00",
                "2025-02-30T10:00:00Z",
                "2025-06-01T24:00:00Z",
                "2025-06-01T10:00:60Z",
                "2025-06-01T10:00:00+05:75",
                "2025-06-01T10:00:00z",
                " 2025-06-01T10:00:00Z",
                "2025-06-01T10:00:00.5Z",
                "2025-06-01T10:00:00",
            ]
        ),
    ),
}


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_chunk_wise_column_parse_agrees_with_each_columns_parse_function(
    record_type: str, data: st.DataObject
) -> None:
    """Every column's chunk-wise parse (inline fast paths, memos, dropped memos) gives the row parser's values."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("airflow_provider_capillary.xdm.mapping._MEMO_LIMIT", data.draw(st.sampled_from([1, 4096])))
        mapper = Mapper(record_type, MappingOptions(tenant_id="acmecorp", timezone_for_naive="Asia/Kolkata"))
        if data.draw(st.booleans()):  # memos dropped (mostly distinct values): the inline fast paths
            mapper._memos[:] = [None] * len(mapper._memos)
        for column in mapper._columns:
            strategy = _TRICKY_BY_TYPE.get(column.type, _TRICKY)  # type: ignore[arg-type]
            raw = data.draw(st.lists(strategy, max_size=6))
            raw += raw[:2]  # repeated values: memo hits
            bad = bytearray(len(raw))
            text = all(value is None or type(value) is str for value in raw)  # a CSV column's values
            values, payloads = mapper._parse_column(column, raw, bad, text and data.draw(st.booleans()))
            for index, value in enumerate(raw):
                outcome = None if value is None else _outcome(column.parse, value, column.name)
                if outcome is None or (outcome[0] == "value" and outcome[1] is None):
                    assert (values[index], payloads[index], bad[index]) == (None, None, column.required)
                elif outcome[0] == "error":
                    assert bad[index] == 1
                else:
                    assert (values[index], bad[index]) == (outcome[1], 0)
                    expected = to_json_number(outcome[1]) if isinstance(outcome[1], Decimal) else outcome[1]
                    assert payloads[index] == expected and type(payloads[index]) is type(expected)


def _as_text(values: dict[str, Any]) -> dict[str, str | None]:
    """Row values as a CSV reader gives them: text, or ``None`` for an empty field."""
    return {name: None if value is None else str(value) or None for name, value in values.items()}


def _columnar(rows: list[Row]) -> ColumnarRows:
    names = list(dict.fromkeys(name for row in rows for name in row.values))
    columns = {name: [row.values.get(name) for row in rows] for name in names}
    return ColumnarRows(rows[0].file, columns, [row.line for row in rows])


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_column_wise_chunks_map_like_their_rows(
    record_type: str, data: st.DataObject, validators: dict[str, Validator]
) -> None:
    # What the CSV reader's fast path hands over (ColumnarRows) maps exactly like the same rows one by one:
    # records (their rows read back lazily), dead letters with the row's values, counts.
    columns = [column.name for column in get_record_type(record_type).columns]
    rows = [
        Row(_as_text({name: row.values.get(name) for name in columns}), "part-0000.csv", line)
        for line, row in enumerate(_draw_rows(data, record_type, max_size=10, replays=3), start=2)
    ]
    options = data.draw(st.sampled_from(_OPTION_VARIANTS))
    expected = _everything(Mapper(record_type, options, validator=validators[record_type]), [rows], _row_by_row)
    mapper = Mapper(record_type, options, validator=validators[record_type])
    assert _everything(mapper, [_columnar(rows)], Mapper.map_chunk) == expected
    assert mapper.counts.balanced


def test_a_column_wise_chunk_reads_only_the_rows_it_must(sample_rows: dict[str, list[Row]]) -> None:
    rows = [row._replace(values=_as_text(row.values)) for row in sample_rows["loyalty_event"]]
    table = _columnar(rows)
    read: list[int] = []

    class Spy(ColumnarRows):
        def __getitem__(self, index: Any) -> Any:
            read.append(index)
            return super().__getitem__(index)

    chunk = Mapper("loyalty_event", OPTIONS).map_chunk(Spy(table.file, table.columns, table.lines))
    assert chunk.records and chunk.dead_letters
    assert len(set(read)) == len(chunk.dead_letters)  # the rows of dead letters, not those of records
    assert [record.row.values for record in chunk.records] == [
        row.values for row in rows if row.line in {record.row.line for record in chunk.records}
    ]
