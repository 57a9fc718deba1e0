"""Build the demo extracts shipped in ``dags/demo_extracts/`` from the sample extracts in ``../shared/samples``.

Day 1 (2025-06-01) is the samples as they are, messy rows included. Days 2 and 3 are the same rows moved by one and
two days, with new event and transaction ids, so each day's partition holds different records. Every partition gets
a ``_SUCCESS`` marker. Usage: ``python scripts/make_demo_extracts.py [SAMPLES_DIR]``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "dags" / "demo_extracts"
FIRST_DAY = date(2025, 6, 1)
DAYS = 3
FILES = {"customer": "customers.csv", "transaction": "transactions.jsonl", "loyalty_event": "loyalty_events.csv"}


def shift(text: str, days: int) -> str:
    """Move every 2025-06-01 date in a value by ``days`` (other dates, e.g. birth dates, stay as they are)."""
    day = (FIRST_DAY + timedelta(days=days)).isoformat()
    return text.replace(FIRST_DAY.isoformat(), day).replace(
        FIRST_DAY.strftime("%Y%m%d"), (FIRST_DAY + timedelta(days=days)).strftime("%Y%m%d")
    )


def shift_csv(source: str, days: int, id_column: str | None) -> str:
    reader = csv.DictReader(io.StringIO(source, newline=""))
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
    writer.writeheader()
    for row in reader:
        row = {key: shift(value, days) if value else value for key, value in row.items()}
        if id_column and row.get(id_column) and days:
            row[id_column] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{row[id_column]}/{days}"))
        writer.writerow(row)
    return out.getvalue()


def shift_jsonl(source: str, days: int) -> str:
    lines = []
    for text in source.splitlines():
        record = json.loads(shift(text, days))
        if days and isinstance(record.get("transaction_id"), int):
            record["transaction_id"] += 100_000 * days
        lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def main(samples: Path) -> None:
    for offset in range(DAYS):
        day = (FIRST_DAY + timedelta(days=offset)).isoformat()
        for record_type, name in FILES.items():
            source = (samples / name).read_text(encoding="utf-8")
            if name.endswith(".jsonl"):
                content = shift_jsonl(source, offset)
            else:
                content = shift_csv(source, offset, "event_id" if record_type == "loyalty_event" else None)
            partition = OUT / record_type / f"dt={day}"
            partition.mkdir(parents=True, exist_ok=True)
            suffix = ".jsonl" if name.endswith(".jsonl") else ".csv"
            (partition / f"part-0000{suffix}").write_text(content if offset else source, encoding="utf-8")
            (partition / "_SUCCESS").write_text("")
    print(f"wrote {DAYS} days of demo extracts under {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "samples" / "capillary")
