"""Fixtures of the end-to-end tests: a real Airflow deployment (PostgreSQL, Redis, Celery) on loopback, started from
``docker/docker-compose.yaml``, with the local AEP emulator standing in for the compose file's ``aep-emulator``.

Needs Debian's ``postgresql``, ``redis-server`` and ``chromium`` (``scripts/ci_services.sh`` installs them) and
``apache-airflow-providers-celery``. Service logs stay in the session's tmp folder; their tails are added to the
report of a failed test.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_stack import AirflowAPI, AirflowStack, ComposeFile, ComposeService

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "docker-compose.yaml"
DAGS = REPO / "dags"
EMULATOR_MODULE = "airflow_provider_capillary.testing.aep_emulator"
#: Seconds before accepted records show in AEP's Catalog: long enough that the ingestion sensors find nothing at
#: their first check and defer to the triggerer, short enough that the trigger's next poll (30 s) finds them.
LANDING_DELAY = 40.0
#: The demo day whose extract is held back until its run's extract sensor has deferred to the triggerer.
LATE_DAY = "2025-06-03"
#: Records of one demo day that AEP accepts, per dataset (the other rows are dead letters by design).
ACCEPTED_PER_DAY = {
    "Capillary Loyalty Profiles": 17,
    "Capillary Loyalty Transactions": 17,
    "Capillary Loyalty Events": 28,
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Add the tails of every service's log to the report of a failed e2e test."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("airflow_stack")
    if report.failed and isinstance(stack, AirflowStack):
        report.sections.append(("service logs (tails)", stack.log_tails()))
    return report


def emulator_service(compose: ComposeFile) -> ComposeService:
    """The compose service that runs the AEP emulator (the tests run it in-process instead)."""
    for service in compose.services:
        if EMULATOR_MODULE in service.args:
            return service
    raise AssertionError(f"{COMPOSE_FILE} runs no {EMULATOR_MODULE}")


@pytest.fixture(scope="session")
def aep_emulator(shared_dir: Path) -> Iterator[AEPEmulator]:
    """The AEP emulator (official XDM definitions, records landing after :data:`LANDING_DELAY`)."""
    with AEPEmulator(xdm_root=shared_dir / "reference" / "xdm", landing_delay=LANDING_DELAY) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo extracts (dead letters are written beside them), with :data:`LATE_DAY`'s partitions held
    back in a sibling folder ``late`` until a test releases them with :func:`release_late_day`."""
    root = tmp_path_factory.mktemp("extracts")
    copy, late = root / "demo", root / "late"
    shutil.copytree(DAGS / "demo_extracts", copy, ignore=shutil.ignore_patterns("_dead_letters"))
    for partition in copy.glob(f"*/dt={LATE_DAY}"):
        target = late / partition.parent.name / partition.name
        target.parent.mkdir(parents=True)
        partition.rename(target)
    return copy


def release_late_day(extracts: Path) -> None:
    """Move the held-back partitions into the extract folder, each in one rename (a partition appears whole)."""
    late = extracts.parent / "late"
    for partition in late.glob(f"*/dt={LATE_DAY}"):
        partition.rename(extracts / partition.parent.name / partition.name)


@pytest.fixture(scope="session")
def airflow_stack(
    tmp_path_factory: pytest.TempPathFactory, aep_emulator: AEPEmulator, extracts: Path
) -> Iterator[AirflowStack]:
    """PostgreSQL, Redis and every Airflow service of the compose file, healthy; all stopped at the end."""
    root = tmp_path_factory.mktemp("airflow-stack")
    stack = AirflowStack(
        COMPOSE_FILE,
        root,
        dags_folder=DAGS,
        extra_env={"AIRFLOW_VAR_CAPILLARY_EXTRACT_URI": extracts.as_uri()},
    )
    emulator_port = int(aep_emulator.url.rsplit(":", 1)[1])
    stack.add_endpoint(emulator_service(stack.compose).name, emulator_port)
    with stack:
        yield stack


@pytest.fixture(scope="session")
def airflow_api(airflow_stack: AirflowStack) -> AirflowAPI:
    """The REST API, logged in as ``admin`` with the password the api-server generated."""
    return AirflowAPI(airflow_stack.url, "admin", airflow_stack.admin_password())
