#!/usr/bin/env bash
# Soak test against false failovers: pgbench saturating the machine through the proxy for
# MINUTES minutes on a fresh local cluster, then asserts that the leader never changed (same
# leader, no entry in `status --json` history, no fencing in the agents' logs).
#
# Usage: bench/soak.sh [minutes]      default 10
#   SYNC=off|on|quorum   replication mode (default on)
#   TTL=30 LOOP_WAIT=1   dcs.ttl / dcs.loop_wait (defaults: pgfleet's)
#   CLIENTS=16           pgbench clients (default 8 per core)
#   BUILD=build          build directory holding pgfleet
# Exit code 0 when no leader change happened, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
build="${BUILD:-build}"
sync="${SYNC:-on}"
cores=$(nproc)
clients="${CLIENTS:-$((cores * 8))}"
[ -x "$build/pgfleet" ] || ./scripts/build.sh >/dev/null
pgfleet="$(cd "$build" && pwd)/pgfleet"
pgbench=$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)

work=$(mktemp -d /tmp/pgfleet-soak-XXXXXX)
chmod 755 "$work"
dir="$work/cluster"
cleanup() { "$pgfleet" down --purge --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # free_base

args=(up --dir "$dir" --base-port "$(free_base)" --sync "$sync")
[ -n "${TTL:-}" ] && args+=(--ttl "$TTL")
[ -n "${LOOP_WAIT:-}" ] && args+=(--loop-wait "$LOOP_WAIT")
"$pgfleet" "${args[@]}" >/dev/null
proxy=$("$pgfleet" url --proxy --dir "$dir")
leader_before=$("$pgfleet" status --json --dir "$dir" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
history_before=$("$pgfleet" status --json --dir "$dir" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["history"]))')

# Elections during `up` (the first leader) are logged too: count only what happens under load.
count_changes() { cat "$dir"/nodes/*/log/agent.log | grep -c 'Fence:\|leader key vanished' || true; }
changes_before=$(count_changes)
echo "soak: $minutes min of pgbench ($clients clients, $cores threads, simple protocol) through the proxy, sync $sync, leader $leader_before"
# Initialised on the primary directly: `pgbench -i` through the proxy hangs (reported to the proxy's owner).
timeout 300 "$pgbench" -i -q -s 10 "$("$pgfleet" url --primary --dir "$dir")" >/dev/null 2>&1
# Transaction pooling: the simple query protocol (no named prepared statements across transactions).
timeout $((minutes * 60 + 120)) "$pgbench" -M simple -c "$clients" -j "$cores" -T $((minutes * 60)) -P 60 "$proxy" 2>&1 | grep -E 'progress|tps|latency average|failed' || true

status_json=$("$pgfleet" status --json --dir "$dir")
leader_after=$(echo "$status_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
history_after=$(echo "$status_json" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["history"]))')
fences=$(( $(count_changes) - changes_before ))
echo "leader before $leader_before, after $leader_after; history entries before $history_before, after $history_after; fence/election log lines under load: $fences"
if [ "$leader_before" != "$leader_after" ] || [ "$history_before" != "$history_after" ] || [ "$fences" != 0 ]; then
  echo "soak: FAILED: the leader changed under load"
  cat "$dir"/nodes/*/log/agent.log | grep -E 'WARN|Fence|vanished|AcquireLease' | tail -20
  exit 1
fi
echo "soak: no leader change in $minutes min under load"
