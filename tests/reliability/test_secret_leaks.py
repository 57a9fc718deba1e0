"""The client secret and every access token never leak: a real ``airflow dags test --use-executor`` run (LocalExecutor,
supervised task processes writing their log files, an execution API server) of ``CapillaryToAEPOperator`` against the
AEP emulator, with a recognisable secret in ``AIRFLOW_CONN_AEP_DEFAULT`` and faults that make errors happen: token
revocation (401) mid-run, 5xx answers, a 403 on a schema, a wrong secret (IMS 401) and bad rows. The secrets and every
token the emulator issued are then searched for in the task log files, the console echo of the task logs (unmasked),
XCom, the dead letters, the exception texts and the emulator's journal (its access log): zero occurrences. A positive
control plants them in each kind of artifact and checks that the same search finds them there."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.faults import FaultPlan
from tests.integration.aep_setup import set_up

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SECRET = "s3cr3t-LEAK-CANARY-7f3a9c2e1b"
"""The client secret of ``aep_default`` (what the emulator accepts)."""

WRONG_SECRET = "s3cr3t-LEAK-CANARY-WRONG-55d1e0"
"""The client secret of ``aep_wrong``: IMS refuses it."""

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "leak_canary"

DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_capillary.operators.capillary_to_aep import CapillaryToAEPOperator

COMMON = dict(
    record_types="loyalty_event",
    inlet={inlet!r},
    extract_uri={extract_uri!r},
    dead_letter_uri={dead_letter_uri!r},
    interval_start="2025-06-01",
    mapping_options={{"org_id": "50001"}},
    mode="stream",
    chunk_size=20,
    concurrency=2,
    max_records_per_second=None,
    max_requests_per_second=None,
    max_reject_ratio=0.5,
)

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 6, 1, tz="UTC"), catchup=False) as dag:
    stream = CapillaryToAEPOperator(task_id="stream", targets={targets!r}, **COMMON)
    forbidden = CapillaryToAEPOperator(task_id="forbidden", targets={forbidden!r}, trigger_rule="all_done", **COMMON)
    # A second AEP connection in the same DAG: its default outlet is its own asset (aep://aep_wrong/capillary).
    wrong_secret = CapillaryToAEPOperator(
        task_id="wrong_secret",
        targets={targets!r},
        aep_conn_id="aep_wrong",
        trigger_rule="all_done",
        **COMMON,
    )
    stream >> forbidden >> wrong_secret
"""


class IssuedTokens(dict[str, float]):
    """The emulator's live-token table, remembering every token ever issued (revocation empties the table)."""

    def __init__(self) -> None:
        super().__init__()
        self.issued: list[str] = []

    def __setitem__(self, token: str, expiry: float) -> None:
        self.issued.append(token)
        super().__setitem__(token, expiry)


@dataclass
class Artifact:
    """Text where a secret must not appear.

    :param kind: what it is (task log, XCom, dead letter, exception, journal, console).
    :param name: which one.
    :param text: its content.
    """

    kind: str
    name: str
    text: str


def find_leaks(artifacts: list[Artifact], needles: Mapping[str, str]) -> list[str]:
    """Every (needle, artifact) pair where a needle occurs, as ``label in kind:name``."""
    return [
        f"{label} in {artifact.kind}:{artifact.name}"
        for artifact in artifacts
        for label, needle in needles.items()
        if needle in artifact.text
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_events(partition: Path) -> None:
    """60 loyalty events, every sixth with an impossible date and one ragged row: bad rows make dead letters."""
    partition.mkdir(parents=True)
    lines = ["event_id,event_name,event_time,customer_id,program_id,points"]
    for n in range(60):
        day = "31" if n % 6 == 5 else "01"
        lines.append(f"leak-{n},pointsIssued,2025-06-{day}T10:{n:02d}:00Z,{564100000 + n},1001,{n}")
    lines.append("leak-ragged,pointsIssued,2025-06-01T10:00:00Z")
    (partition / "part-0000.csv").write_text("\n".join(lines) + "\n")


@dataclass
class LeakRun:
    """What one faulted DAG run left behind, and the secrets that must not be in it."""

    artifacts: list[Artifact]
    needles: dict[str, str]
    journal: list[dict[str, Any]]
    task_logs: dict[str, str]
    xcom: list[str]


@pytest.fixture(scope="module")
def leak_run(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeakRun]:
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API_AUTH__JWT_SECRET="leak-test-jwt-signing-key-0123456789abcdef",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=180)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    # The execution API server starts while the DAG and the emulator are prepared.
    api_log = (home / "api-server.out").open("wb")
    api = subprocess.Popen(
        [AIRFLOW, "api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=api_log,
        stderr=subprocess.STDOUT,
    )
    emulator = AEPEmulator(xdm_root=shared_dir / "reference" / "xdm", client_secret=SECRET, journal=True)
    tokens = IssuedTokens()
    emulator.state.tokens = tokens
    try:
        with emulator, pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emulator.connection_json())
            TOKEN_CACHE.clear()
            targets, inlet = set_up(["loyalty_event"])
            TOKEN_CACHE.clear()
            forbidden = {
                "loyalty_event": {
                    **targets["loyalty_event"],
                    "schema_id": "https://ns.adobe.com/acmecorp/schemas/forbidden",
                }
            }
            extracts = home / "extracts"
            write_events(extracts / "loyalty_event" / "dt=2025-06-01")
            dead = home / "dead-letters"
            (dags / f"{DAG_ID}.py").write_text(
                DAG_SOURCE.format(
                    dag_id=DAG_ID,
                    inlet=inlet,
                    extract_uri=extracts.as_uri(),
                    dead_letter_uri=dead.as_uri(),
                    targets=targets,
                    forbidden=forbidden,
                )
            )
            wrong = json.loads(emulator.connection_json())
            env["AIRFLOW_CONN_AEP_DEFAULT"] = emulator.connection_json()
            env["AIRFLOW_CONN_AEP_WRONG"] = json.dumps({**wrong, "password": WRONG_SECRET})
            plan = FaultPlan(seed=7, rate_5xx=0.15, retry_after=0, revoke_after=8)
            plan.script("/schemas/.*forbidden", status=403, times=50)
            emulator.faults = plan
            wait_for(f"http://127.0.0.1:{port}/execution/health", api)
            console = subprocess.run(
                [AIRFLOW, "dags", "test", DAG_ID, "2025-06-01", "--use-executor"],
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            journal = list(emulator.journal)
    finally:
        api.terminate()
        api.wait(30)
        api_log.close()
        TOKEN_CACHE.clear()

    task_logs = {str(path.relative_to(home)): path.read_text() for path in sorted((home / "logs").rglob("*.log"))}
    with sqlite3.connect(home / "airflow.db") as db:
        xcom = [str(value) for (value,) in db.execute("SELECT value FROM xcom")]
    artifacts = [Artifact("task log", name, text) for name, text in task_logs.items()]
    artifacts += [Artifact("xcom", str(n), value) for n, value in enumerate(xcom)]
    artifacts += [
        Artifact("dead letter", str(path.relative_to(home)), path.read_text()) for path in sorted(dead.rglob("*.jsonl"))
    ]
    artifacts += [Artifact("exception", name, text) for name, text in exception_texts(task_logs).items()]
    artifacts.append(Artifact("journal", "emulator", json.dumps(journal)))
    artifacts.append(Artifact("console", "airflow dags test stdout+stderr", console.stdout + console.stderr))
    needles = {"client secret": SECRET, "wrong client secret": WRONG_SECRET}
    needles |= {f"access token #{n}": token for n, token in enumerate(tokens.issued)}
    yield LeakRun(artifacts, needles, journal, task_logs, xcom)


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    """Wait until ``url`` answers 200 (the execution API server is up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the execution API server exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {seconds} s")


def exception_texts(task_logs: Mapping[str, str]) -> dict[str, str]:
    """The exception type, value and frames of every failure recorded in the (JSON lines) task logs."""
    texts = {}
    for name, text in task_logs.items():
        for number, line in enumerate(text.splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("error_detail"):
                texts[f"{name}:{number + 1}"] = json.dumps(record["error_detail"])
    return texts


def log_of(run: LeakRun, task_id: str) -> str:
    (text,) = [text for name, text in run.task_logs.items() if f"task_id={task_id}/" in name]
    return text


def test_the_run_really_met_the_faults_it_is_meant_to_survive(leak_run: LeakRun) -> None:
    """Without these the leak search below would prove little: errors happened and were logged."""
    statuses = [entry["status"] for entry in leak_run.journal]
    assert 401 in statuses, "a revoked token was refused"
    assert 403 in statuses and {500, 503} & set(statuses)
    assert sum(label.startswith("access token") for label in leak_run.needles) >= 3, "tokens were renewed"
    assert '"level":"error"' not in log_of(leak_run, "stream"), "the streaming task survived the faults"
    (summary,) = [json.loads(value) for value in leak_run.xcom if '"accepted"' in value]
    assert (summary["accepted"], summary["dead_lettered"]) == (50, 11), "the run summary is in XCom"
    exceptions = {
        a.name.split("/task_id=")[1].split("/")[0]: a.text for a in leak_run.artifacts if a.kind == "exception"
    }
    assert set(exceptions) == {"forbidden", "wrong_secret"}
    assert "AEPAuthError" in exceptions["forbidden"] and "403" in exceptions["forbidden"]
    assert "AEPAuthError" in exceptions["wrong_secret"] and "invalid_client" in exceptions["wrong_secret"]
    assert any('"invalid_datetime"' in a.text for a in leak_run.artifacts if a.kind == "dead letter")


def test_no_secret_or_token_appears_anywhere(leak_run: LeakRun) -> None:
    assert find_leaks(leak_run.artifacts, leak_run.needles) == []


def test_the_search_finds_secrets_planted_in_every_kind_of_artifact(leak_run: LeakRun) -> None:
    """Positive control: the same search, over the same artifacts with the secrets planted in each, finds them all."""
    token_label, token = next((label, value) for label, value in leak_run.needles.items() if "token" in label)
    planted = [
        Artifact(a.kind, a.name, a.text[: len(a.text) // 2] + f" {SECRET} {token} " + a.text[len(a.text) // 2 :])
        for a in leak_run.artifacts
    ]
    found = find_leaks(planted, {"client secret": SECRET, token_label: token})
    expected = [f"{label} in {a.kind}:{a.name}" for a in planted for label in ("client secret", token_label)]
    assert found == expected
    assert {a.kind for a in planted} == {"task log", "xcom", "dead letter", "exception", "journal", "console"}
