"""Seeded fault schedules for the reliability soak: the emulator's :class:`FaultPlan` plus faults placed at chosen
ingestion requests, slow responses that outlast the client's timeout, failing batches, and a count of every fault
actually injected (a soak whose faults never fired would pass for the wrong reason).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from airflow_provider_capillary.testing.aep_emulator.faults import Fault, FaultPlan

#: Seconds the hook under test waits for a response (the provider's default is 30 s: too long for a soak).
CLIENT_TIMEOUT = 1.5
#: Latency of a "timeout" fault: the emulator answers (and stores the records) after the client gave up.
SLOW_SECONDS = CLIENT_TIMEOUT + 0.5
#: Request paths the scheduled faults count and hit: DCS multi-message requests and Batch Ingestion.
INGESTION_PATHS = ("/collection/batch/", "/data/foundation/import/")
#: Fault kinds every stream-mode run must inject; batch mode swaps ``partial_207`` for ``batch_failure``.
STREAM_KINDS = frozenset({"429", "500", "502", "503", "drop", "timeout", "token_revoked", "partial_207"})
BATCH_KINDS = STREAM_KINDS - {"partial_207"} | {"batch_failure"}


@dataclass(eq=False)
class SoakFaultPlan(FaultPlan):
    """A :class:`FaultPlan` whose random faults are topped up with a schedule, counting what it injects.

    :param scheduled: Fault per ordinal (1-based) of the ingestion requests (:data:`INGESTION_PATHS`); the other
        requests and the ingestion requests without a scheduled fault get the plan's random faults.
    :param failing_batches: How many completed Batch Ingestion batches fail as a whole before the plan's random
        ``batch_failure_rate`` applies.
    """

    scheduled: dict[int, Fault] = field(default_factory=dict)
    failing_batches: int = 0
    injected: Counter[str] = field(default_factory=Counter, init=False)
    _slow_until: float = field(default=0.0, init=False, repr=False)
    _ingestion: int = field(default=0, init=False, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def decide(self, method: str, path: str, *, ims: bool = False) -> Fault | None:
        fault = super().decide(method, path, ims=ims)
        with self._count_lock:
            if path.startswith(INGESTION_PATHS):
                self._ingestion += 1
                planned = self.scheduled.pop(self._ingestion, None)
                if planned is not None:
                    fault = replace(planned, revoke=bool(fault and fault.revoke))
            if fault is not None:
                kinds = _kinds(fault)
                self.injected.update(kinds)
                if "timeout" in kinds:
                    self._slow_until = max(self._slow_until, time.monotonic() + fault.latency)
        return fault

    def partial_status(self) -> int | None:
        status = super().partial_status()
        if status is not None:
            with self._count_lock:
                self.injected["partial_207"] += 1
        return status

    def batch_fails(self) -> bool:
        with self._count_lock:
            if self.failing_batches > 0:
                self.failing_batches -= 1
                self.injected["batch_failure"] += 1
                return True
        fails = super().batch_fails()
        if fails:
            with self._count_lock:
                self.injected["batch_failure"] += 1
        return fails

    def wait_for_slow_responses(self) -> None:
        """Return once every delayed response has been served (and its records stored, if AEP took them)."""
        with self._count_lock:
            remaining = self._slow_until - time.monotonic()
        if remaining > 0:
            time.sleep(remaining + 0.2)


def _kinds(fault: Fault) -> list[str]:
    kinds = ["token_revoked"] if fault.revoke else []
    if fault.drop:
        kinds.append("drop")
    elif fault.status is not None:
        kinds.append(str(fault.status))
    elif fault.latency >= SLOW_SECONDS:
        kinds.append("timeout")
    return kinds


def fault_schedule(seed: int, *, mode: str, base_requests: int) -> SoakFaultPlan:
    """The seeded fault plan of one soak run.

    Random: 429 (``Retry-After: 1``), 500/503, dropped connections, a token revocation after a seeded number of
    requests, and per-message transient failures in 207 answers (stream mode). Scheduled among the first ingestion
    requests: a storm of 3-7 consecutive 429s (long enough, at times, to outlast the hook's six attempts and fail
    the try), one each of 500, 502 and 503, one or two dropped connections and one or two responses slower than
    :data:`CLIENT_TIMEOUT`; in batch mode the first batch fails as a whole.

    :param seed: The run's seed.
    :param mode: ``stream`` or ``batch``.
    :param base_requests: Successful ingestion requests any run needs at least (one per chunk in stream mode; batch
        creation, file upload and completion in batch mode).
    """
    rng = random.Random(f"faults-{seed}")
    faults: list[list[Fault]] = [
        [Fault(429, retry_after=1)] * rng.randint(3, 7),
        [Fault(500)],
        [Fault(502)],
        [Fault(503, retry_after=1)],
        *([Fault(drop=True)] for _ in range(rng.randint(1, 2))),
        *([Fault(latency=SLOW_SECONDS)] for _ in range(rng.randint(1, 2))),
    ]
    rng.shuffle(faults)
    # The i-th scheduled fault goes at an ordinal of at most base_requests + i - 1: a run cannot have finished before
    # it, having had at most base_requests - 1 successful ingestion requests by then. A storm's ordinals are
    # consecutive.
    gaps = sorted(rng.choices(range(base_requests), k=len(faults)))
    scheduled: dict[int, Fault] = {}
    ordinal = 1
    previous_gap = 0
    for group, gap in zip(faults, gaps, strict=True):
        ordinal += gap - previous_gap
        previous_gap = gap
        for fault in group:
            scheduled[ordinal] = fault
            ordinal += 1
    return SoakFaultPlan(
        seed=seed,
        rate_429=rng.uniform(0.01, 0.04),
        rate_5xx=rng.uniform(0.01, 0.04),
        drop_rate=rng.uniform(0.01, 0.03),
        retry_after=1,
        revoke_after=rng.randint(4, 4 + base_requests),
        partial_rate=rng.uniform(0.005, 0.02) if mode == "stream" else 0.0,
        scheduled=scheduled,
        failing_batches=1 if mode == "batch" else 0,
    )
