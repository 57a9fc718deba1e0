"""The row → XDM engine: parse, map, identify, de-duplicate, version, validate.

A :class:`Mapper` maps the rows of one extract (one record type, one run) chunk by chunk. Every input row
ends in exactly one bucket, and :meth:`Mapper.counts` always adds up::

    rows == records + dead_letters + duplicates + superseded + pending

- **record** — a valid XDM entity, returned as its serialised JSON with its ``_id`` and its row.
- **dead letter** — the row could not be mapped or validated; a :class:`DeadLetter` carries a stable reason
  code, the field and value, a detail, the original row and (when one was built) the payload. Reason codes:
  ``missing_required_field``, ``invalid_datetime``, ``invalid_date``, ``invalid_number``, ``invalid_integer``,
  ``invalid_boolean``, ``invalid_currency``, ``invalid_id``, ``invalid_enum``, ``invalid_value``,
  ``invalid_email``, ``invalid_phone``, ``missing_primary_key``, ``no_identity``, ``unsupported_event_name``,
  ``negative_points_for_credit_event``, ``positive_points_for_debit_event``,
  ``non_positive_points_for_expiry_reminder``, ``duplicate_id_conflict``, ``schema_violation``,
  ``record_too_large``, and ``mapping_error`` (an unexpected failure; the row is kept, never lost).
- **duplicate** — the same ``_id`` with the same content was already accepted in this run (at-least-once
  delivery, repeated rows); counted, not re-sent. The same ``_id`` with *different* content is the dead
  letter ``duplicate_id_conflict`` (nothing is guessed about which one is right; the first was sent).
- **superseded** — record behaviour (profiles): a valid row replaced by a later version of the same natural
  key (later ``updated_at``; on a tie, the later row in the extract).
- **pending** — profiles held until :meth:`Mapper.finish`, which releases the latest version of each key.

Identity: ``customer_id`` is the primary identity. Without it a row is ``no_identity`` when it has neither
e-mail nor phone, else ``missing_primary_key``, unless ``MappingOptions.fallback_primary`` names ``Email``
or ``Phone`` and the record type allows a fallback (events do; ``customer`` does not, since
``customer_id`` is its key). The default is no fallback: the sample's phone-only ``loyalty_event`` row is a
dead letter unless ``fallback_primary="Phone"`` is set.

Memory: the engine holds one chunk at a time, a few parse memos (at most 4,096 entries per column) and the
run's de-duplication index (:class:`~airflow_provider_capillary.xdm.dedupe.DigestIndex`), the only state
that grows with the extract. It keeps the last 65,536 new keys in a ``dict`` (about 9.5 MB) and the rest in
sorted temporary files on disk — 24 bytes per distinct key for time-series (16-byte digest of the ``_id``
+ 8-byte content digest), 40 for records (16-byte digest of the natural key + ``updated_at``, row sequence
and content digest) — behind a fixed 8 MB Bloom filter, so process memory stays flat: measured with
``bench_mapping.py``, peak RSS 95 MB at 100,000 events and 109 MB at 1 and at 5 million (a ``dict`` of
~145 bytes per key needed 211 MB at 1 million). Profiles: the candidate payloads are spilled to a
temporary file too and streamed back by :meth:`Mapper.finish`.

Speed: a chunk is mapped column by column (:meth:`Mapper.map_chunk`). Each column is parsed for the whole
chunk at once, common well-formed values by list comprehensions and repeated values through memos; a row with
any value that is not plainly valid is set aside. Time-series types that give
:class:`~airflow_provider_capillary.xdm.record_types.base.ChunkRules` (e.g. ``loyalty_event``) then have their
entities built by generated list comprehensions of dict displays, one per *shape* (the columns a row has values
in), a few hundred rows at a time so they are serialised and validated while still in the processor's cache;
other types by a generated per-row assembler. The rows set aside go
through the *row path* (:func:`_compile_parser`, :meth:`Mapper._assemble`), which builds the same entity or
names the failure exactly: property tests hold the two paths to the same records, dead letters and counts.
Rows of a column-wise chunk (``ColumnarRows`` from the CSV reader) are only materialised as dicts for dead
letters and held profile versions. Measured with ``tests/benchmarks/bench_engine.py`` (1M ``loyalty_event``
rows, rows per CPU-second of map + validate): 32,905 row by row, 69,319 column by column. The cyclic garbage
collector is paused while a chunk is mapped (and while ``finish`` reads a batch), see :func:`_collector_paused`.

Keys are 128-bit digests, so two different records are never taken for duplicates in practice.
"""

from __future__ import annotations

import gc
import json
import struct
import tempfile
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from operator import is_, is_not, itemgetter
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import numpy as np
import orjson

from airflow_provider_capillary.extracts.records import ColumnarRows
from airflow_provider_capillary.xdm.dedupe import DigestIndex
from airflow_provider_capillary.xdm.identity import (
    EMAIL_PATTERN,
    IdentityNamespaces,
    build_identity_map,
    normalize_email,
    normalize_phone,
    sha256_hex,
)
from airflow_provider_capillary.xdm.ids import (
    KEY_DIGEST_SIZE,
    content_digest,
    content_digests,
    id_prefix,
    key_digest,
    prefixed_digest,
    prefixed_digests,
)
from airflow_provider_capillary.xdm.record_types import get_record_type
from airflow_provider_capillary.xdm.record_types.base import TENANT, Behavior, BuildContext, ColumnType
from airflow_provider_capillary.xdm.validation import MAX_STREAMING_RECORD_BYTES, check_record_size
from airflow_provider_capillary.xdm.values import (
    MAX_SIGNIFICANT_DIGITS,
    FieldError,
    epoch_us,
    orjson_safe,
    parse_boolean,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_integer,
    to_json_number,
    utc_text,
)

if TYPE_CHECKING:
    from datetime import tzinfo

    from airflow_provider_capillary.xdm.record_types.base import RecordType
    from airflow_provider_capillary.xdm.validation import Validator

_FALLBACKS = (None, "Email", "Phone")


class RowLike(Protocol):
    """An extract row: what the extract readers yield (``SourceRow``)."""

    @property
    def values(self) -> Mapping[str, Any]:
        """Column values (CSV: strings, empty as ``None``; JSON Lines: parsed JSON)."""
        ...

    @property
    def file(self) -> str:
        """The file the row was read from."""
        ...

    @property
    def line(self) -> int:
        """1-based line number in that file (the CSV header is line 1)."""
        ...


class SpilledRow(NamedTuple):
    """A row read back from the version spill file (same shape as the reader's row).

    :param values: The original column values, through JSON (values JSON cannot hold, such as Parquet
        decimals or timestamps, come back as their text).
    :param file: The file the row was read from.
    :param line: Its line number.
    """

    values: dict[str, Any]
    file: str
    line: int


@dataclass(frozen=True)
class MappingOptions:
    """Run-time options of the mapping.

    :param tenant_id: AEP tenant id (``GET /stats`` → ``tenantId``, e.g. ``acmecorp``); tenant fields go under
        ``_{tenant_id}``. A leading underscore is accepted.
    :param org_id: Capillary org id used in ``_id``. Default ``None``: the row's ``org_id`` column if it has
        one, else empty.
    :param default_currency: ISO 4217 code for rows without a currency. Default ``USD``.
    :param timezone_for_naive: IANA zone (e.g. ``Europe/London``) in which timestamps without a UTC offset are
        read. Default ``None``: such timestamps are the dead letter ``invalid_datetime``.
    :param hash_identities: Send e-mail and phone only as SHA-256 hashes, in the hashed namespaces, and omit
        clear-text ``personalEmail``/``mobilePhone``. Default False.
    :param fallback_primary: Primary identity when ``customer_id`` is missing: ``None`` (default: dead
        letter ``missing_primary_key``), ``"Phone"`` or ``"Email"``. Never applies to ``customer``.
    :param identity_namespaces: Namespace codes. Default :class:`IdentityNamespaces` ().
    :param extra_event_types: Extra Capillary ``event_name`` → ``eventType`` accepted by ``loyalty_event``
        (tenant fields only, no sign rule). Default none.
    :param max_record_bytes: Largest serialised entity accepted; larger is ``record_too_large``. Default
        AEP's streaming maximum, 1 MB.
    """

    tenant_id: str
    org_id: str | None = None
    default_currency: str = "USD"
    timezone_for_naive: str | None = None
    hash_identities: bool = False
    fallback_primary: str | None = None
    identity_namespaces: IdentityNamespaces = field(default_factory=IdentityNamespaces)
    extra_event_types: Mapping[str, str] = field(default_factory=dict)
    max_record_bytes: int = MAX_STREAMING_RECORD_BYTES

    def __post_init__(self) -> None:
        tenant = self.tenant_id.lstrip("_")
        if not tenant or not tenant.replace("_", "").isalnum() or not tenant.isascii():
            raise ValueError(f"tenant_id must be letters, digits or underscores, got {self.tenant_id!r}")
        if self.fallback_primary not in _FALLBACKS:
            raise ValueError(f"fallback_primary must be one of {_FALLBACKS}, got {self.fallback_primary!r}")
        currency = self.default_currency
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha() or not currency.isupper():
            raise ValueError(f"default_currency must be an ISO 4217 code such as GBP, got {currency!r}")
        if self.timezone_for_naive is not None:
            try:
                zoneinfo.ZoneInfo(self.timezone_for_naive)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.timezone_for_naive!r}") from None
        if self.max_record_bytes <= 0:
            raise ValueError("max_record_bytes must be positive")

    @property
    def tenant_key(self) -> str:
        """The tenant object's key in payloads, ``_{tenantId}``."""
        return "_" + self.tenant_id.lstrip("_")


class DeadLetter(NamedTuple):
    """A row that could not become a valid record.

    :param file: Source file.
    :param line: Line in that file.
    :param reason: Stable machine-readable reason code (see the module docstring).
    :param field: The column (or nested path, or JSON Pointer for ``schema_violation``), if one is to blame.
    :param value: The offending value.
    :param detail: Human-readable explanation.
    :param row: The original row values.
    :param payload: The entity built from the row, when one was built (schema and size failures).
    """

    file: str
    line: int
    reason: str
    field: str | None
    value: Any
    detail: str
    row: Mapping[str, Any]
    payload: dict[str, Any] | None

    @property
    def code(self) -> str:
        """``reason:field`` (e.g. ``invalid_datetime:registered_on``), or the reason alone."""
        return f"{self.reason}:{self.field}" if self.field else self.reason


class MappedRecord(NamedTuple):
    """A valid XDM entity ready to send.

    The engine keeps each entity only until it is serialised and validated: freed while still in the processor's
    cache rather than with its chunk, it costs less (measured: the engine 7.5-8.5 % faster) and holds no memory.

    :param id: The entity's ``_id``.
    :param row: The row it came from.
    :param body: The ``xdmEntity`` serialised as compact UTF-8 JSON (what is sent).
    """

    id: str
    row: RowLike
    body: bytes

    @property
    def entity(self) -> dict[str, Any]:
        """The ``xdmEntity`` (JSON types only), decoded from :attr:`body` at each access."""
        return cast("dict[str, Any]", orjson.loads(self.body))


@dataclass
class MappedChunk:
    """What :meth:`Mapper.map_chunk` made of one chunk.

    :param records: Valid entities to send now (always empty for record behaviour: see ``finish``).
    :param dead_letters: Rows that failed.
    :param duplicates: Rows counted as exact duplicates.
    :param superseded: Earlier versions replaced while mapping this chunk (may be rows of earlier chunks).
    :param rows: Rows in the chunk.
    """

    records: list[MappedRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    superseded: int = 0
    rows: int = 0


@dataclass
class MappingCounts:
    """Running totals of a :class:`Mapper`; ``rows`` always equals the sum of the other fields."""

    rows: int = 0
    records: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    superseded: int = 0
    pending: int = 0

    @property
    def balanced(self) -> bool:
        """Whether every row is accounted for."""
        return self.rows == self.records + self.dead_letters + self.duplicates + self.superseded + self.pending


# ---------------------------------------------------------------------------------------------- parsers

#: Column types whose parse results are memoised per run (repeated values are common: expiry dates,
#: points amounts, the same customer's e-mail and phone). A memo holds at most ``_MEMO_LIMIT`` entries; when
#: it fills up after fewer than ``2 * _MEMO_LIMIT`` rows (mostly distinct values, e.g. event times) it is
#: dropped for the rest of the run, otherwise it is emptied and refilled.
_MEMOISED = frozenset(
    {
        ColumnType.DATETIME,
        ColumnType.DATE,
        ColumnType.DECIMAL,
        ColumnType.INTEGER,
        ColumnType.BOOLEAN,
        ColumnType.CURRENCY,
        ColumnType.EMAIL,
        ColumnType.PHONE,
    }
)
_MEMO_LIMIT = 4096


def _parse_string(raw: Any, name: str) -> str | None:
    if isinstance(raw, str):
        text = raw.strip()
        return text or None
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        raise FieldError("invalid_value", name, raw, "expected text")
    return str(raw)


def _parse_id(raw: Any, name: str) -> str | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return str(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if text.isascii() and text.isdigit():
            return text
    raise FieldError("invalid_id", name, raw, "expected an id made of digits")


def _parse_currency(raw: Any, name: str) -> str | None:
    if isinstance(raw, str):
        text = raw.strip().upper()
        if not text:
            return None
        if len(text) == 3 and text.isascii() and text.isalpha():
            return text
    raise FieldError("invalid_currency", name, raw, "expected an ISO 4217 code such as GBP")


def _parse_json(kind: type, label: str) -> Callable[[Any, str], Any]:
    def parse(raw: Any, name: str) -> Any:
        value = raw
        if isinstance(raw, str):
            if not raw.strip():
                return None
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):
                raise FieldError("invalid_value", name, raw, f"expected a JSON {label}") from None
        if not isinstance(value, kind):
            raise FieldError("invalid_value", name, raw, f"expected a JSON {label}")
        return value

    return parse


def _parse_enum(mapping: Mapping[str, str]) -> Callable[[Any, str], str | None]:
    table = {key.upper(): value for key, value in mapping.items()}

    def parse(raw: Any, name: str) -> str | None:
        text = _parse_string(raw, name)
        if text is None:
            return None
        try:
            return table[text.upper()]
        except KeyError:
            raise FieldError("invalid_enum", name, raw, f"expected one of {', '.join(sorted(mapping))}") from None

    return parse


def _blank_or(parser: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def parse(raw: Any, name: str) -> Any:
        if isinstance(raw, str) and not raw.strip():
            return None
        return parser(raw, name)

    return parse


def _parser_for(column_type: ColumnType, naive_tz: tzinfo | None) -> Callable[[Any, str], Any]:
    if column_type is ColumnType.DATETIME:

        def parse(raw: Any, name: str) -> str | None:
            if isinstance(raw, str) and not raw.strip():
                return None
            return parse_datetime(raw, name, naive_tz)

        return parse
    parsers: dict[ColumnType, Callable[[Any, str], Any]] = {
        ColumnType.STRING: _parse_string,
        ColumnType.ID: _parse_id,
        ColumnType.DATE: _blank_or(parse_date),
        ColumnType.DECIMAL: _blank_or(parse_decimal),
        ColumnType.INTEGER: _blank_or(parse_integer),
        ColumnType.BOOLEAN: _blank_or(parse_boolean),
        ColumnType.CURRENCY: _parse_currency,
        ColumnType.EMAIL: normalize_email,
        ColumnType.PHONE: normalize_phone,
        ColumnType.ARRAY: _parse_json(list, "array"),
        ColumnType.OBJECT: _parse_json(dict, "object"),
    }
    return parsers[column_type]


_Parsed = tuple[dict[str, Any], dict[str, Any]]
"""A row's parsed values by column and its payload tree (what the generated column parser returns)."""


class _CompiledColumn(NamedTuple):
    name: str
    type: ColumnType | None
    """The column's type, or ``None`` for an enum column."""
    parse: Callable[[Any, str], Any]
    required: bool
    memo: int
    """Index of the column's memo in ``Mapper._memos`` (raw string → (parsed, payload value)), or -1."""
    slots: tuple[tuple[int, str], ...]
    """Where the payload value goes: (index of the parent object path, key in that object)."""


#: Inline fast paths of the generated column parser: an expression that is true when ``raw`` is the common
#: well-formed text of the type, leaving the parsed value in ``value``; anything else goes through the
#: column's parse function, which gives the same result for that common case.
_INLINE = {
    ColumnType.STRING: "type(raw) is str and (value := raw.strip())",
    ColumnType.ID: "type(raw) is str and (value := raw.strip()).isdigit() and value.isascii()",
}


def _slot_lines(slots: tuple[tuple[int, str], ...], payload: str, indent: str) -> list[str]:
    """Code that writes the expression ``payload`` to a column's slots in the parent objects ``n0, n1, ...``."""
    lines = []
    for index, key in slots:
        node = f"n{index}"
        lines += [f"{indent}if {node} is None:", f"{indent}    {node} = {{}}", f"{indent}{node}[{key!r}] = {payload}"]
    return lines


def _tree_lines(attach_order: tuple[tuple[int, tuple[str, ...], str], ...], indent: str) -> list[str]:
    """Code that nests the parent objects ``n0, n1, ...`` into ``tree``, shallowest path first.

    ``attach_order`` holds ``(parent index, path to its parent, its key)``; a parent no column wrote to (still
    ``None``) is left out, and its path is only created if a deeper object needs it.
    """
    lines = [f"{indent}tree = {{}}"]
    for index, path, last in attach_order:
        lines.append(f"{indent}if n{index} is not None:")
        lines.append(f"{indent}    target = tree")
        for key in path:
            lines += [
                f"{indent}    child = target.get({key!r})",
                f"{indent}    if child is None:",
                f"{indent}        child = target[{key!r}] = {{}}",
                f"{indent}    target = child",
            ]
        lines += [
            f"{indent}    existing = target.get({last!r})",
            f"{indent}    if existing is None:",
            f"{indent}        target[{last!r}] = n{index}",
            f"{indent}    else:",
            f"{indent}        existing.update(n{index})",
        ]
    return lines


def _compile_parser(
    columns: tuple[_CompiledColumn, ...],
    attach_order: tuple[tuple[int, tuple[str, ...], str], ...],
    memos: list[dict[str, tuple[Any, Any]] | None],
    memo_miss: Callable[[int, Callable[[Any, str], Any], str, str], tuple[Any, Any]],
) -> Callable[[Mapping[str, Any]], _Parsed]:
    """Generate the function that parses a row's columns: ``values -> (parsed values, payload tree)``.

    The generated code does exactly what a loop over the columns would (first failing column reported, memo
    look-ups, payload values written to their parent objects, created on first use) without the loop's
    per-column bookkeeping (measured: the mapping 15-20 % faster). The payload tree holds the columns' payload
    values at their XDM paths (see :func:`_tree_lines`).
    """
    namespace: dict[str, Any] = {
        "FieldError": FieldError,
        "Decimal": Decimal,
        "to_json_number": to_json_number,
        "memos": memos,
        "memo_miss": memo_miss,
    }
    lines = ["def parse_columns(values):", "    get = values.get", "    parsed = {}"]
    lines += [f"    n{index} = None" for index in range(len(attach_order))]
    for position, column in enumerate(columns):
        name, parse = repr(column.name), f"parse{position}"
        namespace[parse] = column.parse
        missing = f"raise FieldError('missing_required_field', {name}, %s, 'a value is required')"
        lines += [f"    raw = get({name})", "    if raw is None:"]
        lines.append(f"        {missing % 'None'}" if column.required else "        pass")
        lines.append("    else:")
        if column.memo >= 0:
            lines += [
                f"        memo = memos[{column.memo}]",
                "        if memo is not None and type(raw) is str:",
                "            hit = memo.get(raw)",
                "            if hit is None:",
                f"                hit = memo_miss({column.memo}, {parse}, raw, {name})",
                "            value, payload = hit",
                "        else:",
                f"            value = {parse}(raw, {name})",
                "            payload = to_json_number(value) if isinstance(value, Decimal) else value",
            ]
        elif column.type in _INLINE:
            lines += [
                f"        if not ({_INLINE[column.type]}):",
                f"            value = {parse}(raw, {name})",
                "        payload = value",
            ]
        else:
            lines += [f"        value = payload = {parse}(raw, {name})"]
        lines.append("        if value is None:")
        lines.append(f"            {missing % 'raw'}" if column.required else "            pass")
        lines += ["        else:", f"            parsed[{name}] = value"]
        lines += _slot_lines(column.slots, "payload", "            ")
    lines += _tree_lines(attach_order, "    ")
    lines.append("    return parsed, tree")
    exec(compile("\n".join(lines), "<airflow_provider_capillary column parser>", "exec"), namespace)
    return namespace["parse_columns"]


def _compile_nest(attach_order: tuple[tuple[int, tuple[str, ...], str], ...]) -> Callable[..., dict[str, Any]]:
    """Generate ``nest(n0, n1, ...) -> tree``: the row path's nesting (:func:`_tree_lines`) as a function."""
    lines = [f"def nest({', '.join(f'n{index}' for index in range(len(attach_order)))}):"]
    lines += _tree_lines(attach_order, "    ")
    lines.append("    return tree")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<airflow_provider_capillary nesting>", "exec"), namespace)
    return namespace["nest"]


def _compile_assembler(
    columns: tuple[_CompiledColumn, ...], attach_order: tuple[tuple[int, tuple[str, ...], str], ...]
) -> Callable[[int, bytearray, list[tuple[list[Any], list[Any]]]], Iterator[_Parsed | None]]:
    """Generate the chunk-wise twin of :func:`_compile_parser`: parsed columns → each row's parsed values.

    The generated generator takes the chunk's size, its ``bad`` flags and, per column, the lists of parsed
    and payload values (see :meth:`Mapper._parse_column`), and yields for each row ``(parsed values, parent
    tree)`` exactly as :func:`_compile_parser` builds them, or ``None`` for a row flagged bad.
    """
    lines = ["def assemble(size, bad, columns):"]
    lines += [f"    p{position}, y{position} = columns[{position}]" for position in range(len(columns))]
    lines += ["    for i in range(size):", "        if bad[i]:", "            yield None", "            continue"]
    lines.append("        parsed = {}")
    lines += [f"        n{index} = None" for index in range(len(attach_order))]
    for position, column in enumerate(columns):
        lines += [f"        value = p{position}[i]", "        if value is not None:"]
        lines.append(f"            parsed[{column.name!r}] = value")
        payload = f"y{position}[i]" if column.type is ColumnType.DECIMAL else "value"
        lines += _slot_lines(column.slots, payload, "            ")
    lines += _tree_lines(attach_order, "        ")
    lines.append("        yield parsed, tree")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<airflow_provider_capillary chunk assembler>", "exec"), namespace)
    return namespace["assemble"]


# ---------------------------------------------------------------------------------------------- engine


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, restoring its previous state on exit.

    Entities, rows and records hold no reference cycles, so reference counting frees them; but the many
    short-lived containers a chunk allocates trigger collections that walk every object of the process,
    which in a worker with Airflow imported cost a third of the mapping time (``bench_mapping.py
    --worker-heap``). A pause lasts one chunk (or one batch of ``finish``) at most.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


#: Most shapes (combinations of the columns a row has values in) a :class:`Mapper` generates builders for; rows of
#: further shapes are mapped by the row path.
_MAX_SHAPES = 256

#: Types with this many columns or more in a payload are built by the per-row assembler (a shape is an int64).
_MAX_SHAPE_COLUMNS = 63

#: Rows the column-wise fast path builds, serialises and validates at a time (see ``Mapper._build_by_shape``).
_SLICE_ROWS = 256


class _Var(str):
    """A placeholder in an entity template: the name of the variable that holds the value."""


def _display(template: Any) -> str:
    """The Python dict display of an entity template (placeholders become their variable names)."""
    if isinstance(template, _Var):
        return str(template)
    if isinstance(template, dict):
        return "{" + ", ".join(f"{key!r}: {_display(value)}" for key, value in template.items()) + "}"
    if isinstance(template, list):
        return "[" + ", ".join(_display(value) for value in template) + "]"
    return repr(template)


#: Entity members the engine writes itself (no column may target them).
_ENTITY_KEYS = frozenset({"_id", "timestamp", "identityMap"})
_NOTHING = (None, None)
_UNPARSED = object()
"""Placeholder of a column value the chunk-wise fast path leaves to the column's parse function."""


def _dumps_or_none(entity: dict[str, Any]) -> bytes | None:
    """``orjson.dumps(entity)``, or ``None`` when orjson cannot write it."""
    try:
        return orjson.dumps(entity)
    except orjson.JSONEncodeError:
        return None


class _TableRow(tuple[ColumnarRows, int]):
    """One row of a column-wise chunk, ``(rows, index)``: its values are built from the columns when read.

    A tuple, so that a slice's rows are made without a Python call per row (``map(_TableRow, pairs)``).
    """

    __slots__ = ()

    @property
    def values(self) -> dict[str, Any]:
        """The row's values, as the reader gives them (a new dict on each read)."""
        return self[0][self[1]].values

    @property
    def file(self) -> str:
        """The file the row was read from."""
        return self[0].file

    @property
    def line(self) -> int:
        """The row's line in that file."""
        return self[0].lines[self[1]]


class _LazyValues(Mapping[str, Any]):
    """A table row's values as the read-only mapping a ``build`` hook receives (read only if the hook reads them)."""

    __slots__ = ("_row", "_values")

    def __init__(self, row: _TableRow) -> None:
        self._row = row
        self._values: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        if self._values is None:
            self._values = self._row.values
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


_CONTENT_DIGEST_SIZE = 8
_VERSION = struct.Struct("<qQ8s")
_SPILL_HEADER = struct.Struct("<Q16sII")


class Mapper:
    """Maps the rows of one record type for one run, holding that run's de-duplication state.

    Running totals are kept in ``counts`` (a :class:`MappingCounts`).

    :param record_type: The record type, or its registered name.
    :param options: Run-time options.
    :param validator: Compiled schema of the target dataset; ``None`` skips schema validation (e.g. in a
        dry run without AEP access). Failures become ``schema_violation`` dead letters.
    :param spill_dir: Directory for the temporary file that holds profile versions until ``finish``.
        Default: the system temporary directory.
    :param finish_chunk_size: Number of records per list yielded by :meth:`finish`. Default 1000.
    """

    def __init__(
        self,
        record_type: RecordType | str,
        options: MappingOptions,
        *,
        validator: Validator | None = None,
        spill_dir: str | None = None,
        finish_chunk_size: int = 1000,
    ) -> None:
        self.record_type = get_record_type(record_type) if isinstance(record_type, str) else record_type
        self.options = options
        self.validator = validator
        self._is_valid = validator.is_valid if validator is not None else None
        self._max_record_bytes = options.max_record_bytes
        self.finish_chunk_size = finish_chunk_size
        self._spill_dir = spill_dir
        self._tenant_key = options.tenant_key
        self._naive_tz = zoneinfo.ZoneInfo(options.timezone_for_naive) if options.timezone_for_naive else None
        self._context = BuildContext(
            tenant_key=self._tenant_key,
            default_currency=options.default_currency,
            hashed_identities=options.hash_identities,
            extra_event_types=options.extra_event_types,
        )
        parents: dict[tuple[str, ...], int] = {}
        columns = []
        self._memos: list[dict[str, tuple[Any, Any]] | None] = []
        self._memo_filled_at: list[int] = []
        for column in self.record_type.columns:
            slots = []
            for target in column.targets:
                keys = self._target_keys(target)
                slots.append((parents.setdefault(keys[:-1], len(parents)), keys[-1]))
            memoised = column.enum is not None or column.type in _MEMOISED
            columns.append(
                _CompiledColumn(
                    column.name,
                    None if column.enum is not None else column.type,
                    _parse_enum(column.enum) if column.enum is not None else _parser_for(column.type, self._naive_tz),
                    column.required,
                    len(self._memos) if memoised else -1,
                    tuple(slots),
                )
            )
            if memoised:
                self._memos.append({})
                self._memo_filled_at.append(0)
        self._columns = tuple(columns)
        paths = tuple(parents)
        reserved = sorted({path[0] for path in paths} & _ENTITY_KEYS)
        if reserved:
            raise ValueError(f"record type {self.record_type.name!r}: columns may not write {reserved}")
        attach_order = tuple(
            (index, paths[index][:-1], paths[index][-1])
            for index in sorted(range(len(paths)), key=lambda index: len(paths[index]))
        )
        self._parse_columns = _compile_parser(self._columns, attach_order, self._memos, self._memo_miss)
        self._assemble_rows = _compile_assembler(self._columns, attach_order)
        namespaces = options.identity_namespaces
        #: The namespaces when identities go in clear text and without an external id (the inline identity map).
        self._clear_namespaces = None if options.hash_identities or namespaces.external is not None else namespaces
        org_id = options.org_id
        self._org_prefix = None if org_id is None else id_prefix(org_id, self.record_type.name)
        self._time_series = self.record_type.behavior is Behavior.TIME_SERIES
        #: The row path's nesting of parent objects into a payload tree, for the shape builders' templates.
        self._nest = _compile_nest(attach_order)
        self._node_count = len(attach_order)
        #: Built-entity generators of the column-wise fast path by shape (which values a row has), or ``None``
        #: when the fast path does not apply: see :meth:`_build_by_shape`.
        self._shape_builders: dict[int, Callable[..., list[dict[str, Any]]]] | None = None
        #: The columns whose presence makes a row's shape (one bit each in a 64-bit integer).
        self._shape_positions = tuple(
            position
            for position, column in enumerate(self._columns)
            if column.slots or column.name in ("email", "mobile")
        )
        constant_prefix = org_id is not None or "org_id" not in self.record_type.column_names
        if (
            self.record_type.chunk_rules is not None
            and self._time_series
            and self._clear_namespaces is not None
            and constant_prefix
            and len(self._shape_positions) + len(self.record_type.chunk_rules.members) < _MAX_SHAPE_COLUMNS
        ):
            self._shape_builders = {}
        self._seen = DigestIndex(_CONTENT_DIGEST_SIZE if self._time_series else _VERSION.size, spill_dir=spill_dir)
        self._spill: IO[bytes] | None = None
        self._seq = 0
        self._finished = False
        self.counts = MappingCounts()

    def _target_keys(self, target: str) -> tuple[str, ...]:
        keys = tuple(target.split("."))
        return (self._tenant_key, *keys[1:]) if keys[0] == TENANT else keys

    # ------------------------------------------------------------------ public API

    def map_chunk(self, rows: Iterable[RowLike]) -> MappedChunk:
        """Map one chunk of rows.

        :param rows: Extract rows (anything with ``values``, ``file`` and ``line``).
        :return: Records to send, dead letters and duplicate/superseded counts of this chunk.
        :raises RuntimeError: If called after :meth:`finish`.
        """
        if self._finished:
            raise RuntimeError("map_chunk called after finish()")
        chunk = MappedChunk()
        with _collector_paused():
            self._map_rows(rows if isinstance(rows, Sequence) else list(rows), chunk)
        counts = self.counts
        counts.rows += chunk.rows
        counts.records += len(chunk.records)
        counts.dead_letters += len(chunk.dead_letters)
        counts.duplicates += chunk.duplicates
        counts.superseded += chunk.superseded
        return chunk

    def finish(self) -> Iterator[list[MappedRecord]]:
        """Release what is held until the end of the run: the latest version of each profile.

        For time-series record types nothing is held and this yields nothing. Records come in lists of
        ``finish_chunk_size``, in the order their winning rows were read.
        """
        self._finished = True
        spill, self._spill = self._spill, None
        if spill is None:
            self._seen.close()
            return
        try:
            # Sequence numbers of the winning versions (one byte per row of the run, for the time of finish).
            winners = bytearray(self._seq + 1)
            for version in self._seen.values():
                winners[_VERSION.unpack(version)[1]] = 1
            self._seen.close()
            spill.flush()
            spill.seek(0)
            while True:
                with _collector_paused():
                    batch = self._read_winners(spill, winners)
                if not batch:
                    break
                yield batch
        finally:
            spill.close()

    def _read_winners(self, spill: IO[bytes], winners: bytearray) -> list[MappedRecord]:
        """Read the next ``finish_chunk_size`` winning versions from the spill file (fewer at its end)."""
        batch: list[MappedRecord] = []
        while len(batch) < self.finish_chunk_size and (header := spill.read(_SPILL_HEADER.size)):
            seq, _key, body_len, meta_len = _SPILL_HEADER.unpack(header)
            body = spill.read(body_len)
            meta = spill.read(meta_len)
            if not winners[seq]:
                continue
            file, line, values = orjson.loads(meta)
            batch.append(MappedRecord(orjson.loads(body)["_id"], SpilledRow(values, file, line), body))
        self.counts.pending -= len(batch)
        self.counts.records += len(batch)
        return batch

    def close(self) -> None:
        """Delete the spill file of an abandoned run (``finish`` does it for a completed one)."""
        self._finished = True
        self._seen.close()
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def map_row(self, row: RowLike) -> dict[str, Any]:
        """Map one row without validation or de-duplication (for previews and tests).

        :param row: The row.
        :return: The entity.
        :raises FieldError: If the row cannot be mapped.
        """
        return self._build(row.values)[0]

    # ------------------------------------------------------------------ internals

    def _dead(
        self,
        chunk: MappedChunk,
        row: RowLike,
        reason: str,
        field_name: str | None,
        value: Any,
        detail: str,
        payload: dict[str, Any] | None = None,
    ) -> None:
        chunk.dead_letters.append(
            DeadLetter(row.file, row.line, reason, field_name, value, detail, row.values, payload)
        )

    def _map_rows(self, rows: Sequence[RowLike], chunk: MappedChunk) -> None:
        """Map a chunk column by column, then build, de-duplicate and validate its rows in order.

        Each column is parsed for the whole chunk at once (:meth:`_parse_column`); a row with any value that
        is not plainly valid, and a row whose build fails, is flagged and mapped by :meth:`_map_one` instead,
        which then names the failure exactly as if the chunk had been mapped row by row. Rows of a
        column-wise chunk (``ColumnarRows`` from the CSV reader) are only materialised when something reads
        their values (a dead letter, a held profile version).
        """
        size = len(rows)
        bad = bytearray(size)
        table = rows if isinstance(rows, ColumnarRows) else None
        if table is not None:
            absent: list[Any] = [None] * size
            raws = [table.columns.get(column.name, absent) for column in self._columns]
        else:
            values = [row.values for row in rows]
            for index, row_values in enumerate(values):
                if type(row_values) is not dict:
                    bad[index] = 1
                    values[index] = {}
            raws = [[row_values.get(column.name) for row_values in values] for column in self._columns]
        text = table is not None  # the CSV reader's columns: str or None
        columns = [self._parse_column(column, raw, bad, text) for column, raw in zip(self._columns, raws, strict=True)]
        if self._shape_builders is not None:
            shapes, digests, members = self._prepare_shapes(bad, columns)
            keys = [b"" if digest is None else digest[:KEY_DIGEST_SIZE] for digest in digests]
            self._seen.prefetch([key for key in keys if key])
            for start in range(0, size, _SLICE_ROWS):
                stop = min(start + _SLICE_ROWS, size)
                entities = self._build_by_shape(start, stop, bad, columns, shapes, digests, members)
                self._accept_slice(rows, table, start, entities, keys[start:stop], chunk)
                # Drop the slice's parsed values now, while they are in the processor's cache, rather than with
                # the chunk (measured: the engine 1-3 % faster); nothing reads them once the slice is kept.
                blank = [None] * (stop - start)
                for parsed, payloads in columns:
                    parsed[start:stop] = blank
                    if payloads is not parsed:
                        payloads[start:stop] = blank
                digests[start:stop] = blank
                for member in members:
                    member[start:stop] = blank
        else:
            map_one, accept, dumps, is_valid, assemble = (
                self._map_one,
                self._accept,
                orjson.dumps,
                self._is_valid,
                self._assemble,
            )
            for index, item in enumerate(self._assemble_rows(size, bad, columns)):
                self._seq += 1
                if table is None:
                    row, row_values = rows[index], values[index]
                else:
                    row = _TableRow((table, index))
                    row_values = _LazyValues(row)
                if item is None:
                    map_one(row, chunk)
                    continue
                try:
                    entity, key, version = assemble(item[0], item[1], row_values)
                    body = dumps(entity)
                except Exception:  # the row path builds the same entity, or names the failure
                    map_one(row, chunk)
                    continue
                accept(entity, key, version, body, row, chunk, is_valid is None or is_valid(entity))
        chunk.rows += size

    def _accept_slice(
        self,
        rows: Sequence[RowLike],
        table: ColumnarRows | None,
        start: int,
        entities: list[dict[str, Any] | None],
        keys: list[bytes],
        chunk: MappedChunk,
    ) -> None:
        """What :meth:`_accept` does row by row, for the entities the shape builders made for rows ``start`` on.

        The *plain* rows (an entity with a new ``_id`` not repeated in the slice, valid and not too large) are
        serialised, validated, kept and added to the index in runs, a list at a time; every other row (no
        entity: the row path; a duplicate, a conflict, an invalid entity) is handled on its own, in order, once
        the plain rows before it are in. A record the row path keeps turns later plain rows with its ``_id``
        into duplicates, as row by row.
        """
        dumps, max_bytes = orjson.dumps, self._max_record_bytes
        is_valid = cast("Callable[[Any], bool] | None", self._is_valid)  # called for built entities only
        try:
            bodies = [None if entity is None else dumps(entity) for entity in entities]
        except orjson.JSONEncodeError:  # the row path says why
            bodies = [None if entity is None else _dumps_or_none(entity) for entity in entities]
        count, seen, records = len(entities), self._seen, chunk.records
        plain = [  # (a row without a body is never plain, whatever its placeholder key b"" finds)
            body is not None and found is None and len(body) <= max_bytes and (is_valid is None or is_valid(entity))
            for found, body, entity in zip(seen.get_many(keys), bodies, entities, strict=True)
        ]
        if len(set(keys)) < count:  # a repeated _id: its later rows on their own, after the first is in
            firsts = dict(zip(reversed(keys), range(count - 1, -1, -1), strict=True))
            for offset in set(range(count)).difference(firsts.values()):
                plain[offset] = False
        specials = [offset for offset, ok in enumerate(plain) if not ok]
        base, done, position = self._seq, 0, 0
        while True:
            offset = specials[position] if position < len(specials) else count
            if offset > done:  # the plain rows before it
                kept = range(start + done, start + offset)
                kept_bodies = cast("list[bytes]", bodies[done:offset])
                seen.add_many(keys[done:offset], content_digests(kept_bodies))
                kept_rows = (
                    [rows[index] for index in kept] if table is None else map(_TableRow, zip(repeat(table), kept))
                )
                ids = [entity["_id"] for entity in cast("list[dict[str, Any]]", entities[done:offset])]
                records.extend(map(MappedRecord, ids, kept_rows, kept_bodies))
            if offset == count:
                break
            self._seq = base + offset + 1
            row: RowLike = rows[start + offset] if table is None else _TableRow((table, start + offset))
            entity, body = entities[offset], bodies[offset]
            if entity is None or body is None:
                kept_before = len(records)
                self._map_one(row, chunk)
                if len(records) > kept_before:  # later plain rows with the _id it added are duplicates now
                    later = [
                        index
                        for index in range(offset + 1, count)
                        if plain[index] and seen.get(keys[index]) is not None
                    ]
                    if later:
                        for index in later:
                            plain[index] = False
                        specials = sorted({*specials[position + 1 :], *later})
                        position = -1
            else:
                self._accept(entity, keys[offset], 0, body, row, chunk)
            done, position = offset + 1, position + 1
        self._seq = base + count

    def _prepare_shapes(
        self, bad: bytearray, columns: list[tuple[list[Any], list[Any]]]
    ) -> tuple[list[int], list[bytes | None], list[list[Any]]]:
        """The column-wise fast path's preparation of a chunk: ``(shapes, _id digests, members)``.

        For time-series types with :class:`ChunkRules`, identities in clear text and one org id. ``members`` has
        per member of ``ChunkRules.members`` its value in each row (``None``: not added). A row's *shape* says
        which of the columns and members it has a value in, as an integer (bit ``i``: a value in the ``i``-th of
        ``_shape_positions``, then one bit per member; ``-1`` for a row flagged ``bad``); the rows of one shape
        are built by one generated list comprehension of dict displays (:meth:`_build_by_shape`). A row without
        ``customer_id`` (identity fallbacks) and a row the type's column-wise ``build`` cannot settle are flagged
        ``bad``: the row path maps them.
        """
        rules = self.record_type.chunk_rules
        assert rules is not None
        by_name = {column.name: values for column, (values, _) in zip(self._columns, columns, strict=True)}
        customers = by_name["customer_id"]
        if None in customers:
            for index in [index for index, value in enumerate(customers) if value is None]:
                bad[index] = 1
        built = rules.build(by_name, bad, self._context)
        members = [built[name] for name in rules.members]
        prefix = self._org_prefix if self._org_prefix is not None else id_prefix("", self.record_type.name)
        digests = prefixed_digests(prefix, rules.natural_keys(by_name), bad)
        shapes = np.zeros(len(bad), dtype=np.int64)
        for bit, values in enumerate([*(columns[position][0] for position in self._shape_positions), *members]):
            has = np.frombuffer(bytes(map(is_not, values, repeat(None))), dtype=np.uint8)
            shapes |= has.astype(np.int64) << bit
        shapes[np.frombuffer(bad, dtype=np.uint8).view(bool)] = -1
        return shapes.tolist(), digests, members

    def _build_by_shape(
        self,
        start: int,
        stop: int,
        bad: bytearray,
        columns: list[tuple[list[Any], list[Any]]],
        shapes: list[int],
        digests: list[bytes | None],
        members: list[list[Any]],
    ) -> list[dict[str, Any] | None]:
        """Build the entities of rows ``start`` to ``stop`` by shape (``None`` for a row the row path maps).

        A few hundred rows at a time, so that the entities are still in the processor's cache when they are
        serialised and validated (measured: 3 µs per row less than for a chunk of 5,000 at once). A row of a
        shape beyond :data:`_MAX_SHAPES` gets no entity here.
        """
        groups: dict[int, list[int]] = {}
        for index, shape in enumerate(shapes[start:stop], start):
            groups.setdefault(shape, []).append(index)
        groups.pop(-1, None)  # rows flagged bad
        entities: list[dict[str, Any] | None] = [None] * (stop - start)
        builders = self._shape_builders
        assert builders is not None
        for shape, indices in groups.items():
            builder = builders.get(shape)
            if builder is None:
                if len(builders) >= _MAX_SHAPES:
                    continue
                builder = builders[shape] = self._compile_shape(shape)
            for index, entity in zip(indices, builder(indices, columns, digests, members), strict=True):
                entities[index - start] = entity
        return entities

    def _compile_shape(self, shape: int) -> Callable[..., list[dict[str, Any]]]:
        """Generate the list comprehension that builds the entities of one shape (see :meth:`_prepare_shapes`).

        The dict displays are made by running the row path's slot writing and nesting (:func:`_compile_nest`)
        on placeholders, so the entities equal, key order included, what :meth:`_assemble` builds.
        """
        present = {position for bit, position in enumerate(self._shape_positions) if shape >> bit & 1}
        names: list[str] = []
        sources: list[str] = []

        def use(position: int, payload: bool) -> _Var:
            name = f"{'y' if payload else 'v'}{position}"
            if name not in names:
                names.append(name)
                sources.append(f"gather(columns[{position}][{1 if payload else 0}])")
            return _Var(name)

        nodes: list[dict[str, Any] | None] = [None] * self._node_count
        for position, column in enumerate(self._columns):
            if position in present and column.slots:
                value = use(position, column.type is ColumnType.DECIMAL)
                for index, key in column.slots:
                    node = nodes[index]
                    if node is None:
                        node = nodes[index] = {}
                    node[key] = value
        tree = self._nest(*nodes)
        position_of = {column.name: position for position, column in enumerate(self._columns)}
        namespaces = self._clear_namespaces
        assert namespaces is not None and self.record_type.timestamp_column is not None
        identities: dict[str, Any] = {
            namespaces.customer: [
                {"id": use(position_of["customer_id"], False), "authenticatedState": "authenticated", "primary": True}
            ]
        }
        for column_name, code in (("email", namespaces.email), ("mobile", namespaces.phone)):
            if position_of[column_name] in present:
                identities[code] = [
                    {"id": use(position_of[column_name], False), "authenticatedState": "ambiguous", "primary": False}
                ]
        entity = {
            "_id": _Var("digest.hex()"),
            "timestamp": use(position_of[self.record_type.timestamp_column], False),
            "identityMap": identities,
            **tree,
        }
        assert self.record_type.chunk_rules is not None
        first_member = len(self._shape_positions)
        for number, member in enumerate(self.record_type.chunk_rules.members):
            if shape >> (first_member + number) & 1:  # as build sets it: a key of the tree keeps its place
                names.append(f"m{number}")
                sources.append(f"gather(members[{number}])")
                entity[member] = _Var(f"m{number}")
        lines = [
            "def build(indices, columns, digests, members):",
            "    gather = itemgetter(*indices) if len(indices) > 1 else lambda values: (values[indices[0]],)",
            f"    return [{_display(entity)}",
            f"            for digest, {', '.join(names)} in zip(gather(digests), {', '.join(sources)})]",
        ]
        namespace: dict[str, Any] = {"itemgetter": itemgetter}
        exec(compile("\n".join(lines), "<airflow_provider_capillary shape builder>", "exec"), namespace)
        return namespace["build"]

    def _parse_column(
        self, column: _CompiledColumn, raw: list[Any], bad: bytearray, text: bool = False
    ) -> tuple[list[Any], list[Any]]:
        """Parse one column of a chunk: ``(parsed values, payload values)``, flagging rows in ``bad``.

        A value gives exactly what the row parser gives (same memos, and :meth:`_parse_values` for the values
        the memo does not hold); a value that fails, or a missing value of a required column, only flags its
        row (the row path reports it). Payload values differ from parsed values only for ``DECIMAL`` columns
        (JSON numbers instead of ``Decimal``). ``text``: every raw value is a ``str`` or ``None`` (a CSV column).
        """
        memo = self._memos[column.memo] if column.memo >= 0 else None
        if memo is None:
            values, payloads = self._parse_values(column, raw, bad, text)
        else:
            get = memo.get
            hits: list[Any] = [
                _NOTHING if value is None else get(value) if value.__class__ is str else None for value in raw
            ]
            if None in hits:
                missing = [index for index, hit in enumerate(hits) if hit is None]
                failed = bytearray(len(missing))
                fresh, fresh_payloads = self._parse_values(column, [raw[index] for index in missing], failed, text)
                for index, value, payload, failure in zip(missing, fresh, fresh_payloads, failed, strict=True):
                    hits[index] = (value, payload)
                    if failure:
                        bad[index] = 1
                    elif raw[index].__class__ is str:
                        self._remember(column.memo, raw[index], hits[index])
            values = [hit[0] for hit in hits]
            payloads = [hit[1] for hit in hits] if column.type is ColumnType.DECIMAL else values
        if column.required and any(map(is_, values, repeat(None))):  # `in` would compare each Decimal
            for index in [index for index, value in enumerate(values) if value is None]:
                bad[index] = 1
        return values, payloads

    def _parse_values(
        self, column: _CompiledColumn, raw: list[Any], bad: bytearray, text: bool = False
    ) -> tuple[list[Any], list[Any]]:
        """Parse values of one column without memo: ``(parsed values, payload values)``, flagging ``bad`` rows.

        The common well-formed texts of a type are parsed by one list comprehension each (the result the
        column's parse function gives them, e.g. ``parse_datetime`` through :func:`utc_text`); anything else
        goes through the parse function itself. A failing value is ``None`` and flagged. ``text``: every raw
        value is a ``str`` or ``None`` (then a text column needs no other check).
        """
        kind = column.type
        values: list[Any]
        if kind is ColumnType.STRING and text:  # _parse_string's result for every str
            values = [None if value is None else value.strip() or None for value in raw]
            return values, values
        if kind is ColumnType.STRING:
            values = [
                None if value is None else (value.strip() or None) if value.__class__ is str else _UNPARSED
                for value in raw
            ]
        elif kind is ColumnType.ID:
            values = [
                None
                if value is None
                else value
                if value.__class__ is str and value.isdigit() and value.isascii()
                else _UNPARSED
                for value in raw
            ]
        elif kind is ColumnType.DATETIME:  # the shapes parse_datetime reads without its general path
            values = [
                None if value is None else (utc_text(value) or _UNPARSED) if value.__class__ is str else _UNPARSED
                for value in raw
            ]
        elif kind is ColumnType.DECIMAL:  # [-]digits[.digits], at most 15 characters: parse_decimal's Decimal(text)
            values = [
                None
                if value is None
                else Decimal(value)
                if value.__class__ is str
                and len(value) <= MAX_SIGNIFICANT_DIGITS
                and value.isascii()
                and (value[1:] if value[:1] == "-" else value).replace(".", "", 1).isdigit()
                else _UNPARSED
                for value in raw
            ]
        elif kind is ColumnType.EMAIL:  # normalize_email's trimmed, lower-cased address, when it matches
            values = [
                None
                if value is None
                else (address if (address := value.strip().lower()) and EMAIL_PATTERN.fullmatch(address) else _UNPARSED)
                if value.__class__ is str
                else _UNPARSED
                for value in raw
            ]
        elif kind is ColumnType.PHONE:  # international digits without punctuation: "+" and the digits
            values = [
                None
                if value is None
                else "+" + value
                if value.__class__ is str
                and value.isdigit()
                and value.isascii()
                and 8 <= len(value) <= 15
                and value[0] != "0"
                else _UNPARSED
                for value in raw
            ]
        else:
            values = [None if value is None else _UNPARSED for value in raw]
        payloads = values
        if kind is ColumnType.DECIMAL:  # to_json_number's number, from the text: exact up to 15 digits
            payloads = [
                value
                if value is None or value is _UNPARSED
                else int(number)
                if (number := float(source)).is_integer()
                else number
                for value, source in zip(values, raw, strict=True)
            ]
        if any(map(is_, values, repeat(_UNPARSED))):  # `in` would compare each Decimal (160 ns)
            name, parse = column.name, column.parse
            for index in [index for index, value in enumerate(values) if value is _UNPARSED]:
                try:
                    values[index] = parse(raw[index], name)
                except Exception:
                    bad[index] = 1
                    values[index] = None
                if payloads is not values:
                    payloads[index] = None if values[index] is None else to_json_number(values[index])
        return values, payloads

    def _map_one(self, row: RowLike, chunk: MappedChunk) -> None:
        if type(row) is _TableRow:  # its values are read here and again for a dead letter: build them once
            row = row[0][row[1]]
        try:
            values = row.values
            if type(values) is not dict and not isinstance(values, Mapping):
                raise FieldError("invalid_value", None, values, "a row must be an object of column values")
            entity, key, version_us = self._build(values)
            body = orjson.dumps(entity)
        except FieldError as err:
            self._dead(chunk, row, err.reason, err.field, err.value, err.detail)
            return
        except Exception as err:
            self._dead(chunk, row, "mapping_error", None, None, f"{type(err).__name__}: {err}")
            return
        self._accept(entity, key, version_us, body, row, chunk)

    def _accept(
        self,
        entity: dict[str, Any],
        key: bytes,
        version_us: int,
        body: bytes,
        row: RowLike,
        chunk: MappedChunk,
        valid: bool | None = None,
    ) -> None:
        """De-duplicate, validate (unless ``valid`` already says) and keep (or hold) a built entity."""
        digest = content_digest(body)
        if self._time_series:
            seen = self._seen.get(key)
            if seen is not None:
                if seen == digest:
                    chunk.duplicates += 1
                else:
                    self._dead(
                        chunk,
                        row,
                        "duplicate_id_conflict",
                        "_id",
                        entity["_id"],
                        "an earlier row with the same _id and different content was already accepted",
                        entity,
                    )
                return
        if valid is None:
            valid = self._is_valid is None or self._is_valid(entity)
        if not valid or len(body) > self._max_record_bytes:
            self._dead_invalid(entity, body, row, chunk)
            return
        if self._time_series:
            self._seen.add(key, digest)
            chunk.records.append(MappedRecord(entity["_id"], row, body))
        else:
            self._hold(key, version_us, digest, body, row, chunk)

    def _dead_invalid(self, entity: dict[str, Any], body: bytes, row: RowLike, chunk: MappedChunk) -> None:
        """Dead-letter an entity that failed the schema or the size check, with the reason."""
        issue = self.validator.validate(entity) if self.validator is not None else None
        if issue is not None:
            self._dead(chunk, row, "schema_violation", issue.path, None, issue.message, entity)
            return
        too_large = check_record_size(body, self._max_record_bytes)
        if too_large is not None:
            self._dead(chunk, row, "record_too_large", None, len(body), too_large, entity)
            return
        detail = "the entity does not conform to the dataset's schema"  # the validator found no error to name
        self._dead(chunk, row, "schema_violation", None, None, detail, entity)

    def _hold(self, key: bytes, version: int, digest: bytes, body: bytes, row: RowLike, chunk: MappedChunk) -> None:
        current = self._seen.get(key)
        if current is not None:
            current_us, _current_seq, current_digest = _VERSION.unpack(current)
            if version == current_us and digest == current_digest:
                chunk.duplicates += 1
                return
            chunk.superseded += 1
            if version < current_us:
                return
            self._seen.replace(key, _VERSION.pack(version, self._seq, digest))
        else:
            self.counts.pending += 1
            self._seen.add(key, _VERSION.pack(version, self._seq, digest))
        if self._spill is None:
            # The spill file outlives this call: finish() or close() closes (and so deletes) it.
            self._spill = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115
        try:
            meta = orjson.dumps([row.file, row.line, row.values], default=str)
        except orjson.JSONEncodeError:  # values orjson cannot write (too deep, too big an integer): keep them safe
            meta = orjson.dumps([row.file, row.line, orjson_safe(row.values)], default=str)
        self._spill.write(_SPILL_HEADER.pack(self._seq, key, len(body), len(meta)))
        self._spill.write(body)
        self._spill.write(meta)

    def _build(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], bytes, int]:
        """Map row values to ``(entity, de-duplication key, version in epoch microseconds or 0)``.

        The key is the first 16 bytes of the ``_id`` digest for time-series, the digest of the natural key
        for records.
        """
        parsed, tree = self._parse_columns(values)
        return self._assemble(parsed, tree, values)

    def _assemble(
        self, parsed: dict[str, Any], tree: dict[str, Any], values: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bytes, int]:
        """Build the entity of a row from its parsed values and payload tree (see :meth:`_build`)."""
        record_type = self.record_type
        identity_map = self._identity_map(parsed)
        natural_key = record_type.natural_key(parsed)
        if self._time_series:
            digest = prefixed_digest(self._id_prefix(parsed), natural_key)
            entity: dict[str, Any] = {
                "_id": digest.hex(),
                "timestamp": parsed[record_type.timestamp_column],  # type: ignore[index]
                "identityMap": identity_map,
            }
            dedupe_key = digest[:KEY_DIGEST_SIZE]
            version_us = 0
        else:
            version: str = parsed[record_type.version_column]  # type: ignore[index]
            id_hex = prefixed_digest(self._id_prefix(parsed), f"{natural_key}@{version}").hex()
            entity = {"_id": id_hex, "identityMap": identity_map}
            dedupe_key = key_digest(natural_key)
            version_us = epoch_us(version)
        entity.update(tree)
        record_type.build(parsed, values, entity, self._context)
        return entity, dedupe_key, version_us

    def _id_prefix(self, parsed: Mapping[str, Any]) -> bytes:
        """What precedes the natural key in the text whose SHA-256 is ``_id`` (:func:`~.ids.record_digest`)."""
        if self._org_prefix is not None:
            return self._org_prefix
        return id_prefix(parsed.get("org_id", ""), self.record_type.name)

    def _memo_miss(self, index: int, parse: Callable[[Any, str], Any], raw: str, name: str) -> tuple[Any, Any]:
        """Parse a string memo ``index`` does not hold yet, remember it, return ``(value, payload value)``."""
        value = parse(raw, name)
        hit = (value, to_json_number(value) if isinstance(value, Decimal) else value)
        self._remember(index, raw, hit)
        return hit

    def _remember(self, index: int, raw: str, hit: tuple[Any, Any]) -> None:
        """Keep a parse result in memo ``index`` (refreshing the memo when it is full)."""
        memo = self._memos[index]
        if memo is not None:
            if len(memo) >= _MEMO_LIMIT:
                self._refresh_memo(index)
            else:
                memo[raw] = hit

    def _refresh_memo(self, index: int) -> None:
        """Empty a full memo, or drop it when it filled up too fast to be worth keeping (see ``_MEMOISED``)."""
        if self._seq - self._memo_filled_at[index] < 2 * _MEMO_LIMIT:
            self._memos[index] = None
        else:
            memo = self._memos[index]
            if memo is not None:
                memo.clear()
            self._memo_filled_at[index] = self._seq

    def _identity_map(self, parsed: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        customer_id = parsed.get("customer_id")
        email = parsed.get("email")
        phone = parsed.get("mobile")
        namespaces = self._clear_namespaces
        if customer_id is not None and namespaces is not None:  # build_identity_map's result, built inline
            identity_map = {
                namespaces.customer: [{"id": customer_id, "authenticatedState": "authenticated", "primary": True}]
            }
            if email is not None:
                identity_map[namespaces.email] = [{"id": email, "authenticatedState": "ambiguous", "primary": False}]
            if phone is not None:
                identity_map[namespaces.phone] = [{"id": phone, "authenticatedState": "ambiguous", "primary": False}]
            return identity_map
        options = self.options
        if customer_id is not None:
            primary = "customer"
        elif email is None and phone is None:
            raise FieldError("no_identity", "customer_id", None, "no customer_id, email or mobile")
        elif not self.record_type.identity_fallback or options.fallback_primary is None:
            raise FieldError(
                "missing_primary_key",
                "customer_id",
                None,
                "customer_id is the primary identity"
                + ("" if self.record_type.identity_fallback else f" and the key of {self.record_type.name}"),
            )
        else:
            primary = options.fallback_primary
            if (email if primary == "Email" else phone) is None:
                raise FieldError(
                    "missing_primary_key",
                    "customer_id",
                    None,
                    f"no customer_id and no {primary} for the fallback primary identity",
                )
        if options.hash_identities:
            email = sha256_hex(email) if email is not None else None
            phone = sha256_hex(phone) if phone is not None else None
        return build_identity_map(
            customer_id,
            email,
            phone,
            namespaces=options.identity_namespaces,
            hashed=options.hash_identities,
            primary=primary,
            external_id=parsed.get("external_id"),
        )
