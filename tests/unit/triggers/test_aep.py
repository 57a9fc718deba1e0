"""AEPIngestionTrigger against the AEP emulator over real sockets, and the landing rules it shares with the sensor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.module_loading import import_string

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.client import EmulatorClient, StreamingTarget
from airflow_provider_capillary.triggers.aep import AEPIngestionTrigger, assess_batches

EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
LOYALTY = "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details"
IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap"
LANDING_DELAY = 0.3
SINCE = 1_700_000_000_000


@pytest.fixture(scope="module")
def emulator_module() -> Iterator[AEPEmulator]:
    with AEPEmulator(landing_delay=LANDING_DELAY, journal=True) as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_module: AEPEmulator, monkeypatch: pytest.MonkeyPatch) -> AEPEmulator:
    emulator_module.reset()
    emulator_module.faults.clear_scripts()
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emulator_module.connection_json())
    TOKEN_CACHE.clear()
    return emulator_module


@pytest.fixture
def aep(emulator: AEPEmulator) -> EmulatorClient:
    return EmulatorClient(emulator.url)


@pytest.fixture
def events(aep: EmulatorClient) -> StreamingTarget:
    return aep.streaming_target("Events", [EVENT, COMMERCE])


def event(number: int, **changes: Any) -> dict[str, Any]:
    return {
        "_id": f"txn-{number}",
        "timestamp": "2026-01-14T10:32:05Z",
        "eventType": "commerce.purchases",
        "commerce": {"purchases": {"value": 1}, "order": {"purchaseID": f"TXN-{number}", "priceTotal": 10.5}},
        **changes,
    }


def stream(aep: EmulatorClient, target: StreamingTarget, entities: list[dict[str, Any]]) -> None:
    messages = [target.envelope(entity) for entity in entities]
    response = aep.call("POST", target.batch_url, json={"messages": messages}, headers={})
    assert response.status_code == 207


def trigger(dataset_ids: list[str], *, wait: float = 10.0, **kwargs: Any) -> AEPIngestionTrigger:
    return AEPIngestionTrigger(
        dataset_ids=dataset_ids, since=SINCE, end_time=time.time() + wait, poll_interval=0.05, **kwargs
    )


async def events_of(run: AEPIngestionTrigger) -> list[dict[str, Any]]:
    return [fired.payload async for fired in run.run()]


# -- serialisation ---------------------------------------------------------------------------------------------


def test_serialize_round_trip() -> None:
    original = AEPIngestionTrigger(
        dataset_ids=["d1", "d2"],
        since=SINCE,
        end_time=1_900_000_000.5,
        expected_records={"d1": 3},
        sample_identities=[{"id": "CUST-1", "namespace": "CAPLOYALTY"}],
        aep_conn_id="aep_other",
        poll_interval=5,
    )
    path, kwargs = original.serialize()
    assert path == "airflow_provider_capillary.triggers.aep.AEPIngestionTrigger"
    rebuilt = import_string(path)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert kwargs == {
        "dataset_ids": ["d1", "d2"],
        "since": SINCE,
        "end_time": 1_900_000_000.5,
        "expected_records": {"d1": 3},
        "sample_identities": [{"id": "CUST-1", "namespace": "CAPLOYALTY"}],
        "aep_conn_id": "aep_other",
        "poll_interval": 5,
    }


# -- one event per outcome, over sockets -------------------------------------------------------------------------


async def test_success_after_records_land(aep: EmulatorClient, events: StreamingTarget) -> None:
    stream(aep, events, [event(n) for n in range(3)])
    fired = await events_of(trigger([events.dataset_id], expected_records=3))
    assert len(fired) == 1
    assert fired[0]["status"] == "success"
    assert fired[0]["dataset_ids"] == [events.dataset_id]
    assert fired[0]["result"] == {
        "since": SINCE,
        "records": 3,
        "datasets": {events.dataset_id: {"batches": 1, "records": 3, "failed_records": 0}},
    }


async def test_failed_batch_fails_with_its_errors(aep: EmulatorClient, events: StreamingTarget) -> None:
    stream(aep, events, [event(1)])
    # DCS accepts a single message and validates it asynchronously: the record lands in a failed batch.
    response = aep.call("POST", events.inlet_url, json=events.envelope(event(2, timestamp=12)), headers={})
    assert response.status_code == 200
    fired = await events_of(trigger([events.dataset_id], expected_records=2))
    assert len(fired) == 1
    assert fired[0]["status"] == "failed"
    assert "XDM-STREAMING-VALIDATION" in fired[0]["message"]
    assert "#/timestamp" in fired[0]["message"]
    assert "1 failed records" in fired[0]["message"]


async def test_timeout_says_what_is_missing(aep: EmulatorClient, events: StreamingTarget) -> None:
    stream(aep, events, [event(1)])
    fired = await events_of(trigger([events.dataset_id], expected_records=5, wait=LANDING_DELAY + 0.5))
    assert [payload["status"] for payload in fired] == ["timeout"]
    assert "1 of 5 expected records landed" in fired[0]["message"]
    assert fired[0]["result"]["records"] == 1


async def test_nothing_sent_times_out(events: StreamingTarget) -> None:
    fired = await events_of(trigger([events.dataset_id], wait=0.2))
    assert [payload["status"] for payload in fired] == ["timeout"]
    assert "no successful batch yet" in fired[0]["message"]


async def test_aep_errors_become_an_error_event_without_secrets(emulator: AEPEmulator, events: StreamingTarget) -> None:
    emulator.faults.script(r"/data/foundation/catalog/batches", 403, times=1)
    fired = await events_of(trigger([events.dataset_id]))
    assert len(fired) == 1
    assert fired[0]["status"] == "error"
    assert "AEPAuthError" in fired[0]["message"]
    assert "HTTP 403" in fired[0]["message"]
    assert "emulator-client-secret" not in str(fired[0])
    assert "result" not in fired[0]


async def test_cold_token_cache(aep: EmulatorClient, events: StreamingTarget, emulator: AEPEmulator) -> None:
    """A triggerer process starts with no token: the trigger fetches one from IMS itself."""
    TOKEN_CACHE.clear()
    before = sum(1 for entry in emulator.journal if entry["path"] == "/ims/token/v3")
    stream(aep, events, [event(1)])
    fired = await events_of(trigger([events.dataset_id], expected_records=1))
    assert [payload["status"] for payload in fired] == ["success"]
    assert sum(1 for entry in emulator.journal if entry["path"] == "/ims/token/v3") == before + 1


async def test_unknown_connection_is_an_error_event() -> None:
    fired = await events_of(trigger(["d1"], aep_conn_id="no_such_connection"))
    assert [payload["status"] for payload in fired] == ["error"]
    assert "no_such_connection" in fired[0]["message"]


# -- Profile look-up -------------------------------------------------------------------------------------------


@pytest.fixture
def profiles(aep: EmulatorClient) -> StreamingTarget:
    schema_id = str(aep.create_schema("Profiles", [PROFILE, LOYALTY, IDENTITY_MAP])["$id"])
    aep.ok(
        "PATCH",
        f"/data/foundation/schemaregistry/tenant/schemas/{schema_id.replace(':', '%3A').replace('/', '%2F')}",
        json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
    )
    dataset_id = aep.create_dataset("Profiles", schema_id, {"unifiedProfile": ["enabled:true"]})
    connection_id, inlet_url = aep.create_connection("Profiles")
    flow_id = aep.create_flow(connection_id, dataset_id)
    return StreamingTarget(schema_id, dataset_id, connection_id, inlet_url, flow_id, aep.org_id)


def person(number: int) -> dict[str, Any]:
    return {"_id": f"p-{number}", "identityMap": {"Email": [{"id": f"p{number}@example.com", "primary": True}]}}


async def test_sampled_identities_found(aep: EmulatorClient, profiles: StreamingTarget) -> None:
    stream(aep, profiles, [person(1), person(2)])
    sample = [{"id": "p1@example.com", "namespace": "Email"}, {"id": "p2@example.com", "namespace": "Email"}]
    fired = await events_of(trigger([profiles.dataset_id], sample_identities=sample))
    assert [payload["status"] for payload in fired] == ["success"]
    assert fired[0]["result"]["profiles"] == {"sampled": 2, "found": 2, "available": True}


async def test_identity_never_found_times_out_without_naming_it(aep: EmulatorClient, profiles: StreamingTarget) -> None:
    stream(aep, profiles, [person(1)])
    sample = [{"id": "p1@example.com", "namespace": "Email"}, {"id": "nobody@example.com", "namespace": "Email"}]
    fired = await events_of(trigger([profiles.dataset_id], sample_identities=sample, wait=LANDING_DELAY + 0.5))
    assert [payload["status"] for payload in fired] == ["timeout"]
    assert "1 of 2 sampled identities not found yet (sample_identities[1])" in fired[0]["message"]
    assert "nobody@example.com" not in str(fired[0])
    assert fired[0]["result"]["profiles"] == {"sampled": 2, "found": 1, "available": True}


async def test_profile_api_refused_skips_the_look_up(
    emulator: AEPEmulator, aep: EmulatorClient, profiles: StreamingTarget
) -> None:
    stream(aep, profiles, [person(1)])
    emulator.faults.script(r"/data/core/ups/access/entities", 403, times=10)
    sample = [{"id": "p1@example.com", "namespace": "Email"}]
    fired = await events_of(trigger([profiles.dataset_id], sample_identities=sample))
    assert [payload["status"] for payload in fired] == ["success"]
    assert "Profile look-up skipped" in fired[0]["message"]
    assert fired[0]["result"]["profiles"] == {"sampled": 1, "found": 0, "available": False}


# -- the landing rules -----------------------------------------------------------------------------------------


def batch(status: str, records: int = 0, failed: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"B-{status}-{records}",
        "status": status,
        "recordCount": records,
        "failedRecordCount": failed,
        **extra,
    }


@pytest.mark.parametrize(
    ("batches", "expected", "state"),
    [
        pytest.param([batch("success", 3)], None, "success", id="one-success"),
        pytest.param([batch("active", 3)], None, "success", id="active-is-success"),
        pytest.param([], None, "pending", id="nothing-yet"),
        pytest.param([], 0, "success", id="nothing-expected"),
        pytest.param([batch("success", 3), batch("processing")], None, "pending", id="one-in-progress"),
        pytest.param([batch("success", 3), batch("processing")], 3, "success", id="expected-reached"),
        pytest.param([batch("success", 2)], 3, "pending", id="expected-not-reached"),
        pytest.param([batch("success", 3), batch("failed", 0, 1)], 3, "failed", id="failed-wins"),
        pytest.param([batch("stalled")], None, "failed", id="stalled"),
        pytest.param([batch("abandoned")], None, "failed", id="abandoned"),
        pytest.param([batch("success", 1), batch("deleted")], None, "success", id="deleted-ignored"),
        pytest.param([batch("success", 1), batch("brand-new-status")], None, "pending", id="unknown-waits"),
    ],
)
def test_landing_rules(batches: list[dict[str, Any]], expected: int | None, state: str) -> None:
    assert assess_batches({"d1": batches}, expected, since=SINCE).state == state


def test_expected_records_per_dataset() -> None:
    batches = {"d1": [batch("success", 4)], "d2": [batch("success", 1)], "d3": []}
    check = assess_batches(batches, {"d1": 4, "d2": 2, "d3": 0}, since=SINCE)
    assert check.state == "pending"
    assert "dataset d2: 1 of 2 records landed" in check.message
    assert "d1" not in check.message and "d3" not in check.message
    assert check.result["datasets"]["d1"] == {"batches": 1, "records": 4, "failed_records": 0}


def test_expected_total_spans_datasets() -> None:
    batches = {"d1": [batch("success", 4)], "d2": [batch("success", 1, 2)]}
    check = assess_batches(batches, 5, since=SINCE)
    assert check.state == "success"
    assert check.result == {
        "since": SINCE,
        "records": 5,
        "datasets": {
            "d1": {"batches": 1, "records": 4, "failed_records": 0},
            "d2": {"batches": 1, "records": 1, "failed_records": 2},
        },
    }


def test_failed_batch_message_lists_errors_briefly() -> None:
    errors = [{"code": f"E{n}", "description": "x" * 1000} for n in range(7)]
    check = assess_batches({"d1": [batch("failed", 0, 7, errors=errors)]}, None, since=SINCE)
    assert check.state == "failed"
    assert "dataset d1 batch B-failed-0 is failed, 7 failed records: E0: " in check.message
    assert "E4" in check.message and "E5" not in check.message
    assert "and 2 more" in check.message
    assert len(check.message) < 2500
