"""The example DAGs as users run them: parsed by Airflow's DagBag, then run with ``airflow dags test`` (real CLI,
env-var connection and Variable) against the AEP emulator and a copy of the demo extracts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.db]

DAGS = REPO_ROOT / "dags"
#: Valid records per demo day (the samples README's expected fates; the rest are dead letters by design).
PER_DAY = {"Capillary Loyalty Profiles": 17, "Capillary Loyalty Transactions": 17, "Capillary Loyalty Events": 28}


def test_dag_bag_imports_every_example_dag_without_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.syspath_prepend(str(DAGS))  # Airflow puts the dags folder on sys.path; the DAGs share a module
    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors
    assert set(bag.dag_ids) == {"capillary_aep_setup", "capillary_to_aep", "capillary_to_aep_backfill"}
    backfill = bag.dags["capillary_to_aep_backfill"]
    assert set(backfill.params) == {
        "start_date",
        "end_date",
        "record_types",
        "mode",
        "dry_run",
        "max_records_per_second",
    }
    scheduled = bag.dags["capillary_to_aep"]
    assert scheduled.catchup is False
    assert type(scheduled.timetable).__name__ == "CronDataIntervalTimetable"


@pytest.mark.parametrize("budget", [10_000, 1_000, 5, 1])
def test_streaming_tasks_share_one_budget(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """At most N stream tasks run at once and each streams at 1/N: a DAG never exceeds its budget in total."""
    import jinja2
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.syspath_prepend(str(DAGS))
    bag = DagBag(dag_folder=str(DAGS))
    scheduled = bag.dags["capillary_to_aep"].get_task("stream")
    backfill = bag.dags["capillary_to_aep_backfill"].get_task("stream")
    limit = scheduled.partial_kwargs["max_active_tis_per_dag"]
    assert 1 < limit == backfill.partial_kwargs["max_active_tis_per_dag"]
    assert limit * scheduled.partial_kwargs["max_records_per_second"] <= 10_000  # AEP's streaming guidance
    rendered = jinja2.Environment().from_string(backfill.partial_kwargs["max_records_per_second"])
    rate = int(rendered.render(params={"max_records_per_second": budget}))
    assert rate == max(budget // limit, 1)  # never 0, which would mean "no limit"
    assert limit * rate <= max(budget, limit)


class Airflow:
    """``airflow`` CLI runs in a throw-away AIRFLOW_HOME, pointed at the repo's dags and the emulator."""

    def __init__(self, home: Path, emulator: AEPEmulator, extracts: Path) -> None:
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_AEP_DEFAULT": emulator.connection_json(),
            "AIRFLOW_VAR_CAPILLARY_EXTRACT_URI": extracts.as_uri(),
        }
        self.env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        self.run("db", "migrate")

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Iterator[tuple[Airflow, AEPEmulator, Path]]:
    root = tmp_path_factory.mktemp("example_dags")
    extracts = root / "extracts"
    shutil.copytree(DAGS / "demo_extracts", extracts)
    with AEPEmulator(xdm_root=shared_dir / "reference" / "xdm") as emulator:
        yield Airflow(root / "airflow", emulator, extracts), emulator, extracts


def landed(emulator: AEPEmulator) -> dict[str, tuple[int, int]]:
    """(unique records, re-sent duplicates) per dataset name."""
    datasets = emulator.state.stats()["sandboxes"]["prod"]["datasets"]
    return {d["name"]: (d["accepted"], d["duplicates"]) for d in datasets.values()}


@pytest.mark.timeout(900)
def test_setup_then_scheduled_runs_then_ad_hoc_backfill(stack: tuple[Airflow, AEPEmulator, Path]) -> None:
    airflow, emulator, extracts = stack
    airflow.run("dags", "test", "capillary_aep_setup")
    stats = emulator.state.stats()["sandboxes"]["prod"]
    assert (stats["schemas"], stats["connections"], stats["flows"], len(stats["datasets"])) == (3, 1, 3, 3)

    # The daily run dated 2025-06-02 covers the interval 2025-06-01.
    log = airflow.run("dags", "test", "capillary_to_aep", "2025-06-02")
    assert "DagRun Finished" in log and "state=success" in log
    assert landed(emulator) == {name: (count, 0) for name, count in PER_DAY.items()}

    # Re-running an interval is harmless: same _ids, nothing new.
    airflow.run("dags", "test", "capillary_to_aep", "2025-06-02")
    assert {name: counts[0] for name, counts in landed(emulator).items()} == PER_DAY

    # An ad-hoc backfill of the next two days through the Params form's conf.
    conf = {"start_date": "2025-06-02", "end_date": "2025-06-03", "record_types": ["transaction", "loyalty_event"]}
    airflow.run("dags", "test", "capillary_to_aep_backfill", "-c", json.dumps(conf))
    after = {name: counts[0] for name, counts in landed(emulator).items()}
    assert after == {
        "Capillary Loyalty Profiles": 17,  # not asked for
        "Capillary Loyalty Transactions": 17 * 3,
        "Capillary Loyalty Events": 28 * 3,
    }
    letters = list((extracts / "_dead_letters" / "capillary_to_aep_backfill").rglob("part-*.jsonl"))
    assert len(letters) == 4, "one dead-letter file per day and record type"

    # A dry run reads, maps and validates, and sends nothing.
    dry = {"start_date": "2025-06-01", "end_date": "2025-06-01", "dry_run": True}
    airflow.run("dags", "test", "capillary_to_aep_backfill", "-c", json.dumps(dry))
    assert {name: counts[0] for name, counts in landed(emulator).items()} == after


def test_bad_params_are_refused_before_any_task(stack: tuple[Airflow, AEPEmulator, Path]) -> None:
    airflow, _, _ = stack
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "capillary_to_aep_backfill", "-c", '{"mode": "fast"}'],
        env=airflow.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "ParamValidationError" in result.stdout + result.stderr
