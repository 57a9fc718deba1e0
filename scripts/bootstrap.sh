#!/usr/bin/env bash
# Create ./.venv (Python >= 3.11) and install the provider with its dev tools, pinned by requirements/lock.txt.
# Idempotent: a second run only re-checks the install. Usage: scripts/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml requirements/lock.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c requirements/lock.txt -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
