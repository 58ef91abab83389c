#!/usr/bin/env bash
# Multi-host partitions: three hosts (agent + PostgreSQL each) and etcd in network namespaces.
#   usage: partitions.sh PGFLEET_BINARY [scenario...]   (default: every scenario below, in order)
# Scenarios share one cluster and run one after the other; each ends healed and converged.
#   bootstrap        first agent initializes, the others clone it and stream
#   primary-isolated primary's host cut off from everyone: it fences within the TTL, a new primary is
#                    elected and takes writes; healed, the old primary rejoins (pg_rewind) and streams
#   primary-no-etcd  primary cut off from etcd only: same outcome
#   replica-isolated a replica cut off: the primary keeps taking writes; healed, the replica streams
set -euo pipefail
export PGFLEET=$(realpath "${1:?usage: partitions.sh PGFLEET_BINARY [scenario...]}")
shift
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(primary-isolated primary-no-etcd replica-isolated)
source "$(dirname "$0")/lib.sh"

mh_setup
NODES=(n1 n2 n3)
for n in "${NODES[@]}"; do add_host "$n"; done
START=$SECONDS
for n in "${NODES[@]}"; do start_node "$n"; done
wait_for 180 "one primary and two streaming replicas" '[ "$(count_streaming)" = 2 ] && [ -n "$(leader)" ]'
log "bootstrap: leader $(leader), all streaming after $((SECONDS - START)) s"
for n in "${NODES[@]}"; do
  [ -d "$MH_DIR/$n/nodes/$n/data" ] || die "$n has no data directory"
  [ "$(stat -c %U "$MH_DIR/$n/nodes/$n/data")" = postgres ] || die "$n's data is not owned by postgres"
done

# A row written through the current primary must be on every later primary (no writes in flight
# during the partition, so even async mode loses nothing here).
ROW=0
write_row() {
  local p
  p=$(leader)
  ROW=$((ROW + 1))
  [ "$(sql "$p" "$p" "CREATE TABLE IF NOT EXISTS mh(i int); INSERT INTO mh VALUES ($ROW) RETURNING i")" = "$ROW" ] ||
    die "cannot write row $ROW on $p"
  # Replicated before any partition starts.
  for n in "${NODES[@]}"; do
    wait_for 30 "row $ROW on $n" "[ \"\$(sql $n $n 'SELECT count(*) FROM mh WHERE i = $ROW')\" = 1 ]"
  done
}

new_leader_other_than() { local l; l=$(leader); [ -n "$l" ] && [ "$l" != "$1" ] && writable "$l"; }
converged() { [ "$(count_streaming)" = 2 ] && writable "$(leader)"; }

partition_primary() {
  local how=$1 old t0
  old=$(leader)
  write_row
  log "$how: cutting off primary $old"
  t0=$SECONDS
  if [ "$how" = primary-isolated ]; then isolate "$old"; else block_route "$old" etcd; fi
  wait_for $((MH_TTL + 10)) "$old to stop taking writes" "! writable $old"
  local fenced=$((SECONDS - t0))
  [ $fenced -le $((MH_TTL + 3)) ] || die "$old fenced after $fenced s, TTL is $MH_TTL s"
  wait_for $((MH_TTL * 3 + 20)) "a new primary" "new_leader_other_than $old"
  local p
  p=$(leader)
  log "$how: $old fenced after $fenced s; $p primary and writable after $((SECONDS - t0)) s"
  [ "$(sql "$p" "$p" "SELECT count(*) FROM mh")" = "$ROW" ] || die "rows lost on the new primary $p"
  writable "$old" && die "two primaries: $old still takes writes"
  if [ "$how" = primary-isolated ]; then heal "$old"; else unblock_route "$old" etcd; fi
  wait_for 120 "$old to rejoin and everyone to stream" converged
  [ "$(node_state "$old")" = "replica streaming" ] || die "$old is $(node_state "$old") after healing"
  grep -q "rewinding $old\|rebuilding $old" "$MH_DIR/$old/nodes/$old/log/agent.log" "$MH_DIR/$old.log" 2>/dev/null ||
    log "note: $old rejoined without pg_rewind (its WAL had not diverged)"
  log "$how: healed, $old streams again after $((SECONDS - t0)) s"
}

replica_isolated() {
  local p r t0
  p=$(leader)
  for n in "${NODES[@]}"; do [ "$n" != "$p" ] && r=$n; done
  write_row
  log "replica-isolated: cutting off replica $r"
  t0=$SECONDS
  isolate "$r"
  sleep_until=$((SECONDS + MH_TTL + 2))
  while [ $SECONDS -lt $sleep_until ]; do
    writable "$p" || die "primary $p stopped taking writes while only replica $r was cut off"
    sleep 0.5
  done
  [ "$(leader)" = "$p" ] || die "leadership moved from $p while only replica $r was cut off"
  [ "$(sql "$p" "$p" "INSERT INTO mh VALUES (-1) RETURNING 1")" = 1 ] || die "write on $p failed"
  heal "$r"
  wait_for 60 "$r to stream again" converged
  log "replica-isolated: $r streams again after $((SECONDS - t0)) s"
}

for s in "${SCENARIOS[@]}"; do
  case $s in
    primary-isolated | primary-no-etcd) partition_primary "$s" ;;
    replica-isolated) replica_isolated ;;
    *) die "unknown scenario $s" ;;
  esac
done
log "PASS: ${SCENARIOS[*]}"
