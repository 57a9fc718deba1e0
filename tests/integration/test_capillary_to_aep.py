"""CapillaryToAEPOperator against the AEP emulator over real sockets: what lands, what is dead-lettered and why,
reject thresholds, dry runs, batch mode, and resuming after a failure or a SIGKILL without losing a record."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.exceptions import AirflowFailException

from airflow_provider_capillary.exceptions import AEPServerError
from airflow_provider_capillary.hooks.aep import AEPHook
from airflow_provider_capillary.ingestion.sender import StreamingIngestionError
from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from tests.integration.aep_setup import set_up

pytestmark = pytest.mark.integration

DAY = pendulum.datetime(2025, 6, 1, tz="UTC")
SAMPLE_FILES = {"customer": "customers.csv", "transaction": "transactions.jsonl", "loyalty_event": "loyalty_events.csv"}
MAPPING = {"org_id": "50001", "default_currency": "GBP"}


def context(run_id: str = "run-1", **extra: Any) -> dict[str, Any]:
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id="dag",
        run_id=run_id,
        task_id="stream",
        map_index=-1,
        xcom_push=lambda key, value: pushed.update({key: value}),
    )
    return {"ti": ti, "data_interval_start": DAY, "data_interval_end": DAY.add(days=1), "pushed": pushed, **extra}


@pytest.fixture
def extracts(tmp_path: Path, shared_dir: Path) -> Path:
    """The sample extracts in the documented layout, for the interval 2025-06-01."""
    root = tmp_path / "extracts"
    for record_type, name in SAMPLE_FILES.items():
        partition = root / record_type / "dt=2025-06-01"
        partition.mkdir(parents=True)
        shutil.copy(shared_dir / "samples" / "capillary" / name, partition / f"part-0000{Path(name).suffix}")
        (partition / "_SUCCESS").touch()
    return root


def dead_letters(base: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(base.rglob("part-*.jsonl")) for line in path.read_text().splitlines()]


def test_samples_land_exactly_and_every_row_is_accounted_for(aep_emulator: AEPEmulator, extracts: Path) -> None:
    targets, inlet = set_up(list(SAMPLE_FILES))
    operator = CapillaryToAEPOperator(
        task_id="stream",
        record_types=list(SAMPLE_FILES),
        targets=targets,
        inlet=inlet,
        extract_uri=extracts.as_uri(),
        mapping_options=MAPPING,
        max_reject_ratio=0.25,
    )
    summary = operator.execute(context())  # type: ignore[arg-type]

    per_type = summary["record_types"]
    # The samples README's expected fates (phone-only identities are not accepted as primary by default).
    assert {rt: per_type[rt]["accepted"] for rt in SAMPLE_FILES} == {
        "customer": 17,
        "transaction": 17,
        "loyalty_event": 28,
    }
    assert per_type["customer"]["dead_lettered"] == {"invalid_datetime": 1, "missing_primary_key": 1, "invalid_date": 1}
    assert per_type["customer"]["duplicates"] == 1 and per_type["customer"]["superseded"] == 1
    assert per_type["transaction"]["dead_lettered"] == {"no_identity": 1, "invalid_datetime": 1}
    assert per_type["loyalty_event"]["dead_lettered"] == {
        "missing_primary_key": 1,
        "negative_points_for_credit_event": 1,
        "invalid_datetime": 1,
        "unsupported_event_name": 1,
    }
    for record_type, counts in per_type.items():
        assert counts["balanced"], record_type
        assert counts["read"] == {"customer": 22, "transaction": 20, "loyalty_event": 33}[record_type]
        dataset_ids = aep_emulator.state.accepted_ids(targets[record_type]["dataset_id"])
        assert len(dataset_ids) == counts["accepted"]
    assert summary["read"] == 75 and summary["accepted"] == 62 and summary["dead_lettered"] == 9

    letters = dead_letters(Path(summary["dead_letter_uri"].removeprefix("file://")))
    assert len(letters) == 9
    where = {(Path(d["row"]["file"]).parent.parent.name, d["row"]["line"], d["reason"]) for d in letters}
    assert ("customer", 10, "invalid_datetime") in where
    assert ("transaction", 9, "no_identity") in where
    assert ("loyalty_event", 27, "unsupported_event_name") in where
    row = next(d for d in letters if d["reason"] == "unsupported_event_name")["row"]
    assert row["values"]["event_name"] == "cardUpdated"


def test_rejects_over_the_threshold_fail_the_run_after_sending_everything_valid(
    aep_emulator: AEPEmulator, extracts: Path
) -> None:
    targets, inlet = set_up(["loyalty_event"])
    ctx = context()
    operator = CapillaryToAEPOperator(
        task_id="stream",
        record_types="loyalty_event",
        targets=targets,
        inlet=inlet,
        extract_uri=extracts.as_uri(),
        mapping_options=MAPPING,
    )
    with pytest.raises(AirflowFailException, match=r"4 of 33 rows dead-lettered"):
        operator.execute(ctx)  # type: ignore[arg-type]
    assert len(aep_emulator.state.accepted_ids(targets["loyalty_event"]["dataset_id"])) == 28
    assert ctx["pushed"]["summary"]["record_types"]["loyalty_event"]["accepted"] == 28


def test_dry_run_validates_and_sends_nothing(aep_emulator: AEPEmulator, extracts: Path) -> None:
    targets, inlet = set_up(["transaction"])
    summary = CapillaryToAEPOperator(
        task_id="stream",
        record_types=["transaction"],
        targets=targets,
        inlet=inlet,
        extract_uri=extracts.as_uri(),
        mapping_options=MAPPING,
        validate_only="True",
        max_reject_ratio=0.5,
    ).execute(context())  # type: ignore[arg-type]
    counts = summary["record_types"]["transaction"]
    assert counts["validated"] == 17 and counts["accepted"] == 0 and counts["sent"] == 0
    assert counts["mode"] == "dry_run"
    assert aep_emulator.state.accepted_ids(targets["transaction"]["dataset_id"]) == []


def test_batch_mode_lands_the_same_records(aep_emulator: AEPEmulator, extracts: Path) -> None:
    targets, inlet = set_up(["loyalty_event"])
    summary = CapillaryToAEPOperator(
        task_id="stream",
        record_types="loyalty_event",
        targets=targets,
        inlet=inlet,
        extract_uri=extracts.as_uri(),
        mapping_options=MAPPING,
        mode="batch",
        max_reject_ratio=0.25,
    ).execute(context())  # type: ignore[arg-type]
    counts = summary["record_types"]["loyalty_event"]
    assert counts["mode"] == "batch"
    assert counts["accepted"] == 28
    assert len(aep_emulator.state.accepted_ids(targets["loyalty_event"]["dataset_id"])) == 28


def write_events(root: Path, rows: int) -> set[str]:
    """A loyalty_event partition of ``rows`` valid events; returns their event ids."""
    partition = root / "loyalty_event" / "dt=2025-06-01"
    partition.mkdir(parents=True, exist_ok=True)
    header = "event_id,event_name,event_time,customer_id,program_id,points,points_balance_after"
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"event-{n}")) for n in range(rows)]
    lines = [header] + [
        f"{event_id},pointsIssued,2025-06-01T{n % 24:02d}:{n % 60:02d}:00+00:00,{564100000 + n % 500},1001,{n % 90},{n}"
        for n, event_id in enumerate(ids)
    ]
    (partition / "part-0000.csv").write_text("\n".join(lines) + "\n")
    (partition / "_SUCCESS").touch()
    return set(ids)


def stream_kwargs(tmp_path: Path, targets: Any, inlet: str, **overrides: Any) -> dict[str, Any]:
    """Operator arguments streaming ``loyalty_event`` from ``tmp_path/extracts``, one request at a time."""
    return {
        "task_id": "stream",
        "record_types": "loyalty_event",
        "targets": targets,
        "inlet": inlet,
        "extract_uri": (tmp_path / "extracts").as_uri(),
        "mapping_options": MAPPING,
        "concurrency": 1,
        **overrides,
    }


def fail_first_try(kwargs: dict[str, Any], after_requests: int) -> None:
    """Run the operator once with an inlet that fails (beyond the hook's retries) after ``after_requests``."""
    calls = {"n": 0}
    original = AEPHook.send_messages

    def flaky(self: AEPHook, inlet: str, messages: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > after_requests:
            raise AEPServerError("Streaming a multi-message request (HTTP 503)", status=503)
        return original(self, inlet, messages)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AEPHook, "send_messages", flaky)
        with pytest.raises(StreamingIngestionError, match="nothing dropped"):
            CapillaryToAEPOperator(**kwargs).execute(context("run-2"))  # type: ignore[arg-type]


def test_a_failed_try_resumes_after_the_last_acknowledged_chunk(aep_emulator: AEPEmulator, tmp_path: Path) -> None:
    write_events(tmp_path / "extracts", 3000)
    targets, inlet = set_up(["loyalty_event"])
    dataset_id = targets["loyalty_event"]["dataset_id"]
    kwargs = stream_kwargs(tmp_path, targets, inlet, chunk_size=500)
    fail_first_try(kwargs, after_requests=3)
    accepted_after_failure = set(aep_emulator.state.accepted_ids(dataset_id))
    assert 0 < len(accepted_after_failure) < 3000

    summary = CapillaryToAEPOperator(**kwargs).execute(context("run-2"))  # type: ignore[arg-type]
    counts = summary["record_types"]["loyalty_event"]
    assert counts["read"] == 3000 and counts["accepted"] == 3000 and counts["balanced"]
    records = aep_emulator.state.dataset_records(dataset_id)
    assert len(records.ids()) == 3000
    assert records.duplicates <= 500, "only the chunk in flight may be sent twice"


def test_a_resumed_try_still_knows_the_rows_before_its_checkpoint(aep_emulator: AEPEmulator, tmp_path: Path) -> None:
    """Rows repeated across the checkpoint: the retry replays the rows before it (mapping, not sending), so an exact
    repeat is still a duplicate and a same-_id row with other content still a ``duplicate_id_conflict``."""
    partition = tmp_path / "extracts" / "loyalty_event" / "dt=2025-06-01"
    partition.mkdir(parents=True)
    header = "event_id,event_name,event_time,customer_id,program_id,points,points_balance_after"
    rows = [
        "e1,pointsIssued,2025-06-01T01:00:00+00:00,564100001,1001,10,10",  # chunk 0
        "e2,pointsIssued,2025-06-01T02:00:00+00:00,564100002,1001,20,20",
        "e3,pointsIssued,2025-06-01T03:00:00+00:00,564100003,1001,30,30",  # chunk 1
        "e4,pointsIssued,2025-06-01T04:00:00+00:00,564100004,1001,40,40",
        "e5,pointsIssued,2025-06-01T05:00:00+00:00,564100005,1001,50,50",  # chunk 2: the first try fails here
        "e1,pointsIssued,2025-06-01T01:00:00+00:00,564100001,1001,10,10",  # exact repeat of e1
        "e2,pointsIssued,2025-06-01T02:00:00+00:00,564100002,1001,20,99",  # chunk 3: e2 with other content
        "e6,pointsIssued,2025-06-01T06:00:00+00:00,564100006,1001,60,60",
    ]
    (partition / "part-0000.csv").write_text("\n".join([header, *rows]) + "\n")
    targets, inlet = set_up(["loyalty_event"])
    dataset_id = targets["loyalty_event"]["dataset_id"]
    kwargs = stream_kwargs(
        tmp_path, targets, inlet, chunk_size=2, max_reject_ratio=1.0, dead_letter_uri=(tmp_path / "dead").as_uri()
    )
    fail_first_try(kwargs, after_requests=2)
    assert len(aep_emulator.state.accepted_ids(dataset_id)) == 4, "chunks 0 and 1 were accepted and checkpointed"

    summary = CapillaryToAEPOperator(**kwargs).execute(context("run-2"))  # type: ignore[arg-type]
    counts = summary["record_types"]["loyalty_event"]
    assert (counts["read"], counts["accepted"], counts["duplicates"]) == (8, 6, 1)
    assert counts["dead_lettered"] == {"duplicate_id_conflict": 1}
    records = aep_emulator.state.dataset_records(dataset_id)
    assert len(records.ids()) == 6 and records.duplicates == 0, "nothing before the checkpoint was sent again"
    balances = sorted(entity["_acmecorp"]["capillary"]["loyaltyEvent"]["balanceAfter"] for entity in records.entities())
    assert balances == [10, 20, 30, 40, 50, 60], "e2 kept its first content"
    (conflict,) = [line for line in dead_letters(tmp_path / "dead") if line["reason"] == "duplicate_id_conflict"]
    assert conflict["row"]["line"] == 8


KILL_DRIVER = """
import sys, json
from types import SimpleNamespace
import pendulum
from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator
args = json.loads(sys.argv[1])
ti = SimpleNamespace(dag_id="dag", run_id="run-kill", task_id="stream", map_index=-1, xcom_push=lambda key, value: None)
day = pendulum.datetime(2025, 6, 1, tz="UTC")
summary = CapillaryToAEPOperator(task_id="stream", **args).execute(
    {"ti": ti, "data_interval_start": day, "data_interval_end": day.add(days=1)}
)
print(json.dumps(summary["record_types"]["loyalty_event"]))
"""


def test_sigkill_mid_run_then_retry_loses_nothing(aep_emulator: AEPEmulator, tmp_path: Path) -> None:
    write_events(tmp_path / "extracts", 20_000)
    targets, inlet = set_up(["loyalty_event"])
    dataset_id = targets["loyalty_event"]["dataset_id"]
    args = {
        "record_types": "loyalty_event",
        "targets": targets,
        "inlet": inlet,
        "extract_uri": (tmp_path / "extracts").as_uri(),
        "mapping_options": MAPPING,
        "chunk_size": 1000,
        "concurrency": 2,
        "max_records_per_second": 5000,
    }
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(KILL_DRIVER))
    env = {**os.environ, "AIRFLOW_CONN_AEP_DEFAULT": aep_emulator.connection_json()}
    process = subprocess.Popen([sys.executable, str(driver), json.dumps(args)], env=env, stdout=subprocess.PIPE)
    deadline = time.time() + 60
    while len(aep_emulator.state.accepted_ids(dataset_id)) < 4000 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = len(aep_emulator.state.accepted_ids(dataset_id))
    assert 4000 <= killed_at < 20_000, "the worker must be killed mid-run"

    retry = subprocess.run(
        [sys.executable, str(driver), json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    counts = json.loads(retry.stdout.strip().splitlines()[-1])
    assert counts["accepted"] == 20_000 and counts["balanced"]
    records = aep_emulator.state.dataset_records(dataset_id)
    assert len(records.ids()) == 20_000
    print(f"killed after {killed_at} accepted records; re-sent on retry: {records.duplicates}")
    # At most the requests in flight at the kill are sent twice: the unacknowledged chunks.
    assert records.duplicates <= 3 * 1000


@pytest.mark.parametrize("record_type", ["customer", "transaction", "loyalty_event"])
def test_api_source_streams_the_window_from_the_capillary_api(
    aep_emulator: AEPEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, record_type: str
) -> None:
    from airflow_provider_capillary.hooks.capillary import CapillaryHook
    from airflow_provider_capillary.testing.capillary_emulator import CapillaryEmulator

    with CapillaryEmulator(generated_customers=8) as capillary:
        monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", capillary.connection_json())
        expected = list(CapillaryHook().iter_records(record_type, DAY, DAY.add(days=1)))
        assert expected, "the emulator's generated day has activity of every record type"
        targets, inlet = set_up([record_type])
        summary = CapillaryToAEPOperator(
            task_id="stream",
            record_types=record_type,
            targets=targets,
            inlet=inlet,
            source="api",
            dead_letter_uri=(tmp_path / "dead").as_uri(),
            mapping_options=MAPPING,
            max_reject_ratio=1.0,
            chunk_size=5,
        ).execute(context())  # type: ignore[arg-type]
    counts = summary["record_types"][record_type]
    assert counts["read"] == len(expected) and counts["balanced"]
    assert counts["accepted"] > 0
    assert len(aep_emulator.state.accepted_ids(targets[record_type]["dataset_id"])) == counts["accepted"]
    letters = dead_letters(tmp_path / "dead")
    assert len(letters) == counts["rejected"]
    assert all(letter["row"]["file"] == f"capillary-api:{record_type}" for letter in letters)


def test_progress_reports_records_rate_and_eta(
    aep_emulator: AEPEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "extracts"
    write_events(root, 2000)
    partition = root / "loyalty_event" / "dt=2025-06-01"
    lines = (partition / "part-0000.csv").read_text().splitlines()
    (partition / "part-0000.csv").write_text("\n".join(lines[:1001]) + "\n")
    (partition / "part-0001.csv").write_text("\n".join(lines[:1] + lines[1001:]) + "\n")
    targets, inlet = set_up(["loyalty_event"])
    CapillaryToAEPOperator(
        task_id="stream",
        record_types="loyalty_event",
        targets=targets,
        inlet=inlet,
        extract_uri=root.as_uri(),
        mapping_options=MAPPING,
        chunk_size=100,
        progress_interval=0,
    ).execute(context())  # type: ignore[arg-type]
    logs = capsys.readouterr().out
    assert "loyalty_event: 2000 read, 2000 accepted, 0 dead-lettered" in logs
    assert "records/s, file 1/2" in logs
    assert ", file 2/2, ETA " in logs
