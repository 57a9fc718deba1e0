"""The UI path for real: the example DAGs on the compose file's services (CeleryExecutor, PostgreSQL, Redis),
driven through Airflow's REST API exactly as the UI drives it, against the AEP emulator."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest
from airflow_stack import AirflowAPI, AirflowStack, StackError
from conftest import DAGS, EMULATOR_MODULE, LATE_DAY, release_late_day

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

#: Records of one demo day that AEP accepts, per dataset (the other rows are dead letters by design).
ACCEPTED_PER_DAY = {
    "Capillary Loyalty Profiles": 17,
    "Capillary Loyalty Transactions": 17,
    "Capillary Loyalty Events": 28,
}
DAG_IDS = ("capillary_aep_setup", "capillary_to_aep", "capillary_to_aep_backfill")
#: The components the CeleryExecutor topology needs, by Airflow command.
TOPOLOGY = {("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",), ("celery", "worker")}
RUN_TIMEOUT = 300.0


def test_started_services_are_the_compose_files(airflow_stack: AirflowStack) -> None:
    compose = airflow_stack.compose
    assert set(airflow_stack.services) == {service.name for service in compose.airflow_services}
    assert {service.args[:2] if service.args[0] == "celery" else service.args[:1] for service in compose.airflow_services} == TOPOLOGY
    # Every other service of the compose file is accounted for: one-shots ran, the backing services are Debian's,
    # the emulator runs in the test process.
    others = {service.name for service in compose.services} - set(airflow_stack.services)
    accounted = {service.name for service in compose.init_services} | {
        compose.with_image("postgres").name,
        compose.with_image("redis").name,
    }
    accounted |= {service.name for service in compose.services if EMULATOR_MODULE in service.args}
    assert others == accounted

    envs = {name: process.env or {} for name, process in airflow_stack.services.items()}
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
            if os_getpgid(proc.pid) not in groups:
                continue
            listening += [(proc.pid, c.laddr) for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            continue
    assert listening, "no listening socket found: the check would prove nothing"
    assert [entry for entry in listening if entry[1].ip != "127.0.0.1"] == []


def os_getpgid(pid: int) -> int:
    import os

    return os.getpgid(pid)


def wait_for_runs(
    api: AirflowAPI, runs: list[tuple[str, str]], seen: dict[tuple[str, str, str, int], set[str]], on_poll: Any = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Poll until every run has finished; record each task instance's states in ``seen``."""
    deadline = time.monotonic() + RUN_TIMEOUT
    finished: dict[tuple[str, str], dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for dag_id, run_id in runs:
            if (dag_id, run_id) in finished:
                continue
            tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)
            for ti in tis["task_instances"]:
                seen.setdefault((dag_id, run_id, ti["task_id"], ti["map_index"]), set()).add(str(ti["state"]))
            run = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                finished[(dag_id, run_id)] = run
        if on_poll is not None:
            on_poll()
        if len(finished) == len(runs):
            return finished
        time.sleep(1)
    raise StackError(f"runs not finished within {RUN_TIMEOUT} s: {sorted(set(runs) - set(finished))}")


def test_setup_adhoc_and_backfill_through_the_rest_api(
    airflow_stack: AirflowStack, airflow_api: AirflowAPI, aep_emulator: AEPEmulator, extracts: Any
) -> None:
    api = airflow_api
    aep_emulator.reset()
    started = time.monotonic()
    for dag_id in DAG_IDS:
        airflow_stack_wait_dag(api, dag_id)
        assert api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})["is_paused"] is False
    print(f"DAGs parsed and unpaused after {time.monotonic() - started:.0f} s")

    setup = api.call("POST", "/api/v2/dags/capillary_aep_setup/dagRuns", {"logical_date": None})
    seen: dict[tuple[str, str, str, int], set[str]] = {}
    finished = wait_for_runs(api, [("capillary_aep_setup", setup["dag_run_id"])], seen)
    assert [run["state"] for run in finished.values()] == ["success"]
    print(f"setup done after {time.monotonic() - started:.0f} s")

    conf = {
        "start_date": "2025-06-02",
        "end_date": "2025-06-02",
        "record_types": ["customer", "transaction", "loyalty_event"],
        "mode": "stream",
        "dry_run": False,
        "max_records_per_second": 5000,
    }
    adhoc = api.call("POST", "/api/v2/dags/capillary_to_aep_backfill/dagRuns", {"logical_date": None, "conf": conf})
    assert adhoc["conf"] == conf

    body = {"dag_id": "capillary_to_aep", "from_date": "2025-06-02T00:00:00Z", "to_date": "2025-06-04T00:00:00Z"}
    planned = api.call("POST", "/api/v2/backfills/dry_run", body)
    print(planned)
    backfill = api.call("POST", "/api/v2/backfills", {**body, "max_active_runs": 3, "reprocess_behavior": "none"})
    print(backfill)
    runs = api.call("GET", "/api/v2/dags/capillary_to_aep/dagRuns", run_type="backfill", limit=10)["dag_runs"]
    print([(r["dag_run_id"], r["logical_date"], r["data_interval_start"], r["data_interval_end"]) for r in runs])

    late_run = next(r["dag_run_id"] for r in runs if r["data_interval_start"].startswith(LATE_DAY))
    released: list[float] = []

    def release_when_deferred() -> None:
        states = seen.get(("capillary_to_aep", late_run, "wait_for_extract", -1), set())
        if not released and "deferred" in states:
            release_late_day(extracts)
            released.append(time.monotonic())

    all_runs = [("capillary_to_aep_backfill", adhoc["dag_run_id"])] + [("capillary_to_aep", r["dag_run_id"]) for r in runs]
    finished = wait_for_runs(api, all_runs, seen, release_when_deferred)
    print(f"all runs done after {time.monotonic() - started:.0f} s")
    for key, states in sorted(seen.items()):
        print(key, states)
    print(aep_emulator.state.stats())
    assert {key: run["state"] for key, run in finished.items()} == {key: "success" for key in all_runs}


def airflow_stack_wait_dag(api: AirflowAPI, dag_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            api.call("GET", f"/api/v2/dags/{dag_id}")
            return
        except StackError:
            time.sleep(2)
    raise StackError(f"{dag_id} not parsed")
