"""Checkpoints inside real Airflow: the task process of a ``CapillaryToAEPOperator`` is SIGKILLed mid-run on
a Celery worker of the compose file's services, Airflow retries the task instance, and the retry resumes from
the checkpoint in Airflow's task state store: nothing is lost and at most the requests in flight at the kill
are sent twice.

The DAG is written at run time into the dags folder of a stack of its own (the session's stack serves the
repository's ``dags/``, which this test must not touch).
"""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from airflow_stack import AirflowAPI, AirflowStack, StackError, wait_for
from conftest import COMPOSE_FILE, emulator_service

from airflow_provider_capillary.operators.dataset import AEPCreateDatasetOperator
from airflow_provider_capillary.operators.schema import AEPCreateSchemaOperator
from airflow_provider_capillary.operators.streaming_connection import AEPCreateStreamingConnectionOperator
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

DAG_ID = "capillary_sigkill_retry"
TASK_ID = "stream"
ROWS = 20_000
CHUNK_SIZE = 1000
CONCURRENCY = 2
#: Records the emulator must have accepted before the task process is killed.
KILL_AFTER = 4000
RUN_TIMEOUT = 180.0
DAG_TEMPLATE = """
    from __future__ import annotations

    from datetime import timedelta

    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

    with DAG(
        dag_id={dag_id!r},
        schedule=None,
        start_date=pendulum.datetime(2025, 6, 1, tz="UTC"),
        catchup=False,
    ):
        CapillaryToAEPOperator(
            task_id={task_id!r},
            record_types="loyalty_event",
            targets={targets!r},
            inlet={inlet!r},
            extract_uri={extract_uri!r},
            interval_start="2025-06-01T00:00:00+00:00",
            mapping_options={{"org_id": "50001", "default_currency": "GBP"}},
            chunk_size={chunk_size},
            concurrency={concurrency},
            max_records_per_second=2000,
            retries=1,
            retry_delay=timedelta(seconds=2),
        )
"""


def write_events(root: Path, rows: int) -> None:
    """A loyalty_event partition for 2025-06-01 of ``rows`` valid events."""
    partition = root / "loyalty_event" / "dt=2025-06-01"
    partition.mkdir(parents=True)
    header = "event_id,event_name,event_time,customer_id,program_id,points,points_balance_after"
    lines = [header] + [
        f"{uuid.uuid5(uuid.NAMESPACE_URL, f'event-{n}')},pointsIssued,"
        f"2025-06-01T{n % 24:02d}:{n % 60:02d}:00+00:00,{564100000 + n % 500},1001,{n % 90},{n}"
        for n in range(rows)
    ]
    (partition / "part-0000.csv").write_text("\n".join(lines) + "\n")
    (partition / "_SUCCESS").touch()


@pytest.fixture(scope="module")
def emulator(shared_dir: Path) -> Iterator[AEPEmulator]:
    """An AEP emulator of this module's own (records land at once)."""
    with AEPEmulator(xdm_root=shared_dir / "reference" / "xdm") as aep:
        yield aep


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty dags folder the test writes its DAG into."""
    return tmp_path_factory.mktemp("sigkill-dags")


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    emulator: AEPEmulator,
    dags_folder: Path,
) -> Iterator[AirflowStack]:
    """The compose file's services on PostgreSQL and Redis, serving :func:`dags_folder`."""
    root = tmp_path_factory.mktemp("sigkill-stack")
    stack = AirflowStack(COMPOSE_FILE, root, dags_folder=dags_folder, extra_env={})
    stack.add_endpoint(emulator_service(stack.compose).name, int(emulator.url.rsplit(":", 1)[1]))
    with stack:
        yield stack


def set_up(emulator: AEPEmulator) -> tuple[dict[str, dict[str, str]], str]:
    """Schema, dataset and streaming dataflow for loyalty_event through the set-up operators, run directly:
    (targets, inlet)."""
    context: Any = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emulator.connection_json())
        schema = AEPCreateSchemaOperator(task_id="s", record_type="loyalty_event").execute(context)
        dataset = AEPCreateDatasetOperator(
            task_id="d", name="Capillary loyalty_event", schema_id=schema["schema_id"]
        ).execute(context)
        flow = AEPCreateStreamingConnectionOperator(
            task_id="c",
            name="Capillary Loyalty Streaming",
            dataset_id=dataset["dataset_id"],
            schema_id=schema["schema_id"],
        ).execute(context)
    target = {
        "dataset_id": dataset["dataset_id"],
        "schema_id": schema["schema_id"],
        "flow_id": flow["flow_id"],
    }
    return {"loyalty_event": target}, flow["inlet_url"]


def task_instance(api: AirflowAPI, run_id: str) -> dict[str, Any]:
    """The task instance of the run, as the REST API shows it."""
    return dict(api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}"))


def task_runner(stack: AirflowStack, ti_id: str) -> psutil.Process:
    """The process running the task instance: the task runner forked by a Celery worker's supervisor, which
    titles itself ``airflow worker -- <task instance id>``."""
    title = f"airflow worker -- {ti_id}"
    for worker in stack.services[stack.compose.running("celery").name]:
        assert worker.process is not None
        for child in psutil.Process(worker.process.pid).children(recursive=True):
            try:
                if " ".join(child.cmdline()).startswith(title):
                    return child
            except psutil.NoSuchProcess:
                continue
    raise StackError(f"no process titled {title!r} under the Celery workers")


def test_sigkilled_task_is_retried_by_airflow_and_resumes_from_the_checkpoint(
    stack: AirflowStack, emulator: AEPEmulator, dags_folder: Path, tmp_path: Path
) -> None:
    extract_root = tmp_path / "extracts"
    write_events(extract_root, ROWS)
    targets, inlet = set_up(emulator)
    dataset_id = targets["loyalty_event"]["dataset_id"]
    source = DAG_TEMPLATE.format(
        dag_id=DAG_ID,
        task_id=TASK_ID,
        targets=targets,
        inlet=inlet,
        extract_uri=extract_root.as_uri(),
        chunk_size=CHUNK_SIZE,
        concurrency=CONCURRENCY,
    )
    (dags_folder / f"{DAG_ID}.py").write_text(textwrap.dedent(source))

    # The dag-processor lists its folder every 5 minutes: have the new file parsed now, as an operator would.
    processor = stack.compose.running("dag-processor")
    subprocess.run(
        [*stack.service_argv(processor)[:3], "dags", "reserialize"],
        env=stack.service_env(processor),
        capture_output=True,
        check=True,
        timeout=120,
    )
    api = AirflowAPI(stack.url, "admin", stack.admin_password())
    dag_ids = {dag["dag_id"] for dag in api.call("GET", "/api/v2/dags", limit=100)["dags"]}
    assert DAG_ID in dag_ids
    assert api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})["is_paused"] is False
    run_id = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"]
    triggered = time.monotonic()

    def accepted() -> int:
        return len(emulator.state.accepted_ids(dataset_id))

    def enough_accepted() -> bool:
        stack.check_running()
        return accepted() >= KILL_AFTER

    wait_for(enough_accepted, 120, f"{KILL_AFTER} accepted records", interval=0.05)
    first_try = task_instance(api, run_id)
    assert first_try["try_number"] == 1 and first_try["state"] == "running"
    runner = task_runner(stack, first_try["id"])
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    killed_at = accepted()
    killed = time.monotonic()
    assert KILL_AFTER <= killed_at < ROWS, "the task must be killed mid-run"

    def finished() -> bool:
        stack.check_running()
        return api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"] in ("success", "failed")

    wait_for(finished, RUN_TIMEOUT, f"run {run_id} to finish", interval=1)
    done = time.monotonic()
    assert api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"] == "success"
    final = task_instance(api, run_id)
    assert final["state"] == "success" and final["try_number"] == 2

    records = emulator.state.dataset_records(dataset_id)
    assert len(records.ids()) == ROWS
    print(
        f"\nkilled after {killed_at} accepted records ({killed - triggered:.1f} s after the trigger); "
        f"re-sent on retry: {records.duplicates}; retry finished {done - killed:.1f} s after the kill"
    )
    # At most the requests in flight at the kill are sent twice: the unacknowledged chunks.
    assert records.duplicates <= (CONCURRENCY + 1) * CHUNK_SIZE

    # The checkpoint lives in Airflow's task state store (kept after success by default), not in a file.
    ti_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}"
    entries = api.call("GET", f"{ti_path}/state-store")["task_state_store"]
    checkpoint = {entry["key"]: entry["value"] for entry in entries}["capillary_to_aep:loyalty_event"]
    # Counts resume with the checkpoint: each row is counted once although some were sent twice.
    assert checkpoint["done"] is True
    assert (checkpoint["counts"]["read"], checkpoint["counts"]["accepted"]) == (ROWS, ROWS)
    assert list(extract_root.rglob("_checkpoints")) == []

    path = f"{ti_path}/logs/2"
    events = [str(line.get("event")) for line in api.call("GET", path, full_content="true")["content"]]
    resumed = [e for e in events if "loyalty_event: resuming after" in e and "(checkpoint)" in e]
    assert resumed, "\n".join(events)
