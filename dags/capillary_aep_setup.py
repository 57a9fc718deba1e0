"""Create (or find) everything in AEP the other Capillary DAGs stream into: per record type an XDM schema with its
field groups and primary identity, a dataset, and a dataflow from the shared HTTP API streaming connection.

Safe to run any number of times: a second run finds everything and changes nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from capillary_common import aep_targets

with DAG(
    dag_id="capillary_aep_setup",
    description="Find or create the AEP schemas, datasets and streaming dataflows for Capillary loyalty data",
    schedule=None,
    start_date=pendulum.datetime(2025, 6, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "aep", "example"],
    doc_md=__doc__,
) as dag:
    aep_targets()
