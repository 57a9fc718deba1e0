"""Reproducible fault injection for the AEP emulator: random (seeded) and scripted faults."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

#: Statuses a random server fault picks from.
_SERVER_ERRORS = (500, 503)


@dataclass(frozen=True)
class Fault:
    """
    What to do to one request instead of (or before) serving it.

    :param status: answer with this HTTP status (``None``: serve normally after ``latency``).
    :param retry_after: ``Retry-After`` header value in seconds, if any.
    :param drop: close the connection without any response.
    :param latency: seconds to wait before answering.
    :param revoke: revoke every issued token before serving this request.
    """

    status: int | None = None
    retry_after: int | None = None
    drop: bool = False
    latency: float = 0.0
    revoke: bool = False


@dataclass
class _Script:
    pattern: re.Pattern[str]
    status: int | None
    times: int
    retry_after: int | None
    drop: bool
    method: str | None


@dataclass(eq=False)
class FaultPlan:
    """
    Which faults the emulator injects. Random faults draw from one seeded generator, so the same
    seed and the same request sequence give the same faults; scripted faults are applied first, in
    the order they were added, to the next matching requests.

    Faults apply to platform and DCS paths (and to IMS when ``include_ims``), never to ``/_emulator/``.

    :param seed: seed of the random generator; ``None`` seeds from the OS.
    :param rate_429: probability that a request is answered 429 with ``Retry-After``.
    :param rate_5xx: probability that a request is answered 500 or 503.
    :param drop_rate: probability that the connection is closed without a response.
    :param latency_ms: milliseconds added to every request.
    :param retry_after: ``Retry-After`` seconds sent with random 429s and 503s.
    :param revoke_after: revoke every issued token after this many faultable requests (once).
    :param partial_rate: probability that an otherwise valid message of a multi-message request gets a
        transient ``statusCode`` 500 or 503 in the 207 response (nothing is recorded for it).
    :param batch_failure_rate: probability that a completed Batch Ingestion batch fails as a whole
        (status ``failed``, transient error, nothing recorded).
    :param include_ims: also inject random faults into IMS token requests.
    """

    seed: int | None = None
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    drop_rate: float = 0.0
    latency_ms: float = 0.0
    retry_after: int = 1
    revoke_after: int | None = None
    partial_rate: float = 0.0
    batch_failure_rate: float = 0.0
    include_ims: bool = False
    _scripts: list[_Script] = field(default_factory=list, init=False, repr=False)
    _requests: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "drop_rate", "partial_rate", "batch_failure_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
        self._random = random.Random(self.seed)

    def script(
        self,
        path_regex: str,
        status: int | None = None,
        times: int = 1,
        retry_after: int | None = None,
        drop: bool = False,
        method: str | None = None,
    ) -> None:
        """
        Fail the next ``times`` requests whose path matches ``path_regex`` (``re.search``).

        :param path_regex: regular expression searched in the request path (without the query).
        :param status: HTTP status to answer with; may be ``None`` only when ``drop`` is set.
        :param times: how many matching requests are affected.
        :param retry_after: ``Retry-After`` header value (seconds) to send with the status.
        :param drop: close the connection without a response instead of answering.
        :param method: only match this HTTP method (any method when ``None``).
        """
        if status is None and not drop:
            raise ValueError("a scripted fault needs a status or drop=True")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._scripts.append(
                _Script(re.compile(path_regex), status, times, retry_after, drop, method and method.upper())
            )

    def clear_scripts(self) -> None:
        """Forget every scripted fault not yet used."""
        with self._lock:
            self._scripts.clear()

    def decide(self, method: str, path: str, *, ims: bool = False) -> Fault | None:
        """
        Pick the fault (if any) for one request; called once per faultable request.

        :param method: the request's HTTP method.
        :param path: the request path.
        :param ims: whether this is an IMS token request.
        """
        with self._lock:
            self._requests += 1
            revoke = self.revoke_after is not None and self._requests == self.revoke_after
            latency = self.latency_ms / 1000.0
            for script in self._scripts:
                if script.method not in (None, method.upper()) or not script.pattern.search(path):
                    continue
                script.times -= 1
                if script.times == 0:
                    self._scripts.remove(script)
                return Fault(script.status, script.retry_after, script.drop, latency, revoke)
            if ims and not self.include_ims:
                return Fault(latency=latency, revoke=revoke) if latency or revoke else None
            draw = self._random.random()
            if draw < self.drop_rate:
                return Fault(drop=True, latency=latency, revoke=revoke)
            draw -= self.drop_rate
            if draw < self.rate_429:
                return Fault(429, self.retry_after, latency=latency, revoke=revoke)
            draw -= self.rate_429
            if draw < self.rate_5xx:
                status = self._random.choice(_SERVER_ERRORS)
                return Fault(status, self.retry_after if status == 503 else None, latency=latency, revoke=revoke)
            return Fault(latency=latency, revoke=revoke) if latency or revoke else None

    def partial_status(self) -> int | None:
        """For one valid message of a multi-message request: a transient status to report, or ``None``."""
        if not self.partial_rate:
            return None
        with self._lock:
            if self._random.random() < self.partial_rate:
                return self._random.choice(_SERVER_ERRORS)
        return None

    def batch_fails(self) -> bool:
        """Whether a completed Batch Ingestion batch should fail as a whole."""
        if not self.batch_failure_rate:
            return False
        with self._lock:
            return self._random.random() < self.batch_failure_rate

    def settings(self) -> dict[str, Any]:
        """The plan's settings as JSON-friendly values (scripts not included)."""
        return {
            "seed": self.seed,
            "rate_429": self.rate_429,
            "rate_5xx": self.rate_5xx,
            "drop_rate": self.drop_rate,
            "latency_ms": self.latency_ms,
            "retry_after": self.retry_after,
            "revoke_after": self.revoke_after,
            "partial_rate": self.partial_rate,
            "batch_failure_rate": self.batch_failure_rate,
            "include_ims": self.include_ims,
        }
