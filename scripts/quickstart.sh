#!/usr/bin/env bash
# Installs what is missing, builds pgfleet and starts a local cluster (primary + 2 replicas).
# Extra arguments go to `pgfleet up` (e.g. --replicas 3 --sync on).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
./scripts/build.sh

dir="${PGFLEET_DIR:-$PWD/pgfleet-data}"
if [ "$(id -u)" -eq 0 ] && ! su -s /bin/sh postgres -c "test -x '$(dirname "$dir")'" 2>/dev/null; then
  # Root's home is private, and PostgreSQL runs as the postgres user: keep the data where it can reach.
  dir=/var/lib/pgfleet/pgfleet-data
  mkdir -p /var/lib/pgfleet
  echo "note: $PWD is not reachable by the postgres user; using $dir"
fi
export PGFLEET_DIR="$dir"
exec ./build/pgfleet up --dir "$dir" "$@"
