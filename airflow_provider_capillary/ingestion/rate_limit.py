"""Client-side rate limiting of streaming requests: records per second and requests per second, adaptive.

DCS documents its throughput guidance as 1000 requests/s and 10,000 messages/s (``reference/aep-api.md`` §6.6,
§10); those are the defaults. A limit is a ceiling. Each is a token bucket on the monotonic clock that may go
into debt: a caller reserves what it needs at once and sleeps until the debt is repaid, so over any window of
``T`` seconds at most ``rate * T + burst`` units pass (for reservations no larger than ``burst``, which
:class:`StreamingSender` ensures for records: :attr:`RateLimiter.max_records_per_request`). With a limit ``L``
and ``headroom`` ``h`` (default 0.02) the bucket is ``burst = h * L`` (at least one unit) and ``rate = (1 - 2h) *
L``, so a window of one second or more never holds more than ``L`` per second, even when AEP sees the requests up to
``h`` seconds (20 ms) closer together than they left, and the steady rate is ``2h`` (4 %) under the limit.

Adaptive: on a 429 (whole request or per message) the allowed rate is multiplied by ``decrease_factor``
(at most once per ``decrease_interval``, so one burst of 429s counts once) down to ``min_fraction`` of the
configured rate; every ``recovery_interval`` without a 429 it grows back by ``increase_fraction`` of the
configured rate. It never exceeds the configured rate. A limit of ``None`` is no limit at all, so there is
nothing to lower on a 429: only the hook's backoff (honouring ``Retry-After``) slows such a sender down.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class TokenBucket:
    """A thread-safe token bucket that lends: :meth:`reserve` takes the tokens now and returns how long to wait.

    :param rate: Tokens added per second (must be positive).
    :param burst: Bucket capacity: tokens available at once after idling. Default ``rate * 0.1`` (at least 1).
    :param clock: Monotonic clock in seconds. Default :func:`time.monotonic`.
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, rate * 0.1)
        self._tokens = self.burst
        self._updated = clock()

    @property
    def rate(self) -> float:
        """Tokens added per second now."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the refill rate from now on (tokens accrued so far are kept)."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        with self._lock:
            self._refill()
            self._rate = float(rate)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def reserve(self, tokens: float) -> float:
        """Take ``tokens`` (going into debt if needed); return the seconds to wait before using them."""
        with self._lock:
            self._refill()
            self._tokens -= tokens
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class RateLimiter:
    """Limits records per second and requests per second of one sender; adapts to 429s. Thread-safe.

    :param max_records_per_second: Records (messages) per second; ``None`` for no limit. Default 10,000.
    :param max_requests_per_second: HTTP requests per second; ``None`` for no limit. Default 1,000.
    :param headroom: ``h`` of the module docstring: the bucket holds ``h`` of a limit, which is paced at
        ``1 - 2h`` of itself. Default 0.02.
    :param decrease_factor: Rate multiplier on a 429. Default 0.5.
    :param min_fraction: Lowest rate, as a fraction of the configured one. Default 0.05.
    :param increase_fraction: Rate regained per ``recovery_interval`` without 429s, as a fraction of the
        configured rate. Default 0.1.
    :param recovery_interval: Seconds between increases. Default 1.
    :param decrease_interval: At most one decrease per this many seconds. Default 0.5.
    :param clock: Monotonic clock. Default :func:`time.monotonic`.
    :param sleep: Sleep function. Default :func:`time.sleep`.
    """

    def __init__(
        self,
        max_records_per_second: float | None = 10_000,
        max_requests_per_second: float | None = 1_000,
        *,
        headroom: float = 0.02,
        decrease_factor: float = 0.5,
        min_fraction: float = 0.05,
        increase_fraction: float = 0.1,
        recovery_interval: float = 1.0,
        decrease_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        limits = {"max_records_per_second": max_records_per_second, "max_requests_per_second": max_requests_per_second}
        for name, value in limits.items():
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if not 0 < headroom < 0.5:
            raise ValueError(f"headroom must be between 0 and 0.5, got {headroom!r}")
        if not 0 < decrease_factor < 1 or not 0 < min_fraction <= 1 or increase_fraction <= 0:
            raise ValueError("need 0 < decrease_factor < 1, 0 < min_fraction <= 1 and increase_fraction > 0")
        self.max_records_per_second = max_records_per_second
        self.max_requests_per_second = max_requests_per_second
        self.decrease_factor = decrease_factor
        self.min_fraction = min_fraction
        self.increase_fraction = increase_fraction
        self.recovery_interval = recovery_interval
        self.decrease_interval = decrease_interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._fraction = 1.0
        self._changed = clock() - max(recovery_interval, decrease_interval)
        self.headroom = headroom
        self._records = self._bucket(max_records_per_second)
        self._requests = self._bucket(max_requests_per_second)
        #: Number of 429s reported.
        self.throttled = 0

    def _bucket(self, limit: float | None) -> TokenBucket | None:
        if not limit:
            return None
        return TokenBucket(limit * (1 - 2 * self.headroom), max(1.0, limit * self.headroom), self._clock)

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return self._records is not None or self._requests is not None

    @property
    def fraction(self) -> float:
        """The allowed share of the configured rates now (1.0 unless recently throttled)."""
        return self._fraction

    @property
    def records_per_second(self) -> float | None:
        """The records/s limit now (the configured one, lowered after 429s); ``None`` when records are unlimited."""
        return self.max_records_per_second * self._fraction if self.max_records_per_second else None

    @property
    def max_records_per_request(self) -> int | None:
        """Most records one request may carry for the records limit to hold (the records bucket's size, ``headroom``
        of the limit, at least one); ``None`` when records are not limited."""
        return max(1, int(self._records.burst)) if self._records else None

    @property
    def requests_per_second(self) -> float | None:
        """The requests/s limit now (the configured one, lowered after 429s), or ``None`` when requests are not
        limited."""
        return self.max_requests_per_second * self._fraction if self.max_requests_per_second else None

    def acquire(self, records: int) -> float:
        """Block until one request carrying ``records`` records may go; return the seconds waited."""
        self._maybe_recover()
        wait = 0.0
        if self._records is not None:
            wait = self._records.reserve(records)
        if self._requests is not None:
            wait = max(wait, self._requests.reserve(1))
        if wait > 0:
            self._sleep(wait)
        return wait

    def on_throttled(self, status: int | None = 429) -> None:
        """Report a failed attempt; a 429 lowers the allowed rate (other statuses are ignored).

        Its signature fits :class:`AEPHook`'s ``on_retry`` callback.
        """
        if status != 429:
            return
        with self._lock:
            self.throttled += 1
            now = self._clock()
            if now - self._changed < self.decrease_interval and self._fraction < 1.0:
                return
            self._set_fraction(max(self.min_fraction, self._fraction * self.decrease_factor), now)

    def _maybe_recover(self) -> None:
        if self._fraction >= 1.0:
            return
        with self._lock:
            now = self._clock()
            if self._fraction < 1.0 and now - self._changed >= self.recovery_interval:
                self._set_fraction(min(1.0, self._fraction + self.increase_fraction), now)

    def _set_fraction(self, fraction: float, now: float) -> None:
        self._fraction = fraction
        self._changed = now
        if self._records is not None and self.max_records_per_second:
            self._records.set_rate(self.max_records_per_second * fraction * (1 - 2 * self.headroom))
        if self._requests is not None and self.max_requests_per_second:
            self._requests.set_rate(self.max_requests_per_second * fraction * (1 - 2 * self.headroom))
