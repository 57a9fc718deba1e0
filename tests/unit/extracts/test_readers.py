from __future__ import annotations

import csv
import gc
import gzip
import io
import json
import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach

from airflow_provider_capillary.extracts import (
    MAX_RAW_CHARS,
    REQUIRED_COLUMNS,
    ErrorCode,
    ExtractChunk,
    ExtractError,
    SourceRow,
    read_file,
    read_partition,
)

if TYPE_CHECKING:
    from pathlib import Path

DAY = date(2025, 6, 1)
SAMPLES = {
    "customer": "customers.csv",
    "transaction": "transactions.jsonl",
    "loyalty_event": "loyalty_events.csv",
}


@pytest.fixture(params=["file", "memory"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStoragePath:
    """An empty extract root on the local disk or in fsspec's in-memory filesystem."""
    if request.param == "file":
        return ObjectStoragePath(f"file://{tmp_path}")
    attach("memory", fs=fsspec.filesystem("memory"))
    return ObjectStoragePath(f"memory://extracts-{uuid.uuid4().hex}")


def _write(root: ObjectStoragePath, relative: str, data: bytes) -> ObjectStoragePath:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _read(path: ObjectStoragePath | str, **kwargs: Any) -> tuple[list[SourceRow], list[ExtractError]]:
    chunks = list(read_file(path, **kwargs))
    return [row for chunk in chunks for row in chunk.rows], [error for chunk in chunks for error in chunk.errors]


def _rows_of(chunks: list[ExtractChunk]) -> list[tuple[str, int, dict[str, Any]]]:
    return [(row.file, row.line, row.values) for chunk in chunks for row in chunk.rows]


def _expected_csv(text: str) -> list[tuple[int, dict[str, str | None]]]:
    """What the sample CSV holds, by the csv module: (start line, values with '' as None)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows, line = [], 1
    for record in reader:
        rows.append((line + 1, {key: value or None for key, value in record.items()}))
        line = reader.line_num
    return rows


@pytest.fixture
def samples(shared_dir: Path) -> dict[str, bytes]:
    return {
        record_type: (shared_dir / "samples/capillary" / name).read_bytes() for record_type, name in SAMPLES.items()
    }


@pytest.fixture
def sample_root(root: ObjectStoragePath, samples: dict[str, bytes]) -> ObjectStoragePath:
    """The three sample files in the documented layout, one plain part each."""
    for record_type, name in SAMPLES.items():
        _write(root, f"{record_type}/dt=2025-06-01/part-0000.{name.rsplit('.', 1)[1]}", samples[record_type])
    return root


class TestSamples:
    @pytest.mark.parametrize(
        ("record_type", "count", "first_line", "last_line"),
        [("customer", 22, 2, 23), ("transaction", 20, 1, 20), ("loyalty_event", 33, 2, 34)],
    )
    def test_counts_and_lines(
        self, sample_root: ObjectStoragePath, record_type: str, count: int, first_line: int, last_line: int
    ) -> None:
        chunks = list(read_partition(sample_root, record_type, DAY))
        rows = [row for chunk in chunks for row in chunk.rows]
        assert [error for chunk in chunks for error in chunk.errors] == []
        assert len(rows) == count
        assert [row.line for row in rows] == list(range(first_line, last_line + 1))
        assert chunks[-1].final and chunks[-1].last_line == last_line

    @pytest.mark.parametrize("record_type", ["customer", "loyalty_event"])
    def test_csv_values_match_the_csv_module(
        self, sample_root: ObjectStoragePath, samples: dict[str, bytes], record_type: str
    ) -> None:
        rows = [row for chunk in read_partition(sample_root, record_type, DAY) for row in chunk.rows]
        assert [(row.line, row.values) for row in rows] == _expected_csv(samples[record_type].decode())

    def test_customer_spot_checks(self, sample_root: ObjectStoragePath) -> None:
        rows = {row.line: row for chunk in read_partition(sample_root, "customer", DAY) for row in chunk.rows}
        assert rows[7].values["last_name"] == "O'Connor, Jr."
        assert rows[6].values["email"] is None
        assert rows[6].values["customer_id"] == "564100005"
        assert (rows[3].values["first_name"], rows[3].values["last_name"]) == ("José", "Núñez")
        assert (rows[4].values["first_name"], rows[4].values["last_name"]) == ("Zoë", "Ångström")
        assert (rows[5].values["first_name"], rows[5].values["last_name"]) == ("太郎", "山田")
        assert rows[8].values["email"] == " Liam.Walker@Example.COM "
        assert rows[2].file == str(sample_root / "customer/dt=2025-06-01/part-0000.csv")
        assert list(rows[2].values)[:3] == ["customer_id", "external_id", "mobile"]

    def test_jsonl_values_are_parsed_json(self, sample_root: ObjectStoragePath, samples: dict[str, bytes]) -> None:
        rows = [row for chunk in read_partition(sample_root, "transaction", DAY) for row in chunk.rows]
        assert [row.values for row in rows] == [json.loads(line) for line in samples["transaction"].splitlines()]
        assert rows[0].values["line_items"][0]["item_code"] == "SKU-100235"
        assert rows[7].values["gross_amount"] == "19.98"  # numbers as strings stay strings (line 8)
        assert rows[8].values["customer_id"] is None

    @pytest.mark.parametrize("record_type", list(SAMPLES))
    def test_gzip_reads_like_plain(self, root: ObjectStoragePath, samples: dict[str, bytes], record_type: str) -> None:
        suffix = SAMPLES[record_type].rsplit(".", 1)[1]
        plain = _write(root, f"plain/part-0.{suffix}", samples[record_type])
        packed = _write(root, f"packed/part-0.{suffix}.gz", gzip.compress(samples[record_type]))
        plain_rows, plain_errors = _read(plain)
        packed_rows, packed_errors = _read(packed)
        assert plain_errors == packed_errors == []
        assert [(row.line, row.values) for row in packed_rows] == [(row.line, row.values) for row in plain_rows]
        assert {row.file for row in packed_rows} == {str(packed)}

    def test_gzip_is_recognised_by_content(self, root: ObjectStoragePath, samples: dict[str, bytes]) -> None:
        path = _write(root, "part-0.csv", gzip.compress(samples["customer"]))
        rows, errors = _read(path)
        assert (len(rows), errors) == (22, [])

    def test_multi_member_gzip(self, root: ObjectStoragePath, samples: dict[str, bytes]) -> None:
        lines = samples["transaction"].splitlines(keepends=True)
        path = _write(root, "part-0.jsonl.gz", gzip.compress(b"".join(lines[:7])) + gzip.compress(b"".join(lines[7:])))
        rows, errors = _read(path)
        assert errors == []
        assert [row.line for row in rows] == list(range(1, 21))


class TestPartsAndChunks:
    @pytest.fixture
    def parts_root(self, root: ObjectStoragePath, samples: dict[str, bytes]) -> ObjectStoragePath:
        """customers.csv split into three parts named so that only a natural sort orders them."""
        header, *lines = samples["customer"].splitlines(keepends=True)
        for name, part in [("part-10.csv", lines[15:]), ("part-2.csv.gz", lines[5:15]), ("part-1.csv", lines[:5])]:
            data = header + b"".join(part)
            _write(root, f"customer/dt=2025-06-01/{name}", gzip.compress(data) if name.endswith(".gz") else data)
        return root

    def test_parts_in_natural_order(self, parts_root: ObjectStoragePath, samples: dict[str, bytes]) -> None:
        chunks = list(read_partition(parts_root, "customer", DAY))
        assert [chunk.file.rsplit("/", 1)[1] for chunk in chunks] == ["part-1.csv", "part-2.csv.gz", "part-10.csv"]
        values = [row.values for chunk in chunks for row in chunk.rows]
        assert values == [expected for _, expected in _expected_csv(samples["customer"].decode())]
        assert [row.line for row in chunks[1].rows] == list(range(2, 12))

    @pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
    def test_chunk_sizes_give_identical_rows(self, parts_root: ObjectStoragePath, chunk_size: int) -> None:
        reference = _rows_of(list(read_partition(parts_root, "customer", DAY, chunk_size=3)))
        chunks = list(read_partition(parts_root, "customer", DAY, chunk_size=chunk_size))
        assert _rows_of(chunks) == reference
        for file in {chunk.file for chunk in chunks}:
            own = [chunk for chunk in chunks if chunk.file == file]
            assert [chunk.index for chunk in own] == list(range(len(own)))
            assert [chunk.final for chunk in own] == [False] * (len(own) - 1) + [True]
            assert all(row.file == file for chunk in own for row in chunk.rows)
            assert all(0 < len(chunk.rows) <= chunk_size for chunk in own)
            lasts = [chunk.last_line for chunk in own]
            assert lasts == sorted(lasts)
            assert all(row.line <= chunk.last_line for chunk in own for row in chunk.rows)

    @pytest.mark.parametrize("chunk_size", [1, 4, 10_000])
    def test_resume_after_any_chunk_gives_exactly_the_rest(
        self, parts_root: ObjectStoragePath, chunk_size: int
    ) -> None:
        chunks = list(read_partition(parts_root, "customer", DAY, chunk_size=chunk_size))
        for position, chunk in enumerate(chunks):
            by_line = list(
                read_partition(parts_root, "customer", DAY, chunk_size=chunk_size, resume_after=chunk.position)
            )
            by_index = list(
                read_partition(
                    parts_root, "customer", DAY, chunk_size=chunk_size,
                    resume_after=(chunk.file, chunk.index), resume_by="chunk",
                )
            )  # fmt: skip
            rest = chunks[position + 1 :]
            assert by_line == rest
            assert by_index == rest

    def test_resume_inside_a_chunk_and_with_another_chunk_size(self, parts_root: ObjectStoragePath) -> None:
        full = _rows_of(list(read_partition(parts_root, "customer", DAY, chunk_size=4)))
        second = full[5][0]
        resumed = list(read_partition(parts_root, "customer", DAY, chunk_size=3, resume_after=(second, 6)))
        assert _rows_of(resumed) == [row for row in full if row[0] != full[0][0] and (row[0] != second or row[1] > 6)]
        assert resumed[0].index == 1  # lines 5-7 of part-2 form its second chunk of 3, also when resuming

    def test_resume_from_a_vanished_file_is_refused(self, parts_root: ObjectStoragePath) -> None:
        with pytest.raises(ValueError, match="not in the partition"):
            read_partition(parts_root, "customer", DAY, resume_after=("file:///elsewhere/part-0.csv", 3))

    def test_collector_state_restored(self, parts_root: ObjectStoragePath) -> None:
        assert gc.isenabled()
        for chunk in read_partition(parts_root, "customer", DAY, chunk_size=2):
            assert gc.isenabled(), f"collector left paused while chunk {chunk.index} is handed out"
        gc.disable()
        try:
            list(read_partition(parts_root, "customer", DAY))
            assert not gc.isenabled()
        finally:
            gc.enable()

    def test_bad_arguments_raise_at_the_call(self, parts_root: ObjectStoragePath) -> None:
        with pytest.raises(ValueError, match="chunk_size"):
            read_partition(parts_root, "customer", DAY, chunk_size=0)
        with pytest.raises(ValueError, match="resume_by"):
            read_partition(parts_root, "customer", DAY, resume_by="row")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="file_format"):
            read_file(parts_root / "customer/dt=2025-06-01/part-1.csv", file_format="xml")  # type: ignore[arg-type]


HEADER = b"event_id,event_name,event_time\n"


def _codes(errors: list[ExtractError]) -> list[tuple[int | None, str]]:
    return [(error.line, error.code) for error in errors]


class TestBrokenCsv:
    @pytest.fixture
    def write(self, root: ObjectStoragePath):
        def write(data: bytes, name: str = "part-0.csv") -> ObjectStoragePath:
            return _write(root, f"loyalty_event/dt=2025-06-01/{name}", data)

        return write

    def test_ragged_rows(self, write) -> None:
        path = write(HEADER + b'e1,a,t\ne2,a,t,EXTRA\ne3,a\ne4,"b,c",t,x\ne5,a,t\n')
        rows, errors = _read(path)
        assert [row.line for row in rows] == [2, 6]
        assert _codes(errors) == [(3, "ragged_row"), (4, "ragged_row"), (5, "ragged_row")]
        assert errors[0].detail == "line 3 has 4 fields, the header has 3"
        assert errors[0].raw == "e2,a,t,EXTRA"
        assert errors[0].file == str(path)
        assert not errors[0].file_level

    def test_unbalanced_quote_costs_one_line(self, write) -> None:
        path = write(HEADER + b'e1,a,t\ne2,"broken,t\ne3,a,t\ne4,a,t\ne5,"ok, fine",t\ne6,a,t\n')
        rows, errors = _read(path)
        assert _codes(errors) == [(3, "bad_quoting")]
        assert errors[0].raw == 'e2,"broken,t'
        assert "line 3" in errors[0].detail
        assert [(row.line, row.values["event_id"]) for row in rows] == [
            (2, "e1"),
            (4, "e3"),
            (5, "e4"),
            (6, "e5"),
            (7, "e6"),
        ]
        assert rows[3].values["event_name"] == "ok, fine"

    def test_quote_open_until_end_of_file(self, write) -> None:
        rows, errors = _read(write(HEADER + b'e1,a,t\ne2,"never closed,t\ne3,a,t\ne4,a,t'))
        assert _codes(errors) == [(3, "bad_quoting")]
        assert "never closed" in errors[0].detail
        assert [row.line for row in rows] == [2, 4, 5]

    def test_open_quote_is_bounded_by_max_record_lines(self, write) -> None:
        body = b"".join(b"e%d,a,t\n" % n for n in range(10))
        rows, errors = _read(write(HEADER + b'x,"open,t\n' + body), max_record_lines=3)
        assert _codes(errors) == [(2, "bad_quoting")]
        assert "after 3 lines" in errors[0].detail
        assert [row.line for row in rows] == list(range(3, 13))

    def test_malformed_quotes_on_one_line(self, write) -> None:
        rows, errors = _read(write(HEADER + b'e1,"a"b,t\ne2,a,t\n'))
        assert _codes(errors) == [(2, "bad_quoting")]
        assert "',' expected after '\"'" in errors[0].detail
        assert [row.line for row in rows] == [3]

    def test_multi_line_fields_keep_their_line(self, write) -> None:
        rows, errors = _read(write(HEADER + b'e1,"two\r\nlines",t\ne2,"a ""quoted"" word",t\r\ne3,a,t\n'))
        assert errors == []
        assert [(row.line, row.values["event_name"]) for row in rows] == [
            (2, "two\r\nlines"),
            (4, 'a "quoted" word'),
            (5, "a"),
        ]
        assert rows[1].values["event_time"] == "t"

    def test_quotes_inside_unquoted_fields_are_text(self, write) -> None:
        rows, errors = _read(write(HEADER + b'e1,5" screen,t\ne2,a,t\n'))
        assert errors == []
        assert [row.values["event_name"] for row in rows] == ['5" screen', "a"]

    def test_carriage_return_outside_quotes_is_bad_quoting(self, write) -> None:
        rows, errors = _read(write(HEADER + b'e1,a\rb,t\ne2,"a\rb",t\ne3,"x",a\rb\n'))
        assert [(row.line, row.values["event_name"]) for row in rows] == [(3, "a\rb")]
        assert _codes(errors) == [(2, "bad_quoting"), (4, "bad_quoting")]
        assert errors[0].detail == "malformed quoting on line 2: a carriage return (\\r) inside an unquoted field"

    def test_undecodable_bytes(self, write) -> None:
        rows, errors = _read(write(HEADER + b'e1,a,t\ne2,caf\xe9,t\ne3,"multi\nli\xffne",t\ne4,a,t\n'))
        assert _codes(errors) == [(3, "undecodable_bytes"), (4, "undecodable_bytes")]
        assert errors[0].detail == "line 3 is not valid UTF-8: byte 0xe9 at byte 7 of the line"
        assert errors[0].raw == "e2,caf\\xe9,t"
        assert "line 5" in errors[1].detail
        assert [row.line for row in rows] == [2, 6]

    def test_bom_is_stripped(self, write) -> None:
        rows, errors = _read(write(b"\xef\xbb\xbf" + HEADER + b"e1,a,t\n"), required_columns=["event_id"])
        assert errors == []
        assert rows == [SourceRow({"event_id": "e1", "event_name": "a", "event_time": "t"}, rows[0].file, 2)]

    @pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf"])
    def test_file_without_header(self, write, data: bytes) -> None:
        chunks = list(read_file(write(data)))
        assert len(chunks) == 1
        assert chunks[0].rows == []
        assert _codes(chunks[0].errors) == [(None, "empty_file")]
        assert chunks[0].errors[0].file_level

    def test_header_only_file_gives_one_empty_chunk(self, write) -> None:
        chunks = list(read_file(write(HEADER)))
        assert chunks == [ExtractChunk(chunks[0].file, 0, [], [], 1, True)]

    def test_blank_lines_are_skipped(self, write) -> None:
        rows, errors = _read(write(HEADER + b"\ne1,a,t\r\n\r\n\ne2,,\n\n"))
        assert errors == []
        assert [(row.line, row.values) for row in rows] == [
            (3, {"event_id": "e1", "event_name": "a", "event_time": "t"}),
            (6, {"event_id": "e2", "event_name": None, "event_time": None}),
        ]

    def test_missing_required_columns(self, write) -> None:
        chunks = list(
            read_file(write(b"event_id,event_time\ne1,t\n"), required_columns=REQUIRED_COLUMNS["loyalty_event"])
        )
        assert [chunk.rows for chunk in chunks] == [[]]
        (error,) = chunks[0].errors
        assert (error.line, error.code) == (None, "missing_columns")
        assert error.detail == "header lacks required columns ['event_name']"
        assert error.raw == "event_id,event_time"

    def test_partition_checks_the_record_types_required_columns(self, root: ObjectStoragePath) -> None:
        _write(root, "customer/dt=2025-06-01/part-0.csv", b"customer_id,email\n1,a@example.com\n")
        (chunk,) = read_partition(root, "customer", DAY)
        assert _codes(chunk.errors) == [(None, "missing_columns")]
        assert "loyalty_type" in chunk.errors[0].detail
        (chunk,) = read_partition(root, "customer", DAY, required_columns=())
        assert [row.values for row in chunk.rows] == [{"customer_id": "1", "email": "a@example.com"}]

    def test_duplicate_columns(self, write) -> None:
        (chunk,) = read_file(write(b"a,b,a\n1,2,3\n"))
        assert _codes(chunk.errors) == [(None, "duplicate_columns")]
        assert "['a']" in chunk.errors[0].detail

    def test_quoted_header_and_undecodable_header(self, write) -> None:
        rows, errors = _read(write(b'"event_id","event,name"\n1,2\n', "part-0.csv"))
        assert (errors, rows[0].values) == ([], {"event_id": "1", "event,name": "2"})
        (chunk,) = read_file(write(b"event_id,caf\xe9\n1,2\n", "part-1.csv"))
        assert _codes(chunk.errors) == [(None, "invalid_header")]
        (chunk,) = read_file(write(b'"event_id,x\n1,2\n', "part-2.csv"))
        assert _codes(chunk.errors) == [(None, "invalid_header")]

    def test_truncated_gzip(self, write) -> None:
        body = b"".join(b"e%d,name-%d,t\n" % (n, n) for n in range(20_000))
        packed = gzip.compress(HEADER + body)
        chunks = list(read_file(write(packed[: len(packed) // 2], "part-0.csv.gz"), chunk_size=1_000))
        rows = [row for chunk in chunks for row in chunk.rows]
        errors = [error for chunk in chunks for error in chunk.errors]
        assert len(rows) > 5_000
        assert [row.values["event_id"] for row in rows] == [f"e{n}" for n in range(len(rows))]
        assert _codes(errors) == [(None, "truncated_gzip")]
        assert f"the last complete line read was {len(rows) + 1}" in errors[0].detail
        assert errors[0].raw  # the cut line, not passed off as a row
        assert chunks[-1].errors == errors and chunks[-1].final

    def test_not_gzip_despite_the_name(self, write) -> None:
        (chunk,) = read_file(write(HEADER + b"e1,a,t\n", "part-0.csv.gz"))
        assert (chunk.rows, _codes(chunk.errors)) == ([], [(None, "invalid_gzip")])

    def test_corrupt_gzip(self, write) -> None:
        packed = bytearray(gzip.compress(HEADER + b"e1,a,t\n" * 100))
        packed[20:30] = b"\xff" * 10
        (chunk,) = read_file(write(bytes(packed), "part-0.csv.gz"))
        assert _codes(chunk.errors)[-1] == (None, "invalid_gzip")

    def test_overlong_line(self, write) -> None:
        long_line = b"e2," + b"x" * 5_000 + b",t\n"
        rows, errors = _read(write(HEADER + b"e1,a,t\n" + long_line + b"e3,a,t\n"), max_line_bytes=1_000)
        assert _codes(errors) == [(3, "line_too_long")]
        assert errors[0].raw is not None and len(errors[0].raw) <= MAX_RAW_CHARS
        assert [row.line for row in rows] == [2, 4]

    def test_raw_is_truncated(self, write) -> None:
        _, errors = _read(write(HEADER + b"e1," + b"y" * 10_000 + b",t,extra\n"))
        assert errors[0].code == "ragged_row"
        assert errors[0].raw is not None and len(errors[0].raw) == MAX_RAW_CHARS and errors[0].raw.endswith("…")

    def test_errors_and_rows_share_chunks(self, write) -> None:
        path = write(HEADER + b"e1,a,t\nbad\ne3,a,t\nbad\ne5,a,t\n")
        chunks = list(read_file(path, chunk_size=2))
        assert [([row.line for row in chunk.rows], _codes(chunk.errors)) for chunk in chunks] == [
            ([2], [(3, "ragged_row")]),
            ([4], [(5, "ragged_row")]),
            ([6], []),
        ]
        resumed = list(read_file(path, chunk_size=2, start_after_line=chunks[0].last_line))
        assert resumed == chunks[1:]

    def test_unsupported_format(self, write) -> None:
        (chunk,) = read_file(write(b"{}", "part-0.json"))
        assert _codes(chunk.errors) == [(None, "unsupported_format")]

    def test_explicit_format_overrides_the_name(self, write) -> None:
        rows, errors = _read(write(b'{"a": 1}\n', "part-0.txt"), file_format="jsonl")
        assert (errors, [row.values for row in rows]) == ([], [{"a": 1}])

    def test_missing_file_raises(self, root: ObjectStoragePath) -> None:
        with pytest.raises(FileNotFoundError):
            list(read_file(root / "nope/part-0.csv"))


class TestBrokenJsonl:
    def test_bad_lines_become_errors(self, root: ObjectStoragePath) -> None:
        data = (
            b'\xef\xbb\xbf{"id": 1}\n'
            b"not json\n"
            b"[1, 2]\n"
            b"\n"
            b'{"id": "caf\xe9"}\n'
            b'{"id": 2, "big": 123456789012345678901234567890}\r\n'
            b'{"id": NaN}\n'
            b'{"id": 3, "nested": {"items": [{"qty": "2"}]}}'
        )
        rows, errors = _read(_write(root, "part-0.jsonl", data))
        assert [(row.line, row.values) for row in rows] == [
            (1, {"id": 1}),
            (6, {"id": 2, "big": 123456789012345678901234567890}),
            (8, {"id": 3, "nested": {"items": [{"qty": "2"}]}}),
        ]
        assert _codes(errors) == [
            (2, "invalid_json"),
            (3, "not_an_object"),
            (5, "undecodable_bytes"),
            (7, "invalid_json"),
        ]
        assert errors[0].raw == "not json"
        assert errors[1].detail == "line 3 holds a JSON array, not an object"
        assert errors[2].detail == "line 5: not valid UTF-8: byte 0xe9 at byte 12 of the line"

    def test_empty_file_gives_zero_rows(self, root: ObjectStoragePath) -> None:
        chunks = list(read_file(_write(root, "part-0.jsonl", b"")))
        assert chunks == [ExtractChunk(chunks[0].file, 0, [], [], 0, True)]

    def test_truncated_gzip_keeps_lines_before_the_cut(self, root: ObjectStoragePath) -> None:
        data = b"".join(b'{"n": %d, "pad": "%s"}\n' % (n, b"p" * (n % 50)) for n in range(30_000))
        packed = gzip.compress(data)
        rows, errors = _read(_write(root, "part-0.jsonl.gz", packed[: len(packed) - 100]))
        assert [row.values["n"] for row in rows] == list(range(len(rows)))
        assert len(rows) > 29_000
        assert _codes(errors) == [(None, "truncated_gzip")]
        assert f"the last complete line read was {len(rows)}" in errors[0].detail

    def test_overlong_line(self, root: ObjectStoragePath) -> None:
        data = b'{"a": 1}\n{"b": "' + b"x" * 3_000 + b'"}\n{"c": 3}\n'
        rows, errors = _read(_write(root, "part-0.jsonl", data), max_line_bytes=1_000)
        assert ([row.line for row in rows], _codes(errors)) == ([1, 3], [(2, "line_too_long")])


class TestParquet:
    TABLE = pa.table({"event_id": ["e1", "e2", "e3"], "points": [1.5, None, -2.0], "event_name": ["a", "b", "c"]})

    def _parquet(self, table: pa.Table) -> bytes:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    @pytest.mark.parametrize("name", ["part-0.parquet", "part-0.parquet.gz"])
    def test_rows(self, root: ObjectStoragePath, name: str) -> None:
        data = self._parquet(self.TABLE)
        path = _write(root, name, gzip.compress(data) if name.endswith(".gz") else data)
        chunks = list(read_file(path, chunk_size=2, required_columns=["event_id"]))
        assert [chunk.index for chunk in chunks] == [0, 1]
        assert [(row.line, row.values) for chunk in chunks for row in chunk.rows] == [
            (1, {"event_id": "e1", "points": 1.5, "event_name": "a"}),
            (2, {"event_id": "e2", "points": None, "event_name": "b"}),
            (3, {"event_id": "e3", "points": -2.0, "event_name": "c"}),
        ]
        assert _rows_of(list(read_file(path, start_after_line=2))) == [(str(path), 3, chunks[1].rows[0].values)]

    def test_broken_and_incomplete_files(self, root: ObjectStoragePath) -> None:
        (chunk,) = read_file(_write(root, "part-0.parquet", b"PAR1 not really"))
        assert _codes(chunk.errors) == [(None, "invalid_parquet")]
        (chunk,) = read_file(_write(root, "part-1.parquet", self._parquet(self.TABLE)), required_columns=["event_time"])
        assert _codes(chunk.errors) == [(None, "missing_columns")]
        packed = gzip.compress(self._parquet(self.TABLE))
        (chunk,) = read_file(_write(root, "part-2.parquet.gz", packed[:-30]))
        assert _codes(chunk.errors) == [(None, "truncated_gzip")]


def test_error_codes_are_stable_strings() -> None:
    assert ErrorCode.RAGGED_ROW == "ragged_row"
    assert {code.value for code in ErrorCode} >= {
        "ragged_row", "bad_quoting", "undecodable_bytes", "invalid_json", "empty_file", "truncated_gzip",
        "missing_columns",
    }  # fmt: skip
