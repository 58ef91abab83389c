#!/usr/bin/env bash
# Runs every multi-host partition scenario (tests/multihost/partitions.sh) under the write workload
# through the proxy, once with a single etcd member and once with three (etcd leader loss), and
# prints one table: per scenario the time until the old primary stopped taking writes, the time
# until writes were acknowledged again through the proxy by the new primary (failover scenarios),
# the longest gap between acknowledged writes, and acknowledged / lost writes.
# Writes the table to bench/results/<date>-partitions.md. Needs root (network namespaces).
# Usage: bench/partitions.sh [PGFLEET_BINARY]   (default build/pgfleet; MH_TTL, MH_SYNC as for the test)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build/pgfleet}")
[ -x "$bin" ] || { echo "no pgfleet binary at $bin (build first, or pass its path)" >&2; exit 1; }
summary=$(mktemp /tmp/pgfleet-partitions-bench.XXXXXX)
trap 'rm -f "$summary"' EXIT
export MH_SUMMARY=$summary MH_TTL=${MH_TTL:-6} MH_SYNC=${MH_SYNC:-on}

run() {
  echo "== MH_ETCD_MEMBERS=$1: ${*:2}" >&2
  local log
  log=$(mktemp /tmp/pgfleet-partitions-run.XXXXXX)
  if ! MH_ETCD_MEMBERS=$1 tests/multihost/partitions.sh "$bin" "${@:2}" 2>&1 | tee "$log" >&2; then
    echo "| (failed: ${*:2}: $(grep -o 'FAIL: .*' "$log" | tail -n1 | tr '|' '/')) | $1 | $MH_SYNC | | | | | |" >>"$summary"
  fi
  rm -f "$log"
}
run 1 primary-isolated primary-no-etcd replica-isolated asymmetric etcd-down etcd-down-failsafe primary-no-etcd-failsafe switchover manual-failover
run 3 etcd-leader-loss primary-isolated primary-no-etcd etcd-down-failsafe
run 1 netem  # delay and loss with sch_netem; loss only (nftables) on a kernel without it

out="bench/results/$(date +%F)-partitions.md"
{
  echo "# Multi-host partitions ($(date +%F), ttl ${MH_TTL} s, loop_wait 1 s, sync ${MH_SYNC})"
  echo
  echo "bench/partitions.sh: three hosts (agent + PostgreSQL 15) as network namespaces on a bridge,"
  echo "etcd in one namespace (or three), a proxy following etcd and a write workload (one psql per"
  echo "INSERT, two writers, 1.5 s client timeout) in another. Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Times are seconds after the cut. \"writes back\": first INSERT acknowledged through the proxy"
  echo "by the new primary (goal: ttl + 2 s). \"longest gap\": between two acknowledged writes from 1 s"
  echo "before the cut until the checker ran (after healing). Acknowledged / lost: writes acknowledged so far
in that run (scenarios of one run share a cluster) / of those, missing when the checker read them back."
  echo
  echo "| scenario | etcd members | sync | old primary fenced | writes back | longest gap | acknowledged | lost |"
  echo "|---|---|---|---|---|---|---|---|"
  cat "$summary"
} >"$out"
cat "$out"
echo "written to $out" >&2
