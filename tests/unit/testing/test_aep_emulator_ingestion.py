"""The AEP emulator's ingestion paths over real sockets: DCS, landing in Catalog, Profile, Batch Ingestion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.client import EmulatorClient, StreamingTarget

PROFILE = "https://ns.adobe.com/xdm/context/profile"
EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
LOYALTY = "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details"
PERSONAL = "https://ns.adobe.com/xdm/context/profile-personal-details"
IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap"
COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
FIELDS = {
    "capillary": {
        "type": "object",
        "properties": {"customerId": {"type": "string"}, "pointsBalance": {"type": "number"}},
    }
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[AEPEmulator]:
    with AEPEmulator() as running:
        yield running


@pytest.fixture
def aep(emulator: AEPEmulator) -> EmulatorClient:
    emulator.reset()
    return EmulatorClient(emulator.url)


@pytest.fixture
def profiles(aep: EmulatorClient) -> StreamingTarget:
    """A Profile-enabled profile dataset with primary identity ``_acmecorp.capillary.customerId``."""
    group = aep.create_fieldgroup("Capillary", FIELDS, PROFILE)
    schema_id = str(aep.create_schema("Profiles", [PROFILE, LOYALTY, PERSONAL, IDENTITY_MAP, group])["$id"])
    aep.ok(
        "POST",
        "/data/core/idnamespace/identities",
        json={"name": "Cap", "code": "CAPLOYALTY", "idType": "Cross_device"},
    )
    aep.primary_identity(schema_id, "/_acmecorp/capillary/customerId", "CAPLOYALTY")
    aep.ok(
        "PATCH",
        f"/data/foundation/schemaregistry/tenant/schemas/{schema_id.replace(':', '%3A').replace('/', '%2F')}",
        json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
    )
    dataset_id = aep.create_dataset("profiles", schema_id, {"unifiedProfile": ["enabled:true"]})
    connection_id, inlet_url = aep.create_connection("profiles")
    flow_id = aep.create_flow(connection_id, dataset_id)
    return StreamingTarget(schema_id, dataset_id, connection_id, inlet_url, flow_id, aep.org_id)


@pytest.fixture
def events(aep: EmulatorClient) -> StreamingTarget:
    return aep.streaming_target("Events", [EVENT, COMMERCE])


def profile(number: int, **extra: Any) -> dict[str, Any]:
    return {
        "_id": f"profile-{number}",
        "_acmecorp": {"capillary": {"customerId": f"CUST-{number}"}},
        "loyalty": {"points": 100 * number, "tier": "gold"},
        **extra,
    }


def event(number: int) -> dict[str, Any]:
    return {
        "_id": f"txn-{number}",
        "timestamp": "2026-01-14T10:32:05Z",
        "eventType": "commerce.purchases",
        "identityMap": {"CAPLOYALTY": [{"id": "CUST-1", "primary": True}]},
        "commerce": {"purchases": {"value": 1}, "order": {"purchaseID": f"TXN-{number}", "priceTotal": 10.5}},
    }


def batches(aep: EmulatorClient, dataset_id: str, **params: Any) -> dict[str, Any]:
    return dict(aep.ok("GET", f"{CATALOG}/batches", params={"dataSet": dataset_id, **params}))


# -- DCS multi-message -------------------------------------------------------------------------------


def test_batch_mixed_messages_keep_order(aep: EmulatorClient, events: StreamingTarget, emulator: AEPEmulator) -> None:
    wrong_type = event(2)
    wrong_type["commerce"]["order"]["priceTotal"] = "ten"
    extra_field = {**event(4), "loyaltyPoints": 3}
    messages = [
        events.envelope(event(1)),
        events.envelope(wrong_type),
        events.envelope(event(3), imsOrgId="OTHER@AdobeOrg"),
        events.envelope(extra_field),
        {"header": {}},
        events.envelope({k: v for k, v in event(6).items() if k != "timestamp"}),
        events.envelope(event(7)),
        events.envelope(event(1)),
    ]
    response = aep.call("POST", events.batch_url, json={"messages": messages}, headers={})
    assert response.status_code == 207
    body = response.json()
    assert body["inletId"] == events.inlet_url.rsplit("/", 1)[-1]
    results = body["responses"]
    assert len(results) == len(messages)
    assert ["xactionId" in result for result in results] == [True, False, False, False, False, False, True, True]
    assert "#/commerce/order/priceTotal" in results[1]["message"]
    assert "expected type: Number, found: String" in results[1]["message"]
    assert "absent or wrong ims org" in results[2]["message"]
    assert "extraneous key [loyaltyPoints]" in results[3]["message"]
    assert "unknown xdm format" in results[4]["message"]
    assert "timestamp" in results[5]["message"]
    assert all(result["statusCode"] == 400 for result in results if "statusCode" in result)
    store = emulator.state.dataset_records(events.dataset_id)
    assert store.ids() == ["txn-1", "txn-7"]
    assert store.duplicates == 1
    assert store.received == 3
    assert emulator.state.accepted_ids(events.dataset_id) == ["txn-1", "txn-7"]


def test_envelope_errors(aep: EmulatorClient, events: StreamingTarget, profiles: StreamingTarget) -> None:
    other_ref = {"id": profiles.schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
    mismatched_meta = events.envelope(event(1))
    mismatched_meta["body"]["xdmMeta"]["schemaRef"] = other_ref
    cases = [
        (events.envelope(event(1), schemaRef=None), "schemaRef"),
        (events.envelope(event(1), datasetId="nope"), "unknown datasetId"),
        (events.envelope(event(1), flowId=None), "no flowId"),
        (events.envelope(event(1), flowId=profiles.flow_id), "not a dataflow of this inlet"),
        (events.envelope(event(1), schemaRef=other_ref), "xdmMeta.schemaRef"),
        (mismatched_meta, "xdmMeta.schemaRef"),
        (events.envelope(event(1), datasetId=profiles.dataset_id), "does not deliver"),
    ]
    response = aep.call("POST", events.batch_url, json={"messages": [case for case, _ in cases]}, headers={})
    results = response.json()["responses"]
    for (_, reason), result in zip(cases, results, strict=True):
        assert result["statusCode"] == 400
        assert reason in result["message"], result["message"]


def test_batch_over_one_megabyte_is_413(aep: EmulatorClient, events: StreamingTarget) -> None:
    message = events.envelope(event(1))
    size = len(orjson.dumps(message))
    body = orjson.dumps({"messages": [message] * (1_000_000 // size + 1)})
    assert len(body) > 1_000_000
    response = aep.call("POST", events.batch_url, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    smaller = orjson.dumps({"messages": [message] * ((1_000_000 - 100) // (size + 1))})
    assert (
        aep.call("POST", events.batch_url, data=smaller, headers={"Content-Type": "application/json"}).status_code
        == 207
    )


def test_not_a_messages_body(aep: EmulatorClient, events: StreamingTarget) -> None:
    assert aep.call("POST", events.batch_url, json=[1, 2], headers={}).status_code == 400
    assert (
        aep.call("POST", events.batch_url, data=b"{oops", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    unknown = events.batch_url.rsplit("/", 1)[0] + "/" + "0" * 64
    assert aep.call("POST", unknown, json={"messages": []}, headers={}).status_code == 404


def test_authenticated_inlet(aep: EmulatorClient) -> None:
    target = aep.streaming_target("Secure", [EVENT, COMMERCE], authenticated=True)
    payload = {"messages": [target.envelope(event(1))]}
    missing = aep.call("POST", target.batch_url, json=payload, headers={})
    assert missing.status_code == 401
    body = missing.json()
    assert body["status"] == "401"
    assert body["title"] == "Authorization"
    assert "Ims service token is empty" in body["report"]["message"]
    invalid = aep.call("POST", target.batch_url, json=payload, headers={"Authorization": "Bearer nope"})
    assert invalid.status_code == 401
    accepted = aep.call("POST", target.batch_url, json=payload, headers={"Authorization": f"Bearer {aep.token}"})
    assert accepted.status_code == 207
    assert "xactionId" in accepted.json()["responses"][0]


# -- DCS single message --------------------------------------------------------------------------------


def test_single_message(aep: EmulatorClient, events: StreamingTarget, emulator: AEPEmulator) -> None:
    response = aep.call("POST", events.inlet_url, json=events.envelope(event(1)), headers={})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"inletId", "xactionId", "receivedTimeMs"}
    assert body["syncValidation"] == {"skipped": True}
    assert emulator.state.accepted_ids(events.dataset_id) == ["txn-1"]
    envelope_error = aep.call("POST", events.inlet_url, json=events.envelope(event(2), imsOrgId=None), headers={})
    assert envelope_error.status_code == 400
    assert "ims org" in envelope_error.json()["report"]["message"]


def test_single_invalid_record_fails_asynchronously(
    aep: EmulatorClient, events: StreamingTarget, emulator: AEPEmulator
) -> None:
    invalid = {**event(9), "timestamp": 12}
    response = aep.call("POST", events.inlet_url, json=events.envelope(invalid), headers={})
    assert response.status_code == 200
    assert emulator.state.accepted_ids(events.dataset_id) == []
    found = batches(aep, events.dataset_id, status="failed")
    assert len(found) == 1
    failed = next(iter(found.values()))
    assert failed["failedRecordCount"] == 1
    assert "#/timestamp" in failed["errors"][0]["description"]


def test_sync_validation(aep: EmulatorClient, events: StreamingTarget) -> None:
    invalid = {**event(1), "_id": 5}
    response = aep.call(
        "POST", events.inlet_url, params={"syncValidation": "true"}, json=events.envelope(invalid), headers={}
    )
    assert response.status_code == 400
    report = response.json()["report"]
    violation = report["cause"]["_streamingValidation"][0]["causingExceptions"][0]
    assert violation["pointerToViolation"] == "#/_id"
    assert violation["keyword"] == "type"
    assert violation["message"] == "expected type: String, found: Long"
    valid = aep.call(
        "POST", events.inlet_url, params={"syncValidation": "true"}, json=events.envelope(event(2)), headers={}
    )
    assert valid.status_code == 200
    assert valid.json()["syncValidation"] == {"status": "pass"}


def test_sync_validation_rate_limit(aep: EmulatorClient, events: StreamingTarget) -> None:
    statuses = [
        aep.call(
            "POST", events.inlet_url, params={"syncValidation": "true"}, json=events.envelope(event(n)), headers={}
        ).status_code
        for n in range(61)
    ]
    assert statuses[:60] == [200] * 60
    assert statuses[60] == 429


# -- landing in Catalog --------------------------------------------------------------------------------


def test_streamed_records_land_in_catalog_batches(aep: EmulatorClient, events: StreamingTarget) -> None:
    aep.call("POST", events.batch_url, json={"messages": [events.envelope(event(n)) for n in range(5)]}, headers={})
    found = batches(aep, events.dataset_id)
    assert len(found) == 1
    batch_id, batch = next(iter(found.items()))
    assert batch["status"] == "success"
    assert batch["recordCount"] == 5
    assert batch["failedRecordCount"] == 0
    assert batch["errors"] == []
    assert aep.ok("GET", f"{CATALOG}/batches/{batch_id}")[batch_id]["recordCount"] == 5
    assert batches(aep, events.dataset_id, status="failed") == {}
    assert batches(aep, events.dataset_id, createdAfter=batch["created"]) == {}
    dataset = aep.ok("GET", f"{CATALOG}/dataSets/{events.dataset_id}")[events.dataset_id]
    assert dataset["lastBatchId"] == batch_id
    assert dataset["lastBatchStatus"] == "success"


def test_landing_delay() -> None:
    with AEPEmulator(landing_delay=2.0) as emulator:
        aep = EmulatorClient(emulator.url)
        target = aep.streaming_target("Delayed", [EVENT, COMMERCE])
        aep.call("POST", target.batch_url, json={"messages": [target.envelope(event(1))]}, headers={})
        assert batches(aep, target.dataset_id) == {}
        assert emulator.state.accepted_ids(target.dataset_id) == ["txn-1"]
        deadline = time.monotonic() + 10
        while not batches(aep, target.dataset_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [batch["recordCount"] for batch in batches(aep, target.dataset_id).values()] == [1]


# -- Profile access ----------------------------------------------------------------------------------


def test_profile_lookup_merges_fragments(aep: EmulatorClient, profiles: StreamingTarget) -> None:
    first = profile(1, personalEmail={"address": "jane@example.com"})
    second = {
        "_id": "profile-1-update",
        "_acmecorp": {"capillary": {"customerId": "CUST-1"}},
        "loyalty": {"points": 250},
        "identityMap": {"Email": [{"id": "jane@example.com"}]},
    }
    messages = [profiles.envelope(first), profiles.envelope(profile(2)), profiles.envelope(second)]
    results = aep.call("POST", profiles.batch_url, json={"messages": messages}, headers={}).json()["responses"]
    assert all("xactionId" in result for result in results)
    params = {"schema.name": "_xdm.context.profile", "entityId": "CUST-1", "entityIdNS": "CAPLOYALTY"}
    body = aep.ok("GET", "/data/core/ups/access/entities", params=params)
    (entity,) = body.values()
    merged = entity["entity"]
    assert merged["loyalty"] == {"points": 250, "tier": "gold"}
    assert merged["personalEmail"] == {"address": "jane@example.com"}
    assert entity["sources"] == [profiles.dataset_id]
    assert {"id": "jane@example.com", "namespace": {"code": "email"}, "primary": False} in merged["identities"]
    by_email = aep.ok(
        "GET",
        "/data/core/ups/access/entities",
        params={"schema.name": "_xdm.context.profile", "entityId": "jane@example.com", "entityIdNS": "Email"},
    )
    assert next(iter(by_email.values()))["entity"]["loyalty"]["points"] == 250
    missing = aep.call("GET", "/data/core/ups/access/entities", params={**params, "entityId": "CUST-404"})
    assert missing.status_code == 404


def test_profile_needs_profile_enabled_dataset(aep: EmulatorClient) -> None:
    group = aep.create_fieldgroup("Plain", FIELDS, PROFILE)
    target = aep.streaming_target("Not Enabled", [PROFILE, IDENTITY_MAP, group])
    entity = {"_id": "p1", "identityMap": {"Email": [{"id": "a@example.com"}]}}
    aep.call("POST", target.batch_url, json={"messages": [target.envelope(entity)]}, headers={})
    params = {"schema.name": "_xdm.context.profile", "entityId": "a@example.com", "entityIdNS": "Email"}
    assert aep.call("GET", "/data/core/ups/access/entities", params=params).status_code == 404


def test_primary_identity_becomes_required(aep: EmulatorClient, profiles: StreamingTarget) -> None:
    entity = {"_id": "no-identity", "loyalty": {"points": 1}}
    result = aep.call("POST", profiles.batch_url, json={"messages": [profiles.envelope(entity)]}, headers={}).json()
    assert result["responses"][0]["statusCode"] == 400
    assert "_acmecorp" in result["responses"][0]["message"]


# -- Batch Ingestion --------------------------------------------------------------------------------------


def _new_batch(aep: EmulatorClient, dataset_id: str) -> str:
    body = {"datasetId": dataset_id, "inputFormat": {"format": "json"}}
    created = aep.ok("POST", f"{IMPORT}/batches", 201, json=body)
    assert created["status"] == "loading"
    return str(created["id"])


def _octets(aep: EmulatorClient, **extra: str) -> dict[str, str]:
    return {**aep.headers(), "Content-Type": "application/octet-stream", **extra}


def test_batch_ingestion_happy_path(aep: EmulatorClient, events: StreamingTarget, emulator: AEPEmulator) -> None:
    batch_id = _new_batch(aep, events.dataset_id)
    assert aep.ok("GET", f"{CATALOG}/batches/{batch_id}")[batch_id]["status"] == "loading"
    lines = b"\n".join(orjson.dumps(event(n)) for n in range(3))
    path = f"{IMPORT}/batches/{batch_id}/datasets/{events.dataset_id}/files/part-0.json"
    assert aep.call("PUT", path, data=lines, headers=_octets(aep)).status_code == 200
    assert aep.call("PUT", path, data=lines, headers=_octets(aep)).status_code == 200
    json_upload = aep.call("PUT", path, data=lines, headers={**aep.headers(), "Content-Type": "application/json"})
    assert json_upload.status_code == 400
    assert aep.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"}).status_code == 200
    batch = aep.ok("GET", f"{CATALOG}/batches/{batch_id}")[batch_id]
    assert batch["status"] == "success"
    assert batch["recordCount"] == 3
    assert emulator.state.accepted_ids(events.dataset_id) == ["txn-0", "txn-1", "txn-2"]
    assert aep.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"}).status_code == 200
    late = aep.call("PUT", path, data=lines, headers=_octets(aep))
    assert late.status_code == 400


def test_batch_ingestion_chunked_upload(aep: EmulatorClient, events: StreamingTarget, emulator: AEPEmulator) -> None:
    batch_id = _new_batch(aep, events.dataset_id)
    data = b"\n".join(orjson.dumps(event(n)) for n in range(10))
    path = f"{IMPORT}/batches/{batch_id}/datasets/{events.dataset_id}/files/big.json"
    assert aep.call("POST", path, params={"action": "INITIALIZE"}).status_code == 201
    middle = len(data) // 2
    for start, chunk in ((middle, data[middle:]), (0, data[:middle])):
        header = f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"
        assert aep.call("PATCH", path, data=chunk, headers=_octets(aep, **{"Content-Range": header})).status_code == 200
    bad_range = aep.call("PATCH", path, data=b"xx", headers=_octets(aep, **{"Content-Range": "bytes 0-9"}))
    assert bad_range.status_code == 400
    assert aep.call("HEAD", path).headers["Content-Length"] == str(len(data))
    assert aep.call("POST", path, params={"action": "COMPLETE"}).status_code == 201
    assert aep.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"}).status_code == 200
    assert aep.ok("GET", f"{CATALOG}/batches/{batch_id}")[batch_id]["recordCount"] == 10
    assert len(emulator.state.accepted_ids(events.dataset_id)) == 10


def test_batch_ingestion_gap_is_detected(aep: EmulatorClient, events: StreamingTarget) -> None:
    batch_id = _new_batch(aep, events.dataset_id)
    path = f"{IMPORT}/batches/{batch_id}/datasets/{events.dataset_id}/files/gap.json"
    aep.call("POST", path, params={"action": "INITIALIZE"})
    aep.call("PATCH", path, data=b"abc", headers=_octets(aep, **{"Content-Range": "bytes 5-7"}))
    response = aep.call("POST", path, params={"action": "COMPLETE"})
    assert response.status_code == 400
    assert "gap" in response.json()["detail"]


def test_batch_ingestion_invalid_rows_fail_the_batch(
    aep: EmulatorClient, events: StreamingTarget, emulator: AEPEmulator
) -> None:
    batch_id = _new_batch(aep, events.dataset_id)
    rows = [orjson.dumps(event(1)), b"{not json", orjson.dumps({**event(3), "eventType": 7})]
    path = f"{IMPORT}/batches/{batch_id}/datasets/{events.dataset_id}/files/bad.json"
    aep.call("PUT", path, data=b"\n".join(rows), headers=_octets(aep))
    aep.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"})
    batch = aep.ok("GET", f"{CATALOG}/batches/{batch_id}")[batch_id]
    assert batch["status"] == "failed"
    assert batch["failedRecordCount"] == 2
    assert [error["rows"] for error in batch["errors"]] == [[2], [3]]
    assert "#/eventType" in batch["errors"][1]["description"]
    assert emulator.state.accepted_ids(events.dataset_id) == []


def test_batch_ingestion_request_errors(aep: EmulatorClient, events: StreamingTarget) -> None:
    unknown = aep.call("POST", f"{IMPORT}/batches", json={"datasetId": "nope", "inputFormat": {"format": "json"}})
    assert unknown.status_code == 400
    parquet = aep.call(
        "POST", f"{IMPORT}/batches", json={"datasetId": events.dataset_id, "inputFormat": {"format": "parquet"}}
    )
    assert parquet.status_code == 400
    batch_id = _new_batch(aep, events.dataset_id)
    other = aep.call(
        "PUT", f"{IMPORT}/batches/{batch_id}/datasets/other/files/a.json", data=b"{}", headers=_octets(aep)
    )
    assert other.status_code == 400
    assert aep.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "EXPLODE"}).status_code == 400
    assert aep.call("POST", f"{IMPORT}/batches/nope", params={"action": "COMPLETE"}).status_code == 404


def test_unknown_fields_can_be_allowed() -> None:
    with AEPEmulator(reject_unknown_fields=False) as emulator:
        aep = EmulatorClient(emulator.url)
        target = aep.streaming_target("Lenient", [EVENT, COMMERCE])
        messages = [target.envelope({**event(1), "notInSchema": 1}), target.envelope({**event(2), "timestamp": 5})]
        results = aep.call("POST", target.batch_url, json={"messages": messages}, headers={}).json()["responses"]
        assert "xactionId" in results[0]
        assert results[1]["statusCode"] == 400


def test_async_validation_lands_failed_records() -> None:
    with AEPEmulator(async_validation=True) as emulator:
        aep = EmulatorClient(emulator.url)
        target = aep.streaming_target("Async", [EVENT, COMMERCE])
        messages = [
            target.envelope(event(1)),
            target.envelope({**event(2), "timestamp": "yesterday"}),
            target.envelope(event(3), imsOrgId="OTHER@AdobeOrg"),
        ]
        results = aep.call("POST", target.batch_url, json={"messages": messages}, headers={}).json()["responses"]
        assert ["xactionId" in result for result in results] == [True, True, False]
        assert emulator.state.accepted_ids(target.dataset_id) == ["txn-1"]
        assert len(emulator.state.dataset_records(target.dataset_id).failed) == 1
        found = batches(aep, target.dataset_id)
        by_status = {batch["status"]: (batch_id, batch) for batch_id, batch in found.items()}
        assert by_status["success"][1]["recordCount"] == 1
        assert by_status["failed"][1]["failedRecordCount"] == 1
        assert "#/timestamp" in by_status["failed"][1]["errors"][0]["description"]
        last = aep.ok("GET", f"{CATALOG}/lastBatches", params={"dataSetId": target.dataset_id})[target.dataset_id]
        assert last["lastSuccessfulBatchId"] == by_status["success"][0]
        assert last["lastFailedBatchId"] == by_status["failed"][0]


def test_dataset_delete_and_runs(aep: EmulatorClient, events: StreamingTarget) -> None:
    assert aep.ok("GET", "/data/foundation/flowservice/runs", params={"property": f"flowId=={events.flow_id}"}) == {
        "items": [],
        "_links": {},
    }
    assert aep.ok("DELETE", f"{CATALOG}/dataSets/{events.dataset_id}") == [f"@/dataSets/{events.dataset_id}"]
    assert aep.call("GET", f"{CATALOG}/dataSets/{events.dataset_id}").status_code == 404
    result = aep.call("POST", events.batch_url, json={"messages": [events.envelope(event(1))]}, headers={}).json()
    assert "unknown datasetId" in result["responses"][0]["message"]
