"""
Run every benchmark in ``tests/benchmarks`` in one go, stream their tables, and end with a summary of the key numbers.

Run from the repository root::

    .venv/bin/python tests/benchmarks/run_all.py            # the issue's sizes (long: tens of minutes)
    .venv/bin/python tests/benchmarks/run_all.py --quick    # small sizes, a few minutes
    .venv/bin/python tests/benchmarks/run_all.py --only bench_streaming bench_sender

Each benchmark runs as its own subprocess, one after the other (so they do not compete for the machine's cores),
with the arguments below; its standard output is streamed here and kept for the summary, its standard error
(progress lines, logs, profiles) goes straight to this process's standard error. A ``bench_*.py`` file that is
not listed below is run too, with no arguments; a listed one that does not exist is reported as missing. The
summary gives, per benchmark, its exit status, its duration and the lines of its output that hold the key numbers
(verdicts and headline rates). The exit status is 1 when any benchmark failed or timed out.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark script and how to run it.

    :param script: File name in ``tests/benchmarks``.
    :param full: Arguments for a full run (the issue's sizes).
    :param quick: Arguments for ``--quick`` (small sizes).
    :param key: Regular expression selecting the output lines that go into the summary.
    """

    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    key: str


BENCHMARKS = (
    Benchmark("bench_emulator.py", (), ("--seconds", "3"), r"records/s|per CPU-second"),
    Benchmark(
        "bench_extracts.py",
        ("--rows", "1000000"),
        ("--rows", "50000", "--jsonl-rows", "20000", "--rss-small", "10000"),
        r"rows/s|peak RSS",
    ),
    Benchmark(
        "bench_mapping.py",
        ("--types", "loyalty_event", "--rows", "100000", "1000000", "--worker-heap"),
        ("--types", "loyalty_event", "--rows", "20000", "--worker-heap"),
        r"\brows\s+\{",
    ),
    Benchmark("bench_engine.py", (), ("--rows", "20000"), r"PASS|MISS"),
    Benchmark(
        "bench_sender.py",
        (),
        ("--records", "20000", "--single", "500", "--concurrency", "1", "4"),
        r"^\| (one request|StreamingSender concurrency|raw requests)",
    ),
    Benchmark(
        "bench_streaming.py",
        (),
        ("--rows", "20000", "--single", "300"),
        r"^\| (engine \(|\(a\)|\(b\)|\(c\)|ceiling)|target ≥|FAILED",
    ),
    Benchmark(
        "bench_rate_limit.py",
        (),
        ("--seconds", "3", "--records-limits", "2000", "5000"),
        r"PASS|MISS",
    ),
    Benchmark(
        "bench_backfill.py",
        (),
        ("--rows", "50000", "--memory-rows", "20000", "--rows-per-part", "25000"),
        r"^(stream|batch) [\d,]+:|PASS|MISS|\| NO$",
    ),
)
"""The benchmarks, in the order they run (cheapest first, the end-to-end ones last)."""

FALLBACK_KEY = r"PASS|MISS|FAILED|/s\b"
"""Summary lines of a benchmark script not listed in :data:`BENCHMARKS`."""


@dataclass
class Outcome:
    """What one benchmark run gave."""

    name: str
    command: list[str]
    status: str = "ok"
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)


def plan(only: list[str] | None) -> list[tuple[Benchmark, bool]]:
    """The benchmarks to run and whether each script exists: the listed ones, then any other ``bench_*.py``."""
    listed = {benchmark.script for benchmark in BENCHMARKS}
    extra = [
        Benchmark(path.name, (), (), FALLBACK_KEY)
        for path in sorted(HERE.glob("bench_*.py"))
        if path.name not in listed
    ]
    return [
        (benchmark, (HERE / benchmark.script).is_file())
        for benchmark in (*BENCHMARKS, *extra)
        if not only or Path(benchmark.script).stem in only or benchmark.script in only
    ]


def run(benchmark: Benchmark, quick: bool, timeout: float) -> Outcome:
    """Run one benchmark script, streaming its output; kill its process group if it outlives ``timeout``."""
    command = [sys.executable, str(HERE / benchmark.script), *(benchmark.quick if quick else benchmark.full)]
    outcome = Outcome(benchmark.script, command)
    print(f"\n=== {benchmark.script} {' '.join(command[2:])}".rstrip(), flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True
    )
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        os.killpg(process.pid, signal.SIGTERM)

    timer = threading.Timer(timeout, stop)
    timer.start()
    key = re.compile(benchmark.key)
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            output.append(line.rstrip("\n"))
        code = process.wait()
    finally:
        timer.cancel()
    outcome.seconds = time.perf_counter() - started
    outcome.lines = [line for line in output if key.search(line)] or output[-3:]
    if timed_out.is_set():
        outcome.status = f"TIMED OUT after {timeout:.0f} s"
    elif code != 0:
        outcome.status = f"FAILED (exit {code})"
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes in all")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. bench_streaming)")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds one benchmark may run before it is stopped (3600)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    for benchmark, exists in plan(args.only):
        if not exists:
            outcomes.append(Outcome(benchmark.script, [], status="missing (not written yet)"))
            continue
        outcomes.append(run(benchmark, args.quick, args.timeout))
    print(f"\n=== Summary ({'quick' if args.quick else 'full'} sizes, {time.perf_counter() - started:.0f} s in all)")
    for outcome in outcomes:
        print(f"\n{outcome.name}: {outcome.status}" + (f", {outcome.seconds:.0f} s" if outcome.command else ""))
        for line in outcome.lines:
            print(f"    {line[:400]}")
    failed = [outcome.name for outcome in outcomes if outcome.status != "ok" and outcome.command]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
