"""Throughput of the AEP emulator's multi-message DCS endpoint (records accepted per second).

Starts the emulator in a subprocess (so the client does not share its core), creates a schema,
dataset, streaming connection and dataflow with raw HTTP calls (``EmulatorClient``), then posts pre-serialised ~1 MB
``/collection/batch`` bodies of loyalty events from a few client threads for a fixed time and prints
the records/s the emulator itself counted.

    .venv/bin/python tests/benchmarks/bench_emulator.py [--seconds 10] [--threads 3] [--builtin]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import requests

from airflow_provider_capillary.testing.aep_emulator.client import EmulatorClient

REPO = Path(__file__).resolve().parents[2]
XDM_ROOT = REPO.parent / "shared" / "reference" / "xdm"
TARGET_BYTES = 950_000
EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
LOYALTY_EVENT = "https://ns.adobe.com/xdm/context/experienceevent-loyalty-details"


def start_emulator(builtin: bool) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "airflow_provider_capillary.testing.aep_emulator", "--port", "0"]
    if not builtin and XDM_ROOT.is_dir():
        command += ["--xdm-root", str(XDM_ROOT)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if match is None:
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, match.group(1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``): the emulator's own cost, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_up(url: str) -> tuple[str, dict[str, Any], str]:
    """Create the event schema, dataset, connection and flow; return the batch URL, header and dataset id."""
    client = EmulatorClient(url)
    group = client.create_fieldgroup(
        "Bench Loyalty Transaction",
        {
            "loyaltyTransaction": {
                "type": "object",
                "properties": {
                    "storeCode": {"type": "string"},
                    "pointsEarned": {"type": "number"},
                    "pointsRedeemed": {"type": "number"},
                    "balanceAfter": {"type": "number"},
                    "billNumber": {"type": "string"},
                },
            }
        },
        EVENT_CLASS,
    )
    target = client.streaming_target("Bench Loyalty Events", [EVENT_CLASS, COMMERCE, LOYALTY_EVENT, group])
    header = target.envelope({})["header"]
    return target.batch_url, header, target.dataset_id


def event(number: int) -> dict[str, Any]:
    return {
        "_id": f"capillary-txn-TXN-{number:09d}",
        "timestamp": "2026-01-14T10:32:05Z",
        "eventType": "commerce.purchases",
        "producedBy": "system",
        "identityMap": {
            "CAPLOYALTY": [{"id": f"CUST-{number % 50000:06d}", "authenticatedState": "authenticated", "primary": True}]
        },
        "commerce": {
            "purchases": {"value": 1},
            "order": {
                "purchaseID": f"TXN-{number}",
                "currencyCode": "USD",
                "priceTotal": 159.0,
                "payments": [
                    {
                        "transactionID": f"PAY-{number}",
                        "paymentType": "credit_card",
                        "paymentAmount": 159.0,
                        "currencyCode": "USD",
                    }
                ],
            },
        },
        "productListItems": [
            {
                "SKU": "SKU-1002352692",
                "name": "LED Bath Light",
                "quantity": 1,
                "priceTotal": 159.0,
                "currencyCode": "USD",
            }
        ],
        "loyalty": {"pointsGained": [{"value": 159, "loyaltyProgramId": "ACME", "transactionId": f"TXN-{number}"}]},
        "_acmecorp": {
            "loyaltyTransaction": {
                "storeCode": "NYC-014",
                "pointsEarned": 159,
                "pointsRedeemed": 0,
                "balanceAfter": 13009,
                "billNumber": f"B-{number}",
            }
        },
    }


def bodies(header: dict[str, Any], count: int) -> list[tuple[bytes, int]]:
    numbers = itertools.count()
    result = []
    for _ in range(count):
        messages: list[bytes] = []
        size = 20
        while True:
            message = orjson.dumps(
                {
                    "header": header,
                    "body": {"xdmMeta": {"schemaRef": header["schemaRef"]}, "xdmEntity": event(next(numbers))},
                }
            )
            if size + len(message) + 1 > TARGET_BYTES:
                break
            messages.append(message)
            size += len(message) + 1
        result.append((b'{"messages":[' + b",".join(messages) + b"]}", len(messages)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--bodies", type=int, default=40, help="distinct pre-serialised bodies to cycle through")
    parser.add_argument("--builtin", action="store_true", help="use the built-in XDM catalogue, not reference/xdm")
    args = parser.parse_args()
    process, url = start_emulator(args.builtin)
    try:
        batch_url, header, dataset_id = set_up(url)
        payloads = bodies(header, args.bodies)
        per_body = sum(count for _, count in payloads) / len(payloads)
        print(f"{len(payloads)} bodies of ~{per_body:.0f} messages, {len(payloads[0][0]):,} bytes each")
        stop = time.monotonic() + args.seconds
        failures: list[str] = []
        counter = itertools.count()

        def client() -> None:
            session = requests.Session()
            while time.monotonic() < stop:
                body, _ = payloads[next(counter) % len(payloads)]
                response = session.post(batch_url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
                if response.status_code != 207 or b'"statusCode"' in response.content:
                    failures.append(f"{response.status_code}: {response.text[:300]}")
                    return

        before = requests.get(f"{url}/_emulator/stats", timeout=30).json()
        cpu_before = cpu_seconds(process.pid)
        started = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(process.pid) - cpu_before
        stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
        if failures:
            raise SystemExit(f"requests failed: {failures[0]}")
        counts = stats["sandboxes"]["prod"]["datasets"][dataset_id]
        received = counts["received"] - before["sandboxes"]["prod"]["datasets"][dataset_id]["received"]
        print(f"accepted messages: {received:,} in {elapsed:.1f} s = {received / elapsed:,.0f} records/s (wall clock)")
        print(f"emulator CPU time: {cpu:.1f} s = {received / cpu:,.0f} records per CPU-second (one core)")
        print(f"distinct _ids stored: {counts['accepted']:,}; re-sent (duplicates): {counts['duplicates']:,}")
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
