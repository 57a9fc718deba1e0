"""The CSV reader's column-wise fast path: :class:`ColumnarRows`, and parity with the line-by-line path."""

from __future__ import annotations

import gzip
import uuid
import zlib
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import fsspec
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_capillary.extracts import (
    ColumnarRows,
    ExtractChunk,
    SourceRow,
    read_file,
    read_partition,
    readers,
)

FILE = "memory://bucket/part-0.csv"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _memory_filesystem() -> None:
    attach("memory", fs=fsspec.filesystem("memory"))


def _store(data: bytes, name: str = "part-0.csv") -> ObjectStoragePath:
    path = ObjectStoragePath(f"memory://columnar-{uuid.uuid4().hex}/{name}")
    path.write_bytes(data)
    return path


def _read(path: ObjectStoragePath, *, columnar: bool, block_size: int = readers.BLOCK_SIZE, **kwargs: Any) -> list:
    """Every chunk of ``path`` as plain values, read with or without the fast path."""
    with mock.patch.object(readers, "_COLUMNAR", columnar), mock.patch.object(readers, "BLOCK_SIZE", block_size):
        chunks = list(read_file(path, **kwargs))
    return [_plain(chunk) for chunk in chunks]


def _plain(chunk: ExtractChunk) -> tuple:
    """A chunk's fields, its rows as a list, and last each row's keys in order (dicts compare without order)."""
    rows = list(chunk.rows)
    return chunk.file, chunk.index, rows, chunk.errors, chunk.last_line, chunk.final, [list(row.values) for row in rows]


def _assert_parity(path: ObjectStoragePath, *, block_size: int = readers.BLOCK_SIZE, **kwargs: Any) -> list:
    """Assert the fast path gives what the line-by-line path gives, for a full read and resumed reads."""
    reference = _read(path, columnar=False, block_size=block_size, **kwargs)
    fast = _read(path, columnar=True, block_size=block_size, **kwargs)
    assert fast == reference
    ends = [chunk[4] for chunk in reference]
    sampled = ends[:: max(1, len(ends) // 6)]
    for position in sorted({0, 1, 2, *sampled, *(end - 3 for end in sampled), ends[-1], ends[-1] + 1}):
        resumed = _read(path, columnar=False, block_size=block_size, start_after_line=position, **kwargs)
        assert _read(path, columnar=True, block_size=block_size, start_after_line=position, **kwargs) == resumed
    for index in sorted({-1, 0, len(reference) // 2, len(reference) - 1, len(reference)}):
        resumed = _read(path, columnar=False, block_size=block_size, start_after_chunk=index, **kwargs)
        assert _read(path, columnar=True, block_size=block_size, start_after_chunk=index, **kwargs) == resumed
    return reference


def _csv(width: int, rows: int, start: int = 0) -> list[bytes]:
    """Clean CSV lines (no terminators): a header of ``width`` columns, then ``rows`` rows with empty fields."""
    header = ",".join(f"col{column}" for column in range(width)).encode()
    body = [
        ",".join("" if (number + column) % 5 == 0 else f"v{number}é{column}" for column in range(width)).encode()
        for number in range(start, start + rows)
    ]
    return [header, *body]


# -------------------------------------------------------------------------------------------- ColumnarRows


@pytest.fixture
def columnar() -> ColumnarRows:
    return ColumnarRows(FILE, {"a": ["1", None, "3"], "b": [None, "y", "z"]}, [2, 3, 5])


EXPECTED = [
    SourceRow({"a": "1", "b": None}, FILE, 2),
    SourceRow({"a": None, "b": "y"}, FILE, 3),
    SourceRow({"a": "3", "b": "z"}, FILE, 5),
]


def test_columnar_rows_is_a_sequence_of_source_rows(columnar: ColumnarRows) -> None:
    assert len(columnar) == 3
    assert list(columnar) == EXPECTED
    assert [list(row.values) for row in columnar] == [["a", "b"]] * 3
    assert columnar.file == FILE
    assert columnar.lines == [2, 3, 5]
    assert columnar.columns == {"a": ["1", None, "3"], "b": [None, "y", "z"]}


def test_columnar_rows_indexing(columnar: ColumnarRows) -> None:
    assert columnar[0] == EXPECTED[0]
    assert columnar[-1] == EXPECTED[2]
    assert columnar[1:] == EXPECTED[1:]
    assert columnar[::-2] == EXPECTED[::-2]
    assert columnar[5:] == []
    assert isinstance(columnar[:2], list)
    with pytest.raises(IndexError):
        columnar[3]
    assert EXPECTED[1] in columnar
    assert columnar.index(EXPECTED[2]) == 2


def test_columnar_rows_equality(columnar: ColumnarRows) -> None:
    assert columnar == EXPECTED
    assert EXPECTED == columnar  # noqa: SIM300 - the reflected comparison, a list on the left
    assert columnar == ColumnarRows(FILE, {"a": ["1", None, "3"], "b": [None, "y", "z"]}, [2, 3, 5])
    assert columnar != EXPECTED[:2]
    assert columnar != [*EXPECTED[:2], EXPECTED[2]._replace(line=4)]
    assert columnar != ColumnarRows("memory://other.csv", columnar.columns, columnar.lines)
    assert columnar != "abc"
    assert columnar != 3
    assert ColumnarRows(FILE, {"a": []}, []) == []
    with pytest.raises(TypeError):
        hash(columnar)


def test_columnar_rows_repr_and_slots(columnar: ColumnarRows) -> None:
    assert repr(columnar) == f"ColumnarRows(file={FILE!r}, columns=['a', 'b'], rows=3)"
    with pytest.raises(AttributeError):
        columnar.extra = 1  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------- the fast path runs


def test_clean_file_is_read_column_wise_across_blocks_and_chunks() -> None:
    lines = _csv(6, 60_000)
    data = b"\n".join(lines) + b"\n"
    assert len(data) > 2 * readers.BLOCK_SIZE
    path = _store(data)
    chunks = list(read_file(path, chunk_size=5000))
    assert len(chunks) == 12
    assert all(isinstance(chunk.rows, ColumnarRows) and len(chunk.rows) == 5000 for chunk in chunks)
    assert chunks[-1].final and chunks[-1].last_line == 60_001
    assert chunks[3].rows[0] == SourceRow(
        {"col0": None, "col1": "v15000é1", "col2": "v15000é2", "col3": "v15000é3", "col4": "v15000é4", "col5": None},
        str(path),
        15_002,
    )
    reference = _read(path, columnar=False, chunk_size=5000)
    assert [_plain(chunk) for chunk in chunks] == reference


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_partition_takes_the_fast_path(tmp_path: Path, gzipped: bool) -> None:
    folder = tmp_path / "loyalty_event" / "dt=2025-06-01"
    folder.mkdir(parents=True)
    data = b"\n".join([b"event_id,event_name,event_time", *(f"e{n},issued,t{n}".encode() for n in range(30))]) + b"\n"
    (folder / ("part-0.csv.gz" if gzipped else "part-0.csv")).write_bytes(gzip.compress(data) if gzipped else data)
    with mock.patch.object(readers, "BLOCK_SIZE", 64):
        chunks = list(read_partition(f"file://{tmp_path}", "loyalty_event", date(2025, 6, 1), chunk_size=7))
    assert [len(chunk.rows) for chunk in chunks] == [7, 7, 7, 7, 2]
    assert all(isinstance(chunk.rows, ColumnarRows) for chunk in chunks)
    assert [row.values["event_id"] for chunk in chunks for row in chunk.rows] == [f"e{n}" for n in range(30)]


def test_a_chunk_mixing_both_paths_holds_a_list() -> None:
    lines = _csv(3, 20)
    lines[18] = b'"quoted",x,y'
    path = _store(b"\n".join(lines) + b"\n")
    with mock.patch.object(readers, "BLOCK_SIZE", 64):
        chunks = list(read_file(path, chunk_size=6))
    kinds = [type(chunk.rows).__name__ for chunk in chunks]
    assert kinds == ["ColumnarRows", "ColumnarRows", "list", "list"]
    assert [_plain(chunk) for chunk in chunks] == _read(path, columnar=False, block_size=64, chunk_size=6)


def test_a_defect_in_the_first_block_keeps_the_whole_file_on_the_line_path() -> None:
    lines = _csv(3, 40)
    lines[3] = b"a,b\r"
    path = _store(b"\n".join(lines) + b"\n")
    with mock.patch.object(readers, "BLOCK_SIZE", 64):
        assert all(isinstance(chunk.rows, list) for chunk in read_file(path, chunk_size=7))
    _assert_parity(path, block_size=64, chunk_size=7)


# --------------------------------------------------------------------------------- parity, hand-picked


DEFECTS = {
    "quote": b'x,"y",z',
    "quoted line break": b'x,"y\nstill y",z',
    "open quote": b'x,"y,z',
    "carriage return": b"x,y,z\r",
    "inner carriage return": b"x,y\rq,z",
    "undecodable": b"x,\xff\xfe,z",
    "cut utf-8": b"x,\xc3,z",
    "ragged short": b"x,y",
    "ragged long": b"x,y,z,w",
    "ragged pair long then short": b"x,y,z,w,v\nq",  # as many commas as two lines should have
    "ragged pair short then long": b"q\nx,y,z,w,v",
    "ragged pair off by one": b"x,y,z,w\nq,r",
    "blank": b"",
    "blank with cr": b"\r",
    "overlong": b"x," + b"y" * 300 + b",z",
    "overlong quoted": b'x,"' + b"y" * 300 + b'",z',
    "bom": b"\xef\xbb\xbfx,y,z",
}


@pytest.mark.parametrize("where", [1, 25, 58])
@pytest.mark.parametrize("defect", list(DEFECTS))
def test_parity_with_a_defect(defect: str, where: int) -> None:
    lines = _csv(3, 60)
    lines.insert(where, DEFECTS[defect])
    path = _store(b"\n".join(lines) + b"\n")
    for chunk_size in (1, 7, 5000):
        _assert_parity(path, block_size=256, chunk_size=chunk_size, max_line_bytes=200)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n",
        b"a,b\n",
        b"a,b",
        b"\xef\xbb\xbfa,b\n1,2\n",
        b"\n\n\na,b\n1,2\n3,4\n",
        b"a,b\n1,2\n3,4",
        b"a,b\n1,2\n3,4\n\n\n",
        b"a,b\n1,2\n3,4\n\r\n",
        b'"a","b\nc"\n1,2\n3,4\n',
        b"a,a\n1,2\n",
        b"a,b\n,\n,\n",
        b"a\n1\n\n2\n",
        b"a\n1\n2\n",
        b"a\n1,2\n3\n",
        b"a,b,c\n1,2,3,4,5\n6\n",
        b"a,b,c\n1\n2,3,4,5,6\n",
        b"a,b,c\n1,2,3\n4,5,6,7,8\n9\n",
        b"a,b\n\xff,2\n",
        b"a," + b"b" * 500 + b"\n1,2\n",
    ],
)
def test_parity_small_files(data: bytes) -> None:
    path = _store(data)
    for block_size in (1, 3, 64, readers.BLOCK_SIZE):
        _assert_parity(path, block_size=block_size, chunk_size=1, max_line_bytes=200)
        _assert_parity(path, block_size=block_size, chunk_size=7, max_line_bytes=200)


def test_parity_missing_columns() -> None:
    path = _store(b"\n".join(_csv(2, 10)) + b"\n")
    _assert_parity(path, block_size=32, chunk_size=3, required_columns=["col0", "absent"])
    _assert_parity(path, block_size=32, chunk_size=3, required_columns=["col0", "col1"])


def test_parity_header_after_megabytes_of_blank_lines() -> None:
    path = _store(b"\n" * (5 << 20) + b"\n".join(_csv(2, 10)) + b"\n")
    assert _read(path, columnar=True, chunk_size=4) == _read(path, columnar=False, chunk_size=4)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95, 1.0])
def test_parity_gzip_plain_truncated_and_corrupt(cut: float) -> None:
    data = gzip.compress(b"\n".join(_csv(4, 3000)) + b"\n", compresslevel=1)
    packed = _store(data[: int(len(data) * cut)] if cut < 1 else data, "part-0.csv.gz")
    for chunk_size in (7, 5000):
        chunks = _assert_parity(packed, block_size=4096, chunk_size=chunk_size)
        assert bool(chunks[-1][3]) == (cut < 1)
    corrupt = bytearray(data)
    corrupt[len(data) // 2 : len(data) // 2 + 40] = b"\x00" * 40
    _assert_parity(_store(bytes(corrupt), "part-0.csv.gz"), block_size=4096, chunk_size=500)


def test_parity_gzip_cut_inside_a_line_spanning_blocks() -> None:
    raw = b"\n".join(_csv(2, 50)) + b"\n" + b"q" * 3000
    stream = zlib.compressobj(wbits=31)
    data = stream.compress(raw) + stream.flush(zlib.Z_SYNC_FLUSH)  # every byte inflates; no end marker
    _assert_parity(_store(data, "part-0.csv.gz"), block_size=256, chunk_size=7, max_line_bytes=1000)
    _assert_parity(_store(data, "part-0.csv.gz"), block_size=256, chunk_size=7, max_line_bytes=5000)


def test_parity_large_clean_file_with_late_defect() -> None:
    lines = _csv(5, 40_000)
    lines[-3] = b"x,y"
    path = _store(b"\n".join(lines) + b"\n")
    reference = _read(path, columnar=False, chunk_size=5000)
    fast = list(read_file(path, chunk_size=5000))
    assert [_plain(chunk) for chunk in fast] == reference
    assert isinstance(fast[0].rows, ColumnarRows)
    assert isinstance(fast[-1].rows, list)


# ------------------------------------------------------------------------------------ parity, generated

CLEAN_FIELD = st.text(st.sampled_from(list("ab9 ;é山🙂")), max_size=4)
ODD_LINE = st.sampled_from(sorted(DEFECTS.values()))


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV file of mostly clean rows: sometimes none but clean ones, else one odd line in about four."""
    width = draw(st.integers(1, 4))
    lines = [",".join(f"c{column}" for column in range(width)).encode()]
    if draw(st.booleans()):
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[:0] = [b""] * draw(st.integers(0, 2))
    clean = st.lists(CLEAN_FIELD, min_size=width, max_size=width).map(lambda values: ",".join(values).encode())
    record = st.one_of(clean, clean, clean, ODD_LINE) if draw(st.booleans()) else clean
    data = b"\n".join([*lines, *draw(st.lists(record, max_size=80))])
    return data + draw(st.sampled_from([b"", b"\n", b"\n\n", b"\r\n"]))


@SETTINGS
@given(
    data=csv_files(),
    block_size=st.one_of(st.integers(1, 8), st.integers(16, 400)),
    chunk_size=st.sampled_from([1, 2, 7, 5000]),
    packing=st.sampled_from(["plain", "gzip", "truncated"]),
    max_line_bytes=st.sampled_from([40, 1000]),
    resume_line=st.integers(-1, 70),
    resume_chunk=st.integers(-1, 20),
)
def test_generated_files_read_the_same_on_both_paths(
    data: bytes,
    block_size: int,
    chunk_size: int,
    packing: str,
    max_line_bytes: int,
    resume_line: int,
    resume_chunk: int,
) -> None:
    if packing != "plain":
        data = gzip.compress(data)
        data = data[: len(data) - 9] if packing == "truncated" else data
    path = _store(data, "part-0.csv.gz" if packing != "plain" else "part-0.csv")
    options: dict[str, Any] = {"block_size": block_size, "chunk_size": chunk_size, "max_line_bytes": max_line_bytes}
    assert _read(path, columnar=True, **options) == _read(path, columnar=False, **options)
    for resume in ({"start_after_line": resume_line}, {"start_after_chunk": resume_chunk}):
        assert _read(path, columnar=True, **options, **resume) == _read(path, columnar=False, **options, **resume)
