"""A seeded synthetic ``loyalty_event`` extract whose outcome is known row by row before anything runs.

Every row is written with its intended fate: valid (AEP must accept it), a dead letter with a stated reason, or a
repeat of an earlier valid row (same content: counted as a duplicate, neither sent again nor dead-lettered). The
expected ``_id``s of the valid rows come from the package's mapper run offline, without faults and without a
schema, on the valid rows alone (:func:`expected_ids`).
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_capillary.extracts.records import SourceRow
from airflow_provider_capillary.xdm.mapping import Mapper, MappingOptions

RECORD_TYPE = "loyalty_event"
DAY = "2025-06-01"
HEADER = (
    "event_id",
    "event_name",
    "event_time",
    "customer_id",
    "program_id",
    "points",
    "points_balance_after",
    "ref_id",
)
#: Mapping options of the run (also given to the operator).
MAPPING = {"org_id": "50001", "default_currency": "GBP"}
#: Tenant id of the AEP emulator (``AEPEmulator(tenant_id=...)`` default).
TENANT_ID = "acmecorp"

#: Dead-letter reasons the generator produces, each with how to spoil a valid row to get it.
INVALID_KINDS = (
    "invalid_datetime",
    "unsupported_event_name",
    "negative_points_for_credit_event",
    "positive_points_for_debit_event",
    "no_identity",
    "ragged_row",
    "duplicate_id_conflict",
)
_EVENTS = (("pointsIssued", 1), ("pointsRedeemed", -1), ("pointsExpired", -1))


@dataclass(frozen=True)
class PlannedRow:
    """One extract row and its intended fate.

    :param file: The part file's name (``part-0000.csv``...).
    :param line: The 1-based physical line (the header is line 1).
    :param values: Column values as written (one extra value for a ragged row).
    :param fate: ``valid``, ``repeat`` (an exact copy of an earlier valid row) or a dead-letter reason.
    """

    file: str
    line: int
    values: tuple[str, ...]
    fate: str


@dataclass
class SyntheticExtract:
    """The rows of one partition, in reading order, and where they were written.

    :param rows: Every row, in file and line order.
    :param files: Part file paths, in listing order.
    """

    rows: list[PlannedRow] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def valid(self) -> list[PlannedRow]:
        """Rows AEP must accept (one record each)."""
        return [row for row in self.rows if row.fate == "valid"]

    @property
    def repeats(self) -> int:
        """Rows that repeat an earlier valid row exactly."""
        return sum(1 for row in self.rows if row.fate == "repeat")

    @property
    def dead_letters(self) -> Counter[tuple[str, int, str]]:
        """The dead letters the run must write: ``(file name, line, reason)``, each once."""
        return Counter((row.file, row.line, row.fate) for row in self.rows if row.fate not in ("valid", "repeat"))


def write_extract(
    root: Path, seed: int, rows: int, *, chunk_size: int, files: int = 2, padding: int = 0
) -> SyntheticExtract:
    """Write ``rows`` rows over ``files`` CSV part files of the ``loyalty_event`` partition of :data:`DAY`.

    About 8 % of the rows are dead letters (every kind of :data:`INVALID_KINDS` at least once), about 2 % repeat one
    of the 40 valid rows before them exactly, the rest are valid. Right after every chunk boundary an event of the
    chunk before is repeated, once exactly and once with other content (``duplicate_id_conflict``): whatever chunk a
    retried try resumes after, the extract still holds what must be recognised as seen.

    :param root: The extract root.
    :param seed: Seed of the row generator.
    :param rows: Number of rows (at least 50).
    :param chunk_size: Rows per chunk of the run (at least 50).
    :param files: Number of part files. Default 2.
    :param padding: Characters added to every ``ref_id`` (bigger records, so fewer of them fill a request or what the
        sender keeps in flight). Default 0.
    """
    if rows < 50 or chunk_size < 50:
        raise ValueError("a synthetic extract needs at least 50 rows and chunks of at least 50 rows")
    rng = random.Random(f"extract-{seed}")
    partition = root / RECORD_TYPE / f"dt={DAY}"
    partition.mkdir(parents=True, exist_ok=True)
    fates = ["valid"] * rows
    positions = list(range(10, rows))
    rng.shuffle(positions)
    invalid = max(len(INVALID_KINDS), rows * 8 // 100)
    for index, position in enumerate(positions[:invalid]):
        fates[position] = INVALID_KINDS[index % len(INVALID_KINDS)]
    for position in positions[invalid : invalid + max(1, rows // 50)]:
        fates[position] = "repeat"
    per_file = -(-rows // files)
    for start in range(0, rows, per_file):
        for boundary in range(start + chunk_size, min(start + per_file, rows) - 1, chunk_size):
            fates[boundary : boundary + 2] = ["repeat", "duplicate_id_conflict"]
    extract = SyntheticExtract()
    written: list[tuple[str, ...]] = []
    for number in range(files):
        name = f"part-{number:04d}.csv"
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HEADER)
        for offset, fate in enumerate(fates[number * per_file : (number + 1) * per_file]):
            n = number * per_file + offset
            values = _row(seed, n, fate, written, rng, "x" * padding)
            if fate == "valid":
                written.append(values)
            writer.writerow(values)
            extract.rows.append(PlannedRow(name, offset + 2, values, fate))
        path = partition / name
        path.write_text(buffer.getvalue())
        extract.files.append(path)
    (partition / "_SUCCESS").touch()
    return extract


def _row(
    seed: int, n: int, fate: str, earlier: list[tuple[str, ...]], rng: random.Random, padding: str
) -> tuple[str, ...]:
    event_name, sign = _EVENTS[n % len(_EVENTS)]
    values = [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"soak-{seed}-{n}")),
        event_name,
        f"2025-06-01T{n % 24:02d}:{n % 60:02d}:{n % 59:02d}+00:00",
        str(564100000 + n % 997),
        "1001",
        str(sign * (n % 90)),
        str(n),
        f"{seed}-{n}-{padding}",
    ]
    if fate == "repeat":
        return rng.choice(earlier[-40:])
    if fate == "duplicate_id_conflict":
        original = list(rng.choice(earlier[-40:]))
        original[6] = str(int(original[6]) + 1)  # same event_id, different balance
        return tuple(original)
    if fate == "invalid_datetime":
        values[2] = "2025-06-31T10:00:00+00:00"
    elif fate == "unsupported_event_name":
        values[1] = "pointsTeleported"
    elif fate == "negative_points_for_credit_event":
        values[1], values[5] = "pointsIssued", str(-1 - n % 50)
    elif fate == "positive_points_for_debit_event":
        values[1], values[5] = "pointsRedeemed", str(1 + n % 50)
    elif fate == "no_identity":
        values[3] = ""
    elif fate == "ragged_row":
        values.append("unexpected")
    return tuple(values)


def expected_ids(extract: SyntheticExtract) -> dict[str, PlannedRow]:
    """The ``_id`` of every valid row, from the package's mapper run offline on the valid rows alone.

    :param extract: The planned extract.
    :return: ``_id`` → its row.
    """
    options = MappingOptions(TENANT_ID, org_id=MAPPING["org_id"], default_currency=MAPPING["default_currency"])
    mapper = Mapper(RECORD_TYPE, options)
    try:
        valid = extract.valid
        chunk = mapper.map_chunk(
            SourceRow({name: value or None for name, value in zip(HEADER, row.values, strict=True)}, row.file, row.line)
            for row in valid
        )
    finally:
        mapper.close()
    if chunk.dead_letters or chunk.duplicates or len(chunk.records) != len(valid):
        raise AssertionError(
            f"the generator's valid rows do not map one record each: {len(chunk.records)} records of {len(valid)} "
            f"rows, dead letters {[d.reason for d in chunk.dead_letters][:5]}, {chunk.duplicates} duplicates"
        )
    return {record.id: row for record, row in zip(chunk.records, valid, strict=True)}
