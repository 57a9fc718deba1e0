"""Pieces the example DAGs share: record types, AEP object names, the extract location and the task group that
finds (or creates) every AEP target. Not a DAG itself (listed in ``.airflowignore``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import TaskGroup, task

from airflow_provider_capillary.operators.dataset import AEPCreateDatasetOperator
from airflow_provider_capillary.operators.schema import AEPCreateSchemaOperator
from airflow_provider_capillary.operators.streaming_connection import AEPCreateStreamingConnectionOperator

RECORD_TYPES = ("customer", "transaction", "loyalty_event")
#: Schema and dataset title per record type, and whether it feeds Real-Time Customer Profile.
AEP_OBJECTS = {
    "customer": ("Capillary Loyalty Profiles", True),
    "transaction": ("Capillary Loyalty Transactions", False),
    "loyalty_event": ("Capillary Loyalty Events", False),
}
STREAMING_CONNECTION = "Capillary Loyalty Streaming"
IDENTITY_NAMESPACE = "CAPLOYALTY"

#: The demo extracts shipped beside the DAGs; the Variable ``capillary_extract_uri`` points elsewhere.
DEMO_EXTRACT_URI = (Path(__file__).resolve().parent / "demo_extracts").as_uri()
EXTRACT_URI = "{{ var.value.get('capillary_extract_uri', '" + DEMO_EXTRACT_URI + "') }}"

#: Share of a record type's rows that may be dead-lettered before the run fails (the operator's default is 0).
#: The demo extracts carry deliberately broken rows, hence a tolerance here; set it to what your data deserves.
MAX_REJECT_RATIO = 0.25
#: The streaming connection's inlet URL, as found by :func:`aep_targets`.
INLET = "{{ ti.xcom_pull(task_ids='aep_targets.connection_customer')['inlet_url'] }}"
#: AEP's documented streaming guidance: 10,000 messages per second (``reference/aep-api.md`` §10).
AEP_RECORDS_PER_SECOND = 10_000
#: At most this many ``stream`` tasks of a DAG run at once (across its runs). They share one streaming budget:
#: each gets ``1 / STREAMING_TASKS`` of it, so the DAG as a whole never streams faster than the budget.
STREAMING_TASKS = 4
#: Mapping settings of the example program (the samples' currency is GBP).
MAPPING_OPTIONS = {"org_id": "50001", "default_currency": "GBP", "identity_namespace": IDENTITY_NAMESPACE}


def aep_targets() -> Any:
    """A task group that finds or creates every schema, dataset and streaming dataflow (safe to re-run); returns
    the XCom of ``{record type: {dataset_id, schema_id, flow_id}}``. The inlet URL is :data:`INLET`."""
    with TaskGroup("aep_targets", tooltip="Find or create the AEP schemas, datasets and streaming dataflows"):
        found: dict[str, dict[str, Any]] = {}
        previous_connection = None
        for record_type, (title, profile) in AEP_OBJECTS.items():
            schema_id = f"{{{{ ti.xcom_pull(task_ids='aep_targets.schema_{record_type}')['schema_id'] }}}}"
            schema = AEPCreateSchemaOperator(
                task_id=f"schema_{record_type}",
                record_type=record_type,
                title=title,
                identity_namespace=IDENTITY_NAMESPACE,
                enable_profile=profile,
            )
            dataset = AEPCreateDatasetOperator(
                task_id=f"dataset_{record_type}",
                name=title,
                schema_id=schema_id,
                profile_enabled=profile,
            )
            connection = AEPCreateStreamingConnectionOperator(
                task_id=f"connection_{record_type}",
                name=STREAMING_CONNECTION,
                dataset_id=f"{{{{ ti.xcom_pull(task_ids='aep_targets.dataset_{record_type}')['dataset_id'] }}}}",
                schema_id=schema_id,
            )
            schema >> dataset >> connection
            if previous_connection is not None:
                previous_connection >> connection  # one at a time: they share the streaming connection
            previous_connection = connection
            found[record_type] = {"schema": schema.output, "dataset": dataset.output, "connection": connection.output}

        @task
        def collect(objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
            """The streaming operator's ``targets``: per record type its dataset, schema and dataflow."""
            return {
                record_type: {
                    "dataset_id": parts["dataset"]["dataset_id"],
                    "schema_id": parts["schema"]["schema_id"],
                    "flow_id": parts["connection"]["flow_id"],
                }
                for record_type, parts in objects.items()
            }

        return collect(found)


@task
def landed_expectations(summaries: list[dict[str, Any]]) -> dict[str, int]:
    """Records each dataset must show in AEP: what the streaming runs accepted (datasets that got none are left
    out, so the ingestion sensor waits only for the datasets this run wrote to)."""
    expected: dict[str, int] = {}
    for summary in summaries:
        for counts in summary["record_types"].values():
            if counts["accepted"]:
                expected[counts["dataset_id"]] = expected.get(counts["dataset_id"], 0) + counts["accepted"]
    return expected


@task
def dataset_ids(expected: dict[str, int]) -> list[str]:
    """The datasets the ingestion sensor watches: those this run wrote to."""
    return list(expected)
