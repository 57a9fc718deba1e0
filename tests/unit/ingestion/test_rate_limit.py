"""TokenBucket and RateLimiter: never above the configured rate in any window of a second or more, within 4 % of
it, adaptive on 429, thread-safe."""

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


def most_in_any_window(sent: list[tuple[float, float]], seconds: float) -> float:
    """The most units whose times fall within any window ``[t, t + seconds)``."""
    return max(sum(size for when, size in sent if t <= when < t + seconds) for t, _ in sent)


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


@pytest.mark.parametrize("window", [1.0, 1.5, 2.5, 10.0])
def test_limiter_never_exceeds_the_limit_in_any_window_and_stays_within_5_percent(window: float) -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, 50, clock=clock, sleep=clock.sleep)
    sent: list[tuple[float, float]] = []
    while clock.now < 1030:
        limiter.acquire(20)
        sent.append((clock.now, 20))
    assert most_in_any_window(sent, window) <= 1000 * window
    # Arrival jitter: AEP may see requests up to 20 ms closer together than they left.
    assert most_in_any_window(sent, window + 0.02) <= 1000 * window
    elapsed = sent[-1][0] - sent[0][0]
    rate = (sum(size for _, size in sent) - 20) / elapsed
    assert 0.95 * 1000 <= rate <= 1000


def test_the_requests_limit_is_a_ceiling_too() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, 4, clock=clock, sleep=clock.sleep)
    sent = []
    while clock.now < 1100:
        limiter.acquire(500)
        sent.append((clock.now, 1.0))
    for window in (1.0, 1.02, 3.0):
        assert most_in_any_window(sent, window) <= 4 * int(window)
    assert (len(sent) - 1) / (sent[-1][0] - sent[0][0]) >= 0.95 * 4


def test_requests_are_capped_at_a_small_share_of_the_records_limit() -> None:
    assert RateLimiter(10_000, None).max_records_per_request == 200
    assert RateLimiter(10_000, None, headroom=0.04).max_records_per_request == 400
    assert RateLimiter(20, None).max_records_per_request == 1
    assert RateLimiter(None, 100).max_records_per_request is None


def test_measured_rate_over_two_seconds_with_threads() -> None:
    rate = 2000.0
    limiter = RateLimiter(rate, None)
    lock = threading.Lock()
    sent: list[tuple[float, float]] = []
    stop = time.monotonic() + 2.0

    def run() -> None:
        while time.monotonic() < stop:
            limiter.acquire(10)
            with lock:
                sent.append((time.monotonic(), 10))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent.sort()
    elapsed = sent[-1][0] - sent[0][0]
    total = sum(size for _, size in sent)
    print(f"limiter: {total} records in {elapsed:.3f} s = {total / elapsed:.0f}/s")
    # Sleeps end late, never early: a window of a second holds at most the limit.
    assert most_in_any_window(sent, 1.0) <= rate
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
