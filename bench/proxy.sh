#!/usr/bin/env bash
# Proxy benchmark: pgbench through pgfleet's proxy (transaction pool mode), PgBouncer (transaction
# mode), pgpool-II (raw mode, connection cache, no load balancing) and direct connections, all
# against the same PostgreSQL primary, alternating the four targets in every round, then a table
# of medians and ratios, the poolers' CPU per 1000 transactions, latency at low load, 10,000 idle
# client connections, and the goals. The report is printed and written to
# bench/results/<YYYY-MM-DD>-proxy.md (-proxy-quick.md with --quick, -proxy-subset.md with BENCH_TESTS).
#
# Usage: bench/proxy.sh [--quick]
#   BENCH_DURATION=10  seconds per pgbench run        BENCH_ROUNDS=3  rounds
#   BENCH_IDLE_CONNS=10000  idle client connections   --quick: 3 s, 1 round (a smoke test)
#   PGFLEET_BIN=build/pgfleet  the pgfleet binary to measure (built with scripts/build.sh if missing)
#   BENCH_TESTS="S-simple tpcb"  a subset of the tests (default: all of them, in the order below)
#   BENCH_PROXY_THREADS=1  pgfleet's proxy.threads (default: pgfleet's default, half the cores)
#   BENCH_SERVER_SOCKET=1  every pooler reaches PostgreSQL through its Unix socket instead of TCP
#                          (pgfleet's proxy.server_unix_socket; clients still use TCP everywhere)
#
# Everything it starts (a one-node pgfleet cluster, PgBouncer, pgpool-II, pgbench, the idle-connection
# client) runs on loopback on ports chosen at run time, from a temporary directory, and is stopped by
# PID on exit, Ctrl-C included. As root it installs pgbouncer and pgpool2 if they are missing (with
# the packaged services kept from starting) and runs both as the cluster's OS user.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/proxy.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
if [ $quick = 1 ]; then dur=3; rounds=1; else dur=${BENCH_DURATION:-10}; rounds=${BENCH_ROUNDS:-3}; fi
idle_n=${BENCH_IDLE_CONNS:-10000}
idle_sample=500
targets=(direct pgfleet pgbouncer pgpool)
all_tests=(S-simple S-prepared S-extended S-connect tpcb S-tls S-socket latency-c1)
read -r -a tests <<< "${BENCH_TESTS:-${all_tests[*]}}"
for t in "${tests[@]}"; do
  [[ " ${all_tests[*]} " == *" $t "* ]] || { echo "bench/proxy.sh: unknown test '$t' in BENCH_TESTS (known: ${all_tests[*]})" >&2; exit 2; }
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/proxy.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup, by PID only
work=""
pids_to_stop=()      # "name:pid" of single processes we started
pgpool_pid=""        # leader of its own process group (setsid)
cluster_dir=""
cluster_pids=()      # proxy, agent and postmaster PIDs reported by `pgfleet status --json`
current_pid=""       # the pgbench or idle client running now
policy_rc_created=0

stop_pid() {  # stop_pid PID [SIGNAL]: signal, wait up to 10 s, then SIGKILL
  local pid=$1 sig=${2:-TERM} i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ -n "$current_pid" ] && stop_pid "$current_pid"
  local entry
  for entry in "${pids_to_stop[@]}"; do stop_pid "${entry#*:}"; done
  if [ -n "$pgpool_pid" ]; then
    stop_pid "$pgpool_pid" INT   # fast shutdown; its children leave with it
    kill -KILL -- "-$pgpool_pid" 2>/dev/null   # any child left in its process group
  fi
  if [ -n "$cluster_dir" ] && [ -d "$cluster_dir" ]; then
    log "stopping the pgfleet cluster"
    "$pgfleet" down --purge --dir "$cluster_dir" >/dev/null 2>&1
  fi
  local pid
  for pid in "${cluster_pids[@]}"; do stop_pid "$pid"; done
  # a failed `pgfleet up` can leave its agent and postmaster behind: every process whose command
  # line names our own temporary cluster directory is ours; stop those, agents first, by PID
  if [ -n "$cluster_dir" ]; then
    for pid in $(grep -lsF -- "$cluster_dir" /proc/[0-9]*/cmdline | cut -d/ -f3 | sort -n); do
      [ "$pid" != $$ ] && stop_pid "$pid"
    done
  fi
  [ $policy_rc_created = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ -n "$work" ] && rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
is_root=0; [ "$(id -u)" = 0 ] && is_root=1
missing=()
command -v pgbench >/dev/null && command -v psql >/dev/null || missing+=(postgresql-client)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
[ -f "$(pg_config --includedir 2>/dev/null)/libpq-fe.h" ] || missing+=(libpq-dev)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
[ -x /usr/sbin/pgpool ] || missing+=(pgpool2)
if [ ${#missing[@]} -gt 0 ]; then
  [ $is_root = 1 ] || die "missing: ${missing[*]}; run as root, or: sudo apt-get install -y --no-install-recommends ${missing[*]}"
  log "installing ${missing[*]}"
  # keep Debian's packaged pgbouncer/pgpool2 services from starting: we run our own instances
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy_rc_created=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
    die "apt-get install ${missing[*]} failed"
  [ $policy_rc_created = 1 ] && { rm -f /usr/sbin/policy-rc.d; policy_rc_created=0; }
fi
pgfleet=${PGFLEET_BIN:-$repo/build/pgfleet}
if [ ! -x "$pgfleet" ]; then
  [ -z "${PGFLEET_BIN:-}" ] || die "PGFLEET_BIN=$PGFLEET_BIN is not an executable"
  log "building pgfleet"; ./scripts/build.sh >/dev/null
fi

# file descriptors for the idle-connection test (client and servers inherit this limit)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
if [ "$fd_limit" != unlimited ] && [ "$idle_n" -gt $((fd_limit - 200)) ]; then
  log "open-file limit is $fd_limit: idle connections lowered from $idle_n to $((fd_limit - 200))"
  idle_n=$((fd_limit - 200))
fi

work=$(mktemp -d /tmp/pgfleet-proxybench-XXXXXX)
chmod 755 "$work"   # as root the cluster directory's parent must be traversable by its owner
mkdir -p "$work/runs" "$work/lat"
results="$work/results.tsv"; : > "$results"
start_time=$(date '+%Y-%m-%d %H:%M:%S %Z'); start_epoch=$(date +%s); load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- free ports (bind test)
# P..P+3 proxy and http, P+10 node1, P+50 its agent (pgfleet's layout), P+20 PgBouncer,
# P+21 pgpool, P+22 pgpool's PCP socket name. Below the ephemeral range, so clients never take them.
base=$(python3 - <<'EOF'
import random, socket
offsets = [0, 1, 2, 3, 10, 20, 21, 22, 50]
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
bouncer_port=$((base + 20)); pgpool_port=$((base + 21)); pcp_port=$((base + 22))

# ---------------------------------------------------------------- the cluster
cluster_dir="$work/c"
log "starting pgfleet cluster (1 node, proxy on $base) in $cluster_dir"
# max_connections: pooled server connections of three poolers stay open next to the direct runs
up_config=()
server_socket=${BENCH_SERVER_SOCKET:-0}
if [ -n "${BENCH_PROXY_THREADS:-}" ] || [ "$server_socket" = 1 ]; then
  {
    echo 'proxy:'
    [ -z "${BENCH_PROXY_THREADS:-}" ] || echo "  threads: $BENCH_PROXY_THREADS"
    [ "$server_socket" != 1 ] || echo '  server_unix_socket: true'
  } > "$work/pgfleet-bench.yaml"
  up_config=(--config "$work/pgfleet-bench.yaml")
fi
"$pgfleet" up --dir "$cluster_dir" --base-port "$base" --replicas 0 --set max_connections=300 "${up_config[@]}" \
  > "$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "pgfleet up failed"; }
status_json=$("$pgfleet" status --dir "$cluster_dir" --json)
read -r proxy_pid node_pid agent_pid run_as < <(python3 -c '
import json, sys
s = json.loads(sys.argv[1]); n = s["nodes"][0]
print((s.get("proxy") or {}).get("pid") or 0, n.get("pid") or 0, n.get("agent_pid") or 0, "x")' "$status_json")
cluster_pids=("$proxy_pid" "$agent_pid" "$node_pid")
[ "$proxy_pid" -gt 0 ] 2>/dev/null || die "pgfleet status reports no proxy process"
run_as=$(awk '/^ *run_as:/ {print $2}' "$cluster_dir/pgfleet.yaml"); run_as=${run_as:-postgres}
password=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["superuser_password"])' "$cluster_dir/secrets.json")
pw_enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$password")
with_opts() { case $1 in *\?*) echo "$1&sslmode=disable" ;; *) echo "$1?sslmode=disable" ;; esac; }
declare -A uri
uri[pgfleet]=$(with_opts "$("$pgfleet" url --dir "$cluster_dir" --proxy)")
uri[direct]=$(with_opts "$("$pgfleet" url --dir "$cluster_dir" --node node1)")
node_port=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port)' "${uri[direct]}")
# Where the poolers reach the server: TCP loopback, or the node's Unix socket directory.
server_host=127.0.0.1
if [ "$server_socket" = 1 ]; then
  server_host=$(psql "${uri[direct]}" -Atc "SHOW unix_socket_directories" | cut -d, -f1)
  [ -S "$server_host/.s.PGSQL.$node_port" ] || die "no server socket in '$server_host'"
fi
uri[pgbouncer]="postgresql://postgres:$pw_enc@127.0.0.1:$bouncer_port/postgres?sslmode=disable"
uri[pgpool]="postgresql://postgres:$pw_enc@127.0.0.1:$pgpool_port/postgres?sslmode=disable"
# TLS is off on every path (sslmode=disable): the comparison is about pooling, not encryption.
# Except S-tls: clients ask for TLS (sslmode=require, as libpq's default `prefer` gets wherever the
# server offers it); every target offers it with the cluster's certificate, servers stay plain.
# And S-socket: clients connect through each target's Unix socket instead of TCP loopback.
tls_cert="$cluster_dir/tls/server.crt"; tls_key="$cluster_dir/tls/server.key"
[ -r "$tls_cert" ] && [ -r "$tls_key" ] || die "the cluster has no TLS certificate in $cluster_dir/tls"

as_owner() {  # run a command as the cluster's OS user when we are root (exec, so $! is the server)
  if [ $is_root = 1 ]; then exec setpriv --reuid="$run_as" --regid="$run_as" --init-groups -- "$@"; else exec "$@"; fi
}
own() { [ $is_root = 1 ] && chown -R "$run_as:" "$@"; true; }

verifier=$(psql "${uri[direct]}" -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
case $verifier in SCRAM-SHA-256*) ;; *) die "postgres has no SCRAM verifier ($verifier)";; esac

# ---------------------------------------------------------------- PgBouncer
bdir="$work/pgbouncer"; mkdir -p "$bdir"
printf '"postgres" "%s"\n' "$verifier" > "$bdir/userlist.txt"
cat > "$bdir/pgbouncer.ini" <<EOF
[databases]
postgres = host=$server_host port=$node_port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir = $bdir
auth_type = scram-sha-256
auth_file = $bdir/userlist.txt
pool_mode = transaction
; the same sizes as pgfleet's defaults (default_pool_size 20, reserve 5 after 1 s)
default_pool_size = 20
reserve_pool_size = 5
reserve_pool_timeout = 1
max_client_conn = 20000
server_idle_timeout = 600
client_tls_sslmode = allow
client_tls_cert_file = $tls_cert
client_tls_key_file = $tls_key
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = $bdir/pgbouncer.log
pidfile = $bdir/pgbouncer.pid
EOF
chmod 600 "$bdir/userlist.txt"; own "$bdir"
log "starting PgBouncer $(/usr/sbin/pgbouncer --version | head -1 | awk '{print $2}') on $bouncer_port"
(as_owner /usr/sbin/pgbouncer "$bdir/pgbouncer.ini") > "$bdir/stdout.log" 2>&1 &
bouncer_pid=$!; pids_to_stop+=("pgbouncer:$bouncer_pid")

# ---------------------------------------------------------------- pgpool-II
pdir="$work/pgpool"; mkdir -p "$pdir"
printf 'postgres:TEXT%s\n' "$password" > "$pdir/pool_passwd"
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' > "$pdir/pool_hba.conf"
: > "$pdir/pcp.conf"
cat > "$pdir/pgpool.conf" <<EOF
backend_clustering_mode = 'raw'
listen_addresses = '127.0.0.1'
port = $pgpool_port
unix_socket_directories = '$pdir'
socket_dir = '$pdir'
pcp_listen_addresses = ''
pcp_port = $pcp_port
pcp_socket_dir = '$pdir'
wd_ipc_socket_dir = '$pdir'
backend_hostname0 = '$server_host'
backend_port0 = $node_port
backend_weight0 = 1
backend_flag0 = 'ALLOW_TO_FAILOVER'
enable_pool_hba = on
pool_passwd = '$pdir/pool_passwd'
num_init_children = 34
max_pool = 1
reserved_connections = 0
connection_cache = on
child_life_time = 0
child_max_connections = 0
connection_life_time = 0
client_idle_limit = 0
load_balance_mode = off
memory_cache_enabled = off
use_watchdog = off
health_check_period = 0
sr_check_period = 0
failover_on_backend_error = off
log_destination = 'stderr'
log_min_messages = warning
log_connections = off
logdir = '$pdir'
pid_file_name = '$pdir/pgpool.pid'
memqcache_oiddir = '$pdir/oiddir'
ssl = on
ssl_cert = '$tls_cert'
ssl_key = '$tls_key'
EOF
chmod 600 "$pdir/pool_passwd"; own "$pdir"
log "starting pgpool-II $(/usr/sbin/pgpool --version 2>&1 | awk '{print $3}') on $pgpool_port"
(as_owner setsid /usr/sbin/pgpool -n -D -f "$pdir/pgpool.conf" -F "$pdir/pcp.conf" -a "$pdir/pool_hba.conf") \
  > "$pdir/pgpool.log" 2>&1 &
pgpool_pid=$!

# ---------------------------------------------------------------- check every path
# ( ... ) & with a single exec'd command: $! is the server itself; confirm with the pid files
wait_port() { local i; for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_port "$bouncer_port" || { cat "$bdir/stdout.log" "$bdir/pgbouncer.log" >&2 2>/dev/null; die "PgBouncer did not start"; }
wait_port "$pgpool_port" || { cat "$pdir/pgpool.log" >&2; die "pgpool-II did not start"; }
sleep 0.5
[ "$(cat "$bdir/pgbouncer.pid" 2>/dev/null)" = "$bouncer_pid" ] || log "note: PgBouncer's pid file says $(cat "$bdir/pgbouncer.pid" 2>/dev/null), we started $bouncer_pid"
pgpool_pidfile=$(tr -d '\0' < "$pdir/pgpool.pid" 2>/dev/null | head -1)
[ "$pgpool_pidfile" = "$pgpool_pid" ] || log "note: pgpool's pid file says '$pgpool_pidfile', we started $pgpool_pid"
declare -A pooler_pid=([pgfleet]=$proxy_pid [pgbouncer]=$bouncer_pid [pgpool]=$pgpool_pid)
# Each target's Unix socket (S-socket): libpq URIs with host=<directory>.
declare -A socket_uri
node_socket_dir=$(psql "${uri[direct]}" -Atc "SHOW unix_socket_directories" | cut -d, -f1)
proxy_socket_dir=$(python3 -c 'import json, sys; print((json.loads(sys.argv[1]).get("proxy") or {}).get("socket_dir") or "")' "$status_json")
socket_uri[direct]="postgresql://postgres:$pw_enc@/postgres?host=$node_socket_dir&port=$node_port&sslmode=disable"
socket_uri[pgfleet]="postgresql://postgres:$pw_enc@/postgres?host=$proxy_socket_dir&port=$base&sslmode=disable"
socket_uri[pgbouncer]="postgresql://postgres:$pw_enc@/postgres?host=$bdir&port=$bouncer_port&sslmode=disable"
socket_uri[pgpool]="postgresql://postgres:$pw_enc@/postgres?host=$pdir&port=$pgpool_port&sslmode=disable"

for t in "${targets[@]}"; do
  out=$(PGCONNECT_TIMEOUT=5 timeout 20 psql "${uri[$t]}" -X -Atc 'select 1' 2>&1) ||
    die "$t does not answer 'select 1' at ${uri[$t]//$pw_enc/***}: $out"
  [ "$out" = 1 ] || die "$t answered '$out' to 'select 1'"
  log "$t: select 1 ok"
  if [[ " ${tests[*]} " == *" S-tls "* ]]; then
    out=$(PGCONNECT_TIMEOUT=5 timeout 20 psql "${uri[$t]/sslmode=disable/sslmode=require}" -X -Atc 'select 1' 2>&1) ||
      die "$t does not answer over TLS (for S-tls): $out"
  fi
  if [[ " ${tests[*]} " == *" S-socket "* ]]; then
    out=$(PGCONNECT_TIMEOUT=5 timeout 20 psql "${socket_uri[$t]}" -X -Atc 'select 1' 2>&1) ||
      die "$t does not answer through its Unix socket (for S-socket): $out"
  fi
done

log "pgbench -i -s 10 (direct)"
pgbench -i -s 10 -q "${uri[direct]}" > "$work/init.log" 2>&1 || { cat "$work/init.log" >&2; die "pgbench -i failed"; }
psql "${uri[direct]}" -X -q -c 'VACUUM ANALYZE' -c 'CHECKPOINT' >/dev/null

# ---------------------------------------------------------------- measurement helpers
clk_tck=$(getconf CLK_TCK)
cpu_ticks() {  # utime+stime of PID, its live descendants, and every reaped child (cutime+cstime)
  python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1]); procs = {}
for d in os.listdir("/proc"):
    if not d.isdigit(): continue
    try:
        s = open(f"/proc/{d}/stat").read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()          # fields from 3 (state) on
    procs[int(d)] = (int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
if root not in procs: print(-1); sys.exit()
total, todo = procs[root][1] + procs[root][2], [root]
while todo:
    p = todo.pop()
    for c, (pp, own, reaped) in procs.items():
        if pp == p:
            total += own + reaped; todo.append(c)
print(total)
EOF
}

cpu_split() {  # "busy ours" in ticks: the machine's busy CPU (/proc/stat) and this benchmark's share
  # (this script's process tree, which holds pgbench, PgBouncer and pgpool, plus the postmaster's and
  # pgfleet's proxy's trees); the rest is what other processes on the machine took meanwhile
  python3 - $$ "$node_pid" "$proxy_pid" <<'PY'
import os, sys
procs = {}
for d in os.listdir("/proc"):
    if not d.isdigit(): continue
    try:
        s = open(f"/proc/{d}/stat").read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    procs[int(d)] = (int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
kids = {}
for pid, (pp, _, _) in procs.items(): kids.setdefault(pp, []).append(pid)
seen, ours = set(), 0
for root in map(int, sys.argv[1:]):
    todo = [root]
    while todo:
        p = todo.pop()
        if p in seen or p not in procs: continue
        seen.add(p); ours += procs[p][1] + procs[p][2]; todo += kids.get(p, [])
cpu = open("/proc/stat").readline().split()[1:]
busy = sum(int(x) for i, x in enumerate(cpu[:8]) if i not in (3, 4))   # all but idle and iowait
print(busy, ours)
PY
}

run_pgbench() {  # run_pgbench TEST TARGET ROUND
  local test=$1 target=$2 round=$3 args=() out="$work/runs/$1.$2.r$3.txt" rc=0
  case $test in
    S-simple)   args=(-S -c 32 -j 2 -M simple) ;;
    S-prepared) args=(-S -c 32 -j 2 -M prepared) ;;
    S-extended) args=(-S -c 32 -j 2 -M extended) ;;
    S-connect)  args=(-S -C -c 8 -j 2) ;;
    tpcb)       args=(-c 16 -j 2)
                psql "${uri[direct]}" -X -qc 'CHECKPOINT' >/dev/null ;;
    S-tls)      args=(-S -c 32 -j 2 -M simple) ;;
    S-socket)   args=(-S -c 32 -j 2 -M simple) ;;
    latency-c1) rm -f "$work/lat/$target.r$round".*
                args=(-S -c 1 -j 1 -l --log-prefix="$work/lat/$target.r$round") ;;
  esac
  local c0=-1 c1=-1 b0 o0 b1 o1 t0 t1 others
  [ "$target" != direct ] && c0=$(cpu_ticks "${pooler_pid[$target]}")
  read -r b0 o0 < <(cpu_split); t0=$(date +%s.%N)
  local conn=${uri[$target]}
  [ "$test" = S-tls ] && conn=${conn/sslmode=disable/sslmode=require}
  [ "$test" = S-socket ] && conn=${socket_uri[$target]}
  timeout --kill-after=10 $((dur + 60)) pgbench -n "${args[@]}" -T "$dur" "$conn" > "$out" 2>&1 &
  current_pid=$!
  wait "$current_pid" || rc=$?
  current_pid=""
  read -r b1 o1 < <(cpu_split); t1=$(date +%s.%N)
  [ "$target" != direct ] && c1=$(cpu_ticks "${pooler_pid[$target]}")
  # CPU that other processes on the machine used during the run, in % of all cores (noise indicator)
  others=$(awk -v b=$((b1 - b0)) -v o=$((o1 - o0)) -v hz="$clk_tck" -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
    -v n="$(nproc)" 'BEGIN {x = (b - o) / hz / s / n * 100; printf "%.0f", x < 0 ? 0 : x}')
  local tps ntx status=ok cpu=- p50=- p99=-
  tps=$(awk '/^tps = / {print $3; exit}' "$out"); ntx=$(awk -F': ' '/actually processed/ {print $2; exit}' "$out")
  ntx=${ntx%%/*}
  if [ $rc -ne 0 ] || grep -q 'aborted' "$out" || [ -z "$tps" ]; then status=failed; fi
  if [ "$c0" -ge 0 ] && [ "$c1" -ge 0 ] && [ "${ntx:-0}" -gt 0 ]; then
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$clk_tck" -v n="$ntx" 'BEGIN {printf "%.3f", d * 1000 / hz / (n / 1000)}')
  fi
  if [ "$test" = latency-c1 ] && [ $status = ok ]; then
    read -r p50 p99 < <(cat "$work/lat/$target.r$round".* | awk '{print $3}' | sort -n |
      awk '{v[NR]=$1} END {if (NR) printf "%.3f %.3f\n", v[int((NR-1)*0.50)+1]/1000, v[int((NR-1)*0.99)+1]/1000}')
  fi
  [ "$target" != direct ] && ! kill -0 "${pooler_pid[$target]}" 2>/dev/null && status=failed && log "$target process ${pooler_pid[$target]} is gone!"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$test" "$target" "$round" "$status" "${tps:-0}" "${ntx:-0}" "$cpu" "$p50" "$p99" "$others" >> "$results"
  local msg
  msg=$(printf 'round %d/%d  %-10s %-9s %9.1f tps' "$round" "$rounds" "$test" "$target" "${tps:-0}")
  [ "$cpu" != - ] && msg+=$(printf '  pooler cpu %s ms/1k tx' "$cpu")
  [ "$p50" != - ] && msg+="  p50 ${p50} ms p99 ${p99} ms"
  [ "$others" -ge 10 ] && msg+="  (other processes took ${others}% of the CPU)"
  if [ $status = failed ]; then
    local why; why=$(grep -m1 -iE 'error|abort|fatal' "$out" | cut -c1-160); why=${why:-exit code $rc}
    msg+="  FAILED: $why"
    printf '%s\t%s\t%s\t%s\n' "$test" "$target" "$round" "$why" >> "$work/failures.tsv"
  fi
  log "$msg"
}

# ---------------------------------------------------------------- the rounds
log "benchmark: ${#tests[@]} tests x ${#targets[@]} targets x $rounds rounds, $dur s each (~$(( ${#tests[@]} * ${#targets[@]} * rounds * (dur + 1) / 60 + 1 )) min)"
for round in $(seq 1 "$rounds"); do
  for test in "${tests[@]}"; do
    for k in 0 1 2 3; do   # rotate the order every round so no target always runs first or last
      run_pgbench "$test" "${targets[$(( (k + round - 1) % 4 ))]}" "$round"
    done
  done
done

# ---------------------------------------------------------------- idle connections
cc -O2 -pthread -I"$(pg_config --includedir)" bench/proxy_idle.c -o "$work/proxy_idle" -lpq ||
  die "cannot compile bench/proxy_idle.c"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
idle_test() {  # idle_test TARGET: appends "target n ok failed connect_s rss_before rss_open rss_after sample_ok sample_n cpu_s"
  local target=$1 pid=${pooler_pid[$1]} out="$work/idle.$1.out" err="$work/idle.$1.err" i
  local r0 r1 r2 ready="" sample=""
  r0=$(rss_kb "$pid")
  local c0 c1; c0=$(cpu_ticks "$pid")
  "$work/proxy_idle" "${uri[$target]}" "$idle_n" "$idle_sample" 300 > "$out" 2> "$err" &
  current_pid=$!
  for i in $(seq 1 4000); do
    ready=$(grep '^READY' "$out" || true); [ -n "$ready" ] && break
    kill -0 "$current_pid" 2>/dev/null || break
    sleep 0.1
  done
  c1=$(cpu_ticks "$pid")
  sleep 1
  r1=$(rss_kb "$pid")
  kill -USR1 "$current_pid" 2>/dev/null || true
  wait "$current_pid" || true
  current_pid=""
  sample=$(grep '^SAMPLE' "$out" || echo "SAMPLE 0 0 0")
  sleep 2
  r2=$(rss_kb "$pid")
  [ -s "$err" ] && log "$target idle client said: $(head -3 "$err" | tr '\n' ' ' | cut -c1-300)"
  # READY ok failed seconds / SAMPLE ok tried ms
  set -- ${ready:-READY 0 $idle_n 0} ; local ok=$2 failed=$3 secs=$4
  set -- $sample; local s_ok=$2 s_n=$3
  local cpu_s; cpu_s=$(awk -v d=$((c1 - c0)) -v hz="$clk_tck" 'BEGIN {printf "%.2f", d / hz}')
  echo "$target $idle_n $ok $failed $secs $r0 $r1 $r2 $s_ok $s_n $cpu_s" >> "$work/idle.tsv"
}
: > "$work/idle.tsv"
for t in pgfleet pgbouncer; do
  log "$t: opening $idle_n idle client connections"
  idle_test "$t"   # not in $(...): the client's PID must stay visible to the cleanup
  set -- $(tail -1 "$work/idle.tsv")
  log "$t: $3/$2 connected in $5 s (pooler CPU ${11} s), RSS $(( $6 / 1024 )) MB before, $(( $7 / 1024 )) MB with them open, $(( $8 / 1024 )) MB after; SELECT 1 on $9/${10} sampled"
done

# ---------------------------------------------------------------- report
git_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "${PGFLEET_BIN:-}" ]; then
  git_rev="binary $PGFLEET_BIN (the work tree is at $git_rev)"
else
  git -C "$repo" diff --quiet HEAD -- src 2>/dev/null || git_rev+=" (src/ has uncommitted changes)"
fi
mkdir -p bench/results
suffix=""; [ $quick = 1 ] && suffix="-quick"
[ "${tests[*]}" != "${all_tests[*]}" ] && suffix="$suffix-subset"
report="bench/results/$(date +%F)-proxy$suffix.md"
export BENCH_START="$start_time" BENCH_LOAD_START="$load_start" BENCH_LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
  BENCH_DUR="$dur" BENCH_ELAPSED="$(( ($(date +%s) - start_epoch + 30) / 60 ))" BENCH_ROUNDS_N="$rounds" BENCH_GIT="$git_rev" BENCH_QUICK="$quick" \
  BENCH_CPU="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" BENCH_NPROC="$(nproc)" \
  BENCH_PG="$(psql "${uri[direct]}" -XAtc 'show server_version' 2>/dev/null)" \
  BENCH_PGBOUNCER="$(/usr/sbin/pgbouncer --version | head -1)" BENCH_PGPOOL="$(/usr/sbin/pgpool --version 2>&1)" \
  BENCH_PGBENCH="$(pgbench --version)" BENCH_IDLE_SAMPLE="$idle_sample" BENCH_TESTS_RUN="${tests[*]}" BENCH_PROXY_THREADS_SET="${BENCH_PROXY_THREADS:-}" BENCH_SERVER_SOCKET_SET="$server_socket"
touch "$work/failures.tsv"
python3 - "$results" "$work/idle.tsv" "$work/failures.tsv" > "$work/report.md" <<'EOF'
import os, statistics, sys
from collections import defaultdict
E = os.environ
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
T = ["direct", "pgfleet", "pgbouncer", "pgpool"]
tests = E["BENCH_TESTS_RUN"].split()
desc = {"S-simple": "pgbench -S -c 32 -j 2 -M simple", "S-prepared": "pgbench -S -c 32 -j 2 -M prepared",
        "S-extended": "pgbench -S -c 32 -j 2 -M extended", "S-connect": "pgbench -S -C -c 8 -j 2 (new connection per transaction)",
        "tpcb": "pgbench (tpcb-like) -c 16 -j 2", "S-tls": "pgbench -S -c 32 -j 2 -M simple, clients over TLS (sslmode=require)",
        "S-socket": "pgbench -S -c 32 -j 2 -M simple, clients through each target's Unix socket", "latency-c1": "pgbench -S -c 1 -j 1 -l (latency at low load)"}
tps, cpu, p50, p99, fails = (defaultdict(list) for _ in range(5))
for test, target, rnd, status, t, n, c, a, b, others in rows:
    k = (test, target)
    if status != "ok":
        fails[k].append(rnd); continue
    tps[k].append(float(t))
    if c != "-": cpu[k].append(float(c))
    if a != "-": p50[k].append(float(a)); p99[k].append(float(b))
def med(d, k):
    return statistics.median(d[k]) if d.get(k) else None
def cell(test, target):
    m = med(tps, (test, target))
    if m is None: return "failed" if fails.get((test, target)) else "-"
    s = f"{m:,.0f}"
    if fails.get((test, target)): s += f" ({len(fails[(test, target)])} failed)"
    return s
def ratio(test, a, b):
    x, y = med(tps, (test, a)), med(tps, (test, b))
    if x is None or y is None or y == 0: return "n/a"
    return f"{x / y:.2f}x"
out = []
p = out.append
p(f"# pgfleet proxy benchmark{' (quick smoke run)' if E['BENCH_QUICK'] == '1' else ''}\n")
p(f"Run {E['BENCH_START']} by `bench/proxy.sh`; pgfleet {E['BENCH_GIT']}. {E['BENCH_NPROC']} cores ({E['BENCH_CPU']}); "
  f"{E['BENCH_ROUNDS_N']} round(s) of {E['BENCH_DUR']} s per run, the four targets alternating in every round "
  f"(order rotated each round); values are medians over the rounds. The whole run took {E['BENCH_ELAPSED']} min; load average at start {E['BENCH_LOAD_START']}, at end {E['BENCH_LOAD_END']} "
  "(other processes on the machine, if any, were not stopped).\n")
oth = [float(r[9]) for r in rows if r[9] not in ("", "-")]
if oth:
    p(f"**Noise:** other processes on this machine used a median {statistics.median(oth):.0f}% (max {max(oth):.0f}%) of its CPU during the runs "
      "(the last column of *Every run* has it per run); alternation, rounds and medians are the only defence against that.\n")
via_socket = E.get("BENCH_SERVER_SOCKET_SET") == "1"
p(f"All targets reach the same PostgreSQL {E['BENCH_PG']} primary (one pgfleet node, max_connections 300); clients connect over TCP on 127.0.0.1, "
  + ("the three poolers reach the server through its Unix socket (BENCH_SERVER_SOCKET=1; pgfleet's `proxy.server_unix_socket`), "
     if via_socket else "and so do the poolers to the server, ")
  + "SCRAM-SHA-256 from the client, TLS off (except S-tls: TLS from the client to the target, with the cluster's certificate; "
  "PgBouncer client_tls_sslmode allow, pgpool ssl on; and S-socket: clients through each target's Unix socket, "
  "where PostgreSQL and pgpool trust local connections while pgfleet and PgBouncer still run SCRAM at login), database initialised with `pgbench -i -s 10`:\n")
p("* **direct**: the node's own port.")
threads = E.get("BENCH_PROXY_THREADS_SET")
threads = f"proxy.threads = {threads}" if threads else "threads as by default (half the cores)"
p(f"* **pgfleet**: `pgfleet up`'s proxy, transaction pool mode, default settings, {threads} (default_pool_size 20, reserve 5).")
p(f"* **pgbouncer**: {E['BENCH_PGBOUNCER'].split(chr(10))[0]}, pool_mode transaction, default_pool_size 20, reserve_pool_size 5, "
  "auth_type scram-sha-256 with the stored verifier (SCRAM pass-through to the server).")
p(f"* **pgpool**: {E['BENCH_PGPOOL']}, backend_clustering_mode raw, one backend, load_balance_mode off, "
  "num_init_children 34, max_pool 1, connection_cache on, pool_hba scram-sha-256 with the password in pool_passwd.\n")
p(f"Client: {E['BENCH_PGBENCH']}, on the same machine (it competes with the poolers and the server for the cores).\n")
p("## Throughput (tps, median)\n")
p("| test | direct | pgfleet | pgbouncer | pgpool | pgfleet/pgbouncer | pgfleet/direct | pgfleet/pgpool |")
p("|---|---:|---:|---:|---:|---:|---:|---:|")
for t in tests:
    p(f"| {t} | " + " | ".join(cell(t, x) for x in T) + f" | {ratio(t, 'pgfleet', 'pgbouncer')} | {ratio(t, 'pgfleet', 'direct')} | {ratio(t, 'pgfleet', 'pgpool')} |")
p("")
for t in tests: p(f"* {t}: `{desc[t]} -T {E['BENCH_DUR']}`")
p("\n## Pooler CPU per 1000 transactions (ms, median)\n")
p("utime+stime of the pooler from /proc before and after each run: pgfleet's proxy process (all its threads), "
  "PgBouncer's process, pgpool's parent with all its children (live and reaped).\n")
p("| test | pgfleet | pgbouncer | pgpool | pgfleet/pgbouncer |")
p("|---|---:|---:|---:|---:|")
def cpucell(t, x):
    m = med(cpu, (t, x)); return "failed" if m is None and fails.get((t, x)) else ("-" if m is None else f"{m:.2f}")
for t in tests:
    a, b = med(cpu, (t, "pgfleet")), med(cpu, (t, "pgbouncer"))
    r = f"{a / b:.2f}x" if a is not None and b else "n/a"
    p(f"| {t} | {cpucell(t, 'pgfleet')} | {cpucell(t, 'pgbouncer')} | {cpucell(t, 'pgpool')} | {r} |")
p("\n## Latency at low load (pgbench -S -c 1, ms, median over rounds of each run's percentile)\n")
p("| target | p50 | p99 | tps |")
p("|---|---:|---:|---:|")
for x in T:
    a, b = med(p50, ("latency-c1", x)), med(p99, ("latency-c1", x))
    p(f"| {x} | {'-' if a is None else f'{a:.3f}'} | {'-' if b is None else f'{b:.3f}'} | {cell('latency-c1', x)} |")
p(f"\n## Idle client connections\n")
idle = {}
for l in open(sys.argv[2]):
    f = l.split()
    if len(f) == 11: idle[f[0]] = f
for x in ("pgfleet", "pgbouncer"):
    f = idle.get(x)
    if not f: p(f"* {x}: not measured"); continue
    _, n, ok, failed, secs, r0, r1, r2, sok, sn, cs = f
    per = (int(r1) - int(r0)) / max(int(ok), 1)
    p(f"* {x}: {ok}/{n} connections open ({failed} failed) in {float(secs):.1f} s, the pooler using {cs} s of CPU for them; "
      f"RSS {int(r0)/1024:.1f} MB before, **{int(r1)/1024:.1f} MB with them open** ({per:.2f} KB per connection), "
      f"{int(r2)/1024:.1f} MB after they closed; "
      f"`SELECT 1` succeeded on {sok}/{sn} connections sampled evenly among the open ones.")
p("\n## Goals\n")
p("| goal | measured | result |")
p("|---|---|---|")
def goal(name, measured, ok):
    p(f"| {name} | {measured} | {'n/a' if ok is None else ('met' if ok else 'MISSED')} |")
def tps_goal(t, other, factor):
    if t not in tests: return
    a, b = med(tps, (t, "pgfleet")), med(tps, (t, other))
    if a is None: return goal(f"{t}: pgfleet ≥ {factor}× {other}", "pgfleet failed", False)
    if b is None: return goal(f"{t}: pgfleet ≥ {factor}× {other}", f"{other} failed", None)
    goal(f"{t}: pgfleet ≥ {factor}× {other}", f"{a / b:.2f}×", a >= factor * b)
for t in ("S-simple", "S-prepared"):
    tps_goal(t, "pgbouncer", 1.2); tps_goal(t, "direct", 0.85); tps_goal(t, "pgpool", 3)
a, b = med(cpu, ("S-simple", "pgfleet")), med(cpu, ("S-simple", "pgbouncer"))
if "S-simple" in tests: goal("S-simple: pgfleet CPU per 1000 tx ≤ 0.6× PgBouncer's",
     f"{a:.2f} vs {b:.2f} ms = {a / b:.2f}×" if a is not None and b else "n/a", (a <= 0.6 * b) if a is not None and b else None)
tps_goal("S-connect", "pgbouncer", 1); tps_goal("tpcb", "pgbouncer", 1)
tps_goal("S-tls", "pgbouncer", 1); tps_goal("S-socket", "pgbouncer", 1)
f = idle.get("pgfleet")
if f:
    _, n, ok, failed, secs, r0, r1, r2, sok, sn, cs = f
    good = int(ok) == int(n) and sok == sn
    goal(f"{n} idle connections to pgfleet: RSS < 100 MB, every one open, sampled ones answer",
         f"{int(r1)/1024:.1f} MB, {ok}/{n} open, {sok}/{sn} answered", int(r1) < 100 * 1024 and good)
else:
    goal("10k idle connections to pgfleet: RSS < 100 MB", "not measured", False)
failures = [l.rstrip("\n").split("\t") for l in open(sys.argv[3]) if l.strip()]
if failures:
    p("\n## Failed runs\n")
    p("A failed run (pgbench exit code not 0, aborted clients, or the pooler gone) counts as `failed`, not as a number.\n")
    for test, target, rnd, why in failures: p(f"* {test} / {target} / round {rnd}: `{why}`")
    if any(f[0] == "S-prepared" and f[1] == "pgbouncer" for f in failures):
        p("\n  PgBouncer 1.18 in transaction mode has no support for protocol-level prepared statements "
          "(max_prepared_statements came in 1.21): a statement prepared on one server connection is missing, or already there, on the next.")
p("\n## Every run\n")
p("| test | target | round | status | tps | transactions | pooler CPU ms/1k tx | p50 ms | p99 ms | other processes' CPU % |")
p("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
for r in rows: p("| " + " | ".join(r) + " |")
print("\n".join(out))
EOF
cp "$work/report.md" "$report"
echo
cat "$report"
echo
log "written to $report"
for t in pgfleet pgbouncer pgpool; do
  kill -0 "${pooler_pid[$t]}" 2>/dev/null || log "warning: $t (pid ${pooler_pid[$t]}) is no longer running"
done
cp "$cluster_dir/proxy.log" "$work/proxy.log" 2>/dev/null || true
if grep -qE 'ERROR|WARN|FATAL' "$cluster_dir/proxy.log" 2>/dev/null; then
  log "pgfleet's proxy.log has warnings or errors (last ones):"
  grep -E 'ERROR|WARN|FATAL' "$cluster_dir/proxy.log" | tail -5 >&2
fi
