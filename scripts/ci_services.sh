#!/usr/bin/env bash
# Install what the end-to-end tests (tests/e2e, marker `e2e`) need on a fresh Debian machine: PostgreSQL and Redis
# servers and headless Chromium, from Debian's packages. Idempotent: installs only what is missing.
#
# Nothing is started here and no system service is enabled: the tests start their own PostgreSQL cluster and
# Redis server on 127.0.0.1, on free ports, from a temporary directory (PostgreSQL as the `postgres` system user
# when run as root), and stop them at the end.
#
# Usage: scripts/ci_services.sh        (as root, or with sudo available)
set -euo pipefail

packages=(postgresql redis-server chromium)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "ci_services: installing ${missing[*]}"
  $sudo apt-get update -qq
  # With recommends: Chromium's fonts come that way (screenshots need them).
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# What the tests look for: the PostgreSQL server binaries, redis-server and Chromium.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
for binary in "$pg_bin/postgres" "$pg_bin/initdb" /usr/bin/redis-server /usr/bin/chromium; do
  [ -x "$binary" ] || { echo "ci_services: $binary is missing after the install" >&2; exit 1; }
done
id postgres >/dev/null 2>&1 || { echo "ci_services: the postgres system user is missing" >&2; exit 1; }
echo "ci_services: ready ($("$pg_bin/postgres" --version), $(redis-server --version | cut -d' ' -f3), $(chromium --version 2>/dev/null))"
