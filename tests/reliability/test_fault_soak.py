"""Seeded fault soak: ``CapillaryToAEPOperator`` inside real Airflow (``dag.test()``, an ``AIRFLOW_CONN_*``
connection, the task state store for checkpoints, Airflow's task retries) streams a synthetic extract with known
valid and invalid rows into the AEP emulator while a seeded schedule injects 429 storms with ``Retry-After``, 500,
502 and 503, dropped connections, responses slower than the client's timeout, an IMS token revocation, transient
per-message failures in 207 answers and, in batch mode, failing batches. Every third seed kills the worker with
SIGKILL mid-run (a child process running the same ``dag.test()``, killed a seeded number of records after its first
checkpoint) and then retries the task in the same dag run, so with the same checkpoint.

Each run must end with: the ``_id``s accepted by the emulator equal to the expected valid ids; no ``_id`` accepted
more than once except where the client never received AEP's answer (a request served after the client's timeout)
or a try ended (killed, or failed and retried) with the record accepted past its checkpoint; dead-letter files equal
to the invalid rows with their reasons; a run summary that balances and matches the input; and every fault kind of
the schedule injected. One line per seed is printed (``-s``) and repeated at the end of the session.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.faults import FaultPlan
from tests.integration.aep_setup import set_up
from tests.reliability.fault_schedule import (
    BATCH_KINDS,
    CLIENT_TIMEOUT,
    STREAM_KINDS,
    SoakFaultPlan,
    fault_schedule,
)
from tests.reliability.synthetic_extract import (
    MAPPING,
    RECORD_TYPE,
    SyntheticExtract,
    expected_ids,
    write_extract,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.db]

#: Scenario of seed ``s``: ``SCENARIOS[s % 3]``.
SCENARIOS = ("stream", "stream+sigkill", "batch")
LOGICAL_DATE = pendulum.datetime(2025, 6, 1, tz="UTC")
TASK_ID = "stream"
#: Rows of a SIGKILL run at least, and characters added to their ``ref_id`` (about 4.5 KB per record). The streaming
#: sender keeps up to ``4 * concurrency`` MB of records in flight and checkpoints a chunk only when it submits the next
#: one: a kill finds a checkpoint to resume from only in an extract bigger than what can be in flight (about 1,800 of
#: these records at concurrency 2).
SIGKILL_ROWS = 3_000
SIGKILL_PADDING = 4_000
SIGKILL_CONCURRENCY = 2
#: Airflow retries of the task: a 429 storm longer than the hook's six attempts, or a failed batch, fails a try.
RETRIES = 4
CHECKPOINT_KEY = f"capillary_to_aep:{RECORD_TYPE}"

DAG_SOURCE = """
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator


with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2025, 6, 1, tz="UTC")) as dag:
    CapillaryToAEPOperator(
        task_id="{task_id}",
        request_timeout={timeout},
        record_types="{record_type}",
        targets={targets!r},
        inlet="{inlet}",
        extract_uri="{extract_uri}",
        dead_letter_uri="{dead_letter_uri}",
        interval_start="2025-06-01",
        mode="{mode}",
        mapping_options={mapping!r},
        chunk_size={chunk_size},
        concurrency={concurrency},
        max_records_per_second={max_records_per_second},
        max_reject_ratio=0.2,
        retries={retries},
        retry_delay=timedelta(0),
    )
"""

#: Runs ``dag.test()`` of a DAG file for a logical date: the worker that the SIGKILL scenario kills. A try that fails
#: before the kill (a long 429 storm) is reported to the test through ``{hand_shake}/try-N.ended``; the worker waits
#: for ``try-N.ack`` before retrying, so the test records the try's end as the retry callback does in its own process.
WORKER = """
import importlib.util, pathlib, sys, time
import pendulum
spec = importlib.util.spec_from_file_location("soak_worker_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
hand_shake = pathlib.Path(sys.argv[3])

def try_failed(context):
    number = context["ti"].try_number
    (hand_shake / f"try-{number}.ended").touch()
    deadline = time.monotonic() + 120
    while not (hand_shake / f"try-{number}.ack").exists() and time.monotonic() < deadline:
        time.sleep(0.02)

for task in module.dag.tasks:
    task.on_retry_callback = [try_failed]
module.dag.test(logical_date=pendulum.parse(sys.argv[2]))
"""


@dataclass
class TryEnd:
    """The state in which a try of the task ended without finishing: killed, or failed and up for retry.

    :param accepted: ``_id``s the emulator held once the try's last requests had settled.
    :param checkpoint: The task state store's checkpoint then (``None`` if none was saved yet); the next try resumes
        after it.
    :param journal_length: Journal entries by then (the later ones belong to the next tries).
    """

    accepted: set[str]
    checkpoint: dict[str, Any] | None
    journal_length: int


@pytest.fixture
def emulator(soak_emulator: AEPEmulator, monkeypatch: pytest.MonkeyPatch) -> AEPEmulator:
    """The module's emulator, reset, fault-free, with ``aep_default`` pointing at it and no cached token."""
    soak_emulator.faults = FaultPlan()
    soak_emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", soak_emulator.connection_json())
    TOKEN_CACHE.clear()
    return soak_emulator


@pytest.mark.usefixtures("metadata_db")
def test_seeded_faults_lose_nothing_and_duplicate_only_unanswered_requests(
    soak_seed: int,
    soak_rows: int,
    emulator: AEPEmulator,
    dag_from_source: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    soak_report: list[str],
) -> None:
    scenario = SCENARIOS[soak_seed % len(SCENARIOS)]
    mode = "batch" if scenario == "batch" else "stream"
    sigkill = scenario == "stream+sigkill"
    rows = max(soak_rows, SIGKILL_ROWS) if sigkill else soak_rows
    # With one worker a long 429 storm outlasts the hook's six attempts: the try fails and Airflow retries it.
    concurrency = SIGKILL_CONCURRENCY if sigkill else random.Random(f"concurrency-{soak_seed}").choice((1, 2, 3))
    chunk_size = max(50, min(rows // 10, 300))
    extract = write_extract(
        tmp_path / "extracts", soak_seed, rows, chunk_size=chunk_size, padding=SIGKILL_PADDING if sigkill else 0
    )
    expected = expected_ids(extract)
    targets, inlet = set_up([RECORD_TYPE])
    dataset_id = targets[RECORD_TYPE]["dataset_id"]
    dag_id = f"reliability_soak_{soak_seed}"
    dead = tmp_path / "dead_letters"
    dag_file_source = DAG_SOURCE.format(
        dag_id=dag_id,
        task_id=TASK_ID,
        timeout=CLIENT_TIMEOUT,
        record_type=RECORD_TYPE,
        targets=targets,
        inlet=inlet,
        extract_uri=(tmp_path / "extracts").as_uri(),
        dead_letter_uri=dead.as_uri(),
        mode=mode,
        mapping=MAPPING,
        chunk_size=chunk_size,
        concurrency=concurrency,
        max_records_per_second=None if sigkill else 3000,
        retries=RETRIES,
    )
    dag = dag_from_source(dag_id, dag_file_source)
    ends: list[TryEnd] = []

    plan = fault_schedule(soak_seed, mode=mode, base_requests=rows // chunk_size if mode == "stream" else 3)

    def try_failed(context: Any) -> None:
        ends.append(settled_state(emulator, plan, dag_id, dataset_id))

    dag.task_dict[TASK_ID].on_retry_callback = [try_failed]
    emulator.faults = plan
    killed_after = None
    try:
        if sigkill:
            log = tmp_path / "worker.log"
            killed_after = kill_worker_mid_run(
                emulator, dag, dataset_id, soak_seed, chunk_size, log, lambda: try_failed({})
            )
            ends.append(settled_state(emulator, plan, dag_id, dataset_id))
            assert len(ends[-1].accepted) < len(expected), f"seed {soak_seed}: everything was sent before the kill"
            continue_the_killed_run(monkeypatch)
        run = dag.test(logical_date=LOGICAL_DATE)
    finally:
        emulator.faults = FaultPlan()

    assert str(run.state) == "success", f"seed {soak_seed}: the run ended {run.state} after {len(ends) + 1} tries"
    store = emulator.state.dataset_records(dataset_id)
    accepted = set(store.ids())
    assert accepted == set(expected), (
        f"seed {soak_seed}: {len(set(expected) - accepted)} valid records lost, "
        f"{len(accepted - set(expected))} unexpected records accepted"
    )
    assert not store.anonymous, "every record carries its _id"

    duplicates = check_duplicates(soak_seed, mode, emulator.journal, store, plan, expected, extract, ends)
    letters = check_dead_letters(soak_seed, dead, extract)
    check_summary(soak_seed, run, extract, expected, mode)
    kinds = BATCH_KINDS if mode == "batch" else STREAM_KINDS
    missing = kinds - {kind for kind, count in plan.injected.items() if count}
    assert not missing, f"seed {soak_seed}: fault kinds never injected: {sorted(missing)} ({dict(plan.injected)})"
    assert any(entry["status"] == 401 for entry in emulator.journal), "the revoked token was never refused"

    faults = " ".join(f"{kind}={plan.injected[kind]}" for kind in sorted(plan.injected))
    killed = f" killed_after={killed_after}" if killed_after is not None else ""
    resumed = ",".join(_position(end.checkpoint) for end in ends)
    line = (
        f"seed={soak_seed} scenario={scenario} rows={rows} concurrency={concurrency} tries={len(ends) + 1}{killed} "
        f"resumed_after=[{resumed}] "
        f"faults[{faults}] accepted={len(accepted)}/{len(expected)} {duplicates} dead_letters={letters}"
    )
    soak_report.append(line)
    print("\n" + line)


def kill_worker_mid_run(
    emulator: AEPEmulator,
    dag: Any,
    dataset_id: str,
    seed: int,
    chunk_size: int,
    log: Path,
    try_failed: Callable[[], None],
) -> int:
    """Run the DAG's ``dag.test()`` in a child process (the worker) and SIGKILL it once it has saved a checkpoint and
    the emulator holds a seeded number of records more (up to a chunk); mark its task instance failed, as the
    scheduler does for a worker that stopped heartbeating. Returns the number of records accepted at the kill.

    A try of the worker that fails before the kill (its retry callback signals it) is passed to ``try_failed`` while
    the worker waits, so its end is recorded as for the tries that run in this process.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    beyond_checkpoint = random.Random(f"kill-{seed}").randint(0, chunk_size)
    hand_shake = log.parent / "try_ends"
    hand_shake.mkdir()
    failed_tries = 0
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, dag.fileloc, LOGICAL_DATE.isoformat(), str(hand_shake)],
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 240
    threshold = None
    while threshold is None or len(emulator.state.accepted_ids(dataset_id)) < threshold:
        if worker.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"seed {seed}: the worker ended (code {worker.returncode}) before the kill:\n{tail}")
        if time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"seed {seed}: the worker saved no checkpoint or did not reach {threshold} records in time")
        ended = hand_shake / f"try-{failed_tries + 1}.ended"
        if ended.exists():
            failed_tries += 1
            try_failed()
            (hand_shake / f"try-{failed_tries}.ack").touch()
            continue
        if threshold is None and _checkpoint(dag.dag_id) is not None:
            threshold = len(emulator.state.accepted_ids(dataset_id)) + beyond_checkpoint
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL
    with create_session() as session:
        ti = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag.dag_id)).one()
        # Every try of the worker before the one killed ended through the hand-shake (else its end went unseen).
        assert (ti.state, ti.try_number) == (TaskInstanceState.RUNNING, failed_tries + 1), (
            f"seed {seed}: the killed worker was in try {ti.try_number} ({ti.state}) after {failed_tries} failed tries"
        )
        ti.state = TaskInstanceState.FAILED
    return threshold


def _checkpoint(dag_id: str) -> dict[str, Any] | None:
    """The checkpoint in the task state store of the DAG's (only) run, if any."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalars(
            select(TaskStateStoreModel.value).where(
                TaskStateStoreModel.dag_id == dag_id, TaskStateStoreModel.key == CHECKPOINT_KEY
            )
        ).one_or_none()
    return json.loads(value) if value is not None else None


def continue_the_killed_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next ``dag.test()`` retry the killed task instance in its own dag run, as the scheduler does.

    ``dag.test()`` otherwise replaces a dag run of the same logical date with a new one (and so drops its task state
    store, the checkpoint the retry must resume from).
    """
    from airflow.models import dagrun
    from sqlalchemy import select

    create = dagrun.get_or_create_dagrun

    def existing_run(*, dag: Any, session: Any, **kwargs: Any) -> Any:
        run = session.scalar(select(dagrun.DagRun).where(dagrun.DagRun.dag_id == dag.dag_id))
        if run is None:
            return create(dag=dag, session=session, **kwargs)
        run.dag = dag
        return run

    monkeypatch.setattr(dagrun, "get_or_create_dagrun", existing_run)


def settled_state(emulator: AEPEmulator, plan: SoakFaultPlan, dag_id: str, dataset_id: str) -> TryEnd:
    """Where a try that ended left things, once the requests the emulator was still delaying have landed."""
    plan.wait_for_slow_responses()
    return TryEnd(set(emulator.state.accepted_ids(dataset_id)), _checkpoint(dag_id), len(emulator.journal))


def _acceptances(entries: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str], int]:
    """Read the 207 answers of ``entries``: per ``_id`` how often it was accepted, and how many of those acceptances
    may have been in answers the client never received; and how many answers were lost.

    The client never sends a request body again once an answer accepted part of it (it re-sends only what an answer
    marked transient), so of the answers to one body that accepted something, all but one were lost: each lost
    answer is a request served after the client's timeout and sent again whole.
    """
    per_id: Counter[str] = Counter()
    by_body: dict[tuple[str, ...], list[set[str]]] = {}
    for entry in entries:
        if entry["method"] != "POST" or not entry["path"].startswith("/collection/batch/") or entry["status"] != 207:
            continue
        ids = tuple(str(message["body"]["xdmEntity"].get("_id")) for message in entry["body"]["messages"])
        results = entry["response_body"]["responses"]
        taken = {record_id for record_id, result in zip(ids, results, strict=True) if "xactionId" in result}
        per_id.update(taken)
        if taken:
            by_body.setdefault(ids, []).append(taken)
    in_lost_answers: Counter[str] = Counter()
    lost = 0
    for answers in by_body.values():
        lost_here = len(answers) - 1
        lost += lost_here
        if lost_here:
            accepted_here = Counter(record_id for taken in answers for record_id in taken)
            in_lost_answers.update({record_id: min(count, lost_here) for record_id, count in accepted_here.items()})
    return per_id, in_lost_answers, lost


def check_duplicates(
    seed: int,
    mode: str,
    journal: list[dict[str, Any]],
    store: Any,
    plan: SoakFaultPlan,
    expected: dict[str, Any],
    extract: SyntheticExtract,
    ends: list[TryEnd],
) -> str:
    """Assert that every ``_id`` accepted more than once is explained; return a summary of the duplicates.

    Explained: a request sent again whole within one try after its answer was lost (only a response slower than
    the client's timeout loses an answer AEP gave), or a record AEP had accepted from a row after the checkpoint
    a killed or failed try left (the next try resumes after that checkpoint: what was in flight is sent again).
    """
    if mode == "batch":
        # A failed batch records nothing and a batch is completed once: Batch Ingestion never duplicates.
        assert store.duplicates == 0, f"seed {seed}: {store.duplicates} records accepted twice in batch mode"
        return "duplicates=0"
    entries = list(journal)
    bounds = [0, *(end.journal_length for end in ends), len(entries)]
    per_id: Counter[str] = Counter()
    in_lost_answers: Counter[str] = Counter()
    lost = 0
    for start, stop in itertools.pairwise(bounds):
        segment_ids, segment_in_lost, segment_lost = _acceptances(entries[start:stop])
        per_id.update(segment_ids)
        in_lost_answers.update(segment_in_lost)
        lost += segment_lost
    # The journal and the emulator's own counters agree.
    assert sum(per_id.values()) == store.received and set(per_id) == set(store.ids())
    extra = {record_id: count - 1 for record_id, count in per_id.items() if count > 1}
    assert sum(extra.values()) == store.duplicates
    assert lost <= plan.injected["timeout"], (
        f"seed {seed}: {lost} answers to requests AEP served were never used within a try, "
        f"but only {plan.injected['timeout']} responses were delayed past the client's timeout"
    )
    # Each acceptance beyond the first follows one in an answer the client never received, or one before a try
    # ended with the record in flight (the next try sends it again).
    in_flight: Counter[str] = Counter()
    for end in ends:
        in_flight.update(_in_flight(end, expected, extract))
    unexplained = {
        record_id for record_id, count in extra.items() if count > in_lost_answers[record_id] + in_flight[record_id]
    }
    rows = sorted(_rows_of(record_id, expected, extract) for record_id in unexplained)
    assert not unexplained, (
        f"seed {seed}: {len(unexplained)} record(s) accepted more often than lost answers and tries that ended with "
        f"them in flight explain; the extract rows with their event_id: {rows[:5]}; the tries ended after "
        f"{[_position(end.checkpoint) for end in ends]}"
    )
    in_flight_records = sum(in_flight.values())
    return f"duplicates={sum(extra.values())} (in_flight_at_try_ends={in_flight_records} lost_answers={lost})"


def _in_flight(end: TryEnd, expected: dict[str, Any], extract: SyntheticExtract) -> set[str]:
    """``_id``s AEP held when a try ended from rows after its checkpoint: the next try sends them again."""
    if end.checkpoint is None or "position" not in end.checkpoint:
        return set(end.accepted)
    order = {path.name: index for index, path in enumerate(extract.files)}
    file_url, line = end.checkpoint["position"]
    after = (order[Path(str(file_url)).name], int(line))
    return {
        record_id for record_id in end.accepted if (order[expected[record_id].file], expected[record_id].line) > after
    }


def _position(checkpoint: dict[str, Any] | None) -> str:
    if not checkpoint or "position" not in checkpoint:
        return "start"
    file_url, line = checkpoint["position"]
    return f"{Path(str(file_url)).name}:{line}"


def _rows_of(record_id: str, expected: dict[str, Any], extract: SyntheticExtract) -> list[str]:
    """Every extract row carrying the event of a record (the valid row, its repeats, rows conflicting with it)."""
    event_id = expected[record_id].values[0]
    return [f"{row.file}:{row.line} ({row.fate})" for row in extract.rows if row.values[0] == event_id]


def check_dead_letters(seed: int, dead: Path, extract: SyntheticExtract) -> int:
    """Assert the dead-letter files hold exactly the invalid rows, each once, with its reason; return their number."""
    letters = [
        json.loads(line) for path in sorted(dead.rglob("part-*.jsonl")) for line in path.read_text().splitlines()
    ]
    got = Counter(
        (Path(str(letter["row"]["file"])).name, letter["row"]["line"], letter["reason"]) for letter in letters
    )
    assert got == extract.dead_letters, (
        f"seed {seed}: dead letters differ from the invalid input: "
        f"unexpected {sorted(got - extract.dead_letters)[:5]}, missing {sorted(extract.dead_letters - got)[:5]}"
    )
    planned = {(row.file, row.line): row for row in extract.rows}
    for letter in letters:
        values = letter["row"]["values"]
        if values is not None:
            row = planned[(Path(str(letter["row"]["file"])).name, letter["row"]["line"])]
            assert values["event_id"] == row.values[0], f"seed {seed}: a dead letter carries another row's values"
    return len(letters)


def check_summary(seed: int, run: Any, extract: SyntheticExtract, expected: dict[str, Any], mode: str) -> None:
    """Assert the run summary (the task's XCom) balances and matches the input."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == TASK_ID,
                XComModel.key == "return_value",
            )
        ).one()
        summary = XComModel.deserialize_value(row)
    counts = summary["record_types"][RECORD_TYPE]
    reasons = Counter(reason for _, _, reason in extract.dead_letters.elements())
    assert counts["mode"] == mode
    assert counts["balanced"], f"seed {seed}: the summary does not balance: {counts}"
    assert (counts["read"], counts["accepted"], counts["duplicates"], counts["superseded"], counts["file_errors"]) == (
        len(extract.rows),
        len(expected),
        extract.repeats,
        0,
        0,
    ), f"seed {seed}: summary {counts}"
    assert counts["dead_lettered"] == dict(reasons), f"seed {seed}: dead letters by reason {counts['dead_lettered']}"
