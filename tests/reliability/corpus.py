"""A bad-input corpus of Capillary extract files, built programmatically into a temporary extract root.

Every file sits in the documented extract layout (``{record_type}/dt=2025-06-01/part-NNNN.{csv,jsonl,parquet}[.gz]``)
and comes with what should become of each record it holds, worked out here from the documented rules (README
"Extract layout" and "Failure behaviour", ``extracts/readers.py``, ``xdm/mapping.py``), not by running the package:

- a row AEP should accept: the ``_id`` it must arrive with (``sha256("capillary|{org}|{record type}|{natural
  key}")``) and any string that must arrive verbatim (injection-looking text, control characters);
- a row that should be dead-lettered: its physical line and the stable reason code;
- a file that cannot be read (or read any further): the file-level reason code, and the lines read before it.

Nothing binary is committed: encodings, BOMs, gzip, Parquet and the 5 MB fields are produced at test time.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORG_ID = "50001"
"""The Capillary org id the corpus is mapped with (``mapping_options={"org_id": ORG_ID}``)."""

DAY = "2025-06-01"
"""The data interval start every partition of the corpus belongs to."""

HUGE_FIELD_BYTES = 5 * 1024 * 1024
"""Size of the huge fields (over AEP's 1 MB record limit, under the reader's 8 MiB line bound)."""

INJECTIONS: tuple[str, ...] = (
    "'; DROP TABLE customers; --",
    "{{ conn.aep_default.password }}",
    "{{ ds }}{% if true %}x{% endif %}",
    "<script>alert('xss')</script>",
    "../../etc/passwd",
    "=cmd|' /C calc'!A0",
    "${jndi:ldap://127.0.0.1/a}",
)
"""Injection-looking strings: SQL, Jinja, HTML, path traversal, CSV formula, log4j lookup."""

CONTROL_CHARACTERS: tuple[str, ...] = ("nul\x00byte", "esc\x1b[31mred", "bell\x07tab\tend")
"""Field values holding control characters that survive a CSV/JSON round trip and must arrive verbatim."""

DEEP_JSON_LEVELS = (300, 5000)
"""Nesting depths of the deeply nested JSON: past orjson's serialisation limit (255), and past Python's
recursion limit (1000) and orjson's parsing limit (1024)."""


def event_id(org: str, record_type: str, natural_key: str) -> str:
    """The documented deterministic ``_id``: SHA-256 hex of ``capillary|{org}|{record type}|{natural key}``."""
    return hashlib.sha256(f"capillary|{org}|{record_type}|{natural_key}".encode()).hexdigest()


def nested(depth: int) -> str:
    """JSON text of ``depth`` nested arrays around an object: ``[[...[{"k": 1}]...]]``."""
    return "[" * depth + '{"k":1}' + "]" * depth


@dataclass(frozen=True)
class RowFate:
    """What must become of one input record.

    :param line: 1-based physical line where the record starts (the CSV header is line 1).
    :param reason: the dead-letter reason code, or ``None`` when AEP must accept the record.
    :param record_id: the ``_id`` AEP must hold, for an accepted record.
    :param verbatim: for an accepted record, dotted XDM paths (``_tenant`` = the tenant object) and the exact
        strings they must hold.
    """

    line: int
    reason: str | None = None
    record_id: str | None = None
    verbatim: Mapping[str, str] = field(default_factory=dict)


@dataclass
class CorpusFile:
    """One part file of the corpus and its expected outcome.

    :param record_type: the record type whose partition holds the file.
    :param name: the file name, e.g. ``part-0003.csv``.
    :param case: what is wrong with it, in a few words.
    :param rows: the fate of every record the file holds (for a file-level error: the records read before it).
    :param file_error: the file-level reason code, or ``None``.
    """

    record_type: str
    name: str
    case: str
    rows: list[RowFate] = field(default_factory=list)
    file_error: str | None = None

    @property
    def relative(self) -> str:
        """The file's path under the extract root."""
        return f"{self.record_type}/dt={DAY}/{self.name}"


# ------------------------------------------------------------------------------------------- row values

EVENT_COLUMNS = (
    "event_id",
    "event_name",
    "event_time",
    "customer_id",
    "program_id",
    "points",
    "points_balance_after",
    "bill_number",
    "coupon_code",
    "store_code",
    "ref_id",
)
_EVENT_STRINGS = {
    "bill_number": "_tenant.capillary.loyaltyEvent.billNumber",
    "coupon_code": "_tenant.capillary.loyaltyEvent.couponCode",
    "store_code": "_tenant.capillary.loyaltyEvent.storeCode",
    "ref_id": "_tenant.capillary.loyaltyEvent.refId",
}

TRANSACTION_COLUMNS = (
    "org_id",
    "transaction_id",
    "bill_number",
    "type",
    "customer_id",
    "billing_time",
    "store_code",
    "currency",
    "gross_amount",
    "discount",
    "amount",
    "line_items",
    "custom_fields",
)

CUSTOMER_COLUMNS = (
    "customer_id",
    "external_id",
    "first_name",
    "last_name",
    "loyalty_type",
    "registered_on",
    "program_id",
    "tier",
    "updated_at",
)


def event_row(key: str, **values: str) -> dict[str, str]:
    """A valid ``loyalty_event`` row with ``event_id`` ``key``; ``values`` override columns."""
    row = {
        "event_id": key,
        "event_name": "pointsIssued",
        "event_time": "2025-06-01T10:00:00Z",
        "customer_id": "564100001",
        "program_id": "1001",
        "points": "10",
        "points_balance_after": "110",
        "bill_number": f"B-{key}",
        "coupon_code": "",
        "store_code": "LDN-001",
        "ref_id": f"R-{key}",
    }
    row.update(values)
    return row


def event_fate(line: int, row: Mapping[str, str]) -> RowFate:
    """The fate of a valid ``loyalty_event`` row: accepted with its ``_id`` and its strings verbatim."""
    verbatim = {path: row[column] for column, path in _EVENT_STRINGS.items() if row.get(column)}
    return RowFate(line, record_id=event_id(ORG_ID, "loyalty_event", row["event_id"]), verbatim=verbatim)


def transaction_row(number: int, **values: Any) -> dict[str, Any]:
    """A valid ``transaction`` row (JSON types) with ``transaction_id`` ``number``; ``values`` override fields."""
    row: dict[str, Any] = {
        "org_id": int(ORG_ID),
        "transaction_id": number,
        "bill_number": f"BILL-{number}",
        "type": "REGULAR",
        "customer_id": 564100001,
        "billing_time": "2025-06-01T10:32:05+01:00",
        "store_code": "LDN-001",
        "currency": "GBP",
        "gross_amount": 10.0,
        "discount": 0.0,
        "amount": 10.0,
        "line_items": [{"item_code": "SKU-1", "description": "Bath light", "qty": 1, "amount": 10.0}],
        "custom_fields": {"channel": "pos"},
    }
    row.update(values)
    return row


def transaction_fate(line: int, row: Mapping[str, Any], verbatim: Mapping[str, str] | None = None) -> RowFate:
    """The fate of a valid ``transaction`` row: accepted with ``_id`` of ``{transaction_id}-{type}``."""
    key = f"{row['transaction_id']}-{row['type']}"
    return RowFate(line, record_id=event_id(ORG_ID, "transaction", key), verbatim=dict(verbatim or {}))


def transaction_csv_values(row: Mapping[str, Any]) -> dict[str, str]:
    """A transaction row as CSV text values (JSON-typed columns as JSON text)."""
    return {key: json.dumps(value) if isinstance(value, list | dict) else str(value) for key, value in row.items()}


def customer_row(number: int, **values: str) -> dict[str, str]:
    """A valid ``customer`` row; ``values`` override columns."""
    row = {
        "customer_id": str(564200000 + number),
        "external_id": f"ACME-{number:04d}",
        "first_name": "Olivia",
        "last_name": "Bennett",
        "loyalty_type": "LOYALTY",
        "registered_on": "2021-03-14T10:22:05+00:00",
        "program_id": "1001",
        "tier": "Gold",
        "updated_at": "2025-06-01T09:15:00Z",
    }
    row.update(values)
    return row


def customer_fate(line: int, row: Mapping[str, str]) -> RowFate:
    """The fate of a valid ``customer`` row (one version per customer): accepted with its profile ``_id``."""
    key = f"{row['customer_id']}@{row['updated_at']}"
    verbatim = {"person.name.firstName": row["first_name"], "_tenant.capillary.externalId": row["external_id"]}
    return RowFate(line, record_id=event_id(ORG_ID, "customer", key), verbatim=verbatim)


def csv_line(columns: Iterable[str], row: Mapping[str, str]) -> str:
    """One CSV record (RFC 4180 quoting where needed), without its line break."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([row.get(column, "") for column in columns])
    return buffer.getvalue().removesuffix("\r\n")


# ------------------------------------------------------------------------------------------- the corpus

Line = tuple[str | bytes, Callable[[int], RowFate | None]]
"""A line to write (text or raw bytes) and a function from its line number to the fate of its record."""


class CorpusBuilder:
    """Writes the corpus files under ``root`` and records what must become of every record.

    :param root: the extract root (a temporary directory).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[CorpusFile] = []
        self._numbers: dict[str, int] = {}

    def _new(self, record_type: str, suffix: str, case: str) -> tuple[CorpusFile, Path]:
        number = self._numbers.get(record_type, 0)
        self._numbers[record_type] = number + 1
        entry = CorpusFile(record_type, f"part-{number:04d}.{suffix}", case)
        self.files.append(entry)
        path = self.root / entry.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return entry, path

    # -- loyalty_event (CSV) ---------------------------------------------------------------------

    def event_csv(
        self,
        case: str,
        body: Sequence[Line],
        *,
        encoding: str = "utf-8",
        prefix: bytes = b"",
        suffix: str = "csv",
    ) -> CorpusFile:
        """A ``loyalty_event`` CSV: a header, then ``body`` lines (text, encoded with ``encoding``, or raw bytes),
        each with a function from its line number to its fate (``None`` for lines that start no record)."""
        entry, path = self._new("loyalty_event", suffix, case)
        data = bytearray(prefix + ",".join(EVENT_COLUMNS).encode(encoding) + b"\n")
        line = 1
        for text, fate in body:
            line += 1
            chunk = text if isinstance(text, bytes) else text.encode(encoding)
            data += chunk + b"\n"
            expected = fate(line)
            if expected is not None:
                entry.rows.append(expected)
            line += chunk.count(b"\n")
        path.write_bytes(bytes(data))
        return entry

    def good_event(self, key: str, **values: str) -> Line:
        """A valid event line and its fate."""
        row = event_row(key, **values)
        return csv_line(EVENT_COLUMNS, row), lambda line: event_fate(line, row)

    @staticmethod
    def bad(text: str | bytes, reason: str) -> Line:
        """A line that must be dead-lettered with ``reason`` at its line."""
        return text, lambda line: RowFate(line, reason)

    def build(self) -> list[CorpusFile]:
        """Write every case; return the files with their expected outcomes."""
        self._event_cases()
        self._event_jsonl_cases()
        self._transaction_cases()
        self._customer_cases()
        return self.files

    def _event_cases(self) -> None:
        good = self.good_event
        ragged = csv_line(EVENT_COLUMNS, event_row("ev-ragged-x"))
        self.event_csv(
            "unbalanced quotes",
            [
                good("ev-q-1"),
                self.bad(csv_line(EVENT_COLUMNS, event_row("ev-q-2")).replace("B-ev-q-2", '"B-ev-q-2'), "bad_quoting"),
                good("ev-q-3"),
                self.bad(csv_line(EVENT_COLUMNS, event_row("ev-q-4")).replace("B-ev-q-4", '"B"-ev-q-4'), "bad_quoting"),
                good("ev-q-5", bill_number='quoted "inside", with a comma'),
            ],
        )
        self.event_csv(
            "ragged rows",
            [
                good("ev-r-1"),
                self.bad(ragged + ",extra", "ragged_row"),
                self.bad(ragged.rsplit(",", 2)[0], "ragged_row"),
                good("ev-r-2"),
            ],
        )
        for encoding, text in (("latin-1", "Café Núñez"), ("cp1252", "\u201csmart\u201d quotes \u2013 \u20ac5")):
            self.event_csv(
                f"{encoding} bytes",
                [
                    good(f"ev-{encoding}-1"),
                    self.bad(
                        csv_line(EVENT_COLUMNS, event_row(f"ev-{encoding}-2", store_code=text)).encode(encoding),
                        "undecodable_bytes",
                    ),
                    good(f"ev-{encoding}-3"),
                ],
            )
        self.event_csv(
            "UTF-8 BOM", [good("ev-bom-1"), good("ev-bom-2", store_code="Zoë Ångström")], prefix=b"\xef\xbb\xbf"
        )
        utf16, path = self._new("loyalty_event", "csv", "UTF-16 with BOM")
        utf16.file_error = "invalid_header"
        lines = [",".join(EVENT_COLUMNS), csv_line(EVENT_COLUMNS, event_row("ev-utf16-1"))]
        path.write_bytes(("\n".join(lines) + "\n").encode("utf-16"))
        huge = "h" * HUGE_FIELD_BYTES
        self.event_csv(
            "huge fields",
            [
                good("ev-huge-1"),
                self.bad(csv_line(EVENT_COLUMNS, event_row("ev-huge-2", ref_id=huge)), "record_too_large"),
                self.bad(csv_line(EVENT_COLUMNS, event_row("ev-huge-3", ref_id=f'"{huge}"')), "field_too_large"),
                good("ev-huge-4"),
            ],
        )
        controls = [good(f"ev-ctl-{n}", bill_number=value) for n, value in enumerate(CONTROL_CHARACTERS)]
        self.event_csv(
            "control characters",
            [
                *controls,
                good("ev-ctl-cr", bill_number="carriage\rreturn"),
                self.bad(
                    csv_line(EVENT_COLUMNS, event_row("ev-ctl-bare")).replace("B-ev-ctl-bare", "B\rbare"), "bad_quoting"
                ),
                good("ev-ctl-crlf"),
            ],
        )
        self.event_csv(
            "injection-looking strings",
            [good(f"ev-inj-{n}", bill_number=text, coupon_code=text, ref_id=text) for n, text in enumerate(INJECTIONS)]
            + [good(INJECTIONS[1]), good(INJECTIONS[4])],
        )
        self.event_csv("header only", [])
        empty, path = self._new("loyalty_event", "csv", "empty file")
        empty.file_error = "empty_file"
        path.write_bytes(b"")
        self._truncated_gzip()
        corrupt, path = self._new("loyalty_event", "parquet", "corrupt Parquet")
        corrupt.file_error = "invalid_parquet"
        path.write_bytes(b"PAR1" + bytes(range(256)) * 8 + b"PAR1")

    def _truncated_gzip(self) -> None:
        entry, path = self._new("loyalty_event", "csv.gz", "truncated gzip")
        entry.file_error = "truncated_gzip"
        rows = [event_row(f"ev-gz-{n}", ref_id=f"{n:06d}" * 40) for n in range(400)]
        text = ",".join(EVENT_COLUMNS) + "\n" + "".join(csv_line(EVENT_COLUMNS, row) + "\n" for row in rows)
        whole = gzip.compress(text.encode(), mtime=0)
        cut = whole[: len(whole) // 2]
        path.write_bytes(cut)
        # What survives the cut, found independently of the reader: the complete lines of what inflates.
        inflated = zlib.decompressobj(wbits=31).decompress(cut).decode()
        complete = inflated.split("\n")[:-1]
        entry.rows = [event_fate(line, rows[line - 2]) for line in range(2, len(complete) + 1)]

    # -- loyalty_event (JSON Lines) ---------------------------------------------------------------

    def _event_jsonl_cases(self) -> None:
        entry, path = self._new(
            "loyalty_event", "jsonl", "JSON Lines: deep nesting, a 100-bit integer, BOM, broken lines"
        )
        lines: list[str] = []

        def add(text: str, fate: RowFate | None) -> None:
            lines.append(text)
            if fate is not None:
                entry.rows.append(fate)

        first = event_row("ev-j-1")
        add(json.dumps(first), event_fate(1, first))
        shallow = event_row("ev-j-deep300")
        add(json.dumps(shallow)[:-1] + f', "extra": {nested(DEEP_JSON_LEVELS[0])}}}', event_fate(2, shallow))
        add(
            json.dumps(event_row("ev-j-deep5000"))[:-1] + f', "extra": {nested(DEEP_JSON_LEVELS[1])}}}',
            RowFate(3, "invalid_json"),
        )
        bad_time = event_row("ev-j-deep300-bad", event_time="2025-06-31T10:00:00Z")
        add(json.dumps(bad_time)[:-1] + f', "extra": {nested(DEEP_JSON_LEVELS[0])}}}', RowFate(4, "invalid_datetime"))
        add('{"event_id": "ev-j-broken", ', RowFate(5, "invalid_json"))
        add("[1, 2, 3]", RowFate(6, "not_an_object"))
        add('{"event_id": "ev-j-nan", "points": NaN}', RowFate(7, "invalid_json"))
        control = event_row("ev-j-ctl", bill_number="nul\x00 esc\x1b cr\r lf\n end")
        add(json.dumps(control), event_fate(8, control))
        big = event_row("ev-j-bigint", event_time="not a time")
        add(json.dumps({**big, "points": 10**30}), RowFate(9, "invalid_datetime"))
        last = event_row("ev-j-last")
        add(json.dumps(last), event_fate(10, last))
        path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
        self._new("loyalty_event", "jsonl", "empty JSON Lines file")[1].write_bytes(b"")

    # -- transaction (JSON Lines and CSV with JSON-typed columns) ---------------------------------

    def _transaction_cases(self) -> None:
        entry, path = self._new("transaction", "jsonl", "JSON Lines: nested custom fields, injections, huge field")
        lines: list[str] = []
        row = transaction_row(701)
        lines.append(json.dumps(row))
        entry.rows.append(transaction_fate(1, row))
        deep_custom = transaction_row(702, custom_fields={})
        deep_text = nested(DEEP_JSON_LEVELS[0])
        lines.append(
            json.dumps(deep_custom).replace('"custom_fields": {}', f'"custom_fields": {{"deep": {deep_text}}}')
        )
        entry.rows.append(transaction_fate(2, deep_custom, {"_tenant.capillary.customFields.deep": deep_text}))
        injected = transaction_row(
            703, custom_fields={"note": INJECTIONS[1], "path": INJECTIONS[4]}, bill_number=INJECTIONS[0]
        )
        lines.append(json.dumps(injected))
        entry.rows.append(
            transaction_fate(
                3,
                injected,
                {
                    "_tenant.capillary.customFields.note": INJECTIONS[1],
                    "_tenant.capillary.customFields.path": INJECTIONS[4],
                    "commerce.order.purchaseID": INJECTIONS[0],
                },
            )
        )
        lines.append(json.dumps(transaction_row(704, custom_fields={"note": "x" * HUGE_FIELD_BYTES})))
        entry.rows.append(RowFate(4, "record_too_large"))
        path.write_text("\n".join(lines) + "\n")

        entry, path = self._new("transaction", "csv", "CSV with JSON-typed columns: deep nesting, bad JSON")
        text = [",".join(TRANSACTION_COLUMNS)]
        good = transaction_row(801)
        text.append(csv_line(TRANSACTION_COLUMNS, transaction_csv_values(good)))
        entry.rows.append(transaction_fate(2, good))
        deep_items = transaction_csv_values(transaction_row(802))
        deep_items["line_items"] = nested(DEEP_JSON_LEVELS[0])
        text.append(csv_line(TRANSACTION_COLUMNS, deep_items))
        entry.rows.append(RowFate(3, "invalid_value"))
        deeper = transaction_csv_values(transaction_row(803))
        deeper["custom_fields"] = '{"deep": ' + nested(DEEP_JSON_LEVELS[1]) + "}"
        text.append(csv_line(TRANSACTION_COLUMNS, deeper))
        entry.rows.append(RowFate(4, "invalid_value"))
        broken = transaction_csv_values(transaction_row(804))
        broken["custom_fields"] = '{"a": '
        text.append(csv_line(TRANSACTION_COLUMNS, broken))
        entry.rows.append(RowFate(5, "invalid_value"))
        formula = transaction_row(805, bill_number=INJECTIONS[5], store_code=INJECTIONS[3])
        text.append(csv_line(TRANSACTION_COLUMNS, transaction_csv_values(formula)))
        entry.rows.append(
            transaction_fate(
                6,
                formula,
                {"commerce.order.purchaseID": INJECTIONS[5], "commerce.commerceScope.storeCode": INJECTIONS[3]},
            )
        )
        path.write_text("\n".join(text) + "\n")

        entry, path = self._new("transaction", "csv", "header without required columns")
        entry.file_error = "missing_columns"
        path.write_text("transaction_id,bill_number\n1,B-1\n2,B-2\n")

    # -- customer (CSV) -----------------------------------------------------------------------

    def _customer_cases(self) -> None:
        entry, path = self._new("customer", "csv", "BOM, ragged rows, cp1252, injections")
        data = bytearray(b"\xef\xbb\xbf" + ",".join(CUSTOMER_COLUMNS).encode() + b"\r\n")
        rows: list[tuple[bytes, RowFate]] = []
        good = customer_row(1, first_name="Zoë")
        rows.append((csv_line(CUSTOMER_COLUMNS, good).encode(), customer_fate(2, good)))
        rows.append(((csv_line(CUSTOMER_COLUMNS, customer_row(2)) + ",extra").encode(), RowFate(3, "ragged_row")))
        rows.append(
            (
                csv_line(CUSTOMER_COLUMNS, customer_row(3, last_name="Müller")).encode("cp1252"),
                RowFate(4, "undecodable_bytes"),
            )
        )
        injected = customer_row(4, first_name=INJECTIONS[2], external_id=INJECTIONS[6])
        rows.append((csv_line(CUSTOMER_COLUMNS, injected).encode(), customer_fate(5, injected)))
        plain = customer_row(5)
        rows.append((csv_line(CUSTOMER_COLUMNS, plain).encode(), customer_fate(6, plain)))
        no_key = customer_row(6, customer_id="")
        rows.append((csv_line(CUSTOMER_COLUMNS, no_key).encode(), RowFate(7, "no_identity")))
        for line, fate in rows:
            data += line + b"\r\n"
            entry.rows.append(fate)
        path.write_bytes(bytes(data))

        entry, path = self._new("customer", "jsonl", "JSON Lines profile with a deeply nested extra key")
        profile = customer_row(7)
        path.write_text(json.dumps(profile)[:-1] + f', "extra": {nested(DEEP_JSON_LEVELS[0])}}}\n')
        entry.rows.append(customer_fate(1, profile))


def build_corpus(root: Path) -> list[CorpusFile]:
    """Write the whole corpus under ``root`` (an extract root); return every file with its expected outcome."""
    return CorpusBuilder(root).build()
