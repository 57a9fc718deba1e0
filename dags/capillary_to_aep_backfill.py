"""Ad-hoc backfill of Capillary extracts into AEP, started from the Airflow UI's trigger form.

Pick a date range (both ends inclusive), the record types, the mode and whether to only validate (dry run); the
run fans out one task per day and record type (dynamic task mapping). Each partition is idempotent: re-running a
day re-sends the same records with the same ``_id``s. ``max_records_per_second`` is the whole backfill's budget: at
most ``STREAMING_TASKS`` tasks stream at once, each at its share.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task
from capillary_common import (
    AEP_RECORDS_PER_SECOND,
    EXTRACT_URI,
    INLET,
    MAPPING_OPTIONS,
    MAX_REJECT_RATIO,
    RECORD_TYPES,
    STREAMING_TASKS,
    aep_targets,
    dataset_ids,
    landed_expectations,
)

from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator
from airflow_provider_capillary.sensors.aep import AEPIngestionSensor

MAX_DAYS = 366

with DAG(
    dag_id="capillary_to_aep_backfill",
    description="Backfill Capillary extracts into AEP for a date range",
    schedule=None,
    start_date=pendulum.datetime(2025, 6, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "aep", "example", "backfill"],
    doc_md=__doc__,
    params={
        "start_date": Param(
            "2025-06-01", type="string", format="date", title="Start date", description="First day, inclusive."
        ),
        "end_date": Param(
            "2025-06-01", type="string", format="date", title="End date", description="Last day, inclusive."
        ),
        "record_types": Param(
            list(RECORD_TYPES),
            type="array",
            items={"type": "string", "enum": list(RECORD_TYPES)},
            uniqueItems=True,
            minItems=1,
            title="Record types",
            description="Which Capillary record types to send.",
        ),
        "mode": Param(
            "auto",
            type="string",
            enum=["auto", "stream", "batch"],
            title="Mode",
            description="stream: streaming ingestion; batch: Batch Ingestion files; auto: batch for large days.",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Read, map and validate every row; send nothing."
        ),
        "max_records_per_second": Param(
            AEP_RECORDS_PER_SECOND,
            type="integer",
            minimum=1,
            maximum=100_000,
            title="Max records per second",
            description=(
                f"Streaming rate limit of the whole backfill: at most {STREAMING_TASKS} tasks stream at once, each "
                f"at 1/{STREAMING_TASKS} of it."
            ),
        ),
    },
) as dag:

    @task
    def partitions(params: dict[str, Any]) -> list[dict[str, Any]]:
        """One entry per day and record type of the requested range."""
        first, last = date.fromisoformat(params["start_date"]), date.fromisoformat(params["end_date"])
        if last < first:
            raise ValueError(f"end_date {last} is before start_date {first}")
        if (last - first).days >= MAX_DAYS:
            raise ValueError(f"at most {MAX_DAYS} days per backfill run; split the range")
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        return [
            {"interval_start": day.isoformat(), "record_types": rt} for day in days for rt in params["record_types"]
        ]

    @task.short_circuit
    def data_was_sent(params: dict[str, Any]) -> bool:
        """A dry run sends nothing, so there is nothing to wait for in AEP."""
        return not params["dry_run"]

    targets = aep_targets()
    stream = CapillaryToAEPOperator.partial(
        task_id="stream",
        targets=targets,
        inlet=INLET,
        extract_uri=EXTRACT_URI,
        mode="{{ params.mode }}",
        validate_only="{{ params.dry_run }}",
        max_records_per_second="{{ [params.max_records_per_second // " + str(STREAMING_TASKS) + ", 1] | max }}",
        max_active_tis_per_dag=STREAMING_TASKS,
        max_reject_ratio=MAX_REJECT_RATIO,
        mapping_options=MAPPING_OPTIONS,
        map_index_template="{{ task.record_types }} {{ task.interval_start }}",
    ).expand_kwargs(partitions())
    expected = landed_expectations(stream.output)
    landed = AEPIngestionSensor(
        task_id="wait_for_ingestion",
        dataset_ids=dataset_ids(expected),
        expected_records=expected,
        deferrable=True,
        poke_interval=30,
    )
    stream >> data_was_sent() >> landed
