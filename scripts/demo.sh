#!/usr/bin/env bash
# The main job: the example DAGs end to end against the bundled local AEP emulator and the demo extracts.
# Installs what it needs first. Usage: scripts/demo.sh [--ui]   (--ui: airflow standalone with the emulator)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
