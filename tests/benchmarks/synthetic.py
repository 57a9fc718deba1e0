"""
Synthetic Capillary extracts shared by the benchmarks: realistic row generators and a partition writer.

Rows follow the canonical record types of ``capillary.md`` §8 (``customer``, ``loyalty_event``,
``transaction``); :func:`generate_rows` mixes in about 0.5 % repeated rows and 0.5 % invalid rows (a bad
timestamp), and for ``customer`` about 1 % later versions of an earlier customer, so dedupe, supersede
and dead-letter paths all run. :func:`write_partition` writes them in the package's documented layout
(``{record_type}/dt=YYYY-MM-DD/part-NNNN.{csv|jsonl}[.gz]`` plus ``_SUCCESS``), so the operator engine
reads them exactly as in production.

Command line (run from the repository root)::

    .venv/bin/python tests/benchmarks/synthetic.py --record-type loyalty_event --rows 1000000 --out /tmp/x
    .venv/bin/python tests/benchmarks/synthetic.py --record-type transaction --rows 200000 --out /tmp/x \\
        --format jsonl --gzip --parts 4

It prints the files written. ``--out`` is the extract root (what ``capillary_extract_uri`` points at).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

TENANT = "acmecorp"
"""AEP tenant id the benchmarks map into."""

DEFAULT_DAY = date(2025, 6, 1)
"""Partition date written by :func:`write_partition` unless told otherwise."""

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
CSV_COLUMNS = {"customer": CUSTOMER_COLUMNS, "loyalty_event": EVENT_COLUMNS}
"""CSV header per flat record type (``transaction`` is nested, so JSON Lines only)."""

ExtractFormat = Literal["csv", "jsonl"]


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
RECORD_TYPES = tuple(_MAKERS)
"""Record types :func:`generate_rows` can make."""


def generate_rows(record_type: str, count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """
    Yield ``count`` realistic row value dicts: about 0.5 % repeat an earlier row, 0.5 % are invalid and,
    for ``customer``, about 1 % are a later version of an earlier customer.

    :param record_type: ``customer``, ``transaction`` or ``loyalty_event``.
    :param count: Number of rows.
    :param seed: Random seed (the same seed gives the same rows); default 7.
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


def write_partition(
    record_type: str,
    rows: int,
    out: str | Path,
    *,
    day: date = DEFAULT_DAY,
    file_format: ExtractFormat | None = None,
    gzipped: bool = False,
    parts: int = 1,
    seed: int = 7,
    marker: str | None = "_SUCCESS",
) -> list[Path]:
    """
    Write a generated extract partition in the documented layout and return its part files in order.

    The files are ``{out}/{record_type}/dt={day}/part-NNNN.{csv|jsonl}[.gz]``; rows are split into
    ``parts`` consecutive runs of (nearly) equal size, so reading the parts in order gives the rows of
    :func:`generate_rows` in order. The completion marker is written last.

    :param record_type: ``customer``, ``transaction`` or ``loyalty_event``.
    :param rows: Number of rows over all parts.
    :param out: Extract root directory (what ``capillary_extract_uri`` points at); created if missing.
    :param day: Partition date (the data interval start); default :data:`DEFAULT_DAY`.
    :param file_format: ``csv`` or ``jsonl``; default ``jsonl`` for ``transaction`` (nested) and ``csv``
        otherwise. ``transaction`` cannot be written as CSV.
    :param gzipped: Gzip each part file (``.gz`` suffix); default ``False``.
    :param parts: Number of part files, at least 1; default 1.
    :param seed: Random seed passed to :func:`generate_rows`; default 7.
    :param marker: Completion marker file name, or ``None`` for none; default ``_SUCCESS``.
    :raises ValueError: on an unknown record type, ``parts < 1`` or CSV for ``transaction``.
    """
    if record_type not in _MAKERS:
        raise ValueError(f"unknown record type {record_type!r}; use one of {', '.join(RECORD_TYPES)}")
    if parts < 1:
        raise ValueError("parts must be at least 1")
    fmt: ExtractFormat = file_format or ("jsonl" if record_type == "transaction" else "csv")
    if fmt == "csv" and record_type not in CSV_COLUMNS:
        raise ValueError(f"{record_type} rows are nested: write them as jsonl")
    partition = Path(out) / record_type / f"dt={day.isoformat()}"
    partition.mkdir(parents=True, exist_ok=True)
    suffix = f".{fmt}" + (".gz" if gzipped else "")
    generated = generate_rows(record_type, rows, seed=seed)
    paths: list[Path] = []
    for index in range(parts):
        size = rows // parts + (1 if index < rows % parts else 0)
        path = partition / f"part-{index:04d}{suffix}"
        with (
            gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=6)
            if gzipped
            else path.open("w", encoding="utf-8", newline="")
        ) as handle:
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS[record_type], lineterminator="\n")
                writer.writeheader()
                writer.writerows(next(generated) for _ in range(size))
            else:
                for _ in range(size):
                    handle.write(json.dumps(next(generated), ensure_ascii=False) + "\n")
        paths.append(path)
    if marker:
        (partition / marker).touch()
    return paths


def main() -> None:
    """Command line: write one partition and print its files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record-type", choices=RECORD_TYPES, required=True)
    parser.add_argument("--rows", type=int, required=True, help="rows over all parts")
    parser.add_argument("--out", type=Path, required=True, help="extract root directory")
    parser.add_argument("--format", choices=["csv", "jsonl"], help="default: jsonl for transaction, else csv")
    parser.add_argument("--gzip", action="store_true", help="gzip the part files")
    parser.add_argument("--parts", type=int, default=1, help="number of part files (default 1)")
    parser.add_argument("--day", type=date.fromisoformat, default=DEFAULT_DAY, help="partition date (2025-06-01)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args()
    try:
        paths = write_partition(
            args.record_type,
            args.rows,
            args.out,
            day=args.day,
            file_format=args.format,
            gzipped=args.gzip,
            parts=args.parts,
            seed=args.seed,
        )
    except ValueError as err:
        parser.error(str(err))
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
