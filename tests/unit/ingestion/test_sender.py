"""StreamingSender with a stub hook: edge cases of per-message results, ordering and failures.

The main paths run over real sockets in ``tests/integration/test_ingestion_engine.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from airflow_provider_capillary.exceptions import AEPServerError, AEPValidationError
from airflow_provider_capillary.ingestion.sender import (
    AEP_REJECTED,
    OutgoingRecord,
    StreamingIngestionError,
    StreamingSender,
)

Responder = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
IDS = {"inlet": "inlet-1", "dataset_id": "ds", "schema_id": "https://ns.adobe.com/t/schemas/s", "flow_id": "f"}


class StubHook:
    """What the sender uses of AEPHook; ``respond`` answers each request's messages."""

    pool_size = 16

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.on_retry: Callable[[int | None], None] | None = None
        self.session = object()
        self.requests: list[list[str]] = []
        self.lock = threading.Lock()

    def get_access_token(self) -> str:
        return "token"

    def send_messages(self, inlet: str, body: bytes) -> list[dict[str, Any]]:
        assert inlet == "inlet-1"
        messages = orjson.loads(body)["messages"]
        with self.lock:
            self.requests.append([m["body"]["xdmEntity"]["_id"] for m in messages])
        return self.respond(messages)


def accept_all(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"xactionId": f"x:{i}"} for i in range(len(messages))]


def records(prefix: str, count: int, size: int = 0) -> list[OutgoingRecord]:
    out = []
    for i in range(count):
        entity = {"_id": f"{prefix}{i}", "pad": "x" * size}
        out.append(OutgoingRecord(entity["_id"], orjson.dumps(entity), {"row": i}))
    return out


def sender(hook: StubHook, **kwargs: Any) -> StreamingSender:
    options = {"org_id": "o@AdobeOrg", "max_records_per_second": None, "max_requests_per_second": None}
    return StreamingSender(hook, **IDS, **{**options, "retry_backoff": 0.001, **kwargs})  # type: ignore[arg-type]


def test_permanent_and_transient_results() -> None:
    seen: dict[str, int] = {}

    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = []
        for message in messages:
            record_id = message["body"]["xdmEntity"]["_id"]
            seen[record_id] = seen.get(record_id, 0) + 1
            if record_id == "a1":
                results.append({"statusCode": 400, "message": "Message has unknown xdm format"})
            elif record_id in ("a2", "a3") and seen[record_id] < 3:
                results.append({"statusCode": 503 if record_id == "a2" else 429, "message": "busy"})
            else:
                results.append({"xactionId": "ok"})
        return results

    hook = StubHook(respond)
    with sender(hook) as s:
        s.submit(0, records("a", 5))
        results = s.close()
    assert len(results) == 1
    result = results[0]
    assert (result.chunk, result.submitted, result.accepted, result.retried) == (0, 5, 4, 4)
    assert [(r.record.record_id, r.reason, r.status, r.message) for r in result.rejected] == [
        ("a1", AEP_REJECTED, 400, "Message has unknown xdm format")
    ]
    assert result.rejected[0].record.origin == {"row": 1}
    assert hook.requests == [["a0", "a1", "a2", "a3", "a4"], ["a2", "a3"], ["a2", "a3"]]
    assert s.stats.throttled == 2  # the two per-message 429s
    assert s.limiter.fraction < 1.0
    assert (s.stats.accepted, s.stats.rejected, s.stats.retried, s.stats.requests) == (4, 1, 4, 3)


def test_too_large_records_are_rejected_without_sending() -> None:
    hook = StubHook(accept_all)
    with sender(hook, max_request_bytes=2_000) as s:
        batch = [*records("s", 2), *records("big", 1, size=3_000), *records("t", 2)]
        s.submit(7, batch)
        (result,) = s.close()
    assert result.accepted == 4
    assert [(r.record.record_id, r.reason, r.status) for r in result.rejected] == [("big0", "record_too_large", None)]
    assert "2000 byte limit" in result.rejected[0].message
    assert [i for request in hook.requests for i in request] == ["s0", "s1", "t0", "t1"]


def test_chunks_are_reported_in_order_once_complete() -> None:
    release = threading.Event()

    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if messages[0]["body"]["xdmEntity"]["_id"].startswith("first"):
            release.wait(5)
        return accept_all(messages)

    hook = StubHook(respond)
    with sender(hook, concurrency=2) as s:
        s.submit(3, records("first", 3))
        s.submit(5, records("second", 3))
        s.submit(6, [])
        deadline = time.monotonic() + 5
        while s.stats.chunks_completed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.stats.chunks_completed == 2  # chunks 5 and 6 are done ...
        assert list(s.completed()) == []  # ... but wait for chunk 3
        release.set()
        drained = []
        while len(drained) < 3 and time.monotonic() < deadline:
            drained += list(s.completed())
        assert s.close() == []
    assert [(r.chunk, r.accepted) for r in drained] == [(3, 3), (5, 3), (6, 0)]


def test_chunk_numbers_must_increase() -> None:
    with sender(StubHook(accept_all)) as s:
        s.submit(2, records("a", 1))
        with pytest.raises(ValueError, match="must increase"):
            s.submit(2, records("b", 1))
        s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.submit(3, records("c", 1))


def test_exhausted_transient_failures_fail_the_chunk_not_drop_it() -> None:
    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"statusCode": 500, "message": "oops"} if m["body"]["xdmEntity"]["_id"] == "b1" else {"xactionId": "x"}
            for m in messages
        ]

    hook = StubHook(respond)
    s = sender(hook, max_message_retries=2)
    s.submit(0, records("a", 2))
    s.submit(1, records("b", 2))
    with pytest.raises(StreamingIngestionError) as info:
        s.close()
    assert info.value.failed_chunks == [1]
    assert [r.chunk for r in info.value.completed] == [0]
    assert "still failed transiently after 2 re-send round(s)" in str(info.value)
    assert hook.requests.count(["b1"]) == 2


def test_whole_request_failure_raises_after_the_rest_settled() -> None:
    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if messages[0]["body"]["xdmEntity"]["_id"] == "b0":
            raise AEPServerError("Streaming a multi-message request", status=503, request_id="req-1")
        time.sleep(0.05)
        return accept_all(messages)

    hook = StubHook(respond)
    s = sender(hook, concurrency=1)
    s.submit(0, records("a", 2))
    s.submit(1, records("b", 2))
    s.submit(2, records("c", 2))
    with pytest.raises(StreamingIngestionError) as info:
        s.close()
    error = info.value
    assert error.failed_chunks == [1]
    assert error.status == 503
    assert error.request_id == "req-1"
    assert [r.chunk for r in error.completed] == [0]  # chunk 2 settled but may not be checkpointed past chunk 1
    assert ["c0", "c1"] in hook.requests
    assert "not acknowledged" in str(error)
    assert s.stats.failed_requests == 1


def test_submit_after_a_failure_raises_with_completed_chunks() -> None:
    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if messages[0]["body"]["xdmEntity"]["_id"] == "b0":
            return []  # a malformed answer: cannot tell what was accepted
        return accept_all(messages)

    hook = StubHook(respond)
    s = sender(hook, concurrency=1)
    s.submit(0, records("a", 1))
    s.submit(1, records("b", 1))
    deadline = time.monotonic() + 5
    while s.stats.failed_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(StreamingIngestionError) as info:
        s.submit(2, records("c", 1))
    assert "0 results for a request of 1 messages" in str(info.value)
    assert [r.chunk for r in info.value.completed] == [0]
    assert ["c0"] not in hook.requests


def test_hook_retries_feed_the_limiter_and_the_callback_is_restored() -> None:
    calls: list[int | None] = []

    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert hook.on_retry is not None
        hook.on_retry(429)  # what AEPHook does before waiting out a whole-request 429
        return accept_all(messages)

    hook = StubHook(respond)
    hook.on_retry = calls.append
    with sender(hook, max_records_per_second=1000) as s:
        s.submit(0, records("a", 3))
        s.close()
    assert calls == [429]
    assert s.stats.throttled == 1
    assert s.limiter.throttled == 1
    assert s.current_rate is not None and s.current_rate < 1000
    assert hook.on_retry == calls.append


def test_submit_blocks_while_too_much_is_in_flight() -> None:
    release = threading.Event()

    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        release.wait(5)
        return accept_all(messages)

    hook = StubHook(respond)
    s = sender(hook, max_in_flight_bytes=100)
    s.submit(0, records("a", 5))  # > 100 bytes in flight now
    done = threading.Event()
    worker = threading.Thread(target=lambda: (s.submit(1, records("b", 1)), done.set()))
    worker.start()
    assert not done.wait(0.3)
    release.set()
    assert done.wait(5)
    worker.join()
    assert [r.chunk for r in s.close()] == [0, 1]


def test_abort_stops_without_waiting() -> None:
    release = threading.Event()

    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        release.wait(0.2)
        return accept_all(messages)

    hook = StubHook(respond)
    with pytest.raises(KeyError), sender(hook, concurrency=1, max_messages_per_request=1) as s:
        s.submit(0, records("a", 50))
        raise KeyError("operator failed")
    assert len(hook.requests) < 50
    assert hook.on_retry is None


def test_a_413_splits_the_request_and_rejects_a_lone_message_still_too_large() -> None:
    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(messages) > 2 or any(m["body"]["xdmEntity"]["pad"] for m in messages):
            raise AEPValidationError("Streaming a multi-message request", status=413, detail="body exceeds 1 MB")
        return accept_all(messages)

    hook = StubHook(respond)
    with sender(hook) as s:
        s.submit(0, [*records("a", 3), *records("big", 1, size=10), *records("b", 3)])
        (result,) = s.close()
    assert result.accepted == 6
    assert [(r.record.record_id, r.reason, r.status, r.message) for r in result.rejected] == [
        ("big0", "record_too_large", 413, "body exceeds 1 MB")
    ]
    delivered = [ids for ids in hook.requests if len(ids) <= 2 and "big0" not in ids]
    assert sorted(i for ids in delivered for i in ids) == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_abort_from_another_thread_releases_a_waiting_close() -> None:
    started = threading.Event()

    def respond(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        started.set()
        time.sleep(0.1)
        return accept_all(messages)

    hook = StubHook(respond)
    s = sender(hook, concurrency=1, max_messages_per_request=1)
    s.submit(0, records("a", 30))
    assert started.wait(5)
    threading.Timer(0.05, s.abort).start()  # what on_kill does while the task waits in close()
    with pytest.raises(StreamingIngestionError, match="aborted") as info:
        s.close()
    assert info.value.failed_chunks == [0]
    assert len(hook.requests) < 30
