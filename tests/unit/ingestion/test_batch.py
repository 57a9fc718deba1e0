"""BatchIngestor with a stub hook: file splitting, streaming from disk, completion, polling and failures.

The main path runs against the emulator in ``tests/integration/test_ingestion_engine.py``.
"""

from __future__ import annotations

from typing import IO, Any

import orjson
import pytest

from airflow_provider_capillary.ingestion.batch import BatchIngestionError, BatchIngestor
from airflow_provider_capillary.ingestion.sender import OutgoingRecord


class StubHook:
    def __init__(self, statuses: list[dict[str, Any]]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[str, ...]] = []
        self.files: dict[str, bytes] = {}

    def create_batch(self, dataset_id: str) -> str:
        self.calls.append(("create", dataset_id))
        return "batch-1"

    def upload_file(self, batch_id: str, dataset_id: str, name: str, data: IO[bytes], *, size: int) -> None:
        assert not isinstance(data, bytes)  # a file object, streamed from disk
        content = data.read()
        assert len(content) == size
        self.files[name] = content
        self.calls.append(("upload", batch_id, dataset_id, name))

    def complete_batch(self, batch_id: str) -> None:
        self.calls.append(("complete", batch_id))

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        self.calls.append(("get", batch_id))
        return {"id": batch_id, **self.statuses.pop(0)}


def records(count: int) -> list[OutgoingRecord]:
    return [OutgoingRecord(f"r{i}", orjson.dumps({"_id": f"r{i}", "n": i}), None) for i in range(count)]


def test_files_split_at_the_bound_and_the_batch_succeeds() -> None:
    hook = StubHook([{"status": "processing"}, {"status": "success", "recordCount": 25}])
    sleeps: list[float] = []
    line = len(records(1)[0].entity_json) + 1  # every record here is 19-20 bytes + newline
    with BatchIngestor(hook, dataset_id="ds", max_file_bytes=100, poll_interval=2, sleep=sleeps.append) as batch:  # type: ignore[arg-type]
        batch.add(records(10))
        batch.add(records(25)[10:])
        result = batch.finish()
    assert result.batch_id == "batch-1"
    assert result.status == "success"
    assert result.records == 25
    assert all(len(content) <= 100 for content in hook.files.values())
    assert result.files == sorted(hook.files) == [f"part-{i:05d}.json" for i in range(len(hook.files))]
    assert len(hook.files) == pytest.approx(25 * line / 100, abs=2)
    lines = b"".join(hook.files[name] for name in result.files).splitlines()
    assert [orjson.loads(raw)["_id"] for raw in lines] == [f"r{i}" for i in range(25)]
    assert result.bytes == sum(len(c) for c in hook.files.values())
    assert hook.calls[0] == ("create", "ds")
    assert hook.calls[-3:] == [("complete", "batch-1"), ("get", "batch-1"), ("get", "batch-1")]
    assert sleeps == [2]


def test_a_record_larger_than_the_bound_gets_its_own_file() -> None:
    hook = StubHook([{"status": "active"}])
    big = OutgoingRecord("big", orjson.dumps({"_id": "big", "pad": "x" * 500}), None)
    batch = BatchIngestor(hook, dataset_id="ds", max_file_bytes=100)  # type: ignore[arg-type]
    batch.add([*records(2), big, *records(1)])
    result = batch.finish()
    assert [len(hook.files[name].splitlines()) for name in result.files] == [2, 1, 1]
    assert result.status == "active"


def test_a_failed_batch_raises_with_aep_errors() -> None:
    errors = [{"code": f"INGEST-{i}", "description": f"row {i} bad", "rows": [i]} for i in range(7)]
    hook = StubHook([{"status": "failed", "errors": errors}])
    batch = BatchIngestor(hook, dataset_id="ds")  # type: ignore[arg-type]
    batch.add(records(3))
    with pytest.raises(BatchIngestionError) as info:
        batch.finish()
    assert info.value.batch_id == "batch-1"
    assert info.value.errors == errors
    assert "INGEST-0: row 0 bad" in str(info.value)
    assert "and 2 more" in str(info.value)


def test_a_batch_that_never_finishes_times_out() -> None:
    hook = StubHook([{"status": "processing"}] * 10)
    batch = BatchIngestor(hook, dataset_id="ds", timeout=0, sleep=lambda _: None)  # type: ignore[arg-type]
    batch.add(records(1))
    with pytest.raises(BatchIngestionError, match="still processing"):
        batch.finish()


def test_no_records_no_batch() -> None:
    hook = StubHook([])
    batch = BatchIngestor(hook, dataset_id="ds")  # type: ignore[arg-type]
    result = batch.finish()
    assert (result.batch_id, result.status, hook.calls) == (None, "empty", [])
    with pytest.raises(RuntimeError, match="already finished"):
        batch.add(records(1))
    with pytest.raises(ValueError, match="max_file_bytes"):
        BatchIngestor(hook, dataset_id="ds", max_file_bytes=0)  # type: ignore[arg-type]
