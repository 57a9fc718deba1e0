"""The UI path for real: the example DAGs on the compose file's services (CeleryExecutor, PostgreSQL, Redis),
driven through Airflow's REST API exactly as the UI drives it, against the AEP emulator."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from airflow_stack import WORKER_REPLICAS, AirflowAPI, AirflowStack, StackError, wait_for
from conftest import ACCEPTED_PER_DAY, EMULATOR_MODULE, LATE_DAY, release_late_day

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

DAG_IDS = ("capillary_aep_setup", "capillary_to_aep", "capillary_to_aep_backfill")
#: The components the CeleryExecutor topology needs, by Airflow command.
TOPOLOGY = {("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",), ("celery", "worker")}
RUN_TIMEOUT = 300.0
#: A deferral in a task's log: the worker defers, the triggerer's part (trigger started, fired), the task resumes.
DEFERRAL_MARKERS = (
    r"^Pausing task as DEFERRED\.",
    r"^trigger \S+ \(ID \d+\) starting$",
    r"^Trigger fired event",
    r"^::group::Pre Execute",
)
#: The ad-hoc run: one day that the backfill of ``capillary_to_aep`` covers too.
ADHOC_CONF = {
    "start_date": "2025-06-02",
    "end_date": "2025-06-02",
    "record_types": ["customer", "transaction", "loyalty_event"],
    "mode": "stream",
    "dry_run": False,
    "max_records_per_second": 5000,
}


def test_started_services_are_the_compose_files(airflow_stack: AirflowStack) -> None:
    compose = airflow_stack.compose
    assert set(airflow_stack.services) == {service.name for service in compose.airflow_services}
    assert {
        service.args[:2] if service.args[0] == "celery" else service.args[:1] for service in compose.airflow_services
    } == TOPOLOGY
    # Every other service of the compose file is accounted for: one-shots ran, the backing services are Debian's,
    # the emulator runs in the test process.
    others = {service.name for service in compose.services} - set(airflow_stack.services)
    accounted = {service.name for service in compose.init_services} | {
        compose.with_image("postgres").name,
        compose.with_image("redis").name,
    }
    accounted |= {service.name for service in compose.services if EMULATOR_MODULE in service.args}
    assert others == accounted

    assert len(airflow_stack.services[compose.running("celery").name]) == WORKER_REPLICAS
    envs = {p.name: p.env or {} for processes in airflow_stack.services.values() for p in processes}
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
        values = {env.get(key) for env in envs.values()}
        assert len(values) == 1 and None not in values and "" not in values, f"{key} differs between services"
    for env in envs.values():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{airflow_stack.url}/execution/"
        assert env["AIRFLOW__API__HOST"] == "127.0.0.1"


def test_every_listening_socket_is_on_loopback(airflow_stack: AirflowStack) -> None:
    groups = {process.process.pid for process in airflow_stack.processes() if process.process is not None}
    listening = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) not in groups:
                continue
            listening += [(proc.pid, c.laddr) for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            continue
    assert listening, "no listening socket found: the check would prove nothing"
    assert [entry for entry in listening if entry[1].ip != "127.0.0.1"] == []


def wait_for_dags(api: AirflowAPI) -> None:
    """Wait (bounded) until the dag-processor has parsed every example DAG."""

    def parsed() -> bool:
        return set(DAG_IDS) <= {dag["dag_id"] for dag in api.call("GET", "/api/v2/dags", limit=100)["dags"]}

    wait_for(parsed, 120, "the example DAGs to be parsed", interval=2)


def unpause(api: AirflowAPI, dag_id: str) -> None:
    """Unpause a DAG as the UI's toggle does."""
    assert api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})["is_paused"] is False


class RunWatcher:
    """Polls DAG runs until they finish and remembers every state each of their task instances was seen in.

    :param api: the REST API.
    :param stack: the deployment; a service that ends while runs are awaited fails the wait at once.
    """

    def __init__(self, api: AirflowAPI, stack: AirflowStack) -> None:
        self.api = api
        self.stack = stack
        self.seen: dict[tuple[str, str, str], set[str]] = {}

    def states(self, dag_id: str, run_id: str, task_id: str) -> set[str]:
        """The states a (not mapped) task instance was seen in."""
        return self.seen.get((dag_id, run_id, task_id), set())

    def wait(
        self, runs: list[tuple[str, str]], on_poll: Callable[[], None] = lambda: None
    ) -> dict[tuple[str, str], str]:
        """Poll until every ``(dag_id, run_id)`` has finished (bounded by :data:`RUN_TIMEOUT`); return the states."""
        deadline = time.monotonic() + RUN_TIMEOUT
        finished: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            self.stack.check_running()
            for dag_id, run_id in runs:
                if (dag_id, run_id) in finished:
                    continue
                path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
                for ti in self.api.call("GET", f"{path}/taskInstances", limit=100)["task_instances"]:
                    self.seen.setdefault((dag_id, run_id, ti["task_id"]), set()).add(str(ti["state"]))
                state = self.api.call("GET", path)["state"]
                if state in ("success", "failed"):
                    finished[(dag_id, run_id)] = state
            on_poll()
            if len(finished) == len(runs):
                return finished
            time.sleep(1)
        raise StackError(f"runs not finished within {RUN_TIMEOUT} s: {sorted(set(runs) - set(finished))}")


def task_log(api: AirflowAPI, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """The events of a task instance's first try, as the UI's log view gets them (triggerer's part included)."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"
    return [str(line.get("event")) for line in api.call("GET", path, full_content="true")["content"]]


def deferral_problem(events: list[str]) -> str | None:
    """
    Why a task log does not show the task deferring, its trigger starting and firing in the triggerer, and the task
    resuming, in that order; ``None`` when it shows all of that.

    :param events: the log's events, from :func:`task_log`.
    """
    position = 0
    for marker in DEFERRAL_MARKERS:
        found = next((n for n in range(position, len(events)) if re.search(marker, events[n])), None)
        if found is None:
            return f"no {marker!r} after line {position} of its log:\n" + "\n".join(events)
        position = found + 1
    return None


def test_setup_adhoc_and_backfill_through_the_rest_api(
    airflow_stack: AirflowStack, airflow_api: AirflowAPI, aep_emulator: AEPEmulator, extracts: Path
) -> None:
    api, watcher = airflow_api, RunWatcher(airflow_api, airflow_stack)
    aep_emulator.reset()
    wait_for_dags(api)

    # Set-up first: find-or-create is not meant to race with itself.
    unpause(api, "capillary_aep_setup")
    setup = api.call("POST", "/api/v2/dags/capillary_aep_setup/dagRuns", {"logical_date": None})
    assert watcher.wait([("capillary_aep_setup", setup["dag_run_id"])]) == {
        ("capillary_aep_setup", setup["dag_run_id"]): "success"
    }
    names = {d["name"] for d in aep_emulator.state.stats()["sandboxes"]["prod"]["datasets"].values()}
    assert names == set(ACCEPTED_PER_DAY)

    unpause(api, "capillary_to_aep_backfill")
    unpause(api, "capillary_to_aep")
    adhoc = api.call(
        "POST", "/api/v2/dags/capillary_to_aep_backfill/dagRuns", {"logical_date": None, "conf": ADHOC_CONF}
    )
    assert adhoc["conf"] == ADHOC_CONF

    # A backfill's dates are logical dates; this timetable dates a run at its data interval's start.
    backfill = api.call(
        "POST",
        "/api/v2/backfills",
        {"dag_id": "capillary_to_aep", "from_date": "2025-06-01T00:00:00Z", "to_date": "2025-06-03T00:00:00Z"},
    )
    runs = [
        run
        for run in api.call("GET", "/api/v2/dags/capillary_to_aep/dagRuns", limit=100)["dag_runs"]
        if run["run_type"] == "backfill"
    ]
    intervals = sorted((run["data_interval_start"][:10], run["data_interval_end"][:10]) for run in runs)
    assert intervals == [("2025-06-01", "2025-06-02"), ("2025-06-02", "2025-06-03"), ("2025-06-03", "2025-06-04")]
    run_of_day = {run["data_interval_start"][:10]: run["dag_run_id"] for run in runs}

    late_run = run_of_day[LATE_DAY]
    released: list[bool] = []

    def release_when_deferred() -> None:
        if not released and "deferred" in watcher.states("capillary_to_aep", late_run, "wait_for_extract"):
            release_late_day(extracts)
            released.append(True)

    all_runs = [("capillary_to_aep_backfill", adhoc["dag_run_id"])]
    all_runs += [("capillary_to_aep", run_id) for run_id in run_of_day.values()]
    assert watcher.wait(all_runs, release_when_deferred) == dict.fromkeys(all_runs, "success")
    assert released, "the held-back day's run never deferred its extract sensor"
    wait_for(
        lambda: api.call("GET", f"/api/v2/backfills/{backfill['id']}")["completed_at"] is not None,
        60,
        "the scheduler to mark the backfill completed",
    )

    # Exactly the demo days' accepted records, each once; the day both paths sent came twice, as duplicates.
    stats = aep_emulator.state.stats()["sandboxes"]["prod"]["datasets"]
    by_name = {counts["name"]: (dataset_id, counts) for dataset_id, counts in stats.items()}
    assert set(by_name) == set(ACCEPTED_PER_DAY)
    for name, per_day in ACCEPTED_PER_DAY.items():
        dataset_id, counts = by_name[name]
        ids = aep_emulator.state.accepted_ids(dataset_id)
        assert (len(ids), len(set(ids))) == (3 * per_day, 3 * per_day), name
        assert (counts["received"], counts["duplicates"], counts["failed"]) == (4 * per_day, per_day, 0), name

    # The deferrable sensors went through the triggerer: deferred, trigger ran and fired, task resumed.
    assert "deferred" in watcher.states("capillary_to_aep", late_run, "wait_for_extract")
    assert deferral_problem(task_log(api, "capillary_to_aep", late_run, "wait_for_extract")) is None
    # The ingestion sensors defer too: records land LANDING_DELAY s after they were sent, so a sensor that checks
    # before that defers to the triggerer. Whether each one checks that early depends on how busy the machine is
    # (and on the shared day the other run's records may already have landed), so at least one must have, and every
    # one that deferred must have gone through the triggerer's whole cycle.
    ingestion = {run: task_log(api, *run, "wait_for_ingestion") for run in all_runs}
    deferred = {run: log for run, log in ingestion.items() if any(re.search(DEFERRAL_MARKERS[0], e) for e in log)}
    assert deferred, "no ingestion sensor deferred"
    assert {run: deferral_problem(log) for run, log in deferred.items() if deferral_problem(log)} == {}

    # The Celery workers shared the work.
    for worker in airflow_stack.services[airflow_stack.compose.running("celery").name]:
        assert "Executing workload in Celery" in worker.log_path.read_text(), f"{worker.name} ran no task"
