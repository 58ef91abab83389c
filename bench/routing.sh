#!/usr/bin/env bash
# Read/write splitting benchmark: pgbench -S through pgfleet's rw-split port (reads balanced over two
# replicas), its primary-only port and PgBouncer (transaction mode, in front of the primary), all on
# one local cluster (a primary and two streaming replicas), alternating the targets in every round;
# then the rw-split port again with every read sent to the primary (replica weights 0,
# primary_read_weight 1), which isolates what classifying each statement costs (goal: within 10 %
# of the primary-only port). Prints a table of medians and the per-node split of the rw-split runs,
# and writes bench/results/<YYYY-MM-DD>-routing.md.
#
# Usage: bench/routing.sh [--quick]
#   BENCH_DURATION=10  seconds per run   BENCH_ROUNDS=3  rounds   BENCH_CLIENTS=16  pgbench clients
#   PGFLEET_BIN=build/pgfleet  the pgfleet binary (built with scripts/build.sh if missing)
#
# Everything runs on loopback on ports chosen at run time, from a temporary directory, and is
# stopped by PID (the cluster with `pgfleet down --purge`) on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/routing.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
if [ $quick = 1 ]; then dur=3; rounds=1; else dur=${BENCH_DURATION:-10}; rounds=${BENCH_ROUNDS:-3}; fi
clients=${BENCH_CLIENTS:-16}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/routing.sh: %s\n' "$*" >&2; exit 1; }

work=""; cluster_dir=""; bouncer_pid=""; current_pid=""
stop_pid() {
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_pid "$current_pid"
  stop_pid "$bouncer_pid"
  [ -n "$cluster_dir" ] && [ -d "$cluster_dir" ] && "$pgfleet" down --purge --dir "$cluster_dir" >/dev/null 2>&1
  [ -n "$work" ] && rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'exit 143' TERM

is_root=0; [ "$(id -u)" = 0 ] && is_root=1
missing=()
command -v pgbench >/dev/null && command -v psql >/dev/null || missing+=(postgresql-client)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
  [ $is_root = 1 ] || die "missing: ${missing[*]}; run as root, or: sudo apt-get install -y --no-install-recommends ${missing[*]}"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
    die "apt-get install ${missing[*]} failed"
fi
pgfleet=${PGFLEET_BIN:-$repo/build/pgfleet}
if [ ! -x "$pgfleet" ]; then
  [ -z "${PGFLEET_BIN:-}" ] || die "PGFLEET_BIN=$PGFLEET_BIN is not an executable"
  log "building pgfleet"; ./scripts/build.sh >/dev/null
fi

work=$(mktemp -d /tmp/pgfleet-routingbench-XXXXXX)
chmod 755 "$work"
base=$(python3 - <<'EOF'
import random, socket
offsets = [0, 1, 2, 3, 10, 11, 12, 20, 50, 51, 52]
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(500):
    p = random.randrange(20000, 32000 - 100, 100) + random.randrange(0, 40)
    if all(free(p + o) for o in offsets):
        print(p); break
EOF
)
[ -n "$base" ] || die "no free port range found on 127.0.0.1"
bouncer_port=$((base + 20))

cluster_dir="$work/c"
log "starting a pgfleet cluster (primary + 2 replicas, proxy ports $base..$((base + 2))) in $cluster_dir"
"$pgfleet" up --dir "$cluster_dir" --base-port "$base" --replicas 2 --set max_connections=300 \
  > "$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "pgfleet up failed"; }
with_opts() { case $1 in *\?*) echo "$1&sslmode=disable" ;; *) echo "$1?sslmode=disable" ;; esac; }
declare -A uri
uri[rw]=$(with_opts "$("$pgfleet" url --dir "$cluster_dir" --proxy)")
uri[primary]=$(with_opts "$("$pgfleet" url --dir "$cluster_dir" --proxy-primary)")
uri[rw_parse]=${uri[rw]}
direct=$(with_opts "$("$pgfleet" url --dir "$cluster_dir" --node node1)")
admin=${uri[primary]/\/postgres\?/\/pgfleet?}
node_port=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port)' "$direct")
password=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["superuser_password"])' "$cluster_dir/secrets.json")
pw_enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$password")
uri[pgbouncer]="postgresql://postgres:$pw_enc@127.0.0.1:$bouncer_port/postgres?sslmode=disable"
run_as=$(awk '/^ *run_as:/ {print $2}' "$cluster_dir/pgfleet.yaml"); run_as=${run_as:-postgres}

verifier=$(psql "$direct" -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
bdir="$work/pgbouncer"; mkdir -p "$bdir"
printf '"postgres" "%s"\n' "$verifier" > "$bdir/userlist.txt"; chmod 600 "$bdir/userlist.txt"
cat > "$bdir/pgbouncer.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$node_port dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $bdir/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
client_tls_sslmode = disable
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = $bdir/pgbouncer.log
pidfile = $bdir/pgbouncer.pid
EOF
[ $is_root = 1 ] && chown -R "$run_as:" "$bdir"
if [ $is_root = 1 ]; then
  setpriv --reuid="$run_as" --regid="$run_as" --init-groups -- /usr/sbin/pgbouncer "$bdir/pgbouncer.ini" > "$bdir/stdout.log" 2>&1 &
else
  /usr/sbin/pgbouncer "$bdir/pgbouncer.ini" > "$bdir/stdout.log" 2>&1 &
fi
bouncer_pid=$!
for _ in $(seq 1 100); do psql "${uri[pgbouncer]}" -Atc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
psql "${uri[pgbouncer]}" -Atc "SELECT 1" >/dev/null || { cat "$bdir/stdout.log" >&2; die "PgBouncer did not start"; }

log "pgbench -i -s 1 on the primary"
pgbench -i -s 1 -q "${uri[primary]}" > "$work/init.log" 2>&1 || { cat "$work/init.log" >&2; die "pgbench -i failed"; }
sleep 2  # the replicas replay the new tables

results="$work/results.tsv"; : > "$results"
node_counts() { sleep 1.2; psql "$admin" -AtF ' ' -c "SHOW NODES" | awk '{print $1"="$NF}' | paste -sd' '; }
run() {  # run TARGET MODE: one pgbench run, TPS appended to the results
  local target=$1 mode=$2 out="$work/run.out" counts_before=""
  if [ "$target" = rw ]; then counts_before=$(node_counts); fi  # SHOW NODES figures are up to 1 s old
  pgbench -n -S -M "$mode" -c "$clients" -j 2 -T "$dur" "${uri[$target]}" > "$out" 2>&1 &
  current_pid=$!
  wait "$current_pid" || { cat "$out" >&2; die "pgbench through $target failed"; }
  current_pid=""
  local tps; tps=$(awk '/^tps = .*without initial/ {print $3}' "$out")
  grep -q "number of failed transactions: 0" "$out" || die "pgbench through $target had failures: $(cat "$out")"
  printf '%s\t%s\t%s\n' "$target" "$mode" "$tps" >> "$results"
  if [ "$target" = rw ]; then printf '%s|%s\n' "$counts_before" "$(node_counts)" >> "$work/split"; fi
  log "  $target -M $mode: $tps tps"
}
for r in $(seq 1 "$rounds"); do
  log "round $r/$rounds: rw-split (reads on replicas), primary port, PgBouncer"
  # PgBouncer (1.18) aborts clients under -M prepared in transaction mode: simple protocol only.
  for t in rw primary pgbouncer; do run "$t" simple; done
  for t in rw primary; do run "$t" prepared; done
done

# Every read through the rw-split port to the primary: same servers as the primary port, plus the classifier.
sed -i 's/^  weights: .*$//; s/^  primary_read_weight: .*$//' "$cluster_dir/pgfleet.yaml"
sed -i 's/^proxy:$/proxy:\n  weights: {node2: 0, node3: 0}\n  primary_read_weight: 1/' "$cluster_dir/pgfleet.yaml"
psql "$admin" -c RELOAD >/dev/null || die "RELOAD failed"
for r in $(seq 1 "$rounds"); do
  log "round $r/$rounds: rw-split with every read on the primary, primary port"
  for mode in simple prepared; do for t in rw_parse primary; do run "$t" "$mode"; done; done
done

mkdir -p bench/results
suffix=""; if [ $quick = 1 ]; then suffix=-quick; fi
report="bench/results/$(date +%F)-routing$suffix.md"
BENCH_SPLIT="$(cat "$work/split")" BENCH_DUR=$dur BENCH_ROUNDS=$rounds BENCH_CLIENTS=$clients \
  BENCH_BOUNCER="$(/usr/sbin/pgbouncer --version | head -1)" python3 - "$results" > "$report" <<'EOF'
import os, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
tps = {}
for t, m, v in rows:
    tps.setdefault((t, m), []).append(float(v))
med = lambda t, m: statistics.median(tps[(t, m)]) if (t, m) in tps else float("nan")
E = os.environ
print(f"# Read/write splitting benchmark ({os.popen('date +%F').read().strip()})\n")
print(f"pgbench -S, {E['BENCH_CLIENTS']} clients, -j 2, {E['BENCH_DUR']} s per run, {E['BENCH_ROUNDS']} round(s), "
      f"targets alternating; one local cluster (primary + 2 streaming replicas) on this machine; {E['BENCH_BOUNCER']} "
      "(transaction mode) in front of the primary. Medians in TPS.\n")
print("| mode | rw-split (reads on replicas) | primary port | PgBouncer | rw-split, reads on the primary | rw-split/primary | rw-split all-primary/primary |")
print("|---|---|---|---|---|---|---|")
goal_ok = True
for m in ("simple", "prepared"):
    rw, pr, pb, rp = med("rw", m), med("primary", m), med("pgbouncer", m), med("rw_parse", m)
    pr2 = statistics.median(tps[("primary", m)][-int(E["BENCH_ROUNDS"]):])
    ratio = rp / pr2
    goal_ok = goal_ok and ratio >= 0.9
    pbs = "n/a (aborts)" if pb != pb else f"{pb:.0f}"
    print(f"| {m} | {rw:.0f} | {pr:.0f} | {pbs} | {rp:.0f} | {rw / pr:.2f} | {ratio:.2f} |")
def counts(text):
    return dict(kv.split("=") for kv in text.split())
split = {}
for line in E["BENCH_SPLIT"].splitlines():
    b, a = (counts(x) for x in line.split("|"))
    for n in a:
        split[n] = split.get(n, 0) + int(a[n]) - int(b.get(n, 0))
total = sum(split.values()) or 1
print("\nStatements per node during the rw-split runs (SHOW NODES): " +
      ", ".join(f"{n} {v} ({100 * v / total:.0f} %)" for n, v in sorted(split.items())) + "\n")
print(f"Goal: the classifier costs at most 10 % against the primary-only port (last column ≥ 0.90): "
      f"{'met' if goal_ok else 'NOT met'}.\n")
print("On one 2-core machine the replicas compete with the primary for the same CPUs, so the rw-split "
      "column says little about a real deployment's read capacity; the last column is the parser's cost.")
EOF
cat "$report"
log "written to $report"
