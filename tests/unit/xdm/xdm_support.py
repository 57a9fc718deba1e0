"""Helpers shared by the XDM tests: the sample files and a row type shaped like the readers' ``SourceRow``."""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

TENANT = "acmecorp"
SAMPLE_FILES = {
    "customer": "customers.csv",
    "transaction": "transactions.jsonl",
    "loyalty_event": "loyalty_events.csv",
}


class Row(NamedTuple):
    """Same shape as the extract readers' ``SourceRow``."""

    values: dict[str, Any]
    file: str
    line: int


def read_rows(path: Path) -> list[Row]:
    """Read a sample file: CSV (header = line 1, empty → None) or JSON Lines (line 1 = first record)."""
    rows: list[Row] = []
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            reader = csv.reader(handle)
            header = next(reader)
            for line, record in enumerate(reader, start=2):
                rows.append(
                    Row({k: (v if v != "" else None) for k, v in zip(header, record, strict=False)}, path.name, line)
                )
        else:
            for line, text in enumerate(handle, start=1):
                rows.append(Row(json.loads(text), path.name, line))
    return rows
