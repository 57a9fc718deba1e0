"""Rate-limit accuracy of the streaming engine, measured where the records arrive: at the AEP emulator.

Starts the emulator in a subprocess (its built-in XDM catalogue), sets up a loyalty-event schema, dataset and
streaming dataflow, and for each limit builds the engine's sender the way :class:`CapillaryToAEPOperator`
does (its ``_sender`` factory: ``concurrency`` 4, the operator's hook with its pool, the operator's
``max_records_per_second`` / ``max_requests_per_second``), then streams pre-serialised loyalty events through it
in chunks of 5,000 rows (the operator's default) for about ``--seconds`` seconds per limit.

Arrival times come from the emulator: every multi-message answer carries ``receivedTimeMs``, stamped by the
emulator when it has read the request body, and one result per message. A response hook on the hook's HTTP
session (observation only; nothing is changed) collects ``(receivedTimeMs, messages)`` for each request. The
client-side send time (response time minus ``elapsed``) is kept as a cross-check. From those arrivals:

- ``mean``: records that arrived after the first request, divided by the time from the first to the last
  arrival (the steady rate, free of start-up);
- ``wall``: all records divided by the time from the first submit to the last arrival (what a task sees);
- ``max 1 s``: the most records arriving in any window ``[x, x + 1 s)`` — what a per-second quota on the
  server side would count, whole requests included;
- ``max >=1 s``: the highest rate over any span of at least one second between two arrivals, counting the
  records after the span's first arrival (a saturated token bucket keeps this at the rate when it sends;
  jitter between sending and arrival adds to it);
- ``dev``: ``mean`` against the limit, in %; ``verdict``: PASS when ``mean`` is within 5 % of the limit and
  neither ``mean`` nor ``max 1 s`` is above it, else MISS.

A request's records arrive at once. Requests carry up to ~1 MB (about 830 of these events with their envelopes)
and, under a records limit, at most the limiter's burst (a tenth of a second of the limit), so ``max 1 s`` can
exceed the limit by up to one request: the token bucket bounds any window of ``T`` seconds by
``limit * T + burst``, not by ``limit * T``. Numbers depend on the machine and on what else runs.

    .venv/bin/python tests/benchmarks/bench_rate_limit.py [--seconds 20] [--records-limits 500 2000 5000 10000]
        [--requests-limits 4]
"""

from __future__ import annotations

import argparse
import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from bench_sender import loyalty_event, set_up, start_emulator

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE, AEPHook
from airflow_provider_capillary.ingestion import OutgoingRecord
from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

CHUNK_SIZE = 5_000


@dataclass
class Arrivals:
    """Multi-message requests seen by the hook's session: emulator arrival (ms) and client send time (s)."""

    server_ms: list[int] = field(default_factory=list)
    client_sent: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """A ``requests`` response hook: remember each DCS multi-message answer."""
        if response.status_code != 207 or "/collection/batch/" not in response.url:
            return
        body = orjson.loads(response.content)
        sent = time.time() - response.elapsed.total_seconds()
        with self.lock:
            self.server_ms.append(int(body["receivedTimeMs"]))
            self.client_sent.append(sent)
            self.messages.append(len(body["responses"]))


@dataclass
class Rates:
    """Rates of one run, records (or requests) per second."""

    mean: float
    wall: float
    max_window: float
    max_span: float


def rates(times: list[float], sizes: list[int], started: float) -> Rates:
    """Rates of arrivals at ``times`` (seconds, any order) carrying ``sizes`` units each; ``started`` = first submit."""
    order = sorted(range(len(times)), key=times.__getitem__)
    t = [times[i] for i in order]
    n = [sizes[i] for i in order]
    cumulative = [0]
    for size in n:
        cumulative.append(cumulative[-1] + size)
    total = cumulative[-1]
    mean = (total - n[0]) / (t[-1] - t[0]) if t[-1] > t[0] else float("nan")
    wall = total / (t[-1] - started)
    # Most units in any [x, x + 1 s): the window starting at an arrival is the worst one.
    max_window = max(cumulative[bisect.bisect_left(t, t[i] + 1.0)] - cumulative[i] for i in range(len(t)))
    # Highest rate over spans (t_a, t_b] of at least one second.
    max_span = 0.0
    for a in range(len(t)):
        b = bisect.bisect_left(t, t[a] + 1.0)
        for j in range(b, len(t)):
            max_span = max(max_span, (cumulative[j + 1] - cumulative[a + 1]) / (t[j] - t[a]))
    return Rates(mean, wall, float(max_window), max_span)


def run_limit(
    targets: dict[str, dict[str, str]],
    inlet: str,
    records: list[OutgoingRecord],
    max_records_per_second: float | None,
    max_requests_per_second: float | None,
) -> tuple[Arrivals, float, int]:
    """Stream ``records`` through the sender the operator builds; return the arrivals, start time and requests."""
    operator = CapillaryToAEPOperator(
        task_id="rate_limit",
        record_types="loyalty_event",
        targets=targets,
        inlet=inlet,
        max_records_per_second=max_records_per_second,
        max_requests_per_second=max_requests_per_second,
    )
    arrivals = Arrivals()
    operator.hook.session.hooks["response"].append(arrivals.hook)
    sender = operator._sender(targets["loyalty_event"])
    started = time.time()
    with sender:
        for number, start in enumerate(range(0, len(records), CHUNK_SIZE)):
            sender.submit(number, records[start : start + CHUNK_SIZE])
            list(sender.completed())
        sender.close()
    if sender.stats.accepted != len(records) or sum(arrivals.messages) != sender.stats.records_sent:
        raise SystemExit(
            f"accepted {sender.stats.accepted} of {len(records)}; the emulator answered "
            f"{sum(arrivals.messages)} messages of {sender.stats.records_sent} sent"
        )
    return arrivals, started, sender.stats.requests


def verdict(limit: float, measured: Rates) -> str:
    within = 0.95 * limit <= measured.mean <= limit
    return "PASS" if within and measured.max_window <= limit else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="target duration of each run")
    parser.add_argument("--records-limits", type=float, nargs="*", default=[500, 2_000, 5_000, 10_000])
    parser.add_argument("--requests-limits", type=float, nargs="*", default=[4])
    args = parser.parse_args()
    process, _ = start_emulator()
    try:
        TOKEN_CACHE.clear()
        ids = set_up(AEPHook())
        tenant, inlet = ids.pop("tenant"), ids.pop("inlet")
        ids.pop("org_id")
        targets = {"loyalty_event": ids}
        per_request = 1_000_000 // len(orjson.dumps(loyalty_event(0, tenant)))
        largest = max(
            [limit * args.seconds for limit in args.records_limits]
            + [limit * per_request * args.seconds for limit in args.requests_limits]
        )
        count = int(largest // CHUNK_SIZE + 1) * CHUNK_SIZE
        records = [
            OutgoingRecord(entity["_id"], orjson.dumps(entity), number)
            for number, entity in ((n, loyalty_event(n, tenant)) for n in range(count))
        ]
        size = sum(len(r.entity_json) for r in records[:1000]) / 1000
        print(f"loyalty events of {size:.0f} bytes (entity JSON); concurrency 4, chunks of {CHUNK_SIZE:,}")
        print("rates at the emulator (receivedTimeMs); client send times as a cross-check")
        print(
            f"| {'limit':<22} | {'records':>8} | {'requests':>8} | {'per req':>7} | {'mean':>8} | {'wall':>8} | "
            f"{'max 1 s':>8} | {'max>=1s':>8} | {'dev %':>6} | {'client mean':>11} | verdict"
        )
        print(
            f"|{'-' * 24}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|"
            f"{'-' * 8}|{'-' * 13}|--------"
        )
        scenarios = [("records/s", limit, limit, 1_000.0) for limit in args.records_limits]
        scenarios += [("requests/s", limit, None, limit) for limit in args.requests_limits]
        for unit, limit, records_limit, requests_limit in scenarios:
            expected = limit * args.seconds * (per_request if unit == "requests/s" else 1)
            batch = records[: max(CHUNK_SIZE, int(expected // CHUNK_SIZE) * CHUNK_SIZE)]
            arrivals, started, requests_made = run_limit(targets, inlet, batch, records_limit, requests_limit)
            server = [ms / 1000 for ms in arrivals.server_ms]
            units = arrivals.messages if unit == "records/s" else [1] * len(arrivals.messages)
            measured = rates(server, units, started)
            client = rates(arrivals.client_sent, units, started)
            print(
                f"| {f'{limit:,.0f} {unit}':<22} | {len(batch):>8,} | {requests_made:>8,} | "
                f"{len(batch) / requests_made:>7,.0f} | {measured.mean:>8,.1f} | {measured.wall:>8,.1f} | "
                f"{measured.max_window:>8,.0f} | {measured.max_span:>8,.1f} | "
                f"{100 * (measured.mean - limit) / limit:>+6.1f} | {client.mean:>11,.1f} | {verdict(limit, measured)}",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
