"""Benchmark: read → map → validate throughput per record type, and peak memory at two extract sizes.

Run from the repository root (one core; numbers go to stdout)::

    /work/venv/bin/python tests/benchmarks/bench_mapping.py                      # all types, 1M rows
    /work/venv/bin/python tests/benchmarks/bench_mapping.py --types loyalty_event --rows 200000
    /work/venv/bin/python tests/benchmarks/bench_mapping.py --validators         # fastjsonschema vs jsonschema
    /work/venv/bin/python tests/benchmarks/bench_mapping.py --worker-heap        # with Airflow imported

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
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
TENANT = "acmecorp"
CHUNK = 5_000

EVENT_NAMES = [
    ("pointsIssued", 1),
    ("pointsIssued", 1),
    ("pointsIssued", 1),
    ("pointsRedeemed", -1),
    ("pointsExpired", -1),
    ("issuedPointsReversed", -1),
    ("redeemedPointsReversed", 1),
    ("promisedToCurrentPointsConversion", 1),
    ("pointsExpiryReminder", 1),
    ("tierUpgraded", 0),
    ("tierDowngraded", 0),
    ("CouponIssue", 0),
    ("CouponRedeem", 0),
]
OFFSETS = ["Z", "+00:00", "+01:00", "+05:30", "-04:00"]
FIRST = ["Olivia", "José", "Zoë", "太郎", "Seán", "Chloé", "Liam", "Priya", "Grace", "Mateusz"]
LAST = ["Bennett", "Núñez", "Ångström", "山田", "O'Connor, Jr.", "Dubois", "Walker", "Wiśniewski"]
TIERS = ["Bronze", "Silver", "Gold", "Platinum"]

CUSTOMER_COLUMNS = [
    "customer_id", "external_id", "mobile", "email", "first_name", "last_name", "gender", "date_of_birth",
    "loyalty_type", "source", "registered_on", "registered_store_code", "program_id", "program_name", "tier",
    "tier_number", "next_tier", "tier_expiry_date", "points_balance", "lifetime_points", "points_redeemed",
    "points_expired", "lifetime_purchases", "currency", "card_number", "email_optin", "sms_optin", "updated_at",
]  # fmt: skip
EVENT_COLUMNS = [
    "event_id", "event_name", "event_time", "customer_id", "external_id", "mobile", "email", "program_id",
    "points", "points_balance_after", "points_expiry_date", "transaction_id", "bill_number", "redemption_id",
    "from_tier", "to_tier", "tier_expiry_date", "coupon_code", "coupon_series_id", "discount_type",
    "discount_value", "store_code", "ref_id",
]  # fmt: skip


class Row(NamedTuple):
    values: dict[str, Any]
    file: str
    line: int


def _time(rng: random.Random, day: str = "2025-06-01") -> str:
    return f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}{rng.choice(OFFSETS)}"


def _money(rng: random.Random) -> str:
    return f"{rng.randrange(1, 50000) / 100:.2f}"


def _customer(rng: random.Random, n: int) -> dict[str, Any]:
    cid = 564_000_000 + n
    tier = rng.randrange(4)
    loyal = rng.random() > 0.05
    return {
        "customer_id": str(cid),
        "external_id": f"ACME-{n:07d}",
        "mobile": f"4477009{n % 100000:05d}" if rng.random() > 0.1 else f"+44 7700 9{n % 100000:05d}",
        "email": f"member{n}@example.com" if rng.random() > 0.1 else f" Member{n}@Example.COM ",
        "first_name": rng.choice(FIRST),
        "last_name": rng.choice(LAST),
        "gender": rng.choice(["M", "F", "O", ""]),
        "date_of_birth": f"{rng.randrange(1940, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "loyalty_type": "LOYALTY" if loyal else "NON_LOYALTY",
        "source": rng.choice(["INSTORE", "ECOMMERCE", "MOBILE_APP"]),
        "registered_on": _time(rng, f"20{rng.randrange(15, 25)}-0{rng.randrange(1, 10)}-1{rng.randrange(10)}"),
        "registered_store_code": rng.choice(["LDN-001", "MAN-004", "WEB-UK"]),
        "program_id": "1001" if loyal else "",
        "program_name": "Acme Rewards" if loyal else "",
        "tier": TIERS[tier] if loyal else "",
        "tier_number": str(tier) if loyal else "",
        "next_tier": TIERS[tier + 1] if loyal and tier < 3 else "",
        "tier_expiry_date": "2026-03-31T23:59:59+00:00" if loyal else "",
        "points_balance": str(rng.randrange(0, 60000)),
        "lifetime_points": str(rng.randrange(0, 90000)),
        "points_redeemed": str(rng.randrange(0, 30000)),
        "points_expired": "0",
        "lifetime_purchases": _money(rng),
        "currency": "GBP",
        "card_number": f"AC9{n:09d}" if loyal else "",
        "email_optin": rng.choice(["true", "false"]),
        "sms_optin": rng.choice(["true", "false"]),
        "updated_at": _time(rng),
    }


def _event(rng: random.Random, n: int) -> dict[str, Any]:
    name, sign = rng.choice(EVENT_NAMES)
    points = f"{rng.randrange(1, 2000)}" if rng.random() > 0.1 else f"{rng.randrange(1, 200000) / 1000:.3f}"
    cid = 564_000_000 + rng.randrange(100_000)
    row = dict.fromkeys(EVENT_COLUMNS, "")
    row.update(
        {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=5)),
            "event_name": name,
            "event_time": _time(rng),
            "customer_id": str(cid),
            "external_id": f"ACME-{cid % 10_000_000:07d}",
            "mobile": f"4477009{cid % 100000:05d}",
            "email": f"member{cid}@example.com",
            "program_id": "1001",
            "store_code": rng.choice(["LDN-001", "MAN-004", "WEB-UK"]),
            "ref_id": f"50001_{n}",
        }
    )
    if sign:
        row["points"] = points if sign > 0 else f"-{points}"
        row["points_balance_after"] = str(rng.randrange(0, 60000))
    if name == "pointsIssued":
        row.update(transaction_id=str(901_000_000 + n), bill_number=f"LDN001-{n}", points_expiry_date="2026-06-30")
    elif name == "pointsRedeemed":
        row["redemption_id"] = f"RDM-{n}"
    elif name.startswith("tier"):
        row.update(from_tier="Silver", to_tier="Gold", tier_expiry_date="2026-07-31T23:59:59+01:00")
    elif name.startswith("Coupon"):
        row.update(coupon_code=f"CPN{n}", coupon_series_id="353122", discount_type="ABS", discount_value="10.00")
    return row


def _transaction(rng: random.Random, n: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for serial in range(1, rng.randrange(0, 5) + 1):
        qty = rng.randrange(1, 4)
        rate = rng.randrange(100, 20000) / 100
        items.append(
            {
                "serial": serial,
                "item_code": f"SKU-{rng.randrange(100000, 999999)}",
                "description": rng.choice(["LED Bath Light", "抹茶ラテ 350ml", "Crème brûlée ramekins", "Drill"]),
                "qty": qty,
                "rate": rate,
                "value": round(rate * qty, 2),
                "discount": 0.0,
                "amount": round(rate * qty, 2),
            }
        )
    amount = round(sum(item["amount"] for item in items), 2) if items else rng.randrange(100, 20000) / 100
    cid = 564_000_000 + rng.randrange(100_000)
    kind = "RETURN" if rng.random() < 0.05 else "REGULAR"
    points = int(amount)
    return {
        "record_type": "transaction",
        "org_id": 50001,
        "transaction_id": 901_000_000 + n,
        "bill_number": f"LDN001-20250601-{n:07d}",
        "type": kind,
        "customer_id": cid,
        "external_id": f"ACME-{cid % 10_000_000:07d}",
        "mobile": f"4477009{cid % 100000:05d}",
        "email": f"member{cid}@example.com",
        "billing_time": _time(rng),
        "store_code": "LDN-001",
        "store_name": "Acme London Oxford St",
        "till_code": "ldn001.till01",
        "currency": rng.choice(["GBP", "GBP", None]),
        "gross_amount": amount,
        "discount": 0.0,
        "amount": amount,
        "points_earned": -points if kind == "RETURN" else points,
        "points_redeemed": 0,
        "program_id": 1001,
        "delivery_status": "DELIVERED",
        "line_items": items,
        "payment_modes": [{"mode": rng.choice(["CARD", "CASH"]), "value": amount}],
        "custom_fields": {"channel": rng.choice(["pos", "online"])},
        "updated_at": _time(rng),
        **({"original_bill_number": f"LDN001-20250601-{n - 1:07d}"} if kind == "RETURN" else {}),
    }


_MAKERS = {"customer": _customer, "loyalty_event": _event, "transaction": _transaction}
_BAD = {
    "customer": ("registered_on", "2024-02-30T10:00:00+00:00"),
    "loyalty_event": ("event_time", "2025/06/01 25:61"),
    "transaction": ("billing_time", "2025-06-31 14:00:00"),
}


def generate_rows(record_type: str, count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Yield ``count`` realistic row value dicts: about 0.5 % repeat an earlier row, 0.5 % are invalid and,
    for ``customer``, about 1 % are a later version of an earlier customer.

    :param record_type: ``customer``, ``transaction`` or ``loyalty_event``.
    :param count: Number of rows.
    :param seed: Random seed (the same seed gives the same rows).
    """
    rng = random.Random(seed)
    make = _MAKERS[record_type]
    bad_column, bad_value = _BAD[record_type]
    previous: dict[str, Any] | None = None
    for n in range(count):
        roll = rng.random()
        if previous is not None and roll < 0.005:
            yield previous
            continue
        if previous is not None and record_type == "customer" and roll < 0.015:
            yield {**previous, "points_balance": str(rng.randrange(60000)), "updated_at": "2025-06-01T23:59:59Z"}
            continue
        row = make(rng, n)
        if roll > 0.995:
            row[bad_column] = bad_value
        previous = row
        yield row


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
