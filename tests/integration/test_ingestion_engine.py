"""The ingestion engine over real sockets against the AEP emulator: streaming with mixed 207 results,
transient per-message failures, throttling and a request the hook gives up on; batch mode; dead letters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_provider_capillary.hooks.aep import AEPHook
from airflow_provider_capillary.ingestion import (
    BatchIngestionError,
    BatchIngestor,
    DeadLetterWriter,
    OutgoingRecord,
    StreamingIngestionError,
    StreamingSender,
    line_from_rejection,
)
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator, FaultPlan

pytestmark = pytest.mark.integration

PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
FIELD_GROUPS = [
    "https://ns.adobe.com/xdm/context/identitymap",
    "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details",
]


class Target:
    """The AEP objects one test streams into."""

    def __init__(self, hook: AEPHook) -> None:
        self.schema_id = hook.create_schema("Engine Profiles", PROFILE_CLASS, FIELD_GROUPS)["$id"]
        self.dataset_id = hook.create_dataset("Engine Profiles", self.schema_id)
        connection_id = hook.create_streaming_connection("Engine Streaming")
        self.inlet_id, _ = hook.get_inlet(connection_id)
        source_id = hook.create_source_connection("engine source", connection_id)
        target_id = hook.create_target_connection("engine target", self.dataset_id, self.schema_id)
        self.flow_id = hook.create_dataflow("engine flow", source_id, target_id)
        self.org_id = hook.settings.org_id

    def sender(self, hook: AEPHook, **kwargs: Any) -> StreamingSender:
        return StreamingSender(
            hook,
            inlet=self.inlet_id,
            dataset_id=self.dataset_id,
            schema_id=self.schema_id,
            flow_id=self.flow_id,
            org_id=self.org_id,
            **kwargs,
        )


def record(number: int, *, invalid: bool = False, pad: int = 0) -> OutgoingRecord:
    entity: dict[str, Any] = {
        "_id": f"cap-profile-{number}",
        "identityMap": {"CAPLOYALTY": [{"id": f"C{number}", "authenticatedState": "authenticated", "primary": True}]},
        "loyalty": {"points": "lots" if invalid else number * 1.5, "tier": "gold", "program": "x" * pad},
    }
    row = {"values": {"customer_id": f"C{number}"}, "file": "file:///extract/part-0.csv", "line": number + 2}
    return OutgoingRecord(entity["_id"], orjson.dumps(entity), row)


def dcs_bodies(emulator: AEPEmulator) -> list[int]:
    return [
        int(entry["headers"]["Content-Length"]) for entry in emulator.journal if "/collection/batch/" in entry["path"]
    ]


def wait_for_chunks(sender: StreamingSender, count: int) -> list[Any]:
    results: list[Any] = []
    deadline = time.monotonic() + 20
    while len(results) < count and time.monotonic() < deadline:
        results += list(sender.completed())
        time.sleep(0.01)
    return results


def test_mixed_results_transient_failures_and_dead_letters(
    aep_emulator: AEPEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = AEPHook()
    target = Target(hook)
    monkeypatch.setattr(aep_emulator, "faults", FaultPlan(seed=11, partial_rate=0.1))
    chunks = {chunk: [record(chunk * 1000 + i, invalid=i % 37 == 5) for i in range(250)] for chunk in range(6)}
    chunks[3][100] = record(3100, pad=40_000)  # larger than a whole request
    valid = {r.record_id for rs in chunks.values() for r in rs if b'"lots"' not in r.entity_json} - {"cap-profile-3100"}

    reported = []
    with target.sender(hook, max_request_bytes=30_000, max_message_retries=10, retry_backoff=0.02) as sender:
        for chunk, records in chunks.items():
            sender.submit(chunk, records)
            reported += list(sender.completed())
        reported += sender.close()

    assert sorted(aep_emulator.state.accepted_ids(target.dataset_id)) == sorted(valid)
    assert [result.chunk for result in reported] == list(range(6))
    for result in reported:
        assert result.accepted + len(result.rejected) == result.submitted == 250
    rejected = {r.record.record_id: r for result in reported for r in result.rejected}
    assert set(rejected) == {r.record_id for rs in chunks.values() for r in rs} - valid
    too_large = rejected.pop("cap-profile-3100")
    assert (too_large.reason, too_large.status) == ("record_too_large", None)
    for rejection in rejected.values():
        assert (rejection.reason, rejection.status) == ("aep_rejected", 400)
        assert "points" in rejection.message and "schema validation" in rejection.message
    assert sum(result.retried for result in reported) > 0
    assert sender.stats.retried == sum(result.retried for result in reported)
    assert sender.stats.accepted == len(valid)
    assert all(size <= 30_000 for size in dcs_bodies(aep_emulator))
    assert max(dcs_bodies(aep_emulator)) > 25_000  # requests are packed, not one per record

    writer = DeadLetterWriter(f"file://{tmp_path}/dead")
    for result in reported:
        writer.write("customer", result.chunk, [line_from_rejection(r) for r in result.rejected])
    lines = [orjson.loads(line) for line in (tmp_path / "dead/customer/part-000000.jsonl").read_bytes().splitlines()]
    assert len(lines) == len(reported[0].rejected) > 0
    assert lines[0]["aep_error"]["status"] == 400
    assert lines[0]["row"]["values"]["customer_id"] == lines[0]["payload"]["identityMap"]["CAPLOYALTY"][0]["id"]
    assert "emulator-client-secret" not in (tmp_path / "dead/customer/part-000000.jsonl").read_text()


def test_throttling_slows_down_and_still_delivers(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    target = Target(hook)
    aep_emulator.faults.script(r"/collection/batch/", 429, times=2, retry_after=0)
    with target.sender(hook, concurrency=2, max_request_bytes=10_000) as sender:
        sender.submit(0, [record(i) for i in range(200)])
        (result,) = sender.close()
    assert result.accepted == 200
    assert sender.stats.throttled == 2
    assert sender.limiter.fraction < 1.0
    assert len(aep_emulator.state.accepted_ids(target.dataset_id)) == 200


def test_a_request_the_hook_gives_up_on_fails_the_task_after_the_rest_settled(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook(max_attempts=3)
    target = Target(hook)
    sender = target.sender(hook, concurrency=1)
    sender.submit(0, [record(i) for i in range(10)])
    assert [r.chunk for r in wait_for_chunks(sender, 1)] == [0]
    aep_emulator.faults.script(r"/collection/batch/", 503, times=3, retry_after=1)
    sender.submit(1, [record(100 + i) for i in range(10)])  # its request meets the three 503s
    sender.submit(2, [record(200 + i) for i in range(10)])
    with pytest.raises(StreamingIngestionError) as info:
        sender.close()
    assert info.value.failed_chunks == [1]
    assert info.value.completed == []  # chunk 2 settled, but nothing past the failed chunk is reported
    assert info.value.status == 503
    accepted = set(aep_emulator.state.accepted_ids(target.dataset_id))
    assert accepted == {f"cap-profile-{n}" for n in [*range(10), *range(200, 210)]}


def test_batch_mode_lands_every_record_in_bounded_files(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    target = Target(hook)
    records = [record(i) for i in range(120)]
    with BatchIngestor(hook, dataset_id=target.dataset_id, max_file_bytes=4_000, poll_interval=0.05, timeout=20) as b:
        b.add(records[:50])
        b.add(records[50:])
        result = b.finish()
    assert result.status == "success"
    assert hook.get_batch(result.batch_id)["recordCount"] == 120
    assert sorted(aep_emulator.state.accepted_ids(target.dataset_id)) == sorted(r.record_id for r in records)
    uploads = [e for e in aep_emulator.journal if e["method"] == "PUT" and "/files/" in e["path"]]
    sizes = [int(e["headers"]["Content-Length"]) for e in uploads]
    assert len(result.files) == len(uploads) > 1
    assert all(size <= 4_000 for size in sizes)
    assert sum(sizes) == result.bytes == sum(len(r.entity_json) + 1 for r in records)


def test_batch_mode_surfaces_a_failed_batch(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    target = Target(hook)
    with BatchIngestor(hook, dataset_id=target.dataset_id, poll_interval=0.05, timeout=20) as batch:
        batch.add([record(1), record(2, invalid=True), record(3)])
        with pytest.raises(BatchIngestionError) as info:
            batch.finish()
    assert info.value.errors
    assert "row 2" in str(info.value)
    assert aep_emulator.state.accepted_ids(target.dataset_id) == []


def test_random_faults_lose_nothing_and_add_nothing(aep_emulator: AEPEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = AEPHook(max_retry_wait=0.2)
    target = Target(hook)
    plan = FaultPlan(seed=3, rate_429=0.05, rate_5xx=0.1, drop_rate=0.05, retry_after=0, partial_rate=0.05)
    monkeypatch.setattr(aep_emulator, "faults", plan)
    chunks = {chunk: [record(chunk * 1000 + i, invalid=i == 7) for i in range(150)] for chunk in range(8)}
    with target.sender(hook, concurrency=3, max_request_bytes=12_000, retry_backoff=0.02, max_message_retries=10) as s:
        for chunk, records in chunks.items():
            s.submit(chunk, records)
        results = s.close()
    assert [r.chunk for r in results] == list(range(8))
    assert all(r.accepted == 149 and len(r.rejected) == 1 for r in results)
    valid = {r.record_id for records in chunks.values() for r in records if b'"lots"' not in r.entity_json}
    assert sorted(aep_emulator.state.accepted_ids(target.dataset_id)) == sorted(valid)
    assert s.stats.requests > 8 * 150 * 400 // 12_000  # several requests per chunk really went out
    assert s.stats.retried > 0  # per-message transient failures happened and were re-sent ...
    faulted = [e for e in aep_emulator.journal if "/collection/batch/" in e["path"] and e.get("status", 207) != 207]
    assert faulted  # ... and whole requests failed and were retried by the hook


def test_the_engine_never_exceeds_its_rate_over_real_sockets(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    target = Target(hook)
    rate, count = 2_000, 4_000
    records = [record(i) for i in range(count)]
    with target.sender(hook, max_records_per_second=rate, max_request_bytes=40_000) as sender:
        started = time.monotonic()
        for chunk in range(0, count, 500):
            sender.submit(chunk, records[chunk : chunk + 500])
        sender.close()
        elapsed = time.monotonic() - started
    burst = rate * 0.1
    print(f"engine: {count} records in {elapsed:.2f} s = {count / elapsed:.0f}/s (limit {rate}/s, burst {burst:.0f})")
    assert count <= rate * elapsed + burst
    assert len(aep_emulator.state.accepted_ids(target.dataset_id)) == count
