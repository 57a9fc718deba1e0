"""Retry policy shared by the provider's HTTP hooks (sync and async).

Transient failures are retried with exponential backoff and full jitter, honouring a server's ``Retry-After``
header, and bounded both in attempts and in total time. Everything else fails at once.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import requests
from tenacity import RetryCallState, stop_after_attempt, stop_after_delay

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tenacity.stop import StopBaseT

#: HTTP statuses worth another try: throttling and server-side failures.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class TransientHTTPError(Exception):
    """A response with a retryable status; carries what the final error needs once retries are exhausted.

    :param status: The HTTP status code.
    :param retry_after: Seconds the server asked us to wait (``Retry-After``), if any.
    :param body: The parsed error body (JSON object) or ``None``.
    :param request_id: The ``x-request-id`` response header, if any.
    """

    def __init__(self, status: int, retry_after: float | None, body: Any = None, request_id: str | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.request_id = request_id


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` when absent or invalid."""
    value = (headers.get("Retry-After") or headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": a UTC time with no zone information
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be retried: throttling, 5xx, timeouts and connection errors."""
    if isinstance(exc, TransientHTTPError):
        return True
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in RETRYABLE_STATUSES
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ServerTimeoutError | TimeoutError)


class BackoffWait:
    """Tenacity wait strategy: ``Retry-After`` when the server sent one, else exponential backoff with full jitter.

    :param initial: Upper bound of the first jittered wait, in seconds.
    :param maximum: Cap on any single wait, in seconds (also caps ``Retry-After``).
    :param rng: Random source for the jitter (tests pass a seeded one).
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransientHTTPError) and exc.retry_after is not None:
            return min(exc.retry_after, self.maximum)
        ceiling = min(self.maximum, self.initial * 2 ** (retry_state.attempt_number - 1))
        return self.rng.uniform(0, ceiling)


def retry_stop(max_attempts: int, max_total_seconds: float) -> StopBaseT:
    """Stop after ``max_attempts`` attempts or once ``max_total_seconds`` have passed since the first one."""
    return stop_after_attempt(max_attempts) | stop_after_delay(max_total_seconds)


def describe_attempt(retry_state: RetryCallState) -> str:
    """A log-safe one-liner about a failed attempt: its number and what failed (no headers, bodies or tokens)."""
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(exc, TransientHTTPError):
        what = f"HTTP {exc.status}" + (f" (request id {exc.request_id})" if exc.request_id else "")
    else:
        what = type(exc).__name__ if exc else "unknown error"
    return f"attempt {retry_state.attempt_number} failed with {what}"
