"""
Benchmark the extract readers: rows/s per reader approach, and peak RSS at two file sizes.

Generates a ``loyalty_event`` CSV (columns of ``capillary.md`` §8.4, some quoted fields with commas) of
``--rows`` rows plus its gzip, and a ``transaction`` JSON Lines file of ``--jsonl-rows`` rows, in a temporary
directory, then times:

* CSV: this provider's ``read_file`` (plain and gzip); the ``csv`` module over a text stream; pandas
  ``read_csv(chunksize=...)`` with ``to_dict("records")``; pyarrow's streaming CSV reader with ``to_pylist()``.
* JSON Lines: ``read_file`` (orjson per line); the standard ``json`` module and orjson per line; pandas
  ``read_json(lines=True, chunksize=...)``.

Every approach turns the file into one Python dict per row, which is what the mapper consumes, and holds rows in
lists of 10,000 as a chunk consumer does (that matters: the garbage collector's cost grows with what is held). Peak
RSS is measured in a fresh subprocess per size (Linux ``VmHWM``) reading the file with ``read_file`` and dropping
each chunk. Run::

    .venv/bin/python tests/benchmarks/bench_extracts.py --rows 1000000
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
import pyarrow.csv as pacsv

from airflow_provider_capillary.extracts import read_file

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CHUNK = 10_000
LOYALTY_COLUMNS = [
    "event_id", "event_name", "event_time", "customer_id", "external_id", "mobile", "email", "program_id",
    "points", "points_balance_after", "points_expiry_date", "transaction_id", "bill_number", "redemption_id",
    "from_tier", "to_tier", "tier_expiry_date", "coupon_code", "coupon_series_id", "discount_type",
    "discount_value", "store_code", "ref_id",
]  # fmt: skip


def _loyalty_rows(count: int) -> Iterator[list[str]]:
    rng = random.Random(7)
    names = ["pointsIssued", "pointsRedeemed", "pointsExpired", "tierUpgraded", "CouponRedeem"]
    for number in range(count):
        customer = 564100000 + rng.randrange(100_000)
        yield [
            str(uuid.UUID(int=rng.getrandbits(128))), rng.choice(names),
            f"2025-06-01T{number % 24:02d}:{number % 60:02d}:05+01:00", str(customer), f"ACME-{customer % 10000:04d}",
            f"4477009{customer % 100000:05d}", f"member.{customer}@example.com", "1001",
            str(rng.randrange(-500, 500)), str(rng.randrange(100_000)), "", str(901200000 + number),
            f"LDN001-20250601-{number:07d}", "", "", "", "", "", "", "",
            "", "LDN-001" if number % 3 else "London, Oxford St", f"50001_{number:09d}",
        ]  # fmt: skip


def generate(directory: Path, csv_rows: int, jsonl_rows: int) -> dict[str, Path]:
    """Write the benchmark files; return their paths by name."""
    paths = {
        "csv": directory / "part-0000.csv",
        "csv_gz": directory / "part-0001.csv.gz",
        "jsonl": directory / "part-0002.jsonl",
    }
    with paths["csv"].open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(LOYALTY_COLUMNS)
        writer.writerows(_loyalty_rows(csv_rows))
    with paths["csv"].open("rb") as source, gzip.open(paths["csv_gz"], "wb", compresslevel=6) as target:
        while block := source.read(1 << 20):
            target.write(block)
    line = {
        "record_type": "transaction", "org_id": 50001, "transaction_id": 901200001, "bill_number": "B-1",
        "type": "REGULAR", "customer_id": 564100001, "billing_time": "2025-06-01T10:32:05+01:00",
        "currency": "GBP", "gross_amount": 159.0, "discount": 0.0, "amount": 159.0,
        "line_items": [
            {"serial": 1, "item_code": "SKU-100235", "description": "LED Bath Light", "qty": 1, "amount": 159.0}
        ],
        "payment_modes": [{"mode": "CARD", "value": 159.0}], "custom_fields": {"channel": "pos"},
    }  # fmt: skip
    with paths["jsonl"].open("wb") as out:
        for number in range(jsonl_rows):
            line["transaction_id"] = 901200000 + number
            out.write(orjson.dumps(line) + b"\n")
    return paths


def _provider(path: Path) -> int:
    return sum(len(chunk.rows) for chunk in read_file(f"file://{path}", chunk_size=CHUNK))


def _in_chunks(rows: Iterator[Any]) -> int:
    """Hold rows in lists of ``CHUNK`` like a consumer of chunks does; return how many there were."""
    count = 0
    while chunk := list(itertools.islice(rows, CHUNK)):
        count += len(chunk)
    return count


def _csv_module(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as text:
        reader = csv.reader(text, strict=True)
        header = next(reader)
        return _in_chunks(
            ({k: v or None for k, v in zip(header, fields, strict=True)}, reader.line_num) for fields in reader
        )


def _pandas_csv(path: Path) -> int:
    count = 0
    for frame in pd.read_csv(path, chunksize=CHUNK, dtype=str, keep_default_na=False, na_values=[""]):
        count += len(frame.astype(object).where(frame.notna(), None).to_dict("records"))
    return count


def _pyarrow_csv(path: Path) -> int:
    count = 0
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(LOYALTY_COLUMNS, "string"), strings_can_be_null=True)
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=4 << 20), convert_options=convert)
    for batch in reader:
        count += len(batch.to_pylist())
    return count


def _json_module(path: Path) -> int:
    with path.open("rb") as lines:
        return _in_chunks((json.loads(line), number) for number, line in enumerate(lines, start=1))


def _orjson_lines(path: Path) -> int:
    with path.open("rb") as lines:
        return _in_chunks((orjson.loads(line), number) for number, line in enumerate(lines, start=1))


def _pandas_jsonl(path: Path) -> int:
    count = 0
    with pd.read_json(path, lines=True, chunksize=CHUNK, dtype=False) as reader:
        for frame in reader:
            count += len(frame.to_dict("records"))
    return count


def _time(label: str, reader: Callable[[Path], int], path: Path) -> None:
    began = time.perf_counter()
    rows = reader(path)
    elapsed = time.perf_counter() - began
    print(f"  {label:<44} {rows:>9,} rows {elapsed:7.2f} s {rows / elapsed:>11,.0f} rows/s", flush=True)


_RSS_PROBE = """
import sys
from airflow_provider_capillary.extracts import read_file

def high_water_mib():
    # VmHWM is this process's own peak RSS; getrusage's ru_maxrss would include the parent's peak, kept over fork
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

base = high_water_mib()
rows = sum(len(chunk.rows) for chunk in read_file("file://" + sys.argv[1], chunk_size=10_000))
print(rows, base, high_water_mib())
"""


def _peak_rss(path: Path) -> tuple[int, float, float]:
    """Read ``path`` with ``read_file`` in a fresh interpreter; return (rows, RSS after imports, peak RSS) in MiB."""
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path)], check=True, capture_output=True, text=True)
    rows, base, peak = out.stdout.split()
    return int(rows), float(base), float(peak)


def _throughput(paths: dict[str, Path], csv_rows: int, jsonl_rows: int) -> None:
    """Print rows/s of each reader approach."""
    print(f"CSV, {csv_rows:,} loyalty_event rows:")
    _time("provider read_file (line reader)", _provider, paths["csv"])
    _time("provider read_file, gzip", _provider, paths["csv_gz"])
    _time("csv module + dict (no error handling)", _csv_module, paths["csv"])
    _time("pandas read_csv chunks + to_dict", _pandas_csv, paths["csv"])
    _time("pyarrow open_csv batches + to_pylist", _pyarrow_csv, paths["csv"])
    print(f"JSON Lines, {jsonl_rows:,} transaction rows:")
    _time("provider read_file (orjson per line)", _provider, paths["jsonl"])
    _time("json module per line (no error handling)", _json_module, paths["jsonl"])
    _time("orjson per line (no error handling)", _orjson_lines, paths["jsonl"])
    _time("pandas read_json lines chunks + to_dict", _pandas_jsonl, paths["jsonl"])


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="loyalty_event CSV rows (default 1,000,000)")
    parser.add_argument("--jsonl-rows", type=int, default=200_000, help="transaction JSONL rows (default 200,000)")
    parser.add_argument("--rss-small", type=int, default=100_000, help="smaller size for the RSS comparison")
    parser.add_argument("--rss-only", action="store_true", help="measure peak RSS only, no throughput")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-extracts-") as tmp:
        directory = Path(tmp)
        paths = generate(directory, args.rows, args.jsonl_rows)
        for name, path in paths.items():
            print(f"{name}: {path.stat().st_size / 2**20:,.1f} MiB")
        if not args.rss_only:
            _throughput(paths, args.rows, args.jsonl_rows)
        small = directory / "small.csv"
        with paths["csv"].open("rb") as source, small.open("wb") as target:
            target.writelines(line for _, line in zip(range(args.rss_small + 1), source, strict=False))
        print("Peak RSS reading with read_file (fresh process each):")
        for label, path in (("small", small), ("full", paths["csv"]), ("full gzip", paths["csv_gz"])):
            rows, base, peak = _peak_rss(path)
            growth = peak - base
            print(f"  {label:<10} {rows:>9,} rows  peak RSS {peak:7.1f} MiB (after imports {base:.1f}, +{growth:.1f})")


if __name__ == "__main__":
    main()
