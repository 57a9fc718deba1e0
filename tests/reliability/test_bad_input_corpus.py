"""The bad-input corpus (``corpus.py``) through the real ``CapillaryToAEPOperator``: a real ``AIRFLOW_CONN_*``
connection, the AEP emulator over sockets. Nothing crashes, and every record written is accounted for exactly once:
accepted by AEP with its ``_id`` (injection-looking strings and control characters verbatim), or dead-lettered at its
file and line with the documented reason code; a file that cannot be read is one file-level dead letter naming it;
the run summary balances. A partition without its ``_SUCCESS`` marker keeps the extract sensor waiting."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from tests.integration.aep_setup import set_up
from tests.reliability.corpus import DAY, ORG_ID, CorpusFile, build_corpus

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

RECORD_TYPES = ["loyalty_event", "transaction", "customer"]
TENANT = "_acmecorp"
"""The emulator's tenant object."""


@pytest.fixture(scope="module")
def emulator(shared_dir: Path) -> Iterator[AEPEmulator]:
    """An AEP emulator validating against the official XDM definitions, ``aep_default`` pointing at it."""
    with AEPEmulator(xdm_root=shared_dir / "reference" / "xdm") as running, pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_AEP_DEFAULT", running.connection_json())
        TOKEN_CACHE.clear()
        yield running
        TOKEN_CACHE.clear()


class CorpusRun:
    """One run of the operator over the whole corpus, and what it left behind.

    :param files: the corpus files with their expected outcomes.
    :param summary: the operator's return value.
    :param dead_letters: every dead-letter line written, decoded.
    :param accepted: per record type, the entities AEP holds, by ``_id``.
    """

    def __init__(
        self,
        files: list[CorpusFile],
        summary: dict[str, Any],
        dead_letters: list[dict[str, Any]],
        accepted: dict[str, dict[str, dict[str, Any]]],
    ) -> None:
        self.files = files
        self.summary = summary
        self.dead_letters = dead_letters
        self.accepted = accepted

    def letters_of(self, corpus_file: CorpusFile) -> list[dict[str, Any]]:
        """The dead letters that point at one corpus file."""
        return [
            letter for letter in self.dead_letters if str(letter["row"]["file"]).endswith("/" + corpus_file.relative)
        ]


@pytest.fixture(scope="module")
def corpus_run(emulator: AEPEmulator, tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

    root = tmp_path_factory.mktemp("corpus")
    files = build_corpus(root / "extracts")
    targets, inlet = set_up(RECORD_TYPES)
    ti = SimpleNamespace(dag_id="corpus", run_id="run", task_id="stream", map_index=-1, xcom_push=lambda **_: None)
    context: Any = {"ti": ti, "data_interval_start": pendulum.datetime(2025, 6, 1, tz="UTC")}
    summary = CapillaryToAEPOperator(
        task_id="stream",
        record_types=RECORD_TYPES,
        targets=targets,
        inlet=inlet,
        extract_uri=(root / "extracts").as_uri(),
        dead_letter_uri=(root / "dead").as_uri(),
        mapping_options={"org_id": ORG_ID, "default_currency": "GBP"},
        mode="stream",
        chunk_size=4,
        concurrency=2,
        max_records_per_second=None,
        max_requests_per_second=None,
        max_reject_ratio=1.0,
    ).execute(context)
    dead_letters = [
        json.loads(line)
        for path in sorted((root / "dead").rglob("part-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    accepted = {
        record_type: {
            entity["_id"]: entity
            for entity in emulator.state.dataset_records(targets[record_type]["dataset_id"]).entities()
        }
        for record_type in RECORD_TYPES
    }
    return CorpusRun(files, summary, dead_letters, accepted)


def xdm_value(entity: dict[str, Any], dotted: str, tenant: str) -> Any:
    """The value at a dotted XDM path (``_tenant`` = the tenant object) of an entity, or ``None``."""
    value: Any = entity
    for key in dotted.split("."):
        value = value.get(tenant if key == "_tenant" else key) if isinstance(value, dict) else None
    return value


def test_the_corpus_covers_every_kind_of_bad_input(corpus_run: CorpusRun) -> None:
    """The corpus holds what issue 7 lists, so the assertions below are about real bad input."""
    cases = " | ".join(f.case for f in corpus_run.files)
    for kind in (
        "unbalanced quotes",
        "ragged",
        "latin-1",
        "cp1252",
        "UTF-16",
        "UTF-8 BOM",
        "huge",
        "deep nesting",
        "JSON-typed columns",
        "control characters",
        "injection",
        "empty file",
        "header only",
        "truncated gzip",
        "corrupt Parquet",
    ):
        assert kind in cases, kind
    reasons = {row.reason for f in corpus_run.files for row in f.rows} | {f.file_error for f in corpus_run.files}
    assert {
        "bad_quoting",
        "ragged_row",
        "undecodable_bytes",
        "field_too_large",
        "record_too_large",
        "invalid_json",
        "not_an_object",
        "invalid_value",
        "invalid_header",
        "empty_file",
        "truncated_gzip",
        "invalid_parquet",
        "missing_columns",
    } <= reasons


def file_problems(run: CorpusRun, corpus_file: CorpusFile) -> list[str]:
    """How the fate of one file's records differs from what the corpus expects (empty when it does not)."""
    problems = []
    letters = run.letters_of(corpus_file)
    accepted = run.accepted[corpus_file.record_type]
    got = Counter((letter["row"]["line"], letter["reason"]) for letter in letters if letter["row"]["line"] is not None)
    want = Counter((row.line, row.reason) for row in corpus_file.rows if row.reason is not None)
    if got != want:
        problems.append(f"dead letters (line, reason): got {sorted(got.items())}, expected {sorted(want.items())}")
    problems += [f"dead letter without detail: {letter}" for letter in letters if not letter["detail"]]
    for row in corpus_file.rows:
        if row.reason is not None:
            continue
        entity = accepted.get(str(row.record_id))
        if entity is None:
            problems.append(f"line {row.line} is not in AEP (_id {row.record_id})")
            continue
        for path, text in row.verbatim.items():
            value = xdm_value(entity, path, TENANT)
            if value != text:
                problems.append(f"line {row.line}: {path} arrived as {str(value)[:80]!r}, not {text[:80]!r}")
    file_level = [letter["reason"] for letter in letters if letter["row"]["line"] is None]
    if file_level != ([corpus_file.file_error] if corpus_file.file_error else []):
        problems.append(f"file-level dead letters {file_level}, expected {corpus_file.file_error}")
    return problems


def test_every_record_is_accepted_or_dead_lettered_exactly_once_with_its_reason(corpus_run: CorpusRun) -> None:
    problems = [
        f"{f.relative} ({f.case}): {problem}" for f in corpus_run.files for problem in file_problems(corpus_run, f)
    ]
    assert not problems, "\n".join(problems)


def test_nothing_is_accepted_that_the_corpus_does_not_expect(corpus_run: CorpusRun) -> None:
    for record_type in RECORD_TYPES:
        expected = {
            row.record_id
            for f in corpus_run.files
            if f.record_type == record_type
            for row in f.rows
            if row.reason is None
        }
        assert set(corpus_run.accepted[record_type]) == expected, record_type
    located = {str(letter["row"]["file"]) for letter in corpus_run.dead_letters}
    known = {f.relative for f in corpus_run.files}
    assert all(any(name.endswith("/" + rel) for rel in known) for name in located), located


def test_the_run_summary_balances_and_matches_the_corpus(corpus_run: CorpusRun) -> None:
    for record_type in RECORD_TYPES:
        files = [f for f in corpus_run.files if f.record_type == record_type]
        rows = [row for f in files for row in f.rows]
        counts = corpus_run.summary["record_types"][record_type]
        assert counts["balanced"] is True
        assert counts["read"] == len(rows)
        assert counts["accepted"] == sum(row.reason is None for row in rows)
        assert counts["dead_lettered"] == dict(Counter(row.reason for row in rows if row.reason is not None))
        assert counts["file_errors"] == sum(f.file_error is not None for f in files)
        assert counts["duplicates"] == counts["superseded"] == 0
    assert corpus_run.summary["read"] == sum(len(f.rows) for f in corpus_run.files)


def test_a_truncated_gzip_error_says_after_which_line_it_stopped(corpus_run: CorpusRun) -> None:
    (truncated,) = [f for f in corpus_run.files if f.file_error == "truncated_gzip"]
    (letter,) = [letter for letter in corpus_run.letters_of(truncated) if letter["row"]["line"] is None]
    last_complete = max(row.line for row in truncated.rows)
    assert f"the last complete line read was {last_complete}" in letter["detail"]


def test_a_partition_without_its_success_marker_keeps_the_sensor_waiting(tmp_path: Path) -> None:
    from airflow_provider_capillary.sensors.extracts import CapillaryExtractSensor

    partition = tmp_path / "loyalty_event" / f"dt={DAY}"
    partition.mkdir(parents=True)
    (partition / "part-0000.csv").write_text("event_id,event_name,event_time\n")
    sensor = CapillaryExtractSensor(
        task_id="wait", extract_uri=tmp_path.as_uri(), record_types="loyalty_event", interval_start=DAY
    )
    context: Any = {}
    waiting = sensor.poke(context)
    assert waiting.is_done is False
    (partition / "_SUCCESS").write_text("")
    ready = sensor.poke(context)
    assert ready.is_done is True
    assert ready.xcom_value is not None
    assert [Path(url).name for url in ready.xcom_value["loyalty_event"]] == ["part-0000.csv"]
