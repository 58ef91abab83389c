#!/usr/bin/env bash
# What an idle cluster costs: `pgfleet up` (primary, 2 replicas, proxy, dashboard) on free ports,
# nothing connected, then the CPU time and the wake-ups (context switches) of each process over a
# window, from /proc. For small machines (a Raspberry Pi rack) that run it all day.
# Usage: bench/idle.sh [seconds]   (default 30; builds first if needed)
# Writes bench/results/<date>-idle.md.
set -euo pipefail
cd "$(dirname "$0")/.."
window="${1:-30}"
[ -x build/pgfleet ] || ./scripts/build.sh >/dev/null
bin=$PWD/build/pgfleet

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # free_base, make_workdir
make_workdir

"$bin" up --dir "$dir" --replicas 2 --base-port "$(free_base)" >/dev/null
sleep 5  # past start-up work (checkpoints, first samples)

# The cluster's processes: the agents and the proxy by their pidfiles, the servers by their
# postmasters and every child of those.
pids=()
for f in "$dir"/run/agent-*.pid; do pids+=("$(cat "$f")"); done
for pm in $(pgrep -f -- "-D $dir/nodes/"); do
  pids+=("$pm")
  for child in $(pgrep -P "$pm"); do pids+=("$child"); done
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Every thread's: an agent's or the proxy's main thread mostly sleeps while the others work.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}'; }
label() {
  local cmd
  cmd=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null || true)
  case "$cmd" in
    *" agent "*) echo "agent ${cmd##*--node }" ;;
    *" proxy "*) echo "proxy" ;;
    *"postgres -D"*) echo "postmaster" ;;
    postgres:*) echo "postgres ${cmd#postgres: }" ;;
    *) echo "$cmd" ;;
  esac
}

declare -A t0 s0
for p in "${pids[@]}"; do t0[$p]=$(ticks "$p"); s0[$p]=$(switches "$p"); done
sleep "$window"
hz=$(getconf CLK_TCK)
rows=$(for p in "${pids[@]}"; do
  t1=$(ticks "$p"); s1=$(switches "$p")
  printf '%s\t%s\t%s\n' "$(label "$p" | sed 's/ *$//')" \
    "$(awk -v d=$((t1 - ${t0[$p]})) -v hz="$hz" -v w="$window" 'BEGIN {printf "%.1f", d * 1000 / hz / w}')" \
    "$(awk -v d=$((s1 - ${s0[$p]})) -v w="$window" 'BEGIN {printf "%.0f", d / w}')"
done | sort -t$'\t' -k1,1)

# Servers' processes are summed per node (postmaster and its children).
table=$(printf '%s\n' "$rows" | awk -F'\t' '
  { name = $1
    if (name ~ /^postgres / || name == "postmaster") name = "PostgreSQL (3 servers, every process)"
    cpu[name] += $2; wake[name] += $3; total_cpu += $2; total_wake += $3 }
  END { for (k in cpu) printf "| %s | %.1f | %d |\n", k, cpu[k], wake[k]
        printf "| **all** | **%.1f** | **%d** |\n", total_cpu, total_wake }' | sort)

out="bench/results/$(date -u +%F)-idle.md"
{
  echo "# An idle cluster's cost"
  echo
  echo "Run $(date -u '+%F %T') UTC by \`bench/idle.sh\` at $(git rev-parse --short HEAD 2>/dev/null || echo '?'):"
  echo "\`pgfleet up --replicas 2\` (3 servers, 3 agents, the proxy with the dashboard), no client"
  echo "connected, measured over ${window} s from /proc (utime + stime; voluntary and involuntary"
  echo "context switches). $(nproc) cores; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| process | CPU ms per second | wake-ups per second |"
  echo "|---|---:|---:|"
  printf '%s\n' "$table"
} > "$out"
cat "$out"
