"""A large loyalty-event backfill, end to end through ``CapillaryToAEPOperator``: ``stream`` against ``batch`` mode,
and peak memory against extract size.

Run from the repository root (numbers go to stdout; the operator's progress lines to stderr)::

    .venv/bin/python tests/benchmarks/bench_backfill.py                        # 5M rows; memory at 100k, 1M
    .venv/bin/python tests/benchmarks/bench_backfill.py --rows 200000 --memory-rows 50000

What happens:

- ``synthetic.write_partition`` writes a ``loyalty_event`` extract in the documented layout (CSV part files of
  ``--rows-per-part`` rows, ``_SUCCESS``), one partition (day) per size; about 0.5 % of the rows repeat an
  earlier row and 0.5 % are invalid, so dedupe and dead letters run too;
- one AEP emulator runs in a subprocess for the whole benchmark (built-in XDM catalogue); before each run it is
  reset and the schema, dataset and streaming dataflow are created by the set-up operators. It keeps everything
  it accepts in memory (about 4 KB of RSS per streamed record: 4.1 GB after 1M), and its batch processing holds
  every decoded record of a batch at once, so by default (``--emulator-store ids``) it is started through a thin
  wrapper that keeps only the ``_id`` of each accepted record and validates batch files in two passes (every
  row, then the ``_id``s) instead of holding the decoded rows; requests, validation, answers and counts are
  unchanged. ``--emulator-store full`` runs it as it ships (fine up to about 1M rows);
- each run is a fresh subprocess that builds ``CapillaryToAEPOperator`` with its defaults (``concurrency`` 4,
  ``chunk_size`` 5,000, 10,000 records/s and 1,000 requests/s in stream mode) and calls ``execute(context)``
  with the connection from ``AIRFLOW_CONN_AEP_DEFAULT``: extract files → map → validate → emulator. It reports
  wall time, CPU seconds and its peak RSS (``ru_maxrss``);
- the emulator's own CPU seconds and peak RSS are sampled during each run, and afterwards its counts prove that
  every record arrived exactly once: records accepted (distinct ``_id``s) == messages received (no ``_id``
  twice) == what the operator reports accepted == rows - dead letters - repeated rows.

The memory table is the ``stream`` run at each ``--memory-rows`` size plus ``--rows``: flat within 20 % (the
highest peak RSS against the lowest) and under 500 MB at the largest, PASS or MISS. Peak RSS of one run varies by
a few tens of MB from run to run (thread timing decides how much the allocator holds), so compare several sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import requests
from bench_sender import cpu_seconds, start_emulator
from synthetic import write_partition

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2025, 6, 1)
RSS_LIMIT_MB = 500
FLAT_WITHIN = 0.20


@dataclass
class _TaskInstance:
    """What ``CapillaryToAEPOperator.execute`` reads from ``context["ti"]`` (dead-letter path, XCom on failure)."""

    dag_id: str
    run_id: str
    task_id: str = "backfill"
    map_index: int = -1

    def xcom_push(self, key: str, value: Any) -> None:
        print(json.dumps({"xcom": key, "value": value}, default=str), file=sys.stderr)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of the operator in this (fresh) process; returns times, peak RSS and the operator's summary."""
    from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

    rate = {} if spec["max_records_per_second"] is None else {"max_records_per_second": spec["max_records_per_second"]}
    operator = CapillaryToAEPOperator(
        task_id="backfill",
        record_types="loyalty_event",
        targets=spec["targets"],
        inlet=spec["inlet"],
        extract_uri=spec["extract_uri"],
        dead_letter_uri=spec["dead_letter_uri"],
        interval_start=spec["day"],
        mode=spec["mode"],
        mapping_options={"org_id": "50001", "default_currency": "GBP"},
        max_reject_ratio=0.05,
        progress_interval=30,
        **rate,
    )
    context: Any = {"ti": _TaskInstance("bench_backfill", spec["run_id"])}
    started, cpu = time.perf_counter(), time.process_time()
    summary = operator.execute(context)
    return {
        "wall": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "summary": summary,
    }


def _add_id_only(self: Any, record_id: Any, raw: bytes) -> None:
    """``DatasetRecords.add`` keeping the ``_id`` and the counts, not the record."""
    self.received += 1
    if record_id is None:
        self.anonymous.append(b"")
        return
    key = str(record_id)
    if key in self.records:
        self.duplicates += 1
    self.records[key] = b""


def _process_in_two_passes(self: Any, sandbox: Any, batch: dict[str, Any]) -> None:
    """``_BatchIngestion._process`` (all rows valid, or the batch fails) without holding decoded rows: validate
    every row of every file, then store the ``_id``s. No fault injection (the benchmark sets none)."""
    from airflow_provider_capillary.testing.aep_emulator.batch_ingestion import MAX_REPORTED_ERRORS
    from airflow_provider_capillary.testing.aep_emulator.catalog import record_batch
    from airflow_provider_capillary.testing.aep_emulator.validation import RecordInvalid, check

    dataset_id = batch["relatedObjects"][0]["id"]
    files = sandbox.files.pop(batch["id"], {})
    sandbox.chunks.pop(batch["id"], None)
    with self.ctx.state.lock:
        schema = sandbox.schemas[sandbox.datasets[dataset_id]["schemaRef"]["id"]]
        validator = self.ctx.validator(sandbox, schema)
        ids: list[Any] = []
        errors: list[dict[str, Any]] = []
        failed = 0
        for name, data in sorted(files.items()):
            for row, line in enumerate(data.splitlines(), 1):
                try:
                    record = orjson.loads(line)
                    check(validator, record)
                except (orjson.JSONDecodeError, RecordInvalid) as err:
                    failed += 1
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append(
                            {"code": "INGEST-1212-400", "description": f"{name} row {row}: {err}", "rows": [row]}
                        )
                    continue
                ids.append(record.get("_id"))
        if failed:
            record_batch(sandbox, dataset_id, "failed", 0, failed, errors, streaming=False, batch_id=batch["id"])
            return
        store = sandbox.records(dataset_id)
        for record_id in ids:
            store.add(record_id, b"")
        record_batch(sandbox, dataset_id, "success", len(ids), 0, [], streaming=False, batch_id=batch["id"])


def serve_emulator_ids_only() -> int:
    """Run the emulator's command line (free port) with the ``_id``-only store and two-pass batch processing."""
    from airflow_provider_capillary.testing.aep_emulator import __main__ as emulator_cli
    from airflow_provider_capillary.testing.aep_emulator.batch_ingestion import _BatchIngestion
    from airflow_provider_capillary.testing.aep_emulator.state import DatasetRecords

    DatasetRecords.add = _add_id_only  # type: ignore[method-assign]
    _BatchIngestion._process = _process_in_two_passes  # type: ignore[method-assign]
    return emulator_cli.main(["--port", "0"])


def start_emulator_ids_only() -> tuple[subprocess.Popen[str], str]:
    """Start :func:`serve_emulator_ids_only` in a subprocess; point ``aep_default`` at it; return it and its URL."""
    return start_emulator(command=[sys.executable, __file__, "--serve-emulator"])


class EmulatorWatch:
    """Samples the emulator's RSS every half second while a run goes; keeps the peak; kills it above ``limit_mb``."""

    def __init__(self, pid: int, limit_mb: float) -> None:
        self.pid = pid
        self.limit_mb = limit_mb
        self.peak_mb = 0.0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            if self.peak_mb > self.limit_mb:
                # The emulator keeps every record in memory: stop it before it takes the machine down.
                self.killed = True
                os.kill(self.pid, signal.SIGKILL)
                return

    def __enter__(self) -> EmulatorWatch:
        self.cpu = cpu_seconds(self.pid)
        self.peak_mb = self.rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb())
        self.cpu = cpu_seconds(self.pid) - self.cpu


@dataclass
class Result:
    """One run: what the child measured, what the emulator holds, and whether it adds up."""

    mode: str
    rows: int
    wall: float
    cpu: float
    peak_rss_mb: float
    emulator_cpu: float
    emulator_rss_mb: float
    accepted: int
    exactly_once: bool
    detail: str


class EmulatorLimitError(Exception):
    """The emulator went over its memory budget and was stopped."""


def run(
    mode: str,
    rows: int,
    day: date,
    work: Path,
    url: str,
    emulator_pid: int,
    max_records_per_second: float | None,
    emulator_limit_mb: float,
) -> Result:
    """Reset the emulator, set up the targets, run the operator in a fresh subprocess and check the emulator."""
    from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
    from tests.integration.aep_setup import set_up

    requests.post(f"{url}/_emulator/reset", timeout=600).raise_for_status()
    TOKEN_CACHE.clear()
    targets, inlet = set_up(["loyalty_event"])
    spec = {
        "mode": mode,
        "day": day.isoformat(),
        "run_id": f"{mode}-{rows}",
        "targets": targets,
        "inlet": inlet,
        "extract_uri": (work / "extracts").as_uri(),
        "dead_letter_uri": (work / "dead_letters").as_uri(),
        "max_records_per_second": max_records_per_second,
    }
    with EmulatorWatch(emulator_pid, emulator_limit_mb) as watch:
        child = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE, text=True
        )
    if watch.killed:
        raise EmulatorLimitError(
            f"{mode} {rows:,}: the emulator passed {emulator_limit_mb:,.0f} MB RSS and was stopped "
            f"(child exit code {child.returncode})"
        )
    child.check_returncode()
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    counts = measured["summary"]["record_types"]["loyalty_event"]
    dataset_id = targets["loyalty_event"]["dataset_id"]
    stats = requests.get(f"{url}/_emulator/stats", timeout=600).json()["sandboxes"]["prod"]["datasets"][dataset_id]
    expected = rows - counts["rejected"] - counts["duplicates"] - counts["superseded"]
    exactly_once = (
        counts["read"] == rows
        and counts["balanced"]
        and stats["accepted"] == stats["received"] == counts["accepted"] == expected
        and stats["duplicates"] == 0
    )
    detail = (
        f"emulator: {stats['accepted']:,} distinct, {stats['received']:,} received, {stats['duplicates']} repeated; "
        f"operator: {counts['read']:,} read, {counts['accepted']:,} accepted, {counts['dead_lettered']}, "
        f"{counts['duplicates']:,} repeated rows"
    )
    return Result(
        mode,
        rows,
        measured["wall"],
        measured["cpu"],
        measured["peak_rss_mb"],
        watch.cpu,
        watch.peak_mb,
        counts["accepted"],
        exactly_once,
        detail,
    )


def print_runs(results: list[Result]) -> None:
    print(
        f"| {'mode':<6} | {'rows':>9} | {'wall s':>7} | {'rows/s':>7} | {'CPU s':>6} | {'peak RSS MB':>11} | "
        f"{'emu CPU s':>9} | {'emu RSS MB':>10} | {'accepted':>9} | exactly once"
    )
    print(
        f"|{'-' * 8}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 13}|{'-' * 11}|{'-' * 12}|{'-' * 11}|-------------"
    )
    for r in results:
        print(
            f"| {r.mode:<6} | {r.rows:>9,} | {r.wall:>7.1f} | {r.rows / r.wall:>7,.0f} | {r.cpu:>6.1f} | "
            f"{r.peak_rss_mb:>11,.0f} | {r.emulator_cpu:>9.1f} | {r.emulator_rss_mb:>10,.0f} | {r.accepted:>9,} | "
            f"{'yes' if r.exactly_once else 'NO'}"
        )
    for r in results:
        print(f"  {r.mode} {r.rows:,}: {r.detail}")


def print_memory(results: list[Result]) -> None:
    stream = sorted((r for r in results if r.mode == "stream"), key=lambda r: r.rows)
    if len(stream) < 2:
        return
    smallest, largest = stream[0], stream[-1]
    peaks = [r.peak_rss_mb for r in stream]
    spread = max(peaks) / min(peaks) - 1
    print(f"\n| {'rows (stream)':>13} | {'peak RSS MB':>11} | vs {smallest.rows:,} rows")
    print(f"|{'-' * 15}|{'-' * 13}|{'-' * 16}")
    for r in stream:
        print(
            f"| {r.rows:>13,} | {r.peak_rss_mb:>11,.0f} | {100 * (r.peak_rss_mb / smallest.peak_rss_mb - 1):>+13.1f} %"
        )
    flat = "PASS" if spread <= FLAT_WITHIN else "MISS"
    under = "PASS" if largest.peak_rss_mb < RSS_LIMIT_MB else "MISS"
    print(f"flat within {FLAT_WITHIN:.0%} (highest peak against lowest, all sizes: {spread:+.1%}): {flat}")
    print(f"under {RSS_LIMIT_MB} MB at {largest.rows:,} rows ({largest.peak_rss_mb:,.0f} MB): {under}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the backfill (both modes)")
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[100_000, 1_000_000], help="smaller stream runs")
    parser.add_argument("--rows-per-part", type=int, default=500_000, help="rows per CSV part file")
    parser.add_argument("--modes", nargs="+", choices=["stream", "batch"], default=["stream", "batch"])
    parser.add_argument("--max-records-per-second", type=float, help="stream limit (default: the operator's)")
    parser.add_argument(
        "--emulator-limit-mb", type=float, default=12_000, help="stop the emulator above this RSS (default 12,000)"
    )
    parser.add_argument(
        "--emulator-store", choices=["ids", "full"], default="ids", help="what the emulator keeps (default: ids)"
    )
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help="where extracts and dead letters go (default: a temp dir)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    if args.serve_emulator:
        sys.exit(serve_emulator_ids_only())
    if args.child:
        print(json.dumps(run_child(json.loads(args.child)), default=str))
        return
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    sizes = sorted(set(args.memory_rows) | {args.rows})
    days = {rows: FIRST_DAY + timedelta(days=index) for index, rows in enumerate(sizes)}
    for rows, day in days.items():
        started = time.perf_counter()
        parts = max(1, round(rows / args.rows_per_part))
        files = write_partition("loyalty_event", rows, work / "extracts", day=day, parts=parts)
        size = sum(path.stat().st_size for path in files)
        print(
            f"extract: {rows:,} loyalty_event rows, {len(files)} CSV files, {size / 1e6:,.0f} MB "
            f"(written in {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    process, url = start_emulator() if args.emulator_store == "full" else start_emulator_ids_only()
    print(f"emulator store: {args.emulator_store}", flush=True)
    results: list[Result] = []
    try:
        plan = [("stream", rows) for rows in sizes if rows != args.rows and "stream" in args.modes]
        plan += [(mode, args.rows) for mode in args.modes]
        for mode, rows in plan:
            try:
                result = run(
                    mode, rows, days[rows], work, url, process.pid, args.max_records_per_second, args.emulator_limit_mb
                )
            except EmulatorLimitError as exc:
                print(f"{exc}: the emulator, not the engine, is the limit", flush=True)
                break
            print(
                f"{mode} {rows:,}: {result.wall:.1f} s, {result.rows / result.wall:,.0f} rows/s, "
                f"peak RSS {result.peak_rss_mb:,.0f} MB; emulator peak RSS {result.emulator_rss_mb:,.0f} MB",
                flush=True,
            )
            results.append(result)
    finally:
        process.terminate()
        process.wait(30)
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print_runs(results)
    print_memory(results)


if __name__ == "__main__":
    main()
