"""Property tests: whatever CSV is written, every record comes back as written or as an error at its line."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import uuid

import fsspec
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_capillary.extracts import ExtractError, SourceRow, read_file

CHARS = st.sampled_from([*"ab Z09,;\"'\t\n\ré山🙂\u2028", "\r\n"])
FIELD = st.lists(CHARS, max_size=8).map("".join)
PLAIN_FIELD = st.text(st.sampled_from(list("ab Z09;'\té山🙂")), max_size=8)
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _memory_filesystem() -> None:
    attach("memory", fs=fsspec.filesystem("memory"))


def _encode(header: list[str], records: list[list[str]], terminator: str) -> tuple[str, list[int]]:
    """CSV text as ``csv.writer`` writes it, and the 1-based line where each record starts."""
    out = io.StringIO(newline="")
    # csv.writer quotes only the line terminator's characters: with "\n" a bare "\r" needs QUOTE_ALL.
    bare_cr = terminator == "\n" and any("\r" in value for value in [*header, *itertools.chain(*records)])
    writer = csv.writer(out, lineterminator=terminator, quoting=csv.QUOTE_ALL if bare_cr else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    starts, line = [], out.getvalue().count("\n")
    for record in records:
        before = out.tell()
        writer.writerow(record)
        starts.append(line + 1)
        line += out.getvalue()[before:].count("\n")
    return out.getvalue(), starts


def _store(data: bytes, name: str) -> ObjectStoragePath:
    path = ObjectStoragePath(f"memory://properties-{uuid.uuid4().hex}/{name}")
    path.write_bytes(data)
    return path


def _read(path: ObjectStoragePath, chunk_size: int) -> tuple[list[SourceRow], list[ExtractError]]:
    chunks = list(read_file(path, chunk_size=chunk_size))
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    return [row for chunk in chunks for row in chunk.rows], [error for chunk in chunks for error in chunk.errors]


@SETTINGS
@given(
    width=st.integers(1, 5),
    data=st.data(),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    packed=st.booleans(),
    quoted_header=st.booleans(),
    chunk_size=st.integers(1, 6),
)
def test_well_formed_csv_round_trips(
    width: int, data: st.DataObject, terminator: str, bom: bool, packed: bool, quoted_header: bool, chunk_size: int
) -> None:
    header = [f"c{i}" for i in range(width)]
    if quoted_header:
        header[0] = 'id, "quoted"\nname'
    records = data.draw(st.lists(st.lists(FIELD, min_size=width, max_size=width), max_size=12))
    text, starts = _encode(header, records, terminator)
    raw = ("\ufeff" if bom else "").encode() + text.encode()
    path = _store(gzip.compress(raw) if packed else raw, "part-0.csv.gz" if packed else "part-0.csv")
    rows, errors = _read(path, chunk_size)
    assert errors == []
    expected = [
        (start, dict(zip(header, [value or None for value in record], strict=True)))
        for start, record in zip(starts, records, strict=True)
    ]
    assert [(row.line, row.values) for row in rows] == expected
    assert {row.file for row in rows} <= {str(path)}


@st.composite
def damaged_records(draw: st.DrawFn, width: int) -> tuple[list[list[str]], list[str | None]]:
    """Records, some ragged (one line) and some carrying invalid UTF-8, with the error each should give."""
    records: list[list[str]] = []
    expected: list[str | None] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["good", "good", "ragged", "undecodable"]))
        if kind == "ragged":
            size = draw(st.integers(1, width + 3).filter(lambda n: n != width))
            records.append(draw(st.lists(PLAIN_FIELD, min_size=size, max_size=size)))
            expected.append("ragged_row")
        else:
            records.append(draw(st.lists(FIELD, min_size=width, max_size=width)))
            if kind == "undecodable":
                records[-1][draw(st.integers(0, width - 1))] += "\udcff"  # written as the byte 0xff
            expected.append(None if kind == "good" else "undecodable_bytes")
    return records, expected


@SETTINGS
@given(width=st.integers(2, 5), data=st.data(), chunk_size=st.integers(1, 6))
def test_every_record_is_a_row_or_an_error_at_its_line(width: int, data: st.DataObject, chunk_size: int) -> None:
    header = [f"c{i}" for i in range(width)]
    records, outcome = data.draw(damaged_records(width))
    text, starts = _encode(header, records, "\n")
    rows, errors = _read(_store(text.encode("utf-8", "surrogateescape"), "part-0.csv"), chunk_size)
    assert all(not error.file_level for error in errors)
    assert len(rows) + len(errors) == len(records)
    by_line = {row.line: row.values for row in rows}
    codes = {error.line: error.code for error in errors}
    for start, record, code in zip(starts, records, outcome, strict=True):
        if code is None:
            assert by_line[start] == dict(zip(header, [value or None for value in record], strict=True))
        else:
            assert codes[start] == code


@SETTINGS
@given(
    records=st.lists(st.lists(PLAIN_FIELD, min_size=3, max_size=3), min_size=1, max_size=15),
    data=st.data(),
    max_record_lines=st.integers(2, 20),
)
def test_an_unbalanced_quote_costs_only_its_own_record(
    records: list[list[str]], data: st.DataObject, max_record_lines: int
) -> None:
    broken = data.draw(st.integers(0, len(records) - 1))
    column = data.draw(st.integers(0, 2))
    lines = ["c0,c1,c2"] + [",".join(record) for record in records]
    fields = lines[broken + 1].split(",")
    fields[column] = '"' + fields[column]
    lines[broken + 1] = ",".join(fields)
    path = _store(("\n".join(lines) + "\n").encode(), "part-0.csv")
    chunks = list(read_file(path, max_record_lines=max_record_lines))
    rows = [row for chunk in chunks for row in chunk.rows]
    errors = [error for chunk in chunks for error in chunk.errors]
    assert [(error.line, error.code) for error in errors] == [(broken + 2, "bad_quoting")]
    assert [(row.line, row.values) for row in rows] == [
        (line, dict(zip(["c0", "c1", "c2"], [value or None for value in record], strict=True)))
        for line, record in enumerate(records, start=2)
        if line != broken + 2
    ]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
JSONL_LINE = st.one_of(
    st.tuples(st.just("row"), st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4)),
    st.tuples(st.just("invalid_json"), st.sampled_from(["not json", "{'single': 1}", '{"a": 1', "{} {}"])),
    st.tuples(st.just("not_an_object"), st.sampled_from(["[1, 2]", '"text"', "3", "null"])),
    st.tuples(st.just("blank"), st.sampled_from(["", "   ", "\r"])),
)


@SETTINGS
@given(
    lines=st.lists(JSONL_LINE, max_size=15),
    ensure_ascii=st.booleans(),
    packed=st.booleans(),
    chunk_size=st.integers(1, 6),
)
def test_json_lines_round_trip(
    lines: list[tuple[str, object]], ensure_ascii: bool, packed: bool, chunk_size: int
) -> None:
    text = "\n".join(
        json.dumps(value, ensure_ascii=ensure_ascii) if kind == "row" else str(value) for kind, value in lines
    )
    data = gzip.compress(text.encode()) if packed else text.encode()
    rows, errors = _read(_store(data, "part-0.jsonl.gz" if packed else "part-0.jsonl"), chunk_size)
    assert [(row.line, row.values) for row in rows] == [
        (number, value) for number, (kind, value) in enumerate(lines, start=1) if kind == "row"
    ]
    assert [(error.line, error.code) for error in errors] == [
        (number, kind) for number, (kind, _) in enumerate(lines, start=1) if kind not in ("row", "blank")
    ]
