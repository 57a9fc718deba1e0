"""Both sensors inside real Airflow (``dag.test()``, env-var connections), deferred to their triggers (which
``dag.test`` runs in line): extract files arriving in tmp_path, records streamed to the AEP emulator landing late."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pendulum
import pytest

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.client import EmulatorClient, StreamingTarget
from airflow_provider_capillary.triggers.aep import AEPIngestionTrigger
from airflow_provider_capillary.triggers.extracts import CapillaryExtractTrigger

pytestmark = [pytest.mark.integration, pytest.mark.db]

PROFILE = "https://ns.adobe.com/xdm/context/profile"
IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap"
#: Streamed records land in Catalog this long after they were accepted, so the AEP sensor has to defer.
LANDING_DELAY = 1.5


@pytest.fixture(scope="module", autouse=True)
def metadata_db() -> None:
    from airflow.utils.db import initdb

    initdb()


@pytest.fixture(scope="module")
def emulator_module() -> Iterator[AEPEmulator]:
    with AEPEmulator(landing_delay=LANDING_DELAY) as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_module: AEPEmulator, monkeypatch: pytest.MonkeyPatch) -> AEPEmulator:
    emulator_module.reset()
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emulator_module.connection_json())
    TOKEN_CACHE.clear()
    return emulator_module


@pytest.fixture
def profiles(emulator: AEPEmulator) -> StreamingTarget:
    """A Profile-enabled profile dataset with an HTTP API dataflow into it."""
    aep = EmulatorClient(emulator.url)
    schema_id = str(aep.create_schema("Capillary Loyalty Profiles", [PROFILE, IDENTITY_MAP])["$id"])
    aep.ok(
        "PATCH",
        f"/data/foundation/schemaregistry/tenant/schemas/{schema_id.replace(':', '%3A').replace('/', '%2F')}",
        json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
    )
    dataset_id = aep.create_dataset("Capillary Loyalty Profiles", schema_id, {"unifiedProfile": ["enabled:true"]})
    connection_id, inlet_url = aep.create_connection("Capillary Loyalty Streaming")
    flow_id = aep.create_flow(connection_id, dataset_id)
    return StreamingTarget(schema_id, dataset_id, connection_id, inlet_url, flow_id, aep.org_id)


@pytest.fixture
def trigger_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every event the two triggers fire in this process (proof that the sensors deferred).

    The extract's last completion marker arrives only once its trigger runs: the extract sensor's first check
    cannot have seen it, so the sensor must defer and the trigger must find the marker.
    """
    fired: list[dict[str, Any]] = []
    for trigger_class in (CapillaryExtractTrigger, AEPIngestionTrigger):
        original = trigger_class.run

        async def recording(self: Any, _original: Any = original) -> Any:
            if isinstance(self, CapillaryExtractTrigger):
                late_marker = Path(urlsplit(self.extract_uri).path) / "transaction" / "dt=2025-06-01" / "_SUCCESS"
                assert not late_marker.exists()
                late_marker.write_text("")
            async for event in _original(self):
                fired.append({"trigger": type(self).__name__, **event.payload})
                yield event

        monkeypatch.setattr(trigger_class, "run", recording)
    return fired


DAG_SOURCE = """
import json
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_capillary.hooks.aep import AEPHook
from airflow_provider_capillary.sensors.aep import AEPIngestionSensor
from airflow_provider_capillary.sensors.extracts import CapillaryExtractSensor

TARGET = {target!r}

with DAG(
    "{dag_id}",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2025, 6, 1, tz="UTC"),
    catchup=False,
) as dag:
    extract = CapillaryExtractSensor(
        task_id="extract",
        extract_uri={extract_uri!r},
        record_types=["customer", "transaction"],
        deferrable=True,
        poke_interval=0.2,
        timeout=20,
    )

    @task
    def send(files: dict) -> dict:
        hook = AEPHook()
        entities = {entities!r}
        messages = [
            hook.streaming_message(
                entity,
                schema_id=TARGET["schema_id"],
                dataset_id=TARGET["dataset_id"],
                flow_id=TARGET["flow_id"],
                org_id=TARGET["org_id"],
            )
            for entity in entities
        ]
        if {one_by_one!r}:
            results = [hook.send_message(TARGET["inlet_url"], message) for message in messages]
        else:
            results = hook.send_messages(TARGET["inlet_url"], messages)
        accepted = sum("xactionId" in result for result in results)
        return {{"files": sum(len(urls) for urls in files.values()), "accepted": accepted}}

    sent = send(extract.output)
    landed = AEPIngestionSensor(
        task_id="landed",
        dataset_ids=TARGET["dataset_id"],
        expected_records="{{{{ ti.xcom_pull(task_ids='send')['accepted'] }}}}",
        sample_identities=[{{"id": "jane@example.com", "namespace": "Email"}}],
        deferrable=True,
        poke_interval=0.2,
        timeout=20,
    )

    @task
    def collect(extract_files: dict, summary: dict) -> None:
        Path({out!r}).write_text(json.dumps({{"extract": extract_files, "landed": summary}}))

    sent >> landed
    collect(extract.output, landed.output)
"""


def person(email: str, number: int) -> dict[str, Any]:
    return {"_id": f"profile-{number}", "identityMap": {"Email": [{"id": email, "primary": True}]}}


def write_extract(root: Path) -> None:
    """The interval's customer and transaction part files; only the customer partition is marked complete."""
    for record_type in ("customer", "transaction"):
        partition = root / record_type / "dt=2025-06-01"
        partition.mkdir(parents=True)
        (partition / "part-0001.csv").write_text("id\n1\n")
    (root / "customer" / "dt=2025-06-01" / "_SUCCESS").write_text("")


def run_dag(dag_from_source: Any, dag_id: str, tmp_path: Path, target: StreamingTarget, **source: Any) -> Any:
    root = tmp_path / "extracts"
    write_extract(root)
    dag = dag_from_source(
        dag_id,
        DAG_SOURCE.format(
            dag_id=dag_id,
            target={
                "schema_id": target.schema_id,
                "dataset_id": target.dataset_id,
                "flow_id": target.flow_id,
                "org_id": target.org_id,
                "inlet_url": target.inlet_url,
            },
            extract_uri=root.as_uri(),
            out=str(tmp_path / "out.json"),
            **source,
        ),
    )
    # A manual run gets the data interval that ends at its logical date: [2025-06-01, 2025-06-02).
    return dag.test(logical_date=pendulum.datetime(2025, 6, 2, tz="UTC"))


def test_both_sensors_defer_and_succeed(
    profiles: StreamingTarget, tmp_path: Path, dag_from_source: Any, trigger_runs: list[dict[str, Any]]
) -> None:
    entities = [person("jane@example.com", 1), person("joe@example.com", 2), person("ann@example.com", 3)]
    dag_run = run_dag(dag_from_source, "sensors_landed", tmp_path, profiles, entities=entities, one_by_one=False)
    assert str(dag_run.state) == "success"

    out = json.loads((tmp_path / "out.json").read_text())
    base = (tmp_path / "extracts").as_uri()
    assert out["extract"] == {
        "customer": [f"{base}/customer/dt=2025-06-01/part-0001.csv"],
        "transaction": [f"{base}/transaction/dt=2025-06-01/part-0001.csv"],
    }
    assert out["landed"]["records"] == 3
    assert out["landed"]["datasets"] == {profiles.dataset_id: {"batches": 1, "records": 3, "failed_records": 0}}
    assert out["landed"]["profiles"] == {"sampled": 1, "found": 1, "available": True}
    assert [(run["trigger"], run["status"]) for run in trigger_runs] == [
        ("CapillaryExtractTrigger", "success"),
        ("AEPIngestionTrigger", "success"),
    ]
    assert trigger_runs[0]["files"] == {"customer": 1, "transaction": 1}


def test_failed_batch_fails_the_run(
    profiles: StreamingTarget, tmp_path: Path, dag_from_source: Any, trigger_runs: list[dict[str, Any]]
) -> None:
    # Sent one by one, DCS accepts each message and validates it later: the bad one lands in a failed batch.
    entities = [person("jane@example.com", 1), {"_id": "profile-2", "identityMap": {"Email": "not-a-list"}}]
    dag_run = run_dag(dag_from_source, "sensors_failed", tmp_path, profiles, entities=entities, one_by_one=True)
    assert str(dag_run.state) == "failed"
    assert not (tmp_path / "out.json").exists()
    aep_events = [run for run in trigger_runs if run["trigger"] == "AEPIngestionTrigger"]
    assert [run["status"] for run in aep_events] == ["failed"]
    assert "XDM-STREAMING-VALIDATION" in aep_events[0]["message"]
    assert "identityMap" in aep_events[0]["message"]
