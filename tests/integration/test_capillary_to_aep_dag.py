"""CapillaryToAEPOperator inside real Airflow (``dag.test()``, env-var connection) under each emulator fault: every
valid record is accepted exactly once (counted by ``_id`` at the emulator) and every invalid one is dead-lettered
with its reason; rejects over the threshold fail the task after everything valid was sent; oversize records."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.faults import Fault, FaultPlan
from tests.integration.aep_setup import set_up

pytestmark = [pytest.mark.integration, pytest.mark.db]

VALID, INVALID = 1800, 200  # 10 % invalid rows

DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2025, 6, 1, tz="UTC")) as dag:
    CapillaryToAEPOperator(
        task_id="stream",
        record_types="{record_type}",
        targets={targets!r},
        inlet="{inlet}",
        extract_uri="{extract_uri}",
        dead_letter_uri="{dead_letter_uri}",
        interval_start="2025-06-01",
        mapping_options={{"org_id": "50001", "default_currency": "GBP"}},
        chunk_size=250,
        concurrency=4,
        max_reject_ratio={max_reject_ratio},
    )
"""


@pytest.fixture(scope="module", autouse=True)
def metadata_db() -> None:
    from airflow.utils.db import initdb

    initdb()


def write_events(root: Path, valid: int, invalid: int) -> None:
    """Loyalty events, every tenth row with an impossible time (10 % invalid when valid:invalid = 9:1)."""
    partition = root / "loyalty_event" / "dt=2025-06-01"
    partition.mkdir(parents=True)
    lines = ["event_id,event_name,event_time,customer_id,program_id,points,points_balance_after"]
    for n in range(valid + invalid):
        bad = n % 10 == 9 and n // 10 < invalid
        when = "2025-06-31T10:00:00+00:00" if bad else f"2025-06-01T{n % 24:02d}:{n % 60:02d}:00+00:00"
        lines.append(
            f"{uuid.uuid5(uuid.NAMESPACE_URL, f'e{n}')},pointsIssued,{when},{564100000 + n % 700},1001,{n % 90},{n}"
        )
    (partition / "part-0000.csv").write_text("\n".join(lines) + "\n")


def run_stream(
    dag_from_source: Any, tmp_path: Path, emulator: AEPEmulator, *, dag_id: str, max_reject_ratio: float
) -> tuple[str, str, list[dict[str, Any]]]:
    """Run the streaming task in dag.test(); returns (run state, dataset id, dead-letter lines)."""
    targets, inlet = set_up(["loyalty_event"])
    dead = tmp_path / "dead"
    dag = dag_from_source(
        dag_id,
        DAG_SOURCE.format(
            dag_id=dag_id,
            record_type="loyalty_event",
            targets=targets,
            inlet=inlet,
            extract_uri=(tmp_path / "extracts").as_uri(),
            dead_letter_uri=dead.as_uri(),
            max_reject_ratio=max_reject_ratio,
        ),
    )
    state = str(dag.test().state)
    letters = [
        json.loads(line) for path in sorted(dead.rglob("part-*.jsonl")) for line in path.read_text().splitlines()
    ]
    return state, targets["loyalty_event"]["dataset_id"], letters


@dataclass
class RecordingPlan(FaultPlan):
    """A fault plan that remembers what it injected, so a test can prove the fault really happened."""

    injected: list[str] = field(default_factory=list)

    def decide(self, method: str, path: str, *, ims: bool = False) -> Fault | None:
        fault = super().decide(method, path, ims=ims)
        if fault is not None:
            kind = "drop" if fault.drop else str(fault.status) if fault.status else "revoke" if fault.revoke else ""
            self.injected.append(kind)
        return fault

    def partial_status(self) -> int | None:
        status = super().partial_status()
        if status is not None:
            self.injected.append(f"partial-{status}")
        return status


@pytest.mark.parametrize(
    ("faults", "kinds"),
    [
        (RecordingPlan(seed=1, rate_429=0.3, retry_after=0), {"429"}),
        (RecordingPlan(seed=2, rate_5xx=0.3, retry_after=0), {"500", "503"}),
        (RecordingPlan(seed=3, revoke_after=12), {"revoke"}),
        (RecordingPlan(seed=4, drop_rate=0.2), {"drop"}),
        (RecordingPlan(seed=5, partial_rate=0.2), {"partial-500", "partial-503"}),
    ],
    ids=["429-storm", "5xx", "token-revoked-mid-run", "dropped-connections", "partial-207-failures"],
)
def test_every_valid_record_lands_exactly_once_under_faults(
    aep_emulator: AEPEmulator, dag_from_source: Any, tmp_path: Path, faults: RecordingPlan, kinds: set[str]
) -> None:
    write_events(tmp_path / "extracts", VALID, INVALID)
    aep_emulator.faults = faults
    try:
        state, dataset_id, letters = run_stream(
            dag_from_source, tmp_path, aep_emulator, dag_id=f"faults_{faults.seed}", max_reject_ratio=0.15
        )
    finally:
        aep_emulator.faults = FaultPlan()
    assert kinds & set(faults.injected), f"the fault was never injected: {faults.injected[:5]}"
    assert state == "success"
    records = aep_emulator.state.dataset_records(dataset_id)
    assert len(records.ids()) == VALID
    assert records.duplicates == 0, "no record may be accepted twice"
    assert len(letters) == INVALID
    assert {letter["reason"] for letter in letters} == {"invalid_datetime"}
    assert all(letter["row"]["values"]["event_time"].startswith("2025-06-31") for letter in letters)


def test_ten_percent_invalid_over_a_five_percent_threshold_fails_after_sending_the_rest(
    aep_emulator: AEPEmulator, dag_from_source: Any, tmp_path: Path
) -> None:
    write_events(tmp_path / "extracts", VALID, INVALID)
    state, dataset_id, letters = run_stream(
        dag_from_source, tmp_path, aep_emulator, dag_id="threshold", max_reject_ratio=0.05
    )
    assert state == "failed"
    assert len(aep_emulator.state.accepted_ids(dataset_id)) == VALID
    assert len(letters) == INVALID


def test_an_oversize_record_is_dead_lettered_with_its_reason(aep_emulator: AEPEmulator, tmp_path: Path) -> None:
    from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

    partition = tmp_path / "extracts" / "transaction" / "dt=2025-06-01"
    partition.mkdir(parents=True)
    base = {
        "org_id": 50001,
        "type": "REGULAR",
        "customer_id": 564100001,
        "billing_time": "2025-06-01T10:00:00+00:00",
        "currency": "GBP",
        "gross_amount": 10.0,
        "discount": 0.0,
        "amount": 10.0,
    }
    small = {**base, "transaction_id": 1, "bill_number": "B-1"}
    huge = {**base, "transaction_id": 2, "bill_number": "B-2", "custom_fields": {"note": "x" * 1_100_000}}
    (partition / "part-0000.jsonl").write_text(json.dumps(small) + "\n" + json.dumps(huge) + "\n")
    targets, inlet = set_up(["transaction"])
    from types import SimpleNamespace

    import pendulum

    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1, xcom_push=lambda **_: None)
    day = pendulum.datetime(2025, 6, 1, tz="UTC")
    summary = CapillaryToAEPOperator(
        task_id="stream",
        record_types="transaction",
        targets=targets,
        inlet=inlet,
        extract_uri=(tmp_path / "extracts").as_uri(),
        max_reject_ratio=0.5,
    ).execute({"ti": ti, "data_interval_start": day})  # type: ignore[arg-type]
    counts = summary["record_types"]["transaction"]
    assert counts["accepted"] == 1
    assert counts["dead_lettered"] == {"record_too_large": 1}
    letter = json.loads(
        next(Path(summary["dead_letter_uri"].removeprefix("file://")).rglob("part-*.jsonl")).read_text()
    )
    assert letter["row"]["line"] == 2
