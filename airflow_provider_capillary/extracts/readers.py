"""
Streaming, chunked readers for extract part files (CSV, JSON Lines, Parquet; plain or gzip).

Memory stays bounded whatever the file size: bytes are read in blocks of :data:`BLOCK_SIZE`, gzip is
inflated incrementally, and at most one chunk of records (``chunk_size`` rows plus their errors) is held.

How each format is read
-----------------------
CSV (RFC 4180, UTF-8, comma, ``"`` quoting, header row): lines are split from the byte stream and decoded one by one,
so an undecodable byte spoils only the record it is in. A line without a ``"`` is split on commas; a line with one (or
with a carriage return before its end) goes through Python's ``csv`` module in strict mode, which also follows quoted
fields over line breaks. Values are strings and an empty field (quoted or not) is ``None``. A UTF-8 BOM before the
header is dropped. Blank lines are skipped. A file without a header is an ``empty_file`` error; a header-only file gives
zero rows. Broken input:

* a record with more or fewer fields than the header: ``ragged_row``;
* malformed quoting (``"a"b``, a carriage return inside an unquoted field, a quote left open until the end of the file
  or for more than ``max_record_lines`` lines, or a record spanning several lines whose field count does not match the
  header): ``bad_quoting`` at the line where the record starts, and reading starts again on the **next** line, so an
  unbalanced quote costs one line instead of silently swallowing the rest of the file;
* invalid UTF-8: ``undecodable_bytes`` for the record holding the line (shown with ``\\xNN`` escapes);
* a physical line longer than ``max_line_bytes``: ``line_too_long`` (its tail is not kept).

CSV fast path: after the header, a file is read a block at a time (each block cut after its last ``\n``, the rest
carried over), and while a block is clean — no ``"``, no carriage return, no empty line, no line longer than
``max_line_bytes``, valid UTF-8, every line as wide as the header — its rows are cut column by column with one
split of the whole block and handed out as :class:`~airflow_provider_capillary.extracts.records.ColumnarRows`
(no dict per row). The first block that is not clean, and everything after it, is read line by line as above, from
that block's first line; rows, errors, chunks and resume positions are the same either way.

JSON Lines (UTF-8, one JSON object per line): lines are parsed with ``orjson``; a line holding a run of 20 or more
digits goes to the standard library instead, since orjson turns integers beyond 64 bits into floats. Numbers with a
fraction or exponent are Python floats. Blank lines are skipped and an empty file gives zero rows (a valid, empty JSON
Lines document). Broken input: ``invalid_json`` (``NaN`` and ``Infinity`` included), ``not_an_object``,
``undecodable_bytes``, ``line_too_long``.

Parquet: read in record batches of ``chunk_size`` through pyarrow; ``line`` is the 1-based row number. A
gzip-compressed Parquet file is inflated to a temporary file first (Parquet needs random access).

gzip is recognised by its magic bytes whatever the name; a ``.gz`` file that is not gzip is
``invalid_gzip``. When a gzip stream is cut short, every line before the cut is read and then a
``truncated_gzip`` file-level error says after which line it stopped. CSV and Parquet files whose header /
schema lacks ``required_columns`` give a single ``missing_columns`` file-level error and no rows.

Why a line reader: ``tests/benchmarks/bench_extracts.py`` (1M ``loyalty_event`` rows, a 214 MiB CSV, and 200k
``transaction`` JSON Lines; a shared 2-core machine) measured, every approach producing one dict per row held in
chunks of 10,000:

=====================================================  ==============
CSV: this reader, plain / gzip                          175k / 139k rows/s
CSV: ``csv`` module + dict per row                      119k rows/s
CSV: pandas ``read_csv(chunksize)`` + ``to_dict``        64k rows/s
CSV: pyarrow ``open_csv`` batches + ``to_pylist``       218k rows/s
JSONL: this reader (orjson per line)                    112k rows/s
JSONL: ``json`` / orjson per line                        38k / 60k rows/s
JSONL: pandas ``read_json(lines=True, chunksize)``       18k rows/s
=====================================================  ==============

pyarrow is about 25% faster on clean CSV, but (checked with pyarrow 26) one undecodable byte fails the whole block,
an unbalanced quote swallows the rest of the file into one bad row, and once quoted fields may hold line breaks its
invalid-row handler reports no line number at all; pandas is slower still with the same limits. A second run under
heavier load was 20-45% slower across the board, in the same order. Peak RSS reading the CSV was 161.3 MiB at 100k
rows and 162.7 MiB at 1M rows (165.2 MiB gzip), 112.7 MiB of it imports. The bare ``csv``/orjson loops trail this
reader because of the garbage collector (see :class:`_CollectorPause`), not their parsing.

Resuming
--------
Chunks are cut deterministically (``chunk_size`` records, rows and row-level errors alike), so a restart
can skip what was acknowledged either by line — ``start_after_line=chunk.last_line``: records starting at or
before that line are skipped, chunk indexes stay as in a full read — or by chunk —
``start_after_chunk=chunk.index``, which needs the same ``chunk_size`` as before. The file is still parsed
from its start (record boundaries depend on everything before them), but skipped records are not held.
"""

from __future__ import annotations

import csv
import gc
import itertools
import json
import tempfile
import zlib
from collections import deque
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple, cast

import orjson
from airflow.sdk import ObjectStoragePath

from airflow_provider_capillary.extracts.layout import (
    DEFAULT_PATH_TEMPLATE,
    FileFormat,
    detect_format,
    partition_files,
)
from airflow_provider_capillary.extracts.records import (
    ColumnarRows,
    ErrorCode,
    ExtractChunk,
    ExtractError,
    SourceRow,
    truncate_raw,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
    from datetime import date, datetime

BLOCK_SIZE = 1 << 20
"""Bytes read from the object store (or inflated from gzip) at a time."""

DEFAULT_MAX_RECORD_LINES = 1_000
"""Default bound on the physical lines one CSV record may span before its quoting is declared broken."""

DEFAULT_MAX_LINE_BYTES = 8 << 20
"""Default bound on one physical line's length in bytes; longer lines become ``line_too_long``."""

REQUIRED_COLUMNS: Mapping[str, frozenset[str]] = {
    "customer": frozenset({"customer_id", "loyalty_type", "registered_on", "updated_at"}),
    "transaction": frozenset(
        {"org_id", "transaction_id", "bill_number", "type", "billing_time", "gross_amount", "discount", "amount"}
    ),
    "loyalty_event": frozenset({"event_id", "event_name", "event_time"}),
}
"""Columns a CSV header / Parquet schema must have per record type (the required columns of
``capillary.md`` §8.2-8.4, identity columns other than ``customer``'s ``customer_id`` excluded since a
configured identity fallback may stand in for them). Whether a *value* is present is the mapper's check."""

_GZIP_MAGIC = b"\x1f\x8b"
#: A line with a run of 20 digits may hold an integer beyond 64 bits, which orjson would read as a float:
#: found as 20 zeros once every digit is translated to ``0`` (ten times faster than a regular expression).
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGITS = b"0" * 20
_UNPARSED = object()
_JSON_TYPES: Mapping[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_CSV_OPEN_QUOTE = "unexpected end of data"  # csv.Error text (strict mode) when input ends inside quotes
_UTF8_BOM = b"\xef\xbb\xbf"

_COLUMNAR = True
"""Whether CSV takes the column-wise fast path; tests and benchmarks clear it to get the line-by-line reference."""

_HEADER_BYTES = 4 << 20
"""Bytes a CSV header (blank lines before it included) may take for the rest of the file to go column-wise."""


class _RowBlock(NamedTuple):
    """CSV rows cut column-wise from a clean block; they sit on consecutive lines from ``first_line``."""

    columns: dict[str, list[str | None]]
    first_line: int
    size: int


_Item = tuple[SourceRow | ExtractError | _RowBlock | None, int]
"""A record (row or error), or a block of rows, with the last physical line it consumed; ``None`` at the end of
the input."""


class _FileDataError(Exception):
    """The rest of a file cannot be read; becomes a file-level :class:`ExtractError`."""

    def __init__(self, code: ErrorCode, detail: str, raw: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.raw = raw


class _OverlongLine(bytes):
    """The kept head of a physical line longer than the reader's bound (its tail was dropped)."""


# --------------------------------------------------------------------------------------------- bytes


def _iter_blocks(stream: IO[bytes], gzip_name: bool) -> Iterator[bytes]:
    """
    Yield a binary stream's bytes in blocks, inflating gzip (any number of members) on the fly.

    gzip is recognised by its magic bytes; every byte that can be inflated is yielded before a
    truncation or corruption is raised as :class:`_FileDataError`.

    :param gzip_name: whether the file name ends in ``.gz`` (then non-gzip content is an error).
    """
    data = stream.read(BLOCK_SIZE)
    if not data.startswith(_GZIP_MAGIC):
        if gzip_name and data:
            raise _FileDataError(ErrorCode.INVALID_GZIP, "the file is named .gz but does not start like gzip data")
        while data:
            yield data
            data = stream.read(BLOCK_SIZE)
        return
    inflater = zlib.decompressobj(wbits=31)
    compressed = len(data)
    while True:
        try:
            while data:
                if inflater.eof:
                    if not data.strip(b"\x00"):  # zero padding after the last member, tolerated like gzip(1)
                        break
                    inflater = zlib.decompressobj(wbits=31)
                out = inflater.decompress(data, BLOCK_SIZE)
                if out:
                    yield out
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        except zlib.error as exc:
            raise _FileDataError(
                ErrorCode.INVALID_GZIP, f"corrupt gzip data within the first {compressed} compressed bytes: {exc}"
            ) from None
        data = stream.read(BLOCK_SIZE)
        if not data:
            if not inflater.eof:
                raise _FileDataError(
                    ErrorCode.TRUNCATED_GZIP,
                    f"the gzip stream ends without its end marker after {compressed} compressed bytes",
                )
            return
        compressed += len(data)


def _iter_lines(blocks: Iterable[bytes], max_line_bytes: int) -> Iterator[bytes]:
    """
    Split blocks into physical lines without their ``\\n`` (``\\r`` is kept).

    A line longer than ``max_line_bytes`` is cut there and yielded as an :class:`_OverlongLine`; bytes
    beyond the cut are never held. If the blocks stop with an error, the unterminated last line is attached
    to it as ``raw`` instead of being yielded as if it were complete.
    """
    tail = b""
    overlong: bytes | None = None  # head of a line still too long at the end of the last block
    try:
        for block in blocks:
            if overlong is not None:
                cut = block.find(b"\n")
                if cut < 0:
                    continue
                yield _OverlongLine(overlong)
                overlong, block = None, block[cut + 1 :]
            lines = (tail + block).split(b"\n") if tail else block.split(b"\n")
            tail = lines.pop()
            if lines and max(map(len, lines)) > max_line_bytes:
                lines = [_OverlongLine(line[:max_line_bytes]) if len(line) > max_line_bytes else line for line in lines]
            yield from lines
            if len(tail) > max_line_bytes:
                overlong, tail = tail[:max_line_bytes], b""
    except _FileDataError as exc:
        if tail or overlong:
            exc.raw = (overlong or tail).decode("utf-8", "backslashreplace")
        raise
    if overlong is not None:
        yield _OverlongLine(overlong)
    elif tail:
        yield tail


def _decode(raw: bytes, line: int, flags: dict[int, tuple[ErrorCode, str]]) -> str:
    """Decode one line; record undecodable or overlong lines in ``flags`` and return a usable text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", "backslashreplace")
        flags[line] = (
            ErrorCode.UNDECODABLE_BYTES,
            f"line {line} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line",
        )
    if raw.__class__ is _OverlongLine:
        flags[line] = (ErrorCode.LINE_TOO_LONG, f"line {line} is longer than {len(raw)} bytes; its tail was dropped")
        return text.replace('"', "")  # a cut line must not open or close a quoted field
    return text


# ----------------------------------------------------------------------------------------------- CSV


def _explain(exc: csv.Error) -> str:
    """The ``csv`` module's complaint, in words that fit a file read line by line."""
    message = str(exc)
    if message.startswith("new-line character seen in unquoted field"):
        return "a carriage return (\\r) inside an unquoted field"
    return message


class _CsvParser:
    """
    Turn a file's physical lines into CSV records (see the module docstring for the rules).

    :param lines: the file's physical lines, from its start, or from line ``line + 1`` when only :meth:`body`
        is to be read (the column-wise fast path handing the rest of a file over).
    :param line: the physical lines read before ``lines`` starts.
    """

    def __init__(
        self,
        file: str,
        lines: Iterator[bytes],
        required_columns: Collection[str],
        max_record_lines: int,
        line: int = 0,
    ) -> None:
        self._file = file
        self._lines = lines
        self._required = required_columns
        self._max_record_lines = max_record_lines
        self._pushback: deque[str] = deque()
        self._flags: dict[int, tuple[ErrorCode, str]] = {}
        self._pending: list[str] = []
        self._overflow = False
        self._reader = self._new_reader()
        self.line = line

    def _new_reader(self) -> Iterator[list[str]]:
        return csv.reader(self._feed(), strict=True)

    def _next_text(self) -> str | None:
        """The next physical line's text (``None`` at the end); advances :attr:`line`."""
        if self._pushback:
            self.line += 1
            return self._pushback.popleft()
        raw = next(self._lines, None)
        if raw is None:
            return None
        self.line += 1
        if self.line == 1 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        return _decode(raw, self.line, self._flags)

    def _feed(self) -> Iterator[str]:
        """Lines for the ``csv`` reader, kept in ``_pending`` so a broken record can be re-read."""
        while True:
            text = self._next_text()
            if text is None:
                return
            self._pending.append(text)
            if len(self._pending) > self._max_record_lines:
                self._overflow = True
                return
            yield text + "\n"

    def _error(self, line: int, code: ErrorCode, detail: str, raw: str) -> ExtractError:
        return ExtractError(self._file, line, code, detail, truncate_raw(raw))

    def _read_record(self, text: str, start: int, width: int | None) -> tuple[list[str], str] | ExtractError:
        """
        Parse the record starting with ``text`` (line ``start``), which holds a quote.

        :param width: the header's field count; a multi-line record of another width is treated as broken
            quoting. ``None`` while reading the header.
        :return: ``(fields, raw text)`` or an error; on a quoting error the lines after
            ``start`` are pushed back to be read again.
        """
        try:  # most quoted records fit on their line
            return next(csv.reader((text + "\n",), strict=True)), text
        except csv.Error as exc:
            if str(exc).startswith("field larger than field limit"):
                return self._error(start, ErrorCode.FIELD_TOO_LARGE, f"line {start}: {exc}", text)
            if str(exc) != _CSV_OPEN_QUOTE:
                return self._error(
                    start, ErrorCode.BAD_QUOTING, f"malformed quoting on line {start}: {_explain(exc)}", text
                )
        # A quoted field goes on past the line: let the persistent reader pull the following lines.
        self._pushback.appendleft(text)
        self.line -= 1
        self._pending = []
        try:
            fields = next(self._reader)
        except csv.Error as exc:
            pending, overflow = self._pending, self._overflow
            self._pending, self._overflow = [], False
            self._reader = self._new_reader()
            if overflow:
                detail = (
                    f"quoted field opened on line {start} is still open after {self._max_record_lines} lines; "
                    f"reading again from line {start + 1}"
                )
            elif str(exc) == _CSV_OPEN_QUOTE:
                detail = f"quoted field opened on line {start} is never closed; reading again from line {start + 1}"
            else:
                detail = f"malformed quoting in the record starting on line {start}: {_explain(exc)}"
            self._replay(pending, start)
            return self._error(start, ErrorCode.BAD_QUOTING, detail, pending[0])
        pending, self._pending = self._pending, []
        if width is not None and len(pending) > 1 and len(fields) != width:
            self._replay(pending, start)
            return self._error(
                start,
                ErrorCode.BAD_QUOTING,
                f"record starting on line {start} spans {len(pending)} lines and has {len(fields)} fields "
                f"(header has {width}): probably an unbalanced quote; reading again from line {start + 1}",
                pending[0],
            )
        return fields, "\n".join(pending)

    def _replay(self, pending: list[str], start: int) -> None:
        """Push the lines after a broken record's first line back, to be read again."""
        self._pushback.extendleft(reversed(pending[1:]))
        self.line = start
        self._drop_flags(start)

    def _drop_flags(self, end: int) -> None:
        for line in [line for line in self._flags if line <= end]:
            del self._flags[line]

    def _flagged(self, start: int, end: int, raw: str) -> ExtractError | None:
        """The first undecodable / overlong line of the record spanning ``start``..``end``, as an error."""
        for line in range(start, end + 1):
            if line in self._flags:
                code, detail = self._flags[line]
                self._drop_flags(end)
                return self._error(start, code, detail, raw)
        self._drop_flags(end)
        return None

    def _header(self) -> list[str] | ExtractError:
        """Read the header: its column names, or the file-level error that stops the file."""
        while (text := self._next_text()) is not None:
            if text.rstrip("\r"):
                break
        else:
            return ExtractError(self._file, None, ErrorCode.EMPTY_FILE, "file has no header line", None)
        start = self.line
        if '"' in text or text.find("\r", 0, len(text) - 1) >= 0:
            result = self._read_record(text, start, None)
            if isinstance(result, ExtractError):
                return result._replace(line=None, code=ErrorCode.INVALID_HEADER)
            fields, raw = result
        else:
            fields, raw = text.rstrip("\r").split(","), text
        if self._flags and (error := self._flagged(start, self.line, raw)) is not None:
            return error._replace(line=None, code=ErrorCode.INVALID_HEADER, detail=f"header: {error.detail}")
        duplicates = sorted({name for name in fields if fields.count(name) > 1})
        if duplicates:
            return ExtractError(
                self._file, None, ErrorCode.DUPLICATE_COLUMNS, f"header repeats columns {duplicates}", truncate_raw(raw)
            )
        missing = sorted(set(self._required).difference(fields))
        if missing:
            return ExtractError(
                self._file,
                None,
                ErrorCode.MISSING_COLUMNS,
                f"header lacks required columns {missing}",
                truncate_raw(raw),
            )
        return fields

    def read_header(self) -> list[str] | _Item:
        """The header's column names, or the file-level error (with its end line) that stops the file."""
        try:
            header = self._header()
        except _FileDataError as exc:
            return self._data_error(exc)
        return header if isinstance(header, list) else (header, self.line)

    def records(self) -> Iterator[_Item]:
        """Yield each record as a row or a row-level error, then any file-level error, with its end line."""
        header = self.read_header()
        if isinstance(header, list):
            yield from self.body(header)
        else:
            yield header

    def body(self, header: list[str]) -> Iterator[_Item]:
        """
        Yield the records after the header (see :meth:`records`), from line :attr:`line` + 1 on.

        :param header: the column names :meth:`read_header` gave for this file.
        """
        file = self._file
        try:
            width = len(header)
            next_text = self._next_text
            while (text := next_text()) is not None:
                start = self.line
                if '"' not in text and text.find("\r", 0, len(text) - 1) < 0:
                    if not text or text == "\r":
                        continue
                    fields = (text[:-1] if text[-1] == "\r" else text).split(",")
                    raw = text
                else:
                    result = self._read_record(text, start, width)
                    if isinstance(result, ExtractError):
                        yield result, self.line
                        continue
                    fields, raw = result
                if self._flags and (error := self._flagged(start, self.line, raw)) is not None:
                    yield error, self.line
                elif len(fields) != width:
                    yield (
                        self._error(
                            start,
                            ErrorCode.RAGGED_ROW,
                            f"line {start} has {len(fields)} fields, the header has {width}",
                            raw,
                        ),
                        self.line,
                    )
                else:
                    yield SourceRow({k: v or None for k, v in zip(header, fields, strict=True)}, file, start), self.line
            yield None, self.line
        except _FileDataError as exc:
            yield self._data_error(exc)

    def _data_error(self, exc: _FileDataError) -> _Item:
        """The file-level error for a file that cannot be read any further, with what was left unfinished."""
        partial = "\n".join(part for part in (*self._pending, exc.raw) if part) or None
        return (
            ExtractError(
                self._file,
                None,
                exc.code,
                f"{exc.detail}; the last complete line read was {self.line}",
                truncate_raw(partial),
            ),
            self.line,
        )


# ------------------------------------------------------------------------------- CSV, column-wise fast path


class _HeaderBytes:
    """
    Pass blocks through while the header is read, keeping them to find the bytes that follow the header.

    Nothing is kept once more than :data:`_HEADER_BYTES` went through (a header after megabytes of blank lines):
    that file stays on the line-by-line path, so memory stays bounded.
    """

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self.kept: list[bytes] | None = []
        self._size = 0

    def __iter__(self) -> Iterator[bytes]:
        for block in self._blocks:
            if self.kept is not None:
                self._size += len(block)
                if self._size > _HEADER_BYTES:
                    self.kept = None
                else:
                    self.kept.append(block)
            yield block

    def after(self, lines: int) -> bytes | None:
        """The bytes kept after the first ``lines`` physical lines, or ``None`` if they were not kept."""
        if self.kept is None:
            return None
        data = b"".join(self.kept)
        end = 0
        for _ in range(lines):
            end = data.find(b"\n", end) + 1
            if not end:  # the header is the file's last, unterminated line
                return b""
        return data[end:]


def _clean_columns(body: bytes, width: int, max_line_bytes: int) -> list[list[str | None]] | None:
    """
    Cut whole lines into columns when the line-by-line path would read each of them as a plain row, else ``None``.

    :param body: complete physical lines joined by ``\\n``, without the last one's ``\\n``.
    :param width: the header's field count.
    """
    if b'"' in body or b"\r" in body:
        return None
    if len(body) > max_line_bytes and max(map(len, body.split(b"\n"))) > max_line_bytes:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = body.count(b"\n") + 1
    # One split of the whole block at its commas: a line's last field, "\n" and the next line's first field are
    # then one piece, every (width - 1)-th. The block is clean when there are as many pieces as ``width``
    # fields per line make, and each "\n" is alone in one of those joints, the first and last piece excepted:
    # then every line has ``width - 1`` commas (no blank line, no ragged lines making up for each other).
    fields = text.split(",")
    if len(fields) != lines * (width - 1) + 1:
        return None
    if width == 1:
        column = text.split("\n")
        return None if "" in column else [cast("list[str | None]", column)]
    edges = fields[:: width - 1]
    ends = "\n".join(edges).split("\n")  # first and last field of each line, in turn
    if (
        len(ends) != 2 * lines
        or "\n" in edges[0]
        or "\n" in edges[-1]
        or sum(map(str.__contains__, edges, itertools.repeat("\n"))) != lines - 1
    ):
        return None
    columns = [ends[0::2], *(fields[column :: width - 1] for column in range(1, width - 1)), ends[1::2]]
    return [
        [value or None for value in values] if "" in values else cast("list[str | None]", values) for values in columns
    ]


def _rest_of_blocks(head: bytes, blocks: Iterator[bytes], error: _FileDataError | None) -> Iterator[bytes]:
    """``head``, the blocks not read yet, then the error that stopped reading them, if one did."""
    yield head
    yield from blocks
    if error is not None:
        raise error


def _csv_records(
    file: str,
    blocks: Iterator[bytes],
    required_columns: Collection[str],
    max_record_lines: int,
    max_line_bytes: int,
) -> Iterator[_Item]:
    """
    Yield a CSV file's records like :meth:`_CsvParser.records`, clean blocks as :class:`_RowBlock` items.

    The header is read line by line; then each block, cut after its last ``\\n`` (the rest is carried over),
    goes column-wise while it is clean, and the first block that is not (or an overlong line, the end of the
    file or a read error) hands the rest of the file over to :meth:`_CsvParser.body` at that block's first line.
    """
    header_bytes = _HeaderBytes(blocks)
    parser = _CsvParser(file, _iter_lines(header_bytes, max_line_bytes), required_columns, max_record_lines)
    header = parser.read_header()
    if not isinstance(header, list):
        yield header
        return
    rest = header_bytes.after(parser.line)
    if rest is None:
        yield from parser.body(header)
        return
    blocks = itertools.chain([rest], blocks)  # the header's last block, from the line after the header
    tail, line, width, error = b"", parser.line, len(header), None
    while len(tail) <= max_line_bytes:
        try:
            block = next(blocks, None)
        except _FileDataError as exc:
            error = exc
            break
        if block is None:
            break
        data = tail + block if tail else block
        end = data.rfind(b"\n")
        if end < 0:
            tail = data
            continue
        columns = _clean_columns(data[:end], width, max_line_bytes)
        if columns is None:
            tail = data
            break
        size, tail = len(columns[0]), data[end + 1 :]
        yield _RowBlock(dict(zip(header, columns, strict=True)), line + 1, size), line + size
        line += size
    lines = _iter_lines(_rest_of_blocks(tail, blocks, error), max_line_bytes)
    yield from _CsvParser(file, lines, required_columns, max_record_lines, line).body(header)


# ---------------------------------------------------------------------------------------- JSON Lines


def _parse_json_line(raw: bytes) -> tuple[Any, ErrorCode | None, str]:
    """Parse one JSON Lines line with the standard library: ``(value, None, "")`` or ``(None, code, problem)``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            None,
            ErrorCode.UNDECODABLE_BYTES,
            f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line",
        )
    try:
        return json.loads(text, parse_constant=_reject_constant), None, ""
    except ValueError as exc:
        return None, ErrorCode.INVALID_JSON, str(exc)
    except RecursionError:
        return None, ErrorCode.INVALID_JSON, "nested too deeply to parse"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _jsonl_records(file: str, lines: Iterator[bytes]) -> Iterator[_Item]:
    """Yield each JSON Lines line as a row or a row-level error, then any file-level error."""
    line = 0
    try:
        for raw in lines:
            line += 1
            if line == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
            if raw.__class__ is _OverlongLine:
                yield (
                    ExtractError(
                        file,
                        line,
                        ErrorCode.LINE_TOO_LONG,
                        f"line {line} is longer than {len(raw)} bytes",
                        truncate_raw(raw.decode("utf-8", "backslashreplace")),
                    ),
                    line,
                )
                continue
            try:  # orjson would turn integers beyond 64 bits into floats: leave those to the standard library
                value = orjson.loads(raw) if _LONG_DIGITS not in raw.translate(_DIGITS_TO_ZERO) else _UNPARSED
            except orjson.JSONDecodeError:
                value = _UNPARSED
            if value is _UNPARSED:
                if not raw.strip():
                    continue
                value, code, problem = _parse_json_line(raw)
                if code is not None:
                    yield (
                        ExtractError(
                            file,
                            line,
                            code,
                            f"line {line}: {problem}",
                            truncate_raw(raw.decode("utf-8", "backslashreplace")),
                        ),
                        line,
                    )
                    continue
            if value.__class__ is not dict:
                yield (
                    ExtractError(
                        file,
                        line,
                        ErrorCode.NOT_AN_OBJECT,
                        f"line {line} holds a JSON {_JSON_TYPES.get(type(value), 'value')}, not an object",
                        truncate_raw(raw.decode("utf-8", "backslashreplace")),
                    ),
                    line,
                )
                continue
            yield SourceRow(value, file, line), line
        yield None, line
    except _FileDataError as exc:
        detail = f"{exc.detail}; the last complete line read was {line}"
        yield ExtractError(file, None, exc.code, detail, truncate_raw(exc.raw)), line


# ------------------------------------------------------------------------------------------- Parquet


def _parquet_records(
    file: str, stream: IO[bytes], gzipped: bool, batch_size: int, required_columns: Collection[str]
) -> Iterator[_Item]:
    """Yield each Parquet row (``line`` = 1-based row number), or one file-level error."""
    # pyarrow is imported here, not at module level: DAG files import this module and most extracts are not Parquet.
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryFile() as spool:
        source: IO[bytes] = stream
        try:
            head = stream.read(2)
            stream.seek(0)
            if gzipped or head == _GZIP_MAGIC:
                for block in _iter_blocks(stream, gzipped):
                    spool.write(block)
                spool.seek(0)
                source = spool
            parquet = pq.ParquetFile(source)
        except _FileDataError as exc:
            yield ExtractError(file, None, exc.code, exc.detail, None), 0
            return
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            yield ExtractError(file, None, ErrorCode.INVALID_PARQUET, f"not a readable Parquet file: {exc}", None), 0
            return
        names = parquet.schema_arrow.names
        duplicates = sorted({name for name in names if names.count(name) > 1})
        missing = sorted(set(required_columns).difference(names))
        if duplicates or missing:
            code = ErrorCode.DUPLICATE_COLUMNS if duplicates else ErrorCode.MISSING_COLUMNS
            what = f"repeats columns {duplicates}" if duplicates else f"lacks required columns {missing}"
            yield ExtractError(file, None, code, f"Parquet schema {what}", truncate_raw(str(names))), 0
            return
        line = 0
        try:
            for batch in parquet.iter_batches(batch_size=batch_size):
                for values in batch.to_pylist():
                    line += 1
                    yield SourceRow(values, file, line), line
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            yield (
                ExtractError(
                    file, None, ErrorCode.INVALID_PARQUET, f"cannot decode rows after row {line}: {exc}", None
                ),
                line,
            )


# -------------------------------------------------------------------------------------------- chunks


class _CollectorPause:
    """
    Pause Python's cyclic garbage collector while a chunk is built, restoring it before the chunk is handed out.

    Records hold no reference cycles, so reference counting frees them; but the many container objects a
    chunk allocates trigger collections that walk every object in the process, which in a worker with
    Airflow imported cost more than the parsing itself (measured in ``bench_extracts.py``). The pause lasts
    one chunk at most and the previous state is always restored.
    """

    def __init__(self) -> None:
        self._restore = False

    def pause(self) -> None:
        self._restore = gc.isenabled()
        gc.disable()

    def resume(self) -> None:
        if self._restore:
            gc.enable()
        self._restore = False


def _chunk_rows(file: str, pieces: list[tuple[_RowBlock, int, int]], rows: list[SourceRow]) -> Sequence[SourceRow]:
    """
    A chunk's rows: the column-wise pieces (``(block, start, stop)`` row ranges) as one :class:`ColumnarRows`,
    as a plain list when row-path rows follow them.
    """
    if not pieces:
        return rows
    block, start, stop = pieces[0]
    if len(pieces) == 1 and start == 0 and stop == block.size:
        columns = block.columns
    else:
        columns = {name: [] for name in block.columns}
        for block, start, stop in pieces:
            for values, more in zip(columns.values(), block.columns.values(), strict=True):
                values += more[start:stop]
    lines = [line for block, start, stop in pieces for line in range(block.first_line + start, block.first_line + stop)]
    columnar = ColumnarRows(file, columns, lines)
    return [*columnar, *rows] if rows else columnar


def _chunks(
    file: str, items: Iterator[_Item], chunk_size: int, start_after_line: int, start_after_chunk: int | None
) -> Iterator[ExtractChunk]:
    """Cut records into chunks of ``chunk_size``, skipping what a resume position says was acknowledged."""
    index = 0
    pieces: list[tuple[_RowBlock, int, int]] = []  # column-wise rows of the chunk; they precede all of ``rows``
    rows: list[SourceRow] = []
    errors: list[ExtractError] = []
    count = 0
    last_line = 0
    emit = start_after_chunk is None or start_after_chunk < 0

    def chunk(final: bool) -> ExtractChunk | None:
        if not emit or (start_after_line > 0 and last_line <= start_after_line):
            return None
        return ExtractChunk(file, index, _chunk_rows(file, pieces, rows), errors, last_line, final)

    def cut() -> ExtractChunk | None:
        """End the current (full) chunk: the chunk to hand out, if it is not skipped."""
        nonlocal index, pieces, rows, errors, count, emit
        ready = chunk(final=False)
        index += 1
        pieces, rows, errors, count = [], [], [], 0
        emit = start_after_chunk is None or index > start_after_chunk
        return ready

    collector = _CollectorPause()
    collector.pause()
    try:
        for item, end_line in items:
            if item is None:  # end of input: trailing blank lines belong to the last chunk
                last_line = end_line
                continue
            if isinstance(item, _RowBlock):
                block = item
                done = 0
                while done < block.size:
                    if count == chunk_size and (ready := cut()) is not None:
                        collector.resume()
                        yield ready
                        collector.pause()
                    stop = min(done + chunk_size - count, block.size)
                    start = max(done, start_after_line - block.first_line + 1)  # rows at lines <= start_after_line
                    if emit and start < stop:
                        pieces.append((block, start, stop))
                    count += stop - done
                    done = stop
                    last_line = block.first_line + stop - 1
                continue
            if count == chunk_size and (ready := cut()) is not None:
                collector.resume()
                yield ready
                collector.pause()
            line = item.line
            if emit and (start_after_line <= 0 or line is None or line > start_after_line):
                if isinstance(item, SourceRow):
                    rows.append(item)
                else:
                    errors.append(item)
            if line is not None:
                count += 1
            last_line = end_line
        final = chunk(final=True)
    finally:
        collector.resume()
    if final is not None:
        yield final


def _open_items(
    path: ObjectStoragePath,
    stream: IO[bytes],
    file_format: FileFormat | None,
    gzipped: bool,
    *,
    chunk_size: int,
    required_columns: Collection[str],
    max_record_lines: int,
    max_line_bytes: int,
) -> Iterator[_Item]:
    """Yield the records of an opened part file with the parser its format needs."""
    file = str(path)
    if file_format is None:
        yield (
            ExtractError(
                file,
                None,
                ErrorCode.UNSUPPORTED_FORMAT,
                f"{path.name}: not a .csv, .jsonl, .ndjson or .parquet file (optionally .gz)",
                None,
            ),
            0,
        )
        return
    if file_format == "parquet":
        yield from _parquet_records(file, stream, gzipped, chunk_size, required_columns)
        return
    blocks = _iter_blocks(stream, gzipped)
    if file_format == "csv" and _COLUMNAR:
        yield from _csv_records(file, blocks, required_columns, max_record_lines, max_line_bytes)
        return
    lines = _iter_lines(blocks, max_line_bytes)
    if file_format == "csv":
        yield from _CsvParser(file, lines, required_columns, max_record_lines).records()
    else:
        yield from _jsonl_records(file, lines)


def read_file(
    path: str | ObjectStoragePath,
    *,
    chunk_size: int = 10_000,
    start_after_line: int = 0,
    start_after_chunk: int | None = None,
    required_columns: Collection[str] = (),
    file_format: Literal["csv", "jsonl", "parquet"] | None = None,
    max_record_lines: int = DEFAULT_MAX_RECORD_LINES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[ExtractChunk]:
    """
    Read one part file in chunks; broken input becomes errors inside the chunks, never an exception.

    :param path: the file's URL or :class:`ObjectStoragePath` (``file://``, ``s3://``, ``memory://``, ...).
    :param chunk_size: records (rows plus row-level errors) per chunk, default 10,000.
    :param start_after_line: resume position: skip records starting at or before this physical line
        (an earlier chunk's ``last_line``); default 0 reads everything.
    :param start_after_chunk: resume position: skip chunks up to and including this index (same
        ``chunk_size`` as the earlier read required); default ``None`` reads everything.
    :param required_columns: columns a CSV header / Parquet schema must have, else one ``missing_columns``
        file-level error; default none. Not checked for JSON Lines (no header; the mapper checks keys).
    :param file_format: ``csv``, ``jsonl`` or ``parquet``; default ``None`` takes it from the file name.
    :param max_record_lines: lines one CSV record may span before its quote counts as unbalanced; default
        :data:`DEFAULT_MAX_RECORD_LINES`.
    :param max_line_bytes: bound on a physical line's bytes; default :data:`DEFAULT_MAX_LINE_BYTES`.
    :raises ValueError: for a ``chunk_size`` below 1 or an unknown ``file_format``.
    :raises OSError: when the file cannot be opened or read (missing, permissions, network).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if file_format not in (None, "csv", "jsonl", "parquet"):
        raise ValueError(f"file_format must be csv, jsonl or parquet, got {file_format!r}")
    path = path if isinstance(path, ObjectStoragePath) else ObjectStoragePath(path)
    detected, gzipped = detect_format(path)
    return _read_chunks(
        path,
        file_format or detected,
        gzipped,
        chunk_size=chunk_size,
        start_after_line=start_after_line,
        start_after_chunk=start_after_chunk,
        required_columns=required_columns,
        max_record_lines=max_record_lines,
        max_line_bytes=max_line_bytes,
    )


def _read_chunks(
    path: ObjectStoragePath,
    file_format: FileFormat | None,
    gzipped: bool,
    *,
    chunk_size: int,
    start_after_line: int,
    start_after_chunk: int | None,
    required_columns: Collection[str],
    max_record_lines: int,
    max_line_bytes: int,
) -> Iterator[ExtractChunk]:
    """The generator behind :func:`read_file` (which validates its arguments before anything is read)."""
    with path.open("rb") as stream:
        items = _open_items(
            path,
            stream,
            file_format,
            gzipped,
            chunk_size=chunk_size,
            required_columns=required_columns,
            max_record_lines=max_record_lines,
            max_line_bytes=max_line_bytes,
        )
        yield from _chunks(str(path), items, chunk_size, start_after_line, start_after_chunk)


def read_partition(
    root: str | ObjectStoragePath,
    record_type: str,
    interval_start: datetime | date,
    *,
    path_template: str = DEFAULT_PATH_TEMPLATE,
    chunk_size: int = 10_000,
    resume_after: tuple[str, int] | None = None,
    resume_by: Literal["line", "chunk"] = "line",
    required_columns: Collection[str] | None = None,
    max_record_lines: int = DEFAULT_MAX_RECORD_LINES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[ExtractChunk]:
    """
    Read every part file of one record type's partition, file after file in listing order.

    :param root: the extract root URL or path (the ``capillary_extract_uri`` Variable).
    :param record_type: ``customer``, ``transaction``, ``loyalty_event`` or another name in the layout.
    :param interval_start: the data interval start whose partition to read.
    :param path_template: the partition path template, default ``{record_type}/dt={ds}/part-*``
        (syntax in :mod:`airflow_provider_capillary.extracts.layout`).
    :param chunk_size: records per chunk, default 10,000.
    :param resume_after: ``(file URL, position)`` of the last acknowledged chunk: files listed before it
        are skipped and that file is resumed after the position; default ``None`` reads everything.
    :param resume_by: what the position in ``resume_after`` is: ``line`` (``chunk.last_line``, default) or
        ``chunk`` (``chunk.index``; needs the same ``chunk_size``).
    :param required_columns: header columns to require; default ``None`` uses :data:`REQUIRED_COLUMNS` for
        the record type (none for unknown types).
    :param max_record_lines: see :func:`read_file`.
    :param max_line_bytes: see :func:`read_file`.
    :raises ValueError: (when called, before anything is read) if ``resume_after`` names a file the partition
        does not (or no longer) hold, or for a bad ``chunk_size`` / ``resume_by``.
    :raises OSError: when the partition cannot be listed or a file cannot be read.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if resume_by not in ("line", "chunk"):
        raise ValueError(f"resume_by must be 'line' or 'chunk', got {resume_by!r}")
    files = partition_files(root, record_type, interval_start, path_template=path_template)
    first, skip_line, skip_chunk = 0, 0, None
    if resume_after is not None:
        names = [str(path) for path in files]
        if resume_after[0] not in names:
            raise ValueError(
                f"cannot resume after {resume_after[0]!r}: it is not in the partition ({len(names)} files); "
                "the partition changed since the checkpoint"
            )
        first = names.index(resume_after[0])
        if resume_by == "line":
            skip_line = resume_after[1]
        else:
            skip_chunk = resume_after[1]
    required = REQUIRED_COLUMNS.get(record_type, frozenset()) if required_columns is None else required_columns
    return itertools.chain.from_iterable(
        read_file(
            path,
            chunk_size=chunk_size,
            start_after_line=skip_line if number == first else 0,
            start_after_chunk=skip_chunk if number == first else None,
            required_columns=required,
            max_record_lines=max_record_lines,
            max_line_bytes=max_line_bytes,
        )
        for number, path in enumerate(files)
        if number >= first
    )
