"""Stream each data interval's Capillary extract into AEP.

Every run handles exactly its data interval's partition: it waits for the extract's completion marker, streams
each record type into its dataset (dynamic task mapping, one task per record type), then waits until AEP shows
what was accepted. Works with Airflow's own backfill (``airflow backfill create`` or the UI's backfill dialog);
re-running an interval is harmless, since record ``_id``s are deterministic. At most ``STREAMING_TASKS`` stream
tasks run at once, across runs, each at its share of AEP's 10,000 messages/s guidance.

Partitioning: daily by default, as Capillary's exports are. To run hourly partitions, set ``PARTITIONING`` below
to ``"hourly"``: the schedule and the extract path template change together.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable
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
from airflow_provider_capillary.sensors.extracts import CapillaryExtractSensor

PARTITIONING = "daily"
SCHEDULES = {
    "daily": (CronDataIntervalTimetable("0 0 * * *", timezone="UTC"), "{record_type}/dt={ds}/part-*"),
    "hourly": (CronDataIntervalTimetable("0 * * * *", timezone="UTC"), "{record_type}/dt={ds}/hr={hour}/part-*"),
}
TIMETABLE, PATH_TEMPLATE = SCHEDULES[PARTITIONING]

with DAG(
    dag_id="capillary_to_aep",
    description="Stream each data interval's Capillary extract into AEP",
    schedule=TIMETABLE,
    start_date=pendulum.datetime(2025, 6, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    tags=["capillary", "aep", "example"],
    doc_md=__doc__,
) as dag:
    extract = CapillaryExtractSensor(
        task_id="wait_for_extract",
        extract_uri=EXTRACT_URI,
        record_types=list(RECORD_TYPES),
        path_template=PATH_TEMPLATE,
        deferrable=True,
        poke_interval=60,
    )
    targets = aep_targets()
    stream = CapillaryToAEPOperator.partial(
        task_id="stream",
        targets=targets,
        inlet=INLET,
        extract_uri=EXTRACT_URI,
        path_template=PATH_TEMPLATE,
        max_reject_ratio=MAX_REJECT_RATIO,
        mapping_options=MAPPING_OPTIONS,
        map_index_template="{{ task.record_types }}",
        max_active_tis_per_dag=STREAMING_TASKS,
        max_records_per_second=AEP_RECORDS_PER_SECOND // STREAMING_TASKS,
    ).expand(record_types=list(RECORD_TYPES))
    expected = landed_expectations(stream.output)
    landed = AEPIngestionSensor(
        task_id="wait_for_ingestion",
        dataset_ids=dataset_ids(expected),
        expected_records=expected,
        deferrable=True,
        poke_interval=30,
    )
    [extract, targets] >> stream
