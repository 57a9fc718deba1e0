"""The set-up operators inside real Airflow (``dag.test()``, env-var connections) against the AEP emulator:
everything is created on the first run, nothing changes on the second, conflicts are errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_capillary.operators.dataset import AEPCreateDatasetOperator
from airflow_provider_capillary.operators.schema import AEPCreateSchemaOperator
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

pytestmark = [pytest.mark.integration, pytest.mark.db]

RECORD_TYPES = {
    "customer": ("Capillary Loyalty Profiles", True),
    "transaction": ("Capillary Loyalty Transactions", False),
    "loyalty_event": ("Capillary Loyalty Events", False),
}


@pytest.fixture(scope="module", autouse=True)
def metadata_db() -> None:
    from airflow.utils.db import initdb

    initdb()


SETUP_DAG = """
import json
import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_capillary.operators.dataset import AEPCreateDatasetOperator
from airflow_provider_capillary.operators.schema import AEPCreateSchemaOperator
from airflow_provider_capillary.operators.streaming_connection import AEPCreateStreamingConnectionOperator

RECORD_TYPES = {record_types!r}

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2025, 6, 1, tz="UTC"), catchup=False) as dag:
    results = {{}}
    for record_type, (title, profile) in RECORD_TYPES.items():
        schema = AEPCreateSchemaOperator(
            task_id=f"schema_{{record_type}}", record_type=record_type, enable_profile=profile
        )
        dataset = AEPCreateDatasetOperator(
            task_id=f"dataset_{{record_type}}",
            name=title,
            schema_id="{{{{ ti.xcom_pull(task_ids='schema_" + record_type + "')['schema_id'] }}}}",
            profile_enabled=profile,
        )
        connection = AEPCreateStreamingConnectionOperator(
            task_id=f"connection_{{record_type}}",
            name="Capillary Loyalty Streaming",
            dataset_id="{{{{ ti.xcom_pull(task_ids='dataset_" + record_type + "')['dataset_id'] }}}}",
            schema_id="{{{{ ti.xcom_pull(task_ids='schema_" + record_type + "')['schema_id'] }}}}",
        )
        schema >> dataset >> connection
        results[record_type] = {{"schema": schema.output, "dataset": dataset.output, "connection": connection.output}}

    @task
    def collect(values: dict) -> None:
        Path({out!r}).write_text(json.dumps(values))

    collect(results)
"""


def run_setup(dag_from_source, dag_id: str, out: Path) -> dict:
    dag = dag_from_source(dag_id, SETUP_DAG.format(record_types=RECORD_TYPES, dag_id=dag_id, out=str(out)))
    assert str(dag.test().state) == "success"
    return json.loads(out.read_text())


def test_setup_creates_everything_once(aep_emulator: AEPEmulator, tmp_path: Path, dag_from_source) -> None:
    one = run_setup(dag_from_source, "setup_first", tmp_path / "first.json")
    state_after_first = {k: v for k, v in aep_emulator.state.stats().items() if k != "requests"}
    two = run_setup(dag_from_source, "setup_second", tmp_path / "second.json")

    for record_type in RECORD_TYPES:
        assert one[record_type]["schema"]["created"] is True
        assert two[record_type]["schema"]["created"] is False
        assert one[record_type]["dataset"]["created"] is True
        assert two[record_type]["dataset"]["created"] is False
        for key in ("schema_id", "field_group_id", "tenant_id"):
            assert one[record_type]["schema"][key] == two[record_type]["schema"][key]
        assert one[record_type]["dataset"]["dataset_id"] == two[record_type]["dataset"]["dataset_id"]
        assert one[record_type]["connection"] == two[record_type]["connection"]
    assert one["customer"]["schema"]["profile_enabled"] is True
    assert one["customer"]["schema"]["tenant_id"] == "acmecorp"
    connections = {one[rt]["connection"]["connection_id"] for rt in RECORD_TYPES}
    flows = {one[rt]["connection"]["flow_id"] for rt in RECORD_TYPES}
    assert len(connections) == 1, "one streaming connection serves every dataset"
    assert len(flows) == 3, "one dataflow per dataset"
    state_after_second = {k: v for k, v in aep_emulator.state.stats().items() if k != "requests"}
    assert state_after_second == state_after_first, "the second run must change nothing"


def test_existing_schema_of_another_class_is_an_error(aep_emulator: AEPEmulator) -> None:
    from airflow_provider_capillary.exceptions import AEPConflictError
    from airflow_provider_capillary.hooks.aep import AEPHook

    AEPHook().create_schema("Capillary Loyalty Profiles", "https://ns.adobe.com/xdm/context/experienceevent")
    operator = AEPCreateSchemaOperator(task_id="schema", record_type="customer")
    with pytest.raises(AEPConflictError, match=r"exists with class https://ns\.adobe\.com/xdm/context/experienceevent"):
        operator.execute(context={})  # type: ignore[arg-type]


def test_existing_dataset_for_another_schema_is_an_error(aep_emulator: AEPEmulator) -> None:
    from airflow_provider_capillary.exceptions import AEPConflictError
    from airflow_provider_capillary.hooks.aep import AEPHook

    hook = AEPHook()
    schema = hook.create_schema("Other", "https://ns.adobe.com/xdm/context/experienceevent")
    hook.create_dataset("Capillary Loyalty Events", schema["$id"])
    operator = AEPCreateDatasetOperator(task_id="dataset", name="Capillary Loyalty Events", schema_id="other-schema")
    with pytest.raises(AEPConflictError, match="exists for schema"):
        operator.execute(context={})  # type: ignore[arg-type]


def test_a_schema_created_by_a_concurrent_run_is_found_not_duplicated(
    aep_emulator: AEPEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_capillary.hooks.aep import AEPHook

    first = AEPCreateSchemaOperator(task_id="schema", record_type="transaction").execute({})  # type: ignore[arg-type]
    # The second run looks before the first one's objects exist, then creates: AEP refuses the duplicate titles.
    real_find_schema, real_find_group = AEPHook.find_schema, AEPHook.find_field_group
    seen: list[str] = []

    def stale(real):
        def find(self, title):
            if title not in seen:
                seen.append(title)
                return None
            return real(self, title)

        return find

    monkeypatch.setattr(AEPHook, "find_schema", stale(real_find_schema))
    monkeypatch.setattr(AEPHook, "find_field_group", stale(real_find_group))
    second = AEPCreateSchemaOperator(task_id="schema", record_type="transaction").execute({})  # type: ignore[arg-type]
    assert second["schema_id"] == first["schema_id"]
    assert second["field_group_id"] == first["field_group_id"]
    assert second["created"] is False
    assert len(seen) == 2, "both the schema and its field group were looked up again after the refused create"
    assert aep_emulator.state.stats()["sandboxes"]["prod"]["schemas"] == 1


def test_runs_racing_to_create_a_dataset_and_its_dataflow_end_up_sharing_one(
    aep_emulator: AEPEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs at once: every request takes 0.4 s, so both look before either creates, and both create. Each then
    looks again, and the one whose object is not the oldest deletes its own and uses the other's."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from airflow_provider_capillary.hooks.aep import AEPHook
    from airflow_provider_capillary.operators.streaming_connection import AEPCreateStreamingConnectionOperator

    schema_id = AEPCreateSchemaOperator(task_id="schema", record_type="loyalty_event").execute({})["schema_id"]  # type: ignore[arg-type]
    AEPHook().get_access_token()  # both runs share the token cache, so their first requests are the look-ups
    monkeypatch.setattr(aep_emulator.faults, "latency_ms", 400.0)
    barrier = Barrier(2)

    def run(task_id: str) -> tuple[dict, dict]:
        barrier.wait()
        dataset = AEPCreateDatasetOperator(task_id=task_id, name="Raced", schema_id=schema_id).execute({})  # type: ignore[arg-type]
        barrier.wait()
        flow = AEPCreateStreamingConnectionOperator(
            task_id=task_id, name="Raced inlet", dataset_id=dataset["dataset_id"], schema_id=schema_id
        ).execute({})  # type: ignore[arg-type]
        return dataset, flow

    with ThreadPoolExecutor(2) as pool:
        (dataset_a, flow_a), (dataset_b, flow_b) = pool.map(run, ["a", "b"])

    assert dataset_a["dataset_id"] == dataset_b["dataset_id"]
    assert sorted([dataset_a["created"], dataset_b["created"]]) == [False, True]
    assert flow_a == flow_b
    sandbox = aep_emulator.state.stats()["sandboxes"]["prod"]
    kinds = {"dataSets", "connections", "sourceConnections", "targetConnections", "flows"}
    created = Counter(
        entry["path"].rsplit("/", 1)[-1]
        for entry in aep_emulator.journal
        if entry["method"] == "POST" and entry["path"].rsplit("/", 1)[-1] in kinds
    )
    deleted = sum(entry["method"] == "DELETE" for entry in aep_emulator.journal)
    # Both looked before either created: two datasets and two base connections; the later steps may or may not race
    # (the loser is behind by its delete). Every object a loser created was deleted: five remain.
    assert created["dataSets"] == 2 and created["connections"] == 2
    assert sum(created.values()) - deleted == 5
    assert len(sandbox["datasets"]) == 1
    assert sandbox["connections"] == 1 and sandbox["flows"] == 1
    state = aep_emulator.state.sandboxes["prod"]
    assert len(state.source_connections) == 1 and len(state.target_connections) == 1
