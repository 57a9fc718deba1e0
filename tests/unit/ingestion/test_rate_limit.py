"""TokenBucket and RateLimiter: never above the configured rate, adaptive on 429, thread-safe."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_capillary.ingestion.rate_limit import RateLimiter, TokenBucket


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_lends_and_charges_the_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, burst=10, clock=clock)
    assert bucket.reserve(10) == 0.0  # the full bucket
    assert bucket.reserve(5) == pytest.approx(0.05)  # 5 tokens of debt at 100/s
    assert bucket.reserve(100) == pytest.approx(1.05)  # larger than the bucket: waits its whole cost
    clock.now += 2.0
    assert bucket.reserve(1) == 0.0  # debt repaid, refilled up to the burst only
    assert bucket.reserve(9) == 0.0
    assert bucket.reserve(1) == pytest.approx(0.01)


def test_limiter_holds_the_rate_with_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, 50, clock=clock, sleep=clock.sleep)
    start = clock.now
    sent = 0
    while clock.now - start < 10:
        limiter.acquire(40)
        sent += 40
    elapsed = clock.now - start
    # Records: 1000/s plus the 100-record burst; requests: 50/s (40 records each => 2000 records/s allowed).
    assert sent <= 1000 * elapsed + 100 + 40
    assert sent >= 0.95 * 1000 * elapsed


def test_measured_rate_over_two_seconds_with_threads() -> None:
    rate = 2000.0
    limiter = RateLimiter(rate, None)
    burst = rate * 0.1
    counts = [0] * 4
    stop = time.monotonic() + 2.0

    def run(slot: int) -> None:
        while time.monotonic() < stop:
            limiter.acquire(10)
            counts[slot] += 10

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    total = sum(counts)
    steady = (total - burst) / elapsed
    print(f"limiter: {total} records in {elapsed:.3f} s = {total / elapsed:.0f}/s, {steady:.0f}/s after the burst")
    # Each thread may take one more reservation just before the deadline (then waits it out).
    assert total <= rate * elapsed + burst + 4 * 10
    assert total >= 0.8 * rate * 2.0


def test_429_backs_off_then_recovers_additively() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10_000, 1_000, clock=clock, sleep=clock.sleep, recovery_interval=1.0)
    limiter.on_throttled(429)
    assert limiter.fraction == 0.5
    assert limiter.records_per_second == 5_000
    assert limiter.requests_per_second == 500
    limiter.on_throttled(429)  # same burst of 429s: counted, not compounded
    assert limiter.fraction == 0.5
    assert limiter.throttled == 2
    clock.now += 0.6
    limiter.on_throttled(429)
    assert limiter.fraction == 0.25
    limiter.on_throttled(503)  # only 429 means "slow down"
    assert limiter.fraction == 0.25
    fractions = []
    for _ in range(12):
        clock.now += 1.0
        limiter.acquire(1)
        fractions.append(round(limiter.fraction, 2))
    assert fractions[:4] == [0.35, 0.45, 0.55, 0.65]
    assert fractions[-1] == 1.0
    assert limiter.records_per_second == 10_000  # never above the configured rate


def test_backoff_has_a_floor() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, None, clock=clock, sleep=clock.sleep, min_fraction=0.1)
    for _ in range(20):
        clock.now += 0.6
        limiter.on_throttled()
    assert limiter.fraction == 0.1
    assert limiter.records_per_second == pytest.approx(100)


def test_unlimited_never_sleeps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, None, clock=clock, sleep=clock.sleep)
    assert not limiter.enabled
    for _ in range(1000):
        assert limiter.acquire(1000) == 0.0
    limiter.on_throttled(429)
    assert limiter.acquire(10**9) == 0.0
    assert clock.slept == []
    assert limiter.records_per_second is None


@pytest.mark.parametrize(
    "kwargs", [{"max_records_per_second": 0}, {"max_requests_per_second": -1}, {"decrease_factor": 1.0}]
)
def test_invalid_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)
