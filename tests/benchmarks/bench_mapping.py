"""Benchmark: read → map → validate throughput per record type, and peak memory at two extract sizes.

Run from the repository root (one core; numbers go to stdout)::

    .venv/bin/python tests/benchmarks/bench_mapping.py                      # all types, 1M rows
    .venv/bin/python tests/benchmarks/bench_mapping.py --types loyalty_event --rows 200000
    .venv/bin/python tests/benchmarks/bench_mapping.py --validators         # fastjsonschema vs jsonschema
    .venv/bin/python tests/benchmarks/bench_mapping.py --worker-heap        # with Airflow imported

What is measured:

- a generated extract (``generate_rows``: realistic rows, ~0.5 % repeated rows and ~0.5 % invalid rows) is
  written to a temporary CSV (``customer``, ``loyalty_event``) or JSON Lines (``transaction``) file;
- a fresh subprocess per (record type, size) reads it with the stdlib ``csv``/``json`` modules in chunks of
  5,000 rows, maps each chunk with :class:`~airflow_provider_capillary.xdm.mapping.Mapper` and validates
  every entity against the schema resolved from the official XDM definitions in ``../shared/reference/xdm``
  (compiled with fastjsonschema); it reports rows per CPU-second (``time.process_time``, so other load on
  a shared machine does not count) for read and for map+validate separately, end to end (CPU and wall
  clock), and its peak RSS (``ru_maxrss``), so sizes can be compared (100k vs 1M rows);
- ``--worker-heap`` first imports Airflow's task SDK and pandas in the child, as a worker has them: the
  cyclic garbage collector's full collections walk that heap, so its cost shows only then.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from synthetic import CUSTOMER_COLUMNS, EVENT_COLUMNS, TENANT, generate_rows

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
CHUNK = 5_000


class Row(NamedTuple):
    values: dict[str, Any]
    file: str
    line: int


def write_extract(record_type: str, count: int, folder: Path) -> Path:
    """Write a generated extract file and return its path."""
    if record_type == "transaction":
        path = folder / f"{record_type}-{count}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for values in generate_rows(record_type, count):
                handle.write(json.dumps(values, ensure_ascii=False) + "\n")
        return path
    path = folder / f"{record_type}-{count}.csv"
    columns = CUSTOMER_COLUMNS if record_type == "customer" else EVENT_COLUMNS
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(generate_rows(record_type, count))
    return path


def read_chunks(path: Path) -> Iterator[list[Row]]:
    """Read an extract with the stdlib in chunks of ``CHUNK`` rows (CSV empty fields → None)."""
    chunk: list[Row] = []
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            reader = csv.reader(handle)
            header = next(reader)
            for line, record in enumerate(reader, start=2):
                chunk.append(Row({k: (v or None) for k, v in zip(header, record, strict=False)}, path.name, line))
                if len(chunk) == CHUNK:
                    yield chunk
                    chunk = []
        else:
            for line, text in enumerate(handle, start=1):
                chunk.append(Row(json.loads(text), path.name, line))
                if len(chunk) == CHUNK:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def resolved_schema(record_type: str) -> dict[str, Any]:
    """The record type's schema resolved from the official XDM definitions."""
    sys.path.insert(0, str(REPO_ROOT))
    from airflow_provider_capillary.testing.xdm_registry import XDMDefinitions
    from airflow_provider_capillary.xdm.schemas import schema_spec

    spec = schema_spec(record_type, TENANT)
    definitions = XDMDefinitions.from_directory(SHARED / "reference" / "xdm")
    return definitions.resolve(spec.class_id, spec.field_group_ids, tenant_field_groups=[spec.tenant_field_group])


def run_child(record_type: str, path: Path, profile: bool, worker_heap: bool = False) -> dict[str, Any]:
    """Measure one extract in this process (called in a fresh subprocess)."""
    if worker_heap:
        import airflow.sdk  # noqa: F401
        import pandas  # noqa: F401
    from airflow_provider_capillary.xdm.mapping import Mapper, MappingOptions
    from airflow_provider_capillary.xdm.validation import compile_validator

    validator = compile_validator(resolved_schema(record_type))
    mapper = Mapper(
        record_type,
        MappingOptions(tenant_id=TENANT, org_id="50001", default_currency="GBP"),
        validator=validator,
    )
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    read_s = map_s = 0.0
    started, started_cpu = time.perf_counter(), time.process_time()
    chunks = read_chunks(path)
    while True:
        t0 = time.process_time()
        rows = next(chunks, None)
        t1 = time.process_time()
        read_s += t1 - t0
        if rows is None:
            break
        mapper.map_chunk(rows)
        map_s += time.process_time() - t1
    t2 = time.process_time()
    released = sum(len(records) for records in mapper.finish())
    map_s += time.process_time() - t2
    total, total_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False), file=sys.stderr)
    counts = mapper.counts
    assert counts.balanced, counts
    return {
        "rows": counts.rows,
        "records": counts.records,
        "dead_letters": counts.dead_letters,
        "duplicates": counts.duplicates,
        "superseded": counts.superseded,
        "released_at_finish": released,
        "read_rows_per_cpu_s": round(counts.rows / read_s) if read_s else None,
        "map_validate_rows_per_cpu_s": round(counts.rows / map_s),
        "end_to_end_rows_per_cpu_s": round(counts.rows / total_cpu),
        "end_to_end_rows_per_wall_s": round(counts.rows / total),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def compare_validators(count: int = 20_000) -> None:
    """Time fastjsonschema against jsonschema's compiled validator on the same loyalty_event entities."""
    import jsonschema

    from airflow_provider_capillary.xdm.mapping import Mapper, MappingOptions
    from airflow_provider_capillary.xdm.validation import compile_validator

    for record_type in ("loyalty_event", "transaction", "customer"):
        schema = resolved_schema(record_type)
        rows = [Row(values, "gen", n) for n, values in enumerate(generate_rows(record_type, count, seed=3))]
        mapper = Mapper(record_type, MappingOptions(tenant_id=TENANT, org_id="50001", default_currency="GBP"))
        chunk = mapper.map_chunk(rows)
        entities = [record.entity for record in chunk.records] + [
            record.entity for batch in mapper.finish() for record in batch
        ]
        t0 = time.perf_counter()
        fast = compile_validator(schema)
        t1 = time.perf_counter()
        for entity in entities:
            fast.validate(entity)
        t2 = time.perf_counter()
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        slow = cls(schema, format_checker=cls.FORMAT_CHECKER)
        t3 = time.perf_counter()
        for entity in entities:
            slow.is_valid(entity)
        t4 = time.perf_counter()
        print(
            f"{record_type:14s} {len(entities)} entities | fastjsonschema: compile {t1 - t0:.2f}s, "
            f"{(t2 - t1) / len(entities) * 1e6:.1f} µs/entity | jsonschema {cls.__name__}: build {t3 - t2:.2f}s, "
            f"{(t4 - t3) / len(entities) * 1e6:.1f} µs/entity"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", default=["loyalty_event", "transaction", "customer"])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--validators", action="store_true", help="compare fastjsonschema with jsonschema")
    parser.add_argument("--profile", action="store_true", help="pyinstrument profile of the child (stderr)")
    parser.add_argument("--worker-heap", action="store_true", help="import Airflow and pandas in the child first")
    parser.add_argument("--child", nargs=2, metavar=("RECORD_TYPE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    if args.child:
        print(json.dumps(run_child(args.child[0], Path(args.child[1]), args.profile, args.worker_heap)))
        return
    if args.validators:
        compare_validators()
        return
    with tempfile.TemporaryDirectory(prefix="bench-mapping-") as tmp:
        for record_type in args.types:
            for count in args.rows:
                path = write_extract(record_type, count, Path(tmp))
                command = [sys.executable, __file__, "--child", record_type, str(path)]
                if args.profile:
                    command.append("--profile")
                if args.worker_heap:
                    command.append("--worker-heap")
                output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
                result = json.loads(output.stdout.strip().splitlines()[-1])
                print(f"{record_type:14s} {count:>9,d} rows  {json.dumps(result)}", flush=True)
                path.unlink()


if __name__ == "__main__":
    main()
