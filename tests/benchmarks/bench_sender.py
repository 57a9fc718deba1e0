"""Throughput of the streaming engine against the AEP emulator, next to a naive client and a raw ceiling.

Starts the emulator in a subprocess (its built-in XDM catalogue), creates a loyalty-event schema, dataset,
streaming connection and dataflow through ``AEPHook``, pre-serialises loyalty-event-like records and prints
records/s (wall clock) with rate limiting off for:

- one request per record (single-message endpoint, sequential; the first ``--single`` records, extrapolated);
- ``StreamingSender`` with concurrency 1, 2, 4 and 8 (all records, chunks of ``--chunk``);
- a raw ``requests`` client posting pre-built ~1 MB bodies from 4 threads (the ceiling: no per-record work).

A warm-up (the raw client, not measured) stores every ``_id`` first, so each measured run costs the emulator the
same. Each run checks that the emulator counted every record. Columns: wall-clock seconds and records/s, CPU
seconds of this client process and of the emulator. Numbers depend on the machine and on what else runs.

    .venv/bin/python tests/benchmarks/bench_sender.py [--records 200000] [--chunk 5000] [--single 5000]
        [--concurrency 1 2 4 8] [--latency-ms 0]

``--latency-ms`` adds a round trip to every emulator request (real AEP is tens of milliseconds away), which is
where concurrency pays off; with no latency the single-core emulator itself is the limit.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import requests

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE, AEPHook
from airflow_provider_capillary.ingestion import EnvelopeTemplate, OutgoingRecord, StreamingSender, pack

EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
LOYALTY_EVENT = "https://ns.adobe.com/xdm/context/experienceevent-loyalty-details"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_emulator(latency_ms: float = 0.0, command: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Run the emulator on a free port; point ``aep_default`` at it; return the process and its URL.

    :param latency_ms: Milliseconds the emulator adds to every request.
    :param command: Another command that serves the emulator and prints its two start-up lines (URL, then the
        ``AIRFLOW_CONN_AEP_DEFAULT`` line); ``latency_ms`` is then ignored. Default: the emulator's command line.
    """
    if command is None:
        command = [sys.executable, "-m", "airflow_provider_capillary.testing.aep_emulator", "--port", str(free_port())]
        command += ["--latency-ms", str(latency_ms)]
    env = {key: value for key, value in os.environ.items() if key != "AEP_EMULATOR_XDM_ROOT"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    first, second = process.stdout.readline(), process.stdout.readline()
    url = re.search(r"(http://\S+)", first)
    conn = re.search(r"AIRFLOW_CONN_AEP_DEFAULT='(.*)'", second)
    if url is None or conn is None:
        process.kill()
        raise SystemExit(f"emulator did not start: {first!r} {second!r}")
    os.environ["AIRFLOW_CONN_AEP_DEFAULT"] = conn.group(1)
    return process, url.group(1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_up(hook: AEPHook) -> dict[str, str]:
    tenant = hook.get_tenant_id()
    group = hook.create_field_group(
        "Bench Capillary Loyalty Event Fields",
        [EVENT_CLASS],
        {
            "capillary": {
                "properties": {
                    f"_{tenant}": {
                        "type": "object",
                        "properties": {
                            "capillary": {
                                "type": "object",
                                "properties": {
                                    "customerId": {"type": "string"},
                                    "eventName": {"type": "string"},
                                    "points": {"type": "number"},
                                    "balanceAfter": {"type": "number"},
                                    "storeCode": {"type": "string"},
                                    "expiryDate": {"type": "string", "format": "date"},
                                },
                            }
                        },
                    }
                }
            }
        },
    )
    schema_id = hook.create_schema("Bench Loyalty Events", EVENT_CLASS, [LOYALTY_EVENT, group["$id"]])["$id"]
    dataset_id = hook.create_dataset("Bench Loyalty Events", schema_id)
    connection_id = hook.create_streaming_connection("Bench Streaming")
    inlet_id, _ = hook.get_inlet(connection_id)
    source_id = hook.create_source_connection("bench source", connection_id)
    target_id = hook.create_target_connection("bench target", dataset_id, schema_id)
    flow_id = hook.create_dataflow("bench flow", source_id, target_id)
    return {
        "inlet": inlet_id,
        "dataset_id": dataset_id,
        "schema_id": schema_id,
        "flow_id": flow_id,
        "org_id": hook.settings.org_id,
        "tenant": tenant,
    }


def loyalty_event(number: int, tenant: str) -> dict[str, Any]:
    customer = f"CUST-{number % 50_000:06d}"
    return {
        "_id": f"capillary-loyalty_event-{number:012d}",
        "timestamp": "2026-01-14T10:32:05Z",
        "eventType": "loyalty.pointsEarned",
        "producedBy": "system",
        "identityMap": {"CAPLOYALTY": [{"id": customer, "authenticatedState": "authenticated", "primary": True}]},
        "loyalty": {"pointsGained": [{"value": 159, "loyaltyProgramId": "ACME", "transactionId": f"TXN-{number}"}]},
        f"_{tenant}": {
            "capillary": {
                "customerId": customer,
                "eventName": "POINTS_EARNED",
                "points": 159,
                "balanceAfter": 13009,
                "storeCode": "NYC-014",
                "expiryDate": "2027-01-14",
            }
        },
    }


def received(url: str, dataset_id: str) -> int:
    stats = requests.get(f"{url}/_emulator/stats", timeout=60).json()
    return int(stats["sandboxes"]["prod"]["datasets"][dataset_id]["received"])


class Run:
    """Measures one scenario: wall clock, client CPU, emulator CPU, and records the emulator received."""

    def __init__(self, name: str, url: str, dataset_id: str, pid: int) -> None:
        self.name, self.url, self.dataset_id, self.pid = name, url, dataset_id, pid

    def __enter__(self) -> Run:
        self.before = received(self.url, self.dataset_id)
        self.cpu = time.process_time()
        self.server_cpu = cpu_seconds(self.pid)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.started
        self.cpu = time.process_time() - self.cpu
        self.server_cpu = cpu_seconds(self.pid) - self.server_cpu
        self.count = received(self.url, self.dataset_id) - self.before

    def row(self, expected: int, note: str = "") -> str:
        if self.count != expected:
            raise SystemExit(f"{self.name}: the emulator received {self.count} records, expected {expected}")
        rate = self.count / self.elapsed
        return (
            f"| {self.name:<38} | {self.count:>8,} | {self.elapsed:>7.2f} | {rate:>10,.0f} | "
            f"{self.cpu:>6.1f} | {self.server_cpu:>6.1f} | {note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--single", type=int, default=5_000, help="records sent one request each")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--latency-ms", type=float, default=0.0, help="network round trip the emulator adds")
    args = parser.parse_args()
    process, url = start_emulator(args.latency_ms)
    try:
        TOKEN_CACHE.clear()
        hook = AEPHook(pool_size=max(16, *args.concurrency))
        ids = set_up(hook)
        tenant = ids.pop("tenant")
        records = [
            OutgoingRecord(entity["_id"], orjson.dumps(entity), number)
            for number, entity in ((n, loyalty_event(n, tenant)) for n in range(args.records))
        ]
        size = sum(len(r.entity_json) for r in records) / len(records)
        print(f"{len(records):,} loyalty events, {size:.0f} bytes each on average (entity JSON); rate limiting off")
        print(f"emulator latency {args.latency_ms:.0f} ms per request")
        print(f"| {'scenario':<38} | {'records':>8} | {'seconds':>7} | {'records/s':>10} | cli s | emu s | note")
        print(f"|{'-' * 40}|{'-' * 10}|{'-' * 9}|{'-' * 12}|{'-' * 8}|{'-' * 8}|------")
        template = EnvelopeTemplate(**{k: v for k, v in ids.items() if k not in ("inlet",)})
        pid = process.pid

        plan = pack([len(r.entity_json) for r in records], message_overhead=template.overhead)
        bodies = [template.request_body([records[i].entity_json for i in request]) for request in plan.requests]
        headers = {**hook.settings.platform_headers(hook.get_access_token()), "Content-Type": "application/json"}
        batch_url = f"{url}/collection/batch/{ids['inlet']}"
        failures: list[str] = []

        def post_all(threads: int) -> None:
            queue = iter(bodies)
            lock = threading.Lock()

            def post() -> None:
                session = requests.Session()
                while True:
                    with lock:
                        body = next(queue, None)
                    if body is None:
                        return
                    response = session.post(batch_url, data=body, headers=headers, timeout=120)
                    if response.status_code != 207 or b'"statusCode"' in response.content:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                        return

            workers = [threading.Thread(target=post) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if failures:
                raise SystemExit(f"raw client failed: {failures[0]}")

        # Warm-up, not measured: every _id is stored once, so each measured run re-sends known _ids alike.
        post_all(4)

        single = records[: args.single]
        with Run("one request per record (sequential)", url, ids["dataset_id"], pid) as run:
            for record in single:
                hook.send_message(ids["inlet"], orjson.loads(template.message(record.entity_json)))
        print(run.row(len(single), f"extrapolated: {args.records / (run.count / run.elapsed):,.0f} s for all"))

        for concurrency in args.concurrency:
            sender = StreamingSender(
                hook,
                inlet=ids["inlet"],
                dataset_id=ids["dataset_id"],
                schema_id=ids["schema_id"],
                flow_id=ids["flow_id"],
                org_id=ids["org_id"],
                concurrency=concurrency,
                max_records_per_second=None,
                max_requests_per_second=None,
            )
            with Run(f"StreamingSender concurrency {concurrency}", url, ids["dataset_id"], pid) as run, sender:
                for number, start in enumerate(range(0, len(records), args.chunk)):
                    sender.submit(number, records[start : start + args.chunk])
                    list(sender.completed())
                sender.close()
            stats = sender.stats
            print(run.row(len(records), f"{stats.requests} requests, {stats.accepted:,} accepted"))

        with Run("raw requests, ~1 MB bodies, 4 threads", url, ids["dataset_id"], pid) as run:
            post_all(4)
        mean = sum(len(b) for b in bodies) / len(bodies)
        print(run.row(len(records), f"{len(bodies)} bodies of {mean:,.0f} bytes, built beforehand"))
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
