"""The demo: the example DAGs end to end against the local AEP emulator and the demo extracts, no credentials needed.

It starts the emulator, runs ``capillary_aep_setup`` and then ``capillary_to_aep`` for the 2025-06-01 interval with
``airflow dags test`` (a throw-away AIRFLOW_HOME under ``.demo/``), prints what landed in each dataset, the
dead-lettered rows and why, and one customer's profile as AEP's Profile look-up returns it, then stops the emulator.

``--ui`` instead starts ``airflow standalone`` with the emulator and the connection configured, so the DAGs can be
clicked through in the UI (http://127.0.0.1:8080); Ctrl-C stops both.

Usage (after ``scripts/bootstrap.sh``): ``.venv/bin/python scripts/demo.py [--ui]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_HOME = REPO / ".demo"
OFFICIAL_XDM = REPO.parent / "shared" / "reference" / "xdm"
SAMPLE_CUSTOMER = "564100001"


def airflow_env(connection_json: str) -> dict[str, str]:
    home = DEMO_HOME / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW_CONN_AEP_DEFAULT": connection_json,
        "AIRFLOW_VAR_CAPILLARY_EXTRACT_URI": (DEMO_HOME / "extracts").as_uri(),
        # airflow standalone starts its components as `airflow ...` commands: the venv's bin must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env


def airflow(env: dict[str, str], *args: str) -> None:
    log = DEMO_HOME / "logs" / f"{'_'.join(args[:3])}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ airflow {' '.join(args)}   (log: {log.relative_to(REPO)})", flush=True)
    with log.open("w") as out:
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        print(log.read_text()[-4000:])
        raise SystemExit(f"airflow {' '.join(args)} failed (exit {result.returncode}); see {log}")


def prepare_extracts() -> Path:
    """A fresh copy of the shipped demo extracts, so dead letters are written outside the repository."""
    extracts = DEMO_HOME / "extracts"
    shutil.rmtree(extracts, ignore_errors=True)
    shutil.copytree(REPO / "dags" / "demo_extracts", extracts)
    return extracts


def report(emulator: object, extracts: Path) -> None:
    from airflow_provider_capillary.hooks.aep import AEPHook

    stats = emulator.state.stats()["sandboxes"]["prod"]["datasets"]  # type: ignore[attr-defined]
    print("\nRecords that landed in AEP (the emulator's own counts):")
    for dataset_id, counts in stats.items():
        print(f"  {counts['name']:<34} {counts['accepted']:>5} records   (dataset {dataset_id})")

    print("\nDead-lettered rows and why:")
    lines = sorted((extracts / "_dead_letters").rglob("*.jsonl"))
    for path in lines:
        for text in path.read_text().splitlines():
            letter = json.loads(text)
            row = letter["row"]
            where = f"{Path(row['file'] or '?').parent.parent.name}/{Path(row['file'] or '?').name}:{row['line']}"
            field = f" [{letter['field']}]" if letter.get("field") else ""
            print(f"  {where:<38} {letter['reason']}{field}: {letter['detail'][:110]}")
    if not lines:
        print("  none")

    profile = AEPHook().lookup_profile(SAMPLE_CUSTOMER, "CAPLOYALTY")
    print(f"\nProfile of customer {SAMPLE_CUSTOMER} as AEP's Profile look-up returns it:")
    print(json.dumps(profile["entity"] if profile else None, indent=2, ensure_ascii=False)[:3000])


def run_demo() -> None:
    from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

    shutil.rmtree(DEMO_HOME / "airflow", ignore_errors=True)
    extracts = prepare_extracts()
    xdm_root = OFFICIAL_XDM if OFFICIAL_XDM.is_dir() else None
    with AEPEmulator(port=0, xdm_root=xdm_root) as emulator:
        print(f"AEP emulator on {emulator.url} (XDM definitions: {xdm_root or 'built-in subset'})")
        connection = emulator.connection_json()
        os.environ["AIRFLOW_CONN_AEP_DEFAULT"] = connection
        env = airflow_env(connection)
        airflow(env, "db", "migrate")
        airflow(env, "dags", "test", "capillary_aep_setup")
        # The daily run whose data interval is 2025-06-01 (it is dated at the interval's end).
        airflow(env, "dags", "test", "capillary_to_aep", "2025-06-02")
        report(emulator, extracts)
    print("\nEmulator stopped. Airflow logs are under .demo/logs/.")


def run_ui() -> None:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_capillary.testing.aep_emulator", "--port", "8765"]
        + (["--xdm-root", str(OFFICIAL_XDM)] if OFFICIAL_XDM.is_dir() else []),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        lines = [emulator.stdout.readline() for _ in range(2)]
        connection = lines[1].split("=", 1)[1].strip().strip("'")
        prepare_extracts()
        env = airflow_env(connection)
        print(f"{lines[0].strip()}\nStarting airflow standalone on http://127.0.0.1:8080 (Ctrl-C stops everything).")
        print(f"The admin password is in {DEMO_HOME / 'airflow' / 'simple_auth_manager_passwords.json.generated'}")
        subprocess.run([sys.executable, "-m", "airflow", "standalone"], env=env, check=False)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ui", action="store_true", help="start airflow standalone with the emulator instead")
    args = parser.parse_args()
    run_ui() if args.ui else run_demo()


if __name__ == "__main__":
    main()
