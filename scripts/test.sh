#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit (pure logic) and integration
# (real PostgreSQL 15 clusters started through the pgfleet binary on free loopback ports).
# Extra arguments go to ctest (e.g. -L unit, -R Scale).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
./scripts/build.sh
cd build
exec ctest --output-on-failure --timeout 900 -j2 "$@"
