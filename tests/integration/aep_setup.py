"""Find-or-create the AEP targets of record types through the set-up operators, run directly (no DAG)."""

from __future__ import annotations

from airflow_provider_capillary.operators.dataset import AEPCreateDatasetOperator
from airflow_provider_capillary.operators.schema import AEPCreateSchemaOperator
from airflow_provider_capillary.operators.streaming_connection import AEPCreateStreamingConnectionOperator


def set_up(record_types: list[str]) -> tuple[dict[str, dict[str, str]], str]:
    """Schemas, datasets and the streaming dataflows of ``record_types`` on ``aep_default``; returns
    (targets for :class:`CapillaryToAEPOperator`, the inlet URL)."""
    targets: dict[str, dict[str, str]] = {}
    inlet = ""
    for record_type in record_types:
        schema = AEPCreateSchemaOperator(task_id="s", record_type=record_type).execute({})
        dataset = AEPCreateDatasetOperator(
            task_id="d", name=f"Capillary {record_type}", schema_id=schema["schema_id"]
        ).execute({})
        flow = AEPCreateStreamingConnectionOperator(
            task_id="c",
            name="Capillary Loyalty Streaming",
            dataset_id=dataset["dataset_id"],
            schema_id=schema["schema_id"],
        ).execute({})
        targets[record_type] = {
            "dataset_id": dataset["dataset_id"],
            "schema_id": schema["schema_id"],
            "flow_id": flow["flow_id"],
        }
        inlet = flow["inlet_url"]
    return targets, inlet
