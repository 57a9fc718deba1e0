"""
End-to-end streaming throughput: extract files → records accepted by the AEP emulator, for the operator's
engine and for the usual ways of streaming the same records.

One process, one emulator subprocess (its built-in XDM catalogue), one synthetic ``loyalty_event`` extract
(``synthetic.write_partition``: ~0.5 % repeated rows and ~0.5 % invalid rows) in the documented layout
``loyalty_event/dt=2025-06-01/part-NNNN.csv`` + ``_SUCCESS``. Every run starts from a reset emulator with a
fresh schema, dataset and dataflow (the package's set-up operators), so each run costs the emulator the same,
and ends by fetching the ``_id``s the emulator accepted from its control API: a run whose set of ``_id``s is
not exactly the records it sent prints ``FAILED`` (and the script exits 1). Rate limiting is off everywhere.

- **engine**: ``CapillaryToAEPOperator.execute`` with a real ``aep_default`` Connection (``AIRFLOW_CONN_*``),
  ``mode="stream"``: lists and reads the extract files, maps and validates every row against the schema it
  fetches from the emulator, dead-letters the invalid rows (to a local folder), streams the rest;
- **(a) one request per record**: the single-message endpoint, sequential, one ``requests`` session with
  keep-alive, pre-serialised messages; only the first ``--single`` records are sent and the time for all
  records is extrapolated from their rate (after one unmeasured warm-up message);
- **(b) aepp**: ``aepp.ingestion.DataIngestion.streamMessages`` (aepp 0.6) pointed at the emulator, one call
  per request the engine makes (the same messages per request), fed pre-built message dicts; aepp only
  sends messages that are already built, while the engine reads, maps and validates too;
- **(c) HttpHook**: ``airflow.providers.http.hooks.http.HttpHook`` (an ``http`` Connection from
  ``AIRFLOW_CONN_*``) posting the engine's multi-message bodies, pre-serialised, one at a time;
- **ceiling**: raw ``requests`` posting pre-serialised bodies packed to ~1 MB over the whole stream,
  from as many threads as the engine's concurrency; no per-record work at all;
- **engine dry run** (a diagnostic, last): the same operator with ``validate_only=True``: what reading, mapping
  and validating alone cost in this process, so the table shows how much sending adds. The engine rows also
  split their client CPU between the main thread (reading, mapping, validating, submitting: the engine's
  bottleneck, since it is one thread) and the sender threads.

The records of (a), (b), (c) and the ceiling are exactly the records the engine accepted (mapped by the same
``Mapper`` before those runs, not timed). Columns: records accepted, wall-clock seconds, records/s, the ratio
to the engine's records/s, CPU seconds of this client process and of the emulator process. On a shared
machine absolute numbers move; ratios measured in one run hold better. Then the issue's three targets:
engine ≥ 20x (a), ≥ 1.0x (b), ≥ 50 % of the ceiling, judged on records/s; beside each, the same ratio by CPU
demand (records per CPU-second of client and emulator together), which other load on the machine moves less.

    .venv/bin/python tests/benchmarks/bench_streaming.py [--rows 200000] [--single 2000]
        [--concurrency 4] [--chunk-size 5000] [--parts 1] [--latency-ms 0]

Needs ``aepp==0.6.0`` in the environment for (b) (the run prints ``skipped`` for it otherwise).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")  # the set-up operators log every call
sys.path.insert(0, str(REPO_ROOT))

from bench_sender import cpu_seconds, start_emulator  # noqa: E402
from synthetic import DEFAULT_DAY, write_partition  # noqa: E402

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE, AEPHook, batch_url_for_inlet  # noqa: E402
from airflow_provider_capillary.ingestion import EnvelopeTemplate, pack  # noqa: E402
from airflow_provider_capillary.ingestion.packing import DEFAULT_MAX_REQUEST_BYTES  # noqa: E402
from tests.integration.aep_setup import set_up  # noqa: E402

RECORD_TYPE = "loyalty_event"
MAPPING = {"org_id": "50001", "default_currency": "GBP"}
HTTP_CONN_ID = "bench_dcs_http"
TARGETS = {"a": 20.0, "b": 1.0, "ceiling": 0.5}


@dataclass
class Target:
    """A fresh AEP target: the dataset, its schema and dataflow, the inlet and the DCS URLs."""

    dataset_id: str
    schema_id: str
    flow_id: str
    inlet_url: str
    inlet_id: str
    single_url: str
    batch_url: str
    org_id: str
    token: str

    def template(self) -> EnvelopeTemplate:
        """The serialised DCS envelope of this dataset and dataflow (what the engine's sender wraps entities in)."""
        return EnvelopeTemplate(
            schema_id=self.schema_id, dataset_id=self.dataset_id, flow_id=self.flow_id, org_id=self.org_id
        )

    def headers(self, hook: AEPHook) -> dict[str, str]:
        """The platform headers of a DCS request with this target's token."""
        return {**hook.settings.platform_headers(self.token), "Content-Type": "application/json"}


@dataclass
class Result:
    """One measured run."""

    method: str
    records: int
    seconds: float
    cpu: float
    emulator_cpu: float
    ok: bool
    note: str = ""

    @property
    def rate(self) -> float:
        """Records accepted per wall-clock second."""
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def per_cpu(self) -> float:
        """Records accepted per CPU-second of client and emulator together: steadier than ``rate`` on a busy
        machine, but blind to what concurrency overlaps."""
        busy = self.cpu + self.emulator_cpu
        return self.records / busy if busy else 0.0


class Bench:
    """The emulator subprocess and the helpers every run shares."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid

    def fresh_target(self) -> Target:
        """Reset the emulator and create a schema, dataset and streaming dataflow for loyalty events."""
        requests.post(f"{self.url}/_emulator/reset", timeout=60).raise_for_status()
        TOKEN_CACHE.clear()
        targets, inlet_url = set_up([RECORD_TYPE])
        hook = AEPHook()
        single_url, batch_url = batch_url_for_inlet(inlet_url, hook.settings.dcs_url)
        return Target(
            **targets[RECORD_TYPE],
            inlet_url=inlet_url,
            inlet_id=batch_url.rsplit("/", 1)[-1],
            single_url=single_url,
            batch_url=batch_url,
            org_id=hook.settings.org_id,
            token=hook.get_access_token(),
        )

    def accepted_ids(self, dataset_id: str) -> list[str]:
        """The ``_id``s the emulator accepted into a dataset (its control API), repeats included."""
        response = requests.get(f"{self.url}/_emulator/datasets/{dataset_id}/ids", timeout=120)
        response.raise_for_status()
        return list(response.json())

    def measure(
        self, method: str, target: Target, expected: set[str] | None, run: Callable[[], str]
    ) -> tuple[Result, list[str]]:
        """Time ``run`` (which returns a note) and check what the emulator accepted against ``expected``
        (``None``: check later, against the ids returned)."""
        cpu, server_cpu, started = time.process_time(), cpu_seconds(self.pid), time.perf_counter()
        failure = ""
        try:
            note = run()
        except Exception as err:  # a failed run is reported in the table, and the script exits 1
            note, failure = "", f"{type(err).__name__}: {str(err)[:200]}"
        seconds = time.perf_counter() - started
        cpu, server_cpu = time.process_time() - cpu, cpu_seconds(self.pid) - server_cpu
        ids = self.accepted_ids(target.dataset_id)
        ok = not failure and len(ids) == len(set(ids)) and (expected is None or set(ids) == expected)
        if not ok and not failure and expected is not None:
            failure = f"emulator holds {len(set(ids)):,} ids, expected {len(expected):,}"
        result = Result(method, len(set(ids)), seconds, cpu, server_cpu, ok, failure or note)
        return result, ids


def build_records(extract_root: Path, schema: dict[str, Any], tenant: str, chunk_size: int) -> list[list[bytes]]:
    """Map and validate the extract as the engine does (same reader, chunks, mapper and schema); return the
    serialised entities of each chunk, in order. Not timed."""
    from airflow_provider_capillary.extracts.readers import read_partition
    from airflow_provider_capillary.xdm.mapping import Mapper, MappingOptions
    from airflow_provider_capillary.xdm.validation import compile_validator

    options = MappingOptions(tenant_id=tenant, org_id=MAPPING["org_id"], default_currency=MAPPING["default_currency"])
    mapper = Mapper(RECORD_TYPE, options, validator=compile_validator(schema))
    chunks: list[list[bytes]] = []
    for chunk in read_partition(extract_root.as_uri(), RECORD_TYPE, DEFAULT_DAY, chunk_size=chunk_size):
        chunks.append([record.body for record in mapper.map_chunk(chunk.rows).records])
    chunks.extend([record.body for record in records] for records in mapper.finish())
    return [chunk for chunk in chunks if chunk]


def engine_requests(chunks: Sequence[Sequence[bytes]], template: EnvelopeTemplate) -> list[list[bytes]]:
    """The entities of each request the engine's sender makes: chunk by chunk, packed to the 1 MB limit."""
    out: list[list[bytes]] = []
    for chunk in chunks:
        plan = pack([len(body) for body in chunk], message_overhead=template.overhead)
        out.extend([chunk[i] for i in request] for request in plan.requests)
    return out


def aepp_requests(chunks: Sequence[Sequence[bytes]], template: EnvelopeTemplate) -> list[list[dict[str, Any]]]:
    """The messages of each aepp request as built dicts: chunk by chunk like the engine, packed to the same 1 MB
    limit as aepp serialises them (``json.dumps``: ASCII escapes and a space after each separator make its
    bodies larger than the engine's, so its requests may hold fewer messages: the table shows both request counts)."""
    out: list[list[dict[str, Any]]] = []
    for chunk in chunks:
        messages = [orjson.loads(template.message(body)) for body in chunk]
        sizes = [len(json.dumps(message)) for message in messages]
        # json.dumps writes ", " between messages and '{"messages": [': one byte more each than pack counts.
        plan = pack(sizes, message_overhead=1, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES - 1)
        out.extend([messages[i] for i in request] for request in plan.requests)
    return out


def check_207(status: int, content: bytes) -> None:
    """Raise unless a multi-message answer is a 207 in which every message was accepted."""
    if status != 207 or b'"statusCode"' in content:
        raise RuntimeError(f"DCS answered {status}: {content[:200]!r}")


def run_engine(
    bench: Bench, extract_root: Path, work: Path, args: argparse.Namespace, *, dry_run: bool = False
) -> tuple[Result, list[str]]:
    """Run ``CapillaryToAEPOperator.execute`` on the extract into a fresh target; with ``dry_run``
    (``validate_only``) it reads, maps and validates and sends nothing (a diagnostic, not a compared method)."""
    from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

    target = bench.fresh_target()
    name = "dry-run" if dry_run else "stream"
    operator = CapillaryToAEPOperator(
        task_id=name,
        record_types=RECORD_TYPE,
        targets={
            RECORD_TYPE: {"dataset_id": target.dataset_id, "schema_id": target.schema_id, "flow_id": target.flow_id}
        },
        inlet=target.inlet_url,
        extract_uri=extract_root.as_uri(),
        interval_start=DEFAULT_DAY.isoformat(),
        mode="stream",
        validate_only=dry_run,
        max_records_per_second=None,
        max_requests_per_second=None,
        concurrency=args.concurrency,
        chunk_size=args.chunk_size,
        dead_letter_uri=(work / f"dead_letters_{name}").as_uri(),
        max_reject_ratio=0.05,
        mapping_options=MAPPING,
    )
    ti = SimpleNamespace(dag_id="bench", run_id=name, task_id=name, map_index=-1, xcom_push=lambda **_: None)
    context: Any = {"ti": ti}
    summary: dict[str, Any] = {}

    def run() -> str:
        main_cpu, process_cpu = time.thread_time(), time.process_time()
        if args.profile and not dry_run:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as profiler:
                summary.update(operator.execute(context))
            print(profiler.output_text(unicode=True, color=False, show_all=False), file=sys.stderr)
        else:
            summary.update(operator.execute(context))
        counts = summary["record_types"][RECORD_TYPE]
        if not counts["balanced"]:
            raise RuntimeError(f"counts do not add up: {counts}")
        main_cpu, process_cpu = time.thread_time() - main_cpu, time.process_time() - process_cpu
        read, rejected, duplicates = counts["read"], counts["rejected"], counts["duplicates"]
        return (
            f"{read:,} rows read, {rejected:,} dead-lettered, {duplicates:,} duplicates; CPU s: main thread "
            f"{main_cpu:.1f} (read, map, validate, submit), other threads {process_cpu - main_cpu:.1f}"
        )

    if dry_run:
        result, ids = bench.measure("engine dry run (validate_only)", target, set(), run)
        result.records = summary["record_types"][RECORD_TYPE]["validated"] if result.ok else 0
        result.note = f"{result.note}; diagnostic: nothing sent" if result.ok else result.note
        return result, ids
    result, ids = bench.measure("engine (CapillaryToAEPOperator)", target, None, run)
    if result.ok and summary["accepted"] != result.records:
        result.ok, result.note = False, f"operator says {summary['accepted']:,} accepted, emulator {result.records:,}"
    return result, ids


def run_single(bench: Bench, hook: AEPHook, chunks: list[list[bytes]], count: int, total: int) -> Result:
    target = bench.fresh_target()
    template = target.template()
    flat = [body for chunk in chunks for body in chunk]
    messages = [template.message(body) for body in flat[: count + 1]]
    expected = {orjson.loads(body)["_id"] for body in flat[: count + 1]}
    headers = target.headers(hook)
    session = requests.Session()
    session.post(target.single_url, data=messages[0], headers=headers, timeout=60).raise_for_status()  # warm-up

    def run() -> str:
        for message in messages[1:]:
            response = session.post(target.single_url, data=message, headers=headers, timeout=60)
            if response.status_code != 200:
                raise RuntimeError(f"DCS answered {response.status_code}: {response.text[:200]}")
        return ""

    result, _ = bench.measure("(a) one request per record", target, expected, run)
    result.records -= 1  # the warm-up message
    result.note = result.note or f"first {count:,} records; all {total:,} would take {total / result.rate:,.0f} s"
    return result


def run_aepp(bench: Bench, chunks: list[list[bytes]]) -> Result:
    try:
        import aepp
        from aepp import ingestion
    except ImportError:
        return Result("(b) aepp streamMessages", 0, 0.0, 0.0, 0.0, True, "skipped: pip install aepp==0.6.0")
    target = bench.fresh_target()
    template = target.template()
    built = aepp_requests(chunks, template)
    expected = {message["body"]["xdmEntity"]["_id"] for request in built for message in request}
    engine_count = len(engine_requests(chunks, template))
    hook = AEPHook()
    aepp.configure(
        org_id=hook.settings.org_id,
        client_id=hook.settings.client_id,
        sandbox=hook.settings.sandbox,
        environment="support",
        endpoint=bench.url,
        accesstoken=target.token,
    )
    aepp.config.endpoints["streaming"]["collection"] = bench.url
    aepp.config.config_object["connectionType"] = "support"
    client = ingestion.DataIngestion()

    def run() -> str:
        for messages in built:
            answer = client.streamMessages(inletId=target.inlet_id, data=messages, flowId=target.flow_id)
            answers = answer.get("responses") if isinstance(answer, dict) else None
            if not answers or len(answers) != len(messages) or any("xactionId" not in item for item in answers):
                raise RuntimeError(f"DCS answered {str(answer)[:200]}")
        return f"{len(built)} requests (engine: {engine_count}), sequential"

    result, _ = bench.measure("(b) aepp 0.6 streamMessages", target, expected, run)
    return result


def run_http_hook(bench: Bench, hook: AEPHook, chunks: list[list[bytes]]) -> Result:
    from airflow.providers.http.hooks.http import HttpHook

    target = bench.fresh_target()
    template = target.template()
    requests_ = engine_requests(chunks, template)
    bodies = [template.request_body(request) for request in requests_]
    expected = {orjson.loads(body)["_id"] for request in requests_ for body in request}
    os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = json.dumps({"conn_type": "http", "host": bench.url})
    headers = target.headers(hook)
    endpoint = target.batch_url.removeprefix(bench.url)

    def run() -> str:
        http = HttpHook(method="POST", http_conn_id=HTTP_CONN_ID)
        for body in bodies:
            response = http.run(endpoint=endpoint, data=body, headers=headers)  # type: ignore[arg-type]
            check_207(response.status_code, response.content)
        return f"{len(bodies)} requests (the engine's), one at a time"

    result, _ = bench.measure("(c) Airflow HttpHook, multi-message", target, expected, run)
    return result


def run_ceiling(bench: Bench, hook: AEPHook, chunks: list[list[bytes]], threads: int) -> Result:
    target = bench.fresh_target()
    template = target.template()
    flat = [body for chunk in chunks for body in chunk]
    plan = pack([len(body) for body in flat], message_overhead=template.overhead)
    bodies = [template.request_body([flat[i] for i in request]) for request in plan.requests]
    expected = {orjson.loads(body)["_id"] for body in flat}
    headers = target.headers(hook)

    def run() -> str:
        queue = iter(bodies)
        lock = threading.Lock()
        failures: list[str] = []

        def post() -> None:
            session = requests.Session()
            while not failures:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                response = session.post(target.batch_url, data=body, headers=headers, timeout=120)
                try:
                    check_207(response.status_code, response.content)
                except RuntimeError as err:
                    failures.append(str(err))

        workers = [threading.Thread(target=post) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if failures:
            raise RuntimeError(failures[0])
        mean = sum(len(body) for body in bodies) / len(bodies)
        return f"{len(bodies)} bodies of {mean:,.0f} bytes built beforehand, {threads} threads"

    result, _ = bench.measure("ceiling: raw requests, ~1 MB bodies", target, expected, run)
    return result


def print_header() -> None:
    print(f"| {'method':<38} | {'records':>8} | {'seconds':>7} | {'records/s':>9} | {'vs engine':>9} | cli s | emu s |")
    print(f"|{'-' * 40}|{'-' * 10}|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 7}|{'-' * 7}|", flush=True)


def print_row(r: Result, engine: Result) -> None:
    ratio = f"{r.rate / engine.rate:.3f}x" if r.records and engine.rate else "-"
    status = "" if r.ok else "FAILED: "
    print(
        f"| {r.method:<38} | {r.records:>8,} | {r.seconds:>7.2f} | {r.rate:>9,.0f} | {ratio:>9} | "
        f"{r.cpu:>5.1f} | {r.emulator_cpu:>5.1f} | {status}{r.note}",
        flush=True,
    )


def print_targets(engine: Result, single: Result, aepp: Result, ceiling: Result) -> None:
    checks = [
        ("engine vs (a) one request per record", single, TARGETS["a"]),
        ("engine vs (b) aepp streamMessages", aepp, TARGETS["b"]),
        ("engine vs ceiling", ceiling, TARGETS["ceiling"]),
    ]
    for label, other, target in checks:
        if not (engine.ok and other.ok and other.records and engine.rate):
            print(f"{label:<38}  n/a (a run failed or was skipped)")
            continue
        ratio = engine.rate / other.rate
        verdict = "PASS" if ratio >= target else "MISS"
        shown = f"{ratio:.1%}" if target < 1 else f"{ratio:.2f}x"
        wanted = f"{target:.0%}" if target < 1 else f"{target:g}x"
        by_cpu = engine.per_cpu / other.per_cpu
        print(
            f"{label:<38}  {shown:>8}  (target ≥ {wanted})  {verdict}   "
            f"[by CPU demand: {f'{by_cpu:.1%}' if target < 1 else f'{by_cpu:.2f}x'}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the synthetic extract (200,000)")
    parser.add_argument("--single", type=int, default=2_000, help="records (a) sends, one request each (2,000)")
    parser.add_argument("--concurrency", type=int, default=4, help="engine concurrency and ceiling threads (4)")
    parser.add_argument("--chunk-size", type=int, default=5_000, help="engine chunk size in rows (5,000)")
    parser.add_argument("--parts", type=int, default=1, help="part files of the extract (1)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="round trip the emulator adds (0)")
    parser.add_argument("--profile", action="store_true", help="pyinstrument profile of the engine run (stderr)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("airflow").setLevel(logging.ERROR)  # the set-up operators' info lines
    process, url = start_emulator(args.latency_ms)
    bench = Bench(url, process.pid)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
            work = Path(tmp)
            extract_root = work / "extracts"
            files = write_partition(RECORD_TYPE, args.rows, extract_root, parts=args.parts)
            size = sum(path.stat().st_size for path in files)
            print(
                f"{args.rows:,} {RECORD_TYPE} rows in {len(files)} CSV file(s), {size / 2**20:.1f} MiB; "
                f"emulator latency {args.latency_ms:g} ms; rate limiting off; engine concurrency {args.concurrency}, "
                f"chunks of {args.chunk_size:,} rows",
                flush=True,
            )
            engine, engine_ids = run_engine(bench, extract_root, work, args)
            hook = AEPHook()
            schema_target = bench.fresh_target()
            chunks = build_records(
                extract_root, hook.get_schema(schema_target.schema_id, full=True), hook.get_tenant_id(), args.chunk_size
            )
            expected = {orjson.loads(body)["_id"] for chunk in chunks for body in chunk}
            if engine.ok and set(engine_ids) != expected:
                engine.ok = False
                engine.note = f"emulator holds {len(set(engine_ids)):,} ids, the extract maps to {len(expected):,}"
            total = len(expected)
            entity = sum(len(body) for chunk in chunks for body in chunk) / total
            print(f"{total:,} valid records, {entity:,.0f} bytes of entity JSON each on average", flush=True)
            print()
            print_header()
            print_row(engine, engine)
            results = [engine]
            for measure in (
                lambda: run_single(bench, hook, chunks, min(args.single, total - 1), total),
                lambda: run_aepp(bench, chunks),
                lambda: run_http_hook(bench, hook, chunks),
                lambda: run_ceiling(bench, hook, chunks, args.concurrency),
                lambda: run_engine(bench, extract_root, work, args, dry_run=True)[0],
            ):
                results.append(measure())
                print_row(results[-1], engine)
    finally:
        process.terminate()
        process.wait(10)
    print()
    print_targets(results[0], results[1], results[2], results[4])
    if not all(r.ok for r in results):
        print("FAILED: a run lost or failed records (see the table)")
        sys.exit(1)


if __name__ == "__main__":
    main()
