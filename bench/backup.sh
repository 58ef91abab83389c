#!/usr/bin/env bash
# What an incremental backup saves: a one-node cluster with pgbench data, a full backup
# (pg_basebackup), then after each workload an incremental one (`backup --incremental`), with the
# bytes copied and the time taken next to the full one's. Two workloads bound the range:
#   append  rows inserted into one table (logs, events): only the files written are copied;
#   tpcb    pgbench's updates all over pgbench_accounts: its file is copied whole (a file, up to
#           1 GB, is the unit; pgBackRest's incremental backups work the same way).
# Usage: bench/backup.sh   BENCH_SCALE=50 (pgbench scale, 15 MB each)  BENCH_SECONDS=20 (per workload)
#        PGFLEET_BIN=build/pgfleet (built with scripts/build.sh if missing)
# Writes bench/results/<date>-backup.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${BENCH_SCALE:-50}"
seconds="${BENCH_SECONDS:-20}"
bin="${PGFLEET_BIN:-$PWD/build/pgfleet}"
[ -x "$bin" ] || { ./scripts/build.sh >/dev/null; bin=$PWD/build/pgfleet; }

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # free_base, make_workdir
make_workdir

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
"$bin" up --dir "$dir" --replicas 0 --base-port "$(free_base)" >/dev/null
url=$("$bin" url --dir "$dir" --primary)
log "pgbench -i -s $scale"
pgbench -i -q -s "$scale" "$url" >/dev/null 2>&1
psql -q "$url" -c "CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), body text)"
psql -q "$url" -c "CHECKPOINT"
sleep 3  # what the load wrote is older than the first backup's copy window

# backup ARGS...: runs `pgfleet backup`, prints "seconds bytes copied_bytes" of the new backup.
backup() {
  local start end
  start=$(date +%s.%N)
  "$bin" backup --dir "$dir" "$@" >/dev/null
  end=$(date +%s.%N)
  "$bin" backup --dir "$dir" --list --json | python3 -c '
import json, sys
b = json.load(sys.stdin)["backups"][-1]
print(float(sys.argv[2]) - float(sys.argv[1]), b["bytes"], b["copied_bytes"])' "$start" "$end"
}

log "full backup"
read -r full_s full_bytes full_copied < <(backup)
sleep 3

append_script="$work/append.sql"
echo "INSERT INTO events (body) VALUES (repeat('x', 200));" > "$append_script"
log "append workload, ${seconds} s"
append_tx=$(pgbench -n -c 4 -T "$seconds" -f "$append_script" "$url" 2>/dev/null | awk '/actually processed/ {print $NF}')
sleep 3
log "incremental backup"
read -r inc1_s inc1_bytes inc1_copied < <(backup --incremental)
sleep 3

log "tpcb workload, ${seconds} s"
tpcb_tx=$(pgbench -n -c 4 -T "$seconds" "$url" 2>/dev/null | awk '/actually processed/ {print $NF}')
sleep 3
log "incremental backup"
read -r inc2_s inc2_bytes inc2_copied < <(backup --incremental)

mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
out="bench/results/$(date +%F)-backup.md"
mkdir -p bench/results
{
  echo "# Incremental backups against a full one"
  echo
  echo "Run $(date -u '+%F %T') UTC by \`bench/backup.sh\` at $(git rev-parse --short HEAD 2>/dev/null || echo '?');"
  echo "$(nproc) cores; pgbench scale $scale; each workload $seconds s with 4 clients; one node."
  echo "The full backup is pg_basebackup (with its WAL); an incremental one copies the files changed"
  echo "since the previous backup and hard-links the rest; both are checked by pg_verifybackup, which"
  echo "is part of the time."
  echo
  echo "| backup | after | size (MB) | copied (MB) | copied / full | time (s) | time / full |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  echo "| full | pgbench -i | $(mb "$full_bytes") | $(mb "$full_copied") | 1.00 | $(printf %.1f "$full_s") | 1.00 |"
  echo "| incremental | append, $append_tx inserts | $(mb "$inc1_bytes") | $(mb "$inc1_copied") | $(ratio "$inc1_copied" "$full_copied") | $(printf %.1f "$inc1_s") | $(ratio "$inc1_s" "$full_s") |"
  echo "| incremental | tpcb, $tpcb_tx transactions | $(mb "$inc2_bytes") | $(mb "$inc2_copied") | $(ratio "$inc2_copied" "$full_copied") | $(printf %.1f "$inc2_s") | $(ratio "$inc2_s" "$full_s") |"
} > "$out"
cat "$out"
echo "written to $out" >&2
