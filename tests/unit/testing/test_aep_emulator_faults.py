"""Fault injection, journal, control API and command line of the AEP emulator (real sockets)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator, FaultPlan
from airflow_provider_capillary.testing.aep_emulator.app import REDACTED
from airflow_provider_capillary.testing.aep_emulator.client import EmulatorClient, StreamingTarget

EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
STATS = "/data/foundation/schemaregistry/stats"
IMPORT = "/data/foundation/import"


@pytest.fixture(scope="module")
def emulator() -> Iterator[AEPEmulator]:
    with AEPEmulator(journal=True) as running:
        yield running


@pytest.fixture
def aep(emulator: AEPEmulator) -> Iterator[EmulatorClient]:
    emulator.reset()
    emulator.faults = FaultPlan()
    yield EmulatorClient(emulator.url)
    emulator.faults = FaultPlan()


@pytest.fixture
def target(aep: EmulatorClient) -> StreamingTarget:
    return aep.streaming_target("Faulty", [EVENT])


def event(number: int) -> dict[str, Any]:
    return {"_id": f"e-{number}", "timestamp": "2026-01-14T10:32:05Z", "eventType": "loyalty.pointsEarned"}


# -- scripted faults ---------------------------------------------------------------------------------


def test_scripted_429_with_retry_after(aep: EmulatorClient, emulator: AEPEmulator) -> None:
    emulator.faults.script(r"/schemaregistry/stats$", 429, times=2, retry_after=7)
    first, second, third = (aep.call("GET", STATS) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["Retry-After"] == "7"
    assert first.json()["status"] == 429


@pytest.mark.parametrize("status", [500, 503])
def test_scripted_server_errors(aep: EmulatorClient, emulator: AEPEmulator, status: int) -> None:
    emulator.faults.script(r"^/data/foundation/catalog/", status, method="POST")
    assert aep.call("GET", "/data/foundation/catalog/dataSets").status_code == 200
    failed = aep.call("POST", "/data/foundation/catalog/dataSets", json={"name": "x"})
    assert failed.status_code == status
    assert failed.json()["status"] == status


def test_scripted_drop(aep: EmulatorClient, emulator: AEPEmulator, target: StreamingTarget) -> None:
    emulator.faults.script(r"^/collection/batch/", drop=True)
    with pytest.raises(requests.ConnectionError):
        requests.post(target.batch_url, json={"messages": [target.envelope(event(1))]}, timeout=10)
    assert emulator.state.accepted_ids(target.dataset_id) == []
    retry = requests.post(target.batch_url, json={"messages": [target.envelope(event(1))]}, timeout=10)
    assert retry.status_code == 207
    assert emulator.state.accepted_ids(target.dataset_id) == ["e-1"]


def test_script_validation() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError, match="status or drop"):
        plan.script("x")
    with pytest.raises(ValueError, match="times"):
        plan.script("x", 500, times=0)
    with pytest.raises(ValueError, match="probability"):
        FaultPlan(rate_429=1.5)


def test_control_path_is_never_faulted(aep: EmulatorClient, emulator: AEPEmulator) -> None:
    emulator.faults = FaultPlan(rate_5xx=1.0, seed=1)
    assert aep.call("GET", STATS).status_code in (500, 503)
    assert requests.get(f"{emulator.url}/_emulator/stats", timeout=10).status_code == 200


# -- random faults are reproducible ------------------------------------------------------------------


def test_seeded_faults_repeat(aep: EmulatorClient, emulator: AEPEmulator) -> None:
    runs = []
    for _ in range(2):
        emulator.faults = FaultPlan(seed=42, rate_429=0.2, rate_5xx=0.2)
        runs.append([aep.call("GET", STATS).status_code for _ in range(40)])
    assert runs[0] == runs[1]
    assert {429, 200} <= set(runs[0])
    assert set(runs[0]) & {500, 503}
    emulator.faults = FaultPlan(seed=43, rate_429=0.2, rate_5xx=0.2)
    assert [aep.call("GET", STATS).status_code for _ in range(40)] != runs[0]


def test_seeded_drops(aep: EmulatorClient, emulator: AEPEmulator) -> None:
    emulator.faults = FaultPlan(seed=5, drop_rate=0.5)
    outcomes = []
    for _ in range(12):
        try:
            outcomes.append(requests.get(emulator.url + STATS, headers=aep.headers(), timeout=10).status_code)
        except requests.ConnectionError:
            outcomes.append(0)
    assert 0 in outcomes
    assert 200 in outcomes


def test_latency_is_part_of_the_decision() -> None:
    fault = FaultPlan(latency_ms=50).decide("GET", "/data/x")
    assert fault is not None
    assert fault.latency == pytest.approx(0.05)
    assert fault.status is None


def test_revoke_after_n_requests(aep: EmulatorClient, emulator: AEPEmulator) -> None:
    emulator.faults = FaultPlan(revoke_after=3)
    statuses = [aep.call("GET", STATS).status_code for _ in range(4)]
    assert statuses == [200, 200, 401, 401]
    assert aep.call("GET", STATS).json()["error_code"] == "401013"


def test_ims_faults_only_when_included(emulator: AEPEmulator) -> None:
    emulator.faults = FaultPlan(rate_5xx=1.0, seed=3)
    EmulatorClient(emulator.url)
    emulator.faults = FaultPlan(rate_5xx=1.0, seed=3, include_ims=True)
    with pytest.raises(requests.HTTPError):
        EmulatorClient(emulator.url)
    emulator.faults = FaultPlan()


def test_partial_failures_in_207(aep: EmulatorClient, emulator: AEPEmulator, target: StreamingTarget) -> None:
    emulator.faults = FaultPlan(seed=11, partial_rate=0.5)
    messages = [target.envelope(event(n)) for n in range(20)] + [target.envelope({"_id": "bad"})]
    results = aep.call("POST", target.batch_url, json={"messages": messages}, headers={}).json()["responses"]
    transient = [n for n, result in enumerate(results) if result.get("statusCode") in (500, 503)]
    accepted = [n for n, result in enumerate(results) if "xactionId" in result]
    assert transient
    assert accepted
    assert results[20]["statusCode"] == 400
    assert sorted(transient + accepted) == list(range(20))
    assert emulator.state.accepted_ids(target.dataset_id) == [f"e-{n}" for n in accepted]


def test_batch_ingestion_fault(aep: EmulatorClient, emulator: AEPEmulator, target: StreamingTarget) -> None:
    emulator.faults = FaultPlan(batch_failure_rate=1.0)
    batch_id = aep.ok(
        "POST", f"{IMPORT}/batches", 201, json={"datasetId": target.dataset_id, "inputFormat": {"format": "json"}}
    )["id"]
    headers = {**aep.headers(), "Content-Type": "application/octet-stream"}
    aep.call(
        "PUT",
        f"{IMPORT}/batches/{batch_id}/datasets/{target.dataset_id}/files/a.json",
        data=orjson.dumps(event(1)),
        headers=headers,
    )
    aep.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"})
    batch = aep.ok("GET", f"/data/foundation/catalog/batches/{batch_id}")[batch_id]
    assert batch["status"] == "failed"
    assert batch["errors"][0]["code"] == "INGEST-500"
    assert emulator.state.accepted_ids(target.dataset_id) == []


# -- journal -----------------------------------------------------------------------------------------------


def test_journal_redacts_secrets(aep: EmulatorClient, emulator: AEPEmulator) -> None:
    aep.call("GET", STATS)
    journal_text = orjson.dumps(emulator.journal).decode()
    assert aep.token not in journal_text
    assert "emulator-client-secret" not in journal_text
    token_entry = next(entry for entry in emulator.journal if entry["path"] == "/ims/token/v3")
    assert f"client_secret={REDACTED}" in token_entry["body"].replace("%2A", "*")
    assert token_entry["response_body"]["access_token"] == REDACTED
    stats_entry = next(entry for entry in emulator.journal if entry["path"] == STATS)
    assert stats_entry["headers"]["Authorization"] == REDACTED
    assert stats_entry["status"] == 200
    assert stats_entry["response_body"]["tenantId"] == "acmecorp"
    assert stats_entry["method"] == "GET"


# -- control API -------------------------------------------------------------------------------------------


def test_control_api(aep: EmulatorClient, emulator: AEPEmulator, target: StreamingTarget) -> None:
    control = f"{emulator.url}/_emulator"
    requests.post(target.batch_url, json={"messages": [target.envelope(event(n)) for n in range(3)]}, timeout=10)
    stats = requests.get(f"{control}/stats", timeout=10).json()
    counts = stats["sandboxes"]["prod"]["datasets"][target.dataset_id]
    assert counts["accepted"] == 3
    assert counts["batches"] == 1
    assert requests.get(f"{control}/datasets/{target.dataset_id}/ids", timeout=10).json() == ["e-0", "e-1", "e-2"]
    records = requests.get(f"{control}/datasets/{target.dataset_id}/records", timeout=10).json()
    assert records[0]["eventType"] == "loyalty.pointsEarned"

    plan = {"seed": 1, "scripts": [{"path_regex": "stats$", "status": 503, "retry_after": 2}]}
    assert requests.post(f"{control}/faults", json=plan, timeout=10).status_code == 200
    faulted = aep.call("GET", STATS)
    assert faulted.status_code == 503
    assert faulted.headers["Retry-After"] == "2"
    assert requests.post(f"{control}/faults", json={"nonsense": 1}, timeout=10).status_code == 400

    assert requests.post(f"{control}/revoke", timeout=10).status_code == 200
    assert aep.call("GET", STATS).status_code == 401
    assert requests.post(f"{control}/reset", timeout=10).status_code == 200
    assert requests.get(f"{control}/stats", timeout=10).json()["sandboxes"]["prod"]["datasets"] == {}


# -- command line ---------------------------------------------------------------------------------------------


def test_command_line() -> None:
    command = [sys.executable, "-m", "airflow_provider_capillary.testing.aep_emulator", "--port", "0", "--seed", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert process.stdout is not None
        url = re.search(r"(http://\S+)", process.stdout.readline())
        assert url is not None
        connection = orjson.loads(process.stdout.readline().split("=", 1)[1].strip().strip("'"))
        assert connection["extra"]["platform_url"] == url.group(1)
        client = EmulatorClient(url.group(1))
        assert client.ok("GET", STATS)["tenantId"] == "acmecorp"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
