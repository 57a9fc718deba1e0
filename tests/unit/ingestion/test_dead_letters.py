"""DeadLetterWriter and the line builders: deterministic part files on any object store, rewrites replace."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import fsspec
import orjson
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach

from airflow_provider_capillary.extracts.records import ExtractError, SourceRow
from airflow_provider_capillary.ingestion.dead_letters import (
    DeadLetterWriter,
    line_from_extract_error,
    line_from_mapping,
    line_from_rejection,
    serialise_line,
)
from airflow_provider_capillary.ingestion.sender import OutgoingRecord, Rejection
from airflow_provider_capillary.xdm.mapping import DeadLetter

ROW = SourceRow({"customer_id": "C1", "points": "lots", "amount": None}, "file:///x/part-0.csv", 17)
AEP_MESSAGE = "inletId: [i] imsOrgId: [o] Message failed schema validation: #/loyalty/points: expected Number"


def rejection(record_id: str = "cap-1") -> Rejection:
    entity = orjson.dumps({"_id": record_id, "loyalty": {"points": "lots"}})
    return Rejection(OutgoingRecord(record_id, entity, ROW), "aep_rejected", 400, AEP_MESSAGE)


def read_lines(path: ObjectStoragePath) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_line_from_rejection_keeps_row_payload_and_aep_error() -> None:
    line = orjson.loads(orjson.dumps(line_from_rejection(rejection())))
    assert line == {
        "reason": "aep_rejected",
        "field": None,
        "value": None,
        "detail": AEP_MESSAGE,
        "row": {"file": "file:///x/part-0.csv", "line": 17, "values": ROW.values, "raw": None},
        "record_id": "cap-1",
        "payload": {"_id": "cap-1", "loyalty": {"points": "lots"}},
        "aep_error": {"status": 400, "message": AEP_MESSAGE},
    }


def test_line_from_rejection_too_large_has_no_aep_error_and_mapping_origins_work() -> None:
    record = OutgoingRecord("big", b'{"_id":"big"}', {"values": {"a": 1}, "file": "f", "line": 2})
    line = line_from_rejection(Rejection(record, "record_too_large", None, "too big"))
    assert line["aep_error"] is None
    assert line["row"] == {"file": "f", "line": 2, "values": {"a": 1}, "raw": None}
    opaque = line_from_rejection(Rejection(record._replace(origin=None), "record_too_large", None, "x"))
    assert opaque["row"] == {"file": None, "line": None, "values": None, "raw": None}
    # AEP refused it but its 207 element had no usable statusCode: AEP's message is still kept as its error.
    odd = line_from_rejection(Rejection(record, "aep_rejected", None, "no status"))
    assert odd["aep_error"] == {"status": None, "message": "no status"}


def test_line_from_mapping_and_extract_error() -> None:
    letter = DeadLetter(
        "file:///x/part-0.csv", 3, "invalid_integer", "points", "lots", "points is not an integer", ROW.values, None
    )
    line = line_from_mapping(letter)
    assert (line["reason"], line["field"], line["payload"], line["record_id"]) == (
        "invalid_integer",
        "points",
        None,
        None,
    )
    assert (line["value"], line["detail"]) == ("lots", "points is not an integer")
    assert line["row"]["line"] == 3
    error = ExtractError("file:///x/part-0.csv", 9, "ragged_row", "expected 3 fields, got 4", "a,b,c,d")
    extract = line_from_extract_error(error)
    assert (extract["reason"], extract["row"]["raw"], extract["row"]["values"]) == ("ragged_row", "a,b,c,d", None)


def test_files_are_deterministic_and_rewrites_replace(tmp_path: Path) -> None:
    writer = DeadLetterWriter(f"file://{tmp_path}/run-1")
    path = writer.write("loyalty_event", 12, [line_from_rejection(rejection(f"cap-{i}")) for i in range(3)])
    assert path == writer.path_for("loyalty_event", 12)
    assert str(path) == f"file://{tmp_path}/run-1/loyalty_event/part-000012.jsonl"
    first = path.read_bytes()
    assert [line["record_id"] for line in read_lines(path)] == ["cap-0", "cap-1", "cap-2"]

    # A retried task writes the same chunk again: same bytes, one file.
    DeadLetterWriter(f"file://{tmp_path}/run-1").write(
        "loyalty_event", 12, [line_from_rejection(rejection(f"cap-{i}")) for i in range(3)]
    )
    assert path.read_bytes() == first
    # ... or with different dead letters: replaced, not appended.
    writer.write("loyalty_event", 12, [line_from_rejection(rejection("cap-9"))])
    assert [line["record_id"] for line in read_lines(path)] == ["cap-9"]
    assert sorted(p.name for p in (tmp_path / "run-1" / "loyalty_event").iterdir()) == ["part-000012.jsonl"]
    # ... or with none: the stale file goes.
    assert writer.write("loyalty_event", 12, []) is None
    assert not path.exists()
    assert writer.written == 4  # this writer wrote 3 + 1 lines


def test_memory_store_and_unusual_values() -> None:
    attach("memory", fs=fsspec.filesystem("memory"))
    writer = DeadLetterWriter(ObjectStoragePath("memory://dead-letters/run-2"))
    row = SourceRow({"amount": Decimal("1.10"), "blob": b"\x00\x01", 3: {1, 2}}, "memory://x", 1)  # type: ignore[dict-item]
    record = OutgoingRecord("a", b'{"_id":"a"}', row)
    path = writer.write("transaction", 0, [line_from_rejection(Rejection(record, "aep_rejected", 400, "bad"))])
    assert path is not None
    assert str(path) == "memory://dead-letters/run-2/transaction/part-000000.jsonl"
    (line,) = read_lines(path)
    assert line["row"]["values"] == {"amount": "1.10", "blob": "AAE=", "3": [1, 2]}
    assert writer.write("customer", 5, []) is None  # nothing to remove is fine


@pytest.mark.parametrize(("record_type", "chunk"), [("a/b", 1), ("..", 1), ("", 1), ("customer", -1)])
def test_bad_part_names_are_refused(record_type: str, chunk: int) -> None:
    with pytest.raises(ValueError):
        DeadLetterWriter("memory://x").path_for(record_type, chunk)


def test_a_row_orjson_cannot_write_is_still_written() -> None:
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    line = serialise_line({"reason": "invalid_value", "row": {"values": {"items": deep, "points": 10**30}}})
    written = orjson.loads(line)
    values = written["row"]["values"]
    assert values["points"] == str(10**30)
    depth, node = 0, values["items"]
    while isinstance(node, list):
        depth, node = depth + 1, node[0]
    assert 150 < depth < 256
    assert "elided" in node
