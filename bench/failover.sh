#!/usr/bin/env bash
# Failover benchmark: the chaos workload (tests/chaos) with CYCLES cycles of each fault per
# replication mode, on a fresh local cluster per mode, with pgfleet's default settings unless
# TTL/LOOP_WAIT are given. Prints one table (unavailability window median/p90/max, lost
# acknowledged writes, client errors per mode and fault) and writes it to
# bench/results/<date>-failover.md.
#
# Usage: bench/failover.sh [--cycles N] [--modes "off on quorum"] [--out FILE]
#        bench/failover.sh [cycles] [modes]          (the same, positional)
#   defaults: 50 cycles, "off on quorum", bench/results/<date>-failover.md
#   FAULTS="postmaster,host,hang,replica,switchover"  faults to inject (default all)
#   TTL=30 LOOP_WAIT=1                                 dcs.ttl / dcs.loop_wait for the clusters
#   BUILD=build                                        build directory holding pgfleet and tests/pgfleet_chaos
# A hang cycle lasts about a TTL (the leader key must expire): with the default ttl of 30 s,
# 50 cycles of every fault in three modes take hours; pass fewer cycles for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=50
modes="off on quorum"
out="bench/results/$(date +%Y-%m-%d)-failover.md"
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cycles) cycles="${2:?--cycles needs a number}"; shift 2 ;;
    --modes) modes="${2:?--modes needs a list such as \"off on quorum\"}"; shift 2 ;;
    --out) out="${2:?--out needs a file}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench/failover.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && cycles="${positional[0]}"
[ ${#positional[@]} -ge 2 ] && modes="${positional[1]}"
case "$cycles" in ''|*[!0-9]*|0) echo "bench/failover.sh: cycles must be a positive number, got '$cycles'" >&2; exit 2 ;; esac
build="${BUILD:-build}"
faults="${FAULTS:-postmaster,host,hang,replica,switchover}"
[ -x "$build/tests/pgfleet_chaos" ] || ./scripts/build.sh >/dev/null

extra=()
[ -n "${TTL:-}" ] && extra+=(--ttl "$TTL")
[ -n "${LOOP_WAIT:-}" ] && extra+=(--loop-wait "$LOOP_WAIT")

rows=$(mktemp)
logs=$(mktemp -d)
trap 'rm -rf "$rows" "$logs"' EXIT
started=$(date +%s)
status=0
for mode in $modes; do
  echo "== $mode: $cycles cycle(s) of each of $faults" >&2
  if ! "$build/tests/pgfleet_chaos" --pgfleet "$build/pgfleet" --sync "$mode" --cycles "$cycles" \
       --faults "$faults" --summary "$rows" "${extra[@]}" | tee "$logs/$mode.log" >&2; then
    status=1
  fi
done
minutes=$(( ($(date +%s) - started + 59) / 60 ))

{
  echo "# Failover benchmark ($(date +%Y-%m-%d))"
  echo
  echo "\`bench/failover.sh --cycles $cycles --modes \"$modes\"\` on $(nproc) cores ($(uname -r)), PostgreSQL 15, local mode"
  echo "(one host: 3 nodes + proxy), dcs.ttl ${TTL:-30 (default)} s, dcs.loop_wait ${LOOP_WAIT:-1 (default)} s;"
  echo "**$cycles cycle(s) of each fault per mode**, ${minutes} min in all. Workload: 4 writers inserting unique ids"
  echo "through the proxy every 20 ms (5 s client statement timeout) and 2 readers."
  echo
  echo "Window = longest gap between acknowledged writes, from the last one before the fault until the"
  echo "cluster converged (one primary, every other node streaming from it, sync constraints settled)."
  echo "Lost writes = acknowledged inserts missing on the new primary (sync/quorum: must be 0)."
  echo "Failed checks = cycles where a checker assertion failed (see tests/chaos/chaos.cpp)."
  echo
  echo "| mode | fault | cycles | median s | p90 s | max s | lost writes | writer errors | reader errors | failed checks |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  cat "$rows"
  echo
  echo "Per-cycle lines:"
  echo
  echo '```'
  for mode in $modes; do grep -h '^cycle\|problem\|overlap' "$logs/$mode.log" | sed "s/^/$mode /" || true; done
  echo '```'
} > "$out"
cat "$out"
echo "written to $out" >&2
exit $status
