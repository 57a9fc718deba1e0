"""AEPIngestionSensor: pokes against the AEP emulator over real sockets, deferral, resumption and its arguments."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, TaskDeferred

from airflow_provider_capillary.exceptions import AEPError
from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
from airflow_provider_capillary.sensors.aep import AEPIngestionFailedError, AEPIngestionSensor, to_epoch_ms
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.client import EmulatorClient, StreamingTarget
from airflow_provider_capillary.triggers.aep import AEPIngestionTrigger

EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap"


@pytest.fixture(scope="module")
def emulator_module() -> Iterator[AEPEmulator]:
    with AEPEmulator() as emulator:
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
    response = aep.call("POST", target.batch_url, json={"messages": [target.envelope(e) for e in entities]}, headers={})
    assert response.status_code == 207


def context(started: datetime | None = None) -> Any:
    """The parts of a task context the sensor reads: the DAG run's start."""
    return {"dag_run": SimpleNamespace(start_date=started or datetime.now(UTC) - timedelta(minutes=1))}


def landed(done: Any) -> Any:
    """The XCom value of a finished poke."""
    assert done.is_done
    return done.xcom_value


def sensor(dataset_ids: Any, **kwargs: Any) -> AEPIngestionSensor:
    return AEPIngestionSensor(task_id="landed", dataset_ids=dataset_ids, **kwargs)


# -- poke over sockets -----------------------------------------------------------------------------------------


def test_poke_false_until_records_land_then_true(aep: EmulatorClient, events: StreamingTarget) -> None:
    watch = sensor(events.dataset_id, expected_records="2")
    assert not watch.poke(context())
    stream(aep, events, [event(1)])
    assert not watch.poke(context())
    stream(aep, events, [event(2)])
    result = landed(watch.poke(context()))
    assert result["records"] == 2
    assert result["datasets"] == {events.dataset_id: {"batches": 2, "records": 2, "failed_records": 0}}


def test_poke_ignores_batches_before_the_run_started(aep: EmulatorClient, events: StreamingTarget) -> None:
    stream(aep, events, [event(1)])
    assert sensor(events.dataset_id).poke(context(started=datetime.now(UTC) - timedelta(minutes=1)))
    time.sleep(0.01)
    later = datetime.now(UTC)
    assert not sensor(events.dataset_id).poke(context(started=later))
    assert not sensor(events.dataset_id, since=int(later.timestamp() * 1000)).poke(context())


def test_poke_raises_on_a_failed_batch(aep: EmulatorClient, events: StreamingTarget) -> None:
    stream(aep, events, [event(1)])
    aep.call("POST", events.inlet_url, json=events.envelope(event(2, timestamp=12)), headers={})
    with pytest.raises(AEPIngestionFailedError, match=r"1 AEP batch\(es\) failed: dataset .* XDM-STREAMING-VALIDATION"):
        sensor(events.dataset_id).poke(context())


def test_poke_checks_every_dataset(aep: EmulatorClient, events: StreamingTarget) -> None:
    other = aep.streaming_target("Other events", [EVENT, COMMERCE])
    stream(aep, events, [event(1)])
    watch = sensor([events.dataset_id, other.dataset_id])
    assert not watch.poke(context())
    stream(aep, other, [event(2), event(3)])
    assert landed(watch.poke(context()))["records"] == 3


def test_poke_mode_times_out(events: StreamingTarget) -> None:
    watch = sensor(events.dataset_id, poke_interval=0.05, timeout=0.2)
    with pytest.raises(AirflowSensorTimeout):
        watch.execute(context())


def test_poke_looks_up_sampled_identities(aep: EmulatorClient, emulator: AEPEmulator) -> None:
    schema_id = str(aep.create_schema("Profiles", [PROFILE, IDENTITY_MAP])["$id"])
    aep.ok(
        "PATCH",
        f"/data/foundation/schemaregistry/tenant/schemas/{schema_id.replace(':', '%3A').replace('/', '%2F')}",
        json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
    )
    dataset_id = aep.create_dataset("Profiles", schema_id, {"unifiedProfile": ["enabled:true"]})
    connection_id, inlet_url = aep.create_connection("Profiles")
    target = StreamingTarget(
        schema_id, dataset_id, connection_id, inlet_url, aep.create_flow(connection_id, dataset_id), aep.org_id
    )
    stream(aep, target, [{"_id": "p1", "identityMap": {"Email": [{"id": "a@example.com", "primary": True}]}}])
    found = sensor(dataset_id, sample_identities='[{"id": "a@example.com", "namespace": "Email"}]').poke(context())
    assert landed(found)["profiles"] == {"sampled": 1, "found": 1, "available": True}
    missing = sensor(dataset_id, sample_identities=[{"id": "b@example.com", "namespace": "Email"}])
    assert not missing.poke(context())
    emulator.faults.script(r"/data/core/ups/access/entities", 403)
    refused = landed(missing.poke(context()))
    assert refused["profiles"] == {"sampled": 1, "found": 0, "available": False}


# -- deferral --------------------------------------------------------------------------------------------------


def test_deferrable_defers_when_not_landed(events: StreamingTarget) -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    watch = sensor(
        events.dataset_id,
        deferrable=True,
        poke_interval=5,
        timeout=600,
        expected_records=7,
        sample_identities=[{"id": "CUST-1", "namespace": "CAPLOYALTY"}],
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        watch.execute(context(started=started))
    fired = deferred.value.trigger
    assert isinstance(fired, AEPIngestionTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is not None and deferred.value.timeout > timedelta(seconds=600)
    _, kwargs = fired.serialize()
    assert before + 600 <= kwargs.pop("end_time") <= time.time() + 600
    assert kwargs == {
        "dataset_ids": [events.dataset_id],
        "since": int(started.timestamp() * 1000),
        "expected_records": 7,
        "sample_identities": [{"id": "CUST-1", "namespace": "CAPLOYALTY"}],
        "aep_conn_id": "aep_default",
        "poll_interval": 5,
    }


def test_deferrable_returns_at_once_when_already_landed(aep: EmulatorClient, events: StreamingTarget) -> None:
    stream(aep, events, [event(1)])
    result = sensor(events.dataset_id, deferrable=True).execute(context())
    assert result is not None and result["records"] == 1


def test_deferrable_fails_at_once_on_a_failed_batch(aep: EmulatorClient, events: StreamingTarget) -> None:
    aep.call("POST", events.inlet_url, json=events.envelope(event(2, timestamp=12)), headers={})
    with pytest.raises(AEPIngestionFailedError):
        sensor(events.dataset_id, deferrable=True).execute(context())


def test_deferrable_defaults_off() -> None:
    assert sensor("d1").deferrable is False


# -- execute_complete ------------------------------------------------------------------------------------------


def test_execute_complete_success_returns_the_result() -> None:
    result = {"since": 1, "records": 3, "datasets": {"d1": {"batches": 1, "records": 3, "failed_records": 0}}}
    event_ = {"status": "success", "message": "3 records landed", "dataset_ids": ["d1"], "result": result}
    assert sensor("d1").execute_complete(context(), event_) == result


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        ("failed", AEPIngestionFailedError, "batch B1 is failed"),
        ("timeout", AirflowSensorTimeout, "batch B1 is failed"),
        ("error", AEPError, r"Waiting for AEP ingestion failed \(error\): batch B1 is failed"),
    ],
)
def test_execute_complete_raises(status: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sensor("d1").execute_complete(context(), {"status": status, "message": "batch B1 is failed"})


# -- arguments -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_750_000_000_000, 1_750_000_000_000),
        ("1750000000000", 1_750_000_000_000),
        ("2025-06-15T15:06:40Z", 1_750_000_000_000),
        ("2025-06-15T17:06:40+02:00", 1_750_000_000_000),
        ("2025-06-15T15:06:40", 1_750_000_000_000),
        (datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC), 1_750_000_000_000),
        (date(2025, 6, 15), 1_749_945_600_000),
    ],
)
def test_since_formats(value: Any, expected: int) -> None:
    assert to_epoch_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (1_750_000_000, "looks like epoch seconds"),
        ("yesterday", "neither epoch milliseconds nor an ISO 8601 instant"),
        (True, "since must be epoch milliseconds"),
    ],
)
def test_since_errors(value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        to_epoch_ms(value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"expected_records": "many"}, "expected_records must be a non-negative int"),
        ({"expected_records": -1}, "expected_records must be a non-negative int"),
        ({"expected_records": '{"d1": "x"}'}, "expected_records must be a non-negative int or a dict"),
        ({"sample_identities": [{"id": "a"}]}, r"sample_identities\[0\] must be a dict"),
        ({"sample_identities": "[not json"}, "sample_identities is not a JSON list"),
        ({"dataset_ids": []}, "dataset_ids must name at least one dataset"),
    ],
)
def test_bad_arguments_fail_clearly(events: StreamingTarget, kwargs: dict[str, Any], match: str) -> None:
    arguments = {"dataset_ids": events.dataset_id, **kwargs}
    with pytest.raises(ValueError, match=match):
        AEPIngestionSensor(task_id="landed", **arguments).poke(context())


def test_templated_fields_render(events: StreamingTarget) -> None:
    watch = sensor(
        "{{ params.dataset }}",
        since="{{ params.since }}",
        expected_records="{{ params.count }}",
        sample_identities='[{"id": "{{ params.who }}", "namespace": "CAPLOYALTY"}]',
        params={"dataset": events.dataset_id, "since": "1750000000000", "count": 0, "who": "CUST-9"},
    )
    watch.render_template_fields(context() | {"params": watch.params})
    assert watch.dataset_ids == events.dataset_id
    assert watch._since(context()) == 1_750_000_000_000
    assert watch._expected_records() == 0
    assert watch._sample_identities() == [{"id": "CUST-9", "namespace": "CAPLOYALTY"}]


def test_dag_run_without_start_needs_since() -> None:
    with pytest.raises(ValueError, match="pass since"):
        sensor("d1")._since({"dag_run": SimpleNamespace(start_date=None)})
