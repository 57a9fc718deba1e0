"""What the extract readers hand out: source rows, extract errors and chunks of both.

A reader never raises for bad *data*: every problem in a file becomes an :class:`ExtractError` that says
where it is (file URL, physical line), what it is (a stable :class:`ErrorCode`) and shows the offending text,
truncated to :data:`MAX_RAW_CHARS`. Only infrastructure failures (a missing file, a permission or network
error) raise, so that Airflow's retries handle them instead of dead-lettering good data.

Row-level errors carry the 1-based physical line where the record starts. File-level errors (the file as
a whole cannot be read, or cannot be read any further) carry ``line=None``; where a position helps (a
truncated gzip stream), the ``detail`` names the last line that was read completely.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import repeat
from typing import Any, NamedTuple, overload

#: Longest ``raw`` excerpt kept on an :class:`ExtractError`; longer text is cut and marked with ``…``.
MAX_RAW_CHARS = 2_000


class ErrorCode(StrEnum):
    """Stable, machine-readable reasons for an :class:`ExtractError` (the values are plain strings)."""

    # Row-level (``line`` is set)
    RAGGED_ROW = "ragged_row"
    """A CSV record has more or fewer fields than the header."""
    BAD_QUOTING = "bad_quoting"
    """A CSV record's quoting is malformed, or a quoted field is not closed within the bound."""
    FIELD_TOO_LARGE = "field_too_large"
    """A CSV field is longer than Python's ``csv.field_size_limit()``."""
    UNDECODABLE_BYTES = "undecodable_bytes"
    """A line is not valid UTF-8."""
    LINE_TOO_LONG = "line_too_long"
    """A physical line is longer than the reader's ``max_line_bytes`` bound; its tail was not kept."""
    INVALID_JSON = "invalid_json"
    """A JSON Lines line is not a JSON document."""
    NOT_AN_OBJECT = "not_an_object"
    """A JSON Lines line is valid JSON but not an object (``{...}``)."""

    # File-level (``line`` is None)
    EMPTY_FILE = "empty_file"
    """A CSV file without a header line (zero bytes or blank lines only)."""
    INVALID_HEADER = "invalid_header"
    """The CSV header cannot be decoded or parsed."""
    DUPLICATE_COLUMNS = "duplicate_columns"
    """A column name appears more than once in the header (or Parquet schema)."""
    MISSING_COLUMNS = "missing_columns"
    """The header (or Parquet schema) lacks columns the record type requires."""
    TRUNCATED_GZIP = "truncated_gzip"
    """The gzip stream ends before its end marker; the lines before the cut were read."""
    INVALID_GZIP = "invalid_gzip"
    """A ``.gz`` file is not gzip data, or its compressed data is corrupt."""
    INVALID_PARQUET = "invalid_parquet"
    """A ``.parquet`` file cannot be opened or decoded as Parquet."""
    UNSUPPORTED_FORMAT = "unsupported_format"
    """A part file whose name ends in none of the supported suffixes."""


class SourceRow(NamedTuple):
    """
    One input record, as read: values are not typed or validated here (the XDM mapper does that).

    :param values: column name (exactly as in the header / JSON key) to value. CSV values are strings,
        an empty field is ``None``; JSON Lines values are the parsed JSON values (nested objects and
        arrays included); Parquet values are the Python values pyarrow gives.
    :param file: the part file's URL, ``str(ObjectStoragePath)``, e.g. ``s3://bucket/customer/dt=.../part-0000.csv``.
    :param line: 1-based physical line where the record starts; CSV counts the header as line 1, JSON Lines
        starts at 1. For Parquet it is the 1-based row ordinal in the file.
    """

    values: dict[str, Any]
    file: str
    line: int


class ExtractError(NamedTuple):
    """
    A problem found in an extract file, with enough context for a dead letter to point at it.

    :param file: the part file's URL.
    :param line: 1-based physical line where the bad record starts; ``None`` for file-level errors.
    :param code: one of :class:`ErrorCode` (a plain string).
    :param detail: a specific, human-readable explanation.
    :param raw: the offending text, cut to :data:`MAX_RAW_CHARS`; ``None`` when there is none.
    """

    file: str
    line: int | None
    code: str
    detail: str
    raw: str | None

    @property
    def file_level(self) -> bool:
        """Whether the error concerns the whole file (or the rest of it) rather than one record."""
        return self.line is None


class ColumnarRows(Sequence[SourceRow]):
    """
    CSV rows of one part file held column by column, read as :class:`SourceRow` objects on access.

    The CSV reader's fast path cuts clean blocks of a file into columns instead of one dict per row; the rows
    are built only when iterated or indexed, and are equal to what the line-by-line path gives. It compares
    equal to any sequence of the same rows, a plain ``list`` included.

    :param file: the part file's URL, the ``file`` of every row.
    :param columns: column name to the column's values, one per row, in header order (the key order of each
        row's ``values``); a value is the field's text, ``None`` for an empty field.
    :param lines: the 1-based physical line of each row, as many as each column has values.
    """

    __slots__ = ("columns", "file", "lines")

    def __init__(self, file: str, columns: dict[str, list[str | None]], lines: list[int]) -> None:
        self.file = file
        self.columns = columns
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[SourceRow]:
        # map() all the way down: no Python frame per row beyond SourceRow's own constructor.
        values = map(dict, map(zip, repeat(list(self.columns)), zip(*self.columns.values(), strict=True)))
        return map(SourceRow, values, repeat(self.file), self.lines)

    @overload
    def __getitem__(self, index: int) -> SourceRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[SourceRow]: ...

    def __getitem__(self, index: int | slice) -> SourceRow | list[SourceRow]:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        line = self.lines[index]
        return SourceRow({name: values[index] for name, values in self.columns.items()}, self.file, line)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(row == theirs for row, theirs in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by content, like a list

    def __repr__(self) -> str:
        return f"ColumnarRows(file={self.file!r}, columns={list(self.columns)!r}, rows={len(self)})"


@dataclass(frozen=True)
class ExtractChunk:
    """
    Consecutive records of one part file: chunks never span files.

    A chunk holds at most ``chunk_size`` records, counting both rows and row-level errors, so the same
    file read with the same ``chunk_size`` always gives the same chunks (the basis of resuming by chunk
    index). Every file read gives at least one chunk (possibly empty) unless resuming skips all of it.

    :param file: the part file's URL.
    :param index: 0-based ordinal of the chunk within the file.
    :param rows: the rows read, in file order: a ``list``, or a :class:`ColumnarRows` when every row of the
        chunk came from the CSV reader's column-wise fast path (see :mod:`airflow_provider_capillary.extracts.readers`).
    :param errors: row-level errors for records of this chunk, in file order, then any file-level error
        (only ever on the file's last chunk).
    :param last_line: the last physical line this chunk consumed; pass ``(file, last_line)`` as the
        resume position to continue after this chunk.
    :param final: whether this is the file's last chunk.
    """

    file: str
    index: int
    rows: Sequence[SourceRow]
    errors: list[ExtractError]
    last_line: int
    final: bool = False

    @property
    def position(self) -> tuple[str, int]:
        """The resume position after this chunk: ``(file, last_line)``, for ``read_partition(resume_after=...)``."""
        return (self.file, self.last_line)


def truncate_raw(text: str | None) -> str | None:
    """
    Cut ``text`` to :data:`MAX_RAW_CHARS` characters for an error's ``raw`` excerpt.

    :param text: the offending text, or ``None``.
    """
    if text is None or len(text) <= MAX_RAW_CHARS:
        return text
    return text[: MAX_RAW_CHARS - 1] + "…"
