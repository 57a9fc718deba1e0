"""StreamingSender under a records/s limit: requests carry at most 2 % of the limit, so they fill the limiter's
windows evenly and no second ever holds more than the limit."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

import orjson

from airflow_provider_capillary.ingestion.rate_limit import RateLimiter
from airflow_provider_capillary.ingestion.sender import OutgoingRecord, StreamingSender


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ClockedHook:
    """What the sender uses of AEPHook; records each request's size and the fake time it was sent."""

    pool_size = 16

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.on_retry: Callable[[int | None], None] | None = None
        self.session = object()
        self.sent: list[tuple[float, int]] = []

    def get_access_token(self) -> str:
        return "token"

    def send_messages(self, inlet: str, body: bytes) -> list[dict[str, Any]]:
        messages = orjson.loads(body)["messages"]
        self.sent.append((self.clock.now, len(messages)))
        return [{"xactionId": f"x:{i}"} for i in range(len(messages))]


def small_records(count: int) -> list[OutgoingRecord]:
    return [OutgoingRecord(f"r{i}", orjson.dumps({"_id": f"r{i}"})) for i in range(count)]


def stream(
    records_per_second: float | None, requests_per_second: float | None, count: int, **kwargs: Any
) -> ClockedHook:
    """Send ``count`` tiny records in one chunk through a sender limited on a fake clock; return what was sent."""
    clock = FakeClock()
    limiter = RateLimiter(records_per_second, requests_per_second, clock=clock, sleep=clock.sleep)
    hook = ClockedHook(clock)
    sender = StreamingSender(
        hook,  # type: ignore[arg-type]
        inlet="inlet-1",
        dataset_id="ds",
        schema_id="https://ns.adobe.com/t/schemas/s",
        flow_id="f",
        org_id="o@AdobeOrg",
        concurrency=1,
        rate_limiter=limiter,
        **kwargs,
    )
    with sender:
        sender.submit(0, small_records(count))
        results = sender.close()
    assert sum(result.accepted for result in results) == count
    return hook


def most_in_any_window(sent: list[tuple[float, int]], seconds: float) -> int:
    """The most records sent within any window ``[t, t + seconds)``."""
    times = [when for when, _ in sent]
    cumulative = [0]
    for _, size in sent:
        cumulative.append(cumulative[-1] + size)
    return max(cumulative[bisect.bisect_left(times, t + seconds)] - cumulative[i] for i, t in enumerate(times))


def test_requests_are_small_so_every_second_holds_the_limit_and_the_rate_stays_close() -> None:
    # 1,000 tiny records fit one 1 MB request; at 200 records/s that request would go all at once.
    hook = stream(200, None, 1_000)
    assert max(size for _, size in hook.sent) == 4
    assert sum(size for _, size in hook.sent) == 1_000
    for seconds in (1.0, 2.5):
        assert most_in_any_window(hook.sent, seconds) <= 200 * seconds
    elapsed = hook.sent[-1][0] - hook.sent[0][0]
    assert (1_000 - hook.sent[-1][1]) / elapsed >= 0.95 * 200


def test_a_smaller_explicit_request_bound_is_kept() -> None:
    hook = stream(1_000, None, 100, max_messages_per_request=7)  # the limit alone would allow 20
    assert max(size for _, size in hook.sent) == 7


def test_without_a_records_limit_requests_are_bounded_by_size_only() -> None:
    hook = stream(None, 50, 1_000)
    assert [size for _, size in hook.sent] == [1_000]
