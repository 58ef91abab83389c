# Multi-host test kit: hosts are network namespaces joined by veth pairs to a bridge that lives in
# a namespace of its own (no address outside the namespaces), etcd in one, an agent + PostgreSQL in
# each of the others. Sourced by the scenario scripts; everything is torn down by `mh_cleanup`
# (installed as an EXIT trap by mh_setup), processes ended by their pids only.
set -euo pipefail

PGFLEET=${PGFLEET:?set PGFLEET to the pgfleet binary}
MH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MH_ID=${MH_ID:-$$}
MH_NET=10.231.$((MH_ID % 200 + 20))   # addresses exist only inside this run's namespaces
MH_HUB=pgfmh${MH_ID}hub
MH_DIR=$(mktemp -d /tmp/pgfleet-multihost.XXXXXX)
chmod 0755 "$MH_DIR"
MH_TTL=${MH_TTL:-6}
MH_SYNC=${MH_SYNC:-on}          # replication.sync of the cluster: off | on | quorum
MH_ETCD_MEMBERS=${MH_ETCD_MEMBERS:-1}
MH_HTTP_TLS=${MH_HTTP_TLS:-true}  # the agents' API over HTTPS (failsafe rounds verify peers with the cluster CA)
MH_KEEP_LOGS=${MH_KEEP_LOGS:-}  # a directory: agent, postgres, proxy and etcd logs are copied there on exit
MH_CLUSTER=mh
MH_PIDS=()
declare -A MH_AGENT_PID=()  # node -> pid of its agent
MH_HOSTS=()

log() { printf '%s [multihost] %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() {
  log "FAIL: $*"
  exit 1
}

ns_of() { echo "pgfmh${MH_ID}$1"; }
ip_of() {
  case $1 in
    etcd) echo "$MH_NET.10" ;;
    e[1-9]) echo "$MH_NET.$((20 + ${1#e}))" ;;
    px) echo "$MH_NET.30" ;;
    n*) echo "$MH_NET.$((10 + ${1#n}))" ;;
  esac
}
in_ns() {
  local host=$1
  shift
  ip netns exec "$(ns_of "$host")" "$@"
}

# A host: a namespace with loopback, one veth end (eth0, its address), the other end on the bridge.
add_host() {
  local host=$1 ns
  ns=$(ns_of "$host")
  ip netns add "$ns"
  MH_HOSTS+=("$host")
  ip -n "$ns" link set lo up
  ip link add "v${MH_ID}${host}" type veth peer name eth0 netns "$ns"
  ip link set "v${MH_ID}${host}" netns "$MH_HUB"
  ip -n "$MH_HUB" link set "v${MH_ID}${host}" master br0 up
  ip -n "$ns" addr add "$(ip_of "$host")/24" dev eth0
  ip -n "$ns" link set eth0 up
}

mh_cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    for h in "${MH_HOSTS[@]}"; do
      for f in "$MH_DIR/$h"/nodes/*/log/agent.log "$MH_DIR/$h.log"; do
        [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -n 40 "$f"; }
      done
    done >&2
    # The proxy and the workload: where acknowledged writes stopped coming from.
    for f in "$MH_DIR/proxy.log" "$MH_DIR/workload.log"; do
      [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -n 40 "$f"; }
    done >&2
    # etcd's own view of its latency (a CI run once saw every agent wait ~6 s for etcd at once, and
    # etcd logged nothing): fsync and commit histograms, slow applies.
    for h in "${MH_ETCD_HOSTS[@]}"; do
      echo "---- etcd $h metrics (disk, slow requests)"
      in_ns "$h" python3 -c "import urllib.request
for line in urllib.request.urlopen('http://$(ip_of "$h"):2379/metrics', timeout=3).read().decode().splitlines():
    if line.startswith(('etcd_disk_wal_fsync_duration_seconds', 'etcd_disk_backend_commit_duration_seconds',
                        'etcd_server_slow_apply_total', 'etcd_server_slow_read_indexes_total', 'etcd_server_leader_changes_seen_total')):
        le = line.split('le=\"')[1].split('\"')[0] if '_bucket{' in line else None
        if le is None or le == '+Inf' or float(le) >= 0.5: print(line)" 2>&1 | head -n 40
    done >&2
  fi
  if [ -n "$MH_KEEP_LOGS" ]; then
    mkdir -p "$MH_KEEP_LOGS"
    for f in "$MH_DIR"/*.log "$MH_DIR"/*.acks "$MH_DIR"/*/nodes/*/log/*; do
      [ -f "$f" ] && cp "$f" "$MH_KEEP_LOGS/$(echo "${f#"$MH_DIR"/}" | tr / _)"
    done
  fi
  for pid in "${MH_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${MH_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${MH_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  # A postmaster left behind by a killed agent.
  for f in "$MH_DIR"/*/nodes/*/data/postmaster.pid; do
    [ -f "$f" ] && kill -KILL "$(head -n1 "$f")" 2>/dev/null
  done
  for h in "${MH_HOSTS[@]}"; do ip netns del "$(ns_of "$h")" 2>/dev/null; done
  ip netns del "$MH_HUB" 2>/dev/null
  rm -rf "$MH_DIR"
  exit $rc
}

mh_setup() {
  [ "$(id -u)" -eq 0 ] || die "multi-host tests need root (network namespaces)"
  command -v etcd >/dev/null || die "etcd not installed (scripts/setup.sh installs etcd-server)"
  trap mh_cleanup EXIT
  trap 'exit 130' INT TERM
  ip netns add "$MH_HUB"
  ip -n "$MH_HUB" link add br0 type bridge
  ip -n "$MH_HUB" link set br0 up
  if [ "$MH_ETCD_MEMBERS" = 1 ]; then
    MH_ETCD_HOSTS=(etcd)
  else
    MH_ETCD_HOSTS=(e1 e2 e3)
  fi
  local initial="" h
  for h in "${MH_ETCD_HOSTS[@]}"; do initial+="${initial:+,}$h=http://$(ip_of "$h"):2380"; done
  for h in "${MH_ETCD_HOSTS[@]}"; do
    add_host "$h"
    log "starting etcd member $h at $(ip_of "$h"):2379"
    # ip netns exec execs the command: $! is the server's own pid (what cleanup ends).
    ip netns exec "$(ns_of "$h")" etcd --name "$h" --data-dir "$MH_DIR/$h-data" \
      --listen-client-urls "http://$(ip_of "$h"):2379" --advertise-client-urls "http://$(ip_of "$h"):2379" \
      --listen-peer-urls "http://$(ip_of "$h"):2380" --initial-advertise-peer-urls "http://$(ip_of "$h"):2380" \
      --initial-cluster "$initial" --initial-cluster-state new --heartbeat-interval 50 --election-timeout 500 --pre-vote \
      --log-level warn >"$MH_DIR/$h.log" 2>&1 &
    MH_PIDS+=($!)
  done
  MH_ETCD_URLS=""
  for h in "${MH_ETCD_HOSTS[@]}"; do MH_ETCD_URLS+="${MH_ETCD_URLS:+, }http://$(ip_of "$h"):2379"; done
  MH_DCS="etcd://$(for h in "${MH_ETCD_HOSTS[@]}"; do printf '%s:2379,' "$(ip_of "$h")"; done | sed 's/,$//')"
  add_host px  # the client machine: status/switchover commands, the proxy and the workload
}

# The etcd member that leads the Raft group now (asked from its own namespace).
etcd_leader() {
  local h
  for h in "${MH_ETCD_HOSTS[@]}"; do
    in_ns "$h" etcdctl --endpoints "http://$(ip_of "$h"):2379" --command-timeout=1s endpoint status -w json 2>/dev/null |
      python3 -c 'import json,sys
s=json.load(sys.stdin)[0]["Status"]
sys.exit(0 if s["header"]["member_id"]==s["leader"] else 1)' 2>/dev/null && { echo "$h"; return; }
  done
  true
}

# Host nN with an agent; its node.yaml points at etcd.
start_node() {
  local host=$1
  [ -e "/var/run/netns/$(ns_of "$host")" ] || add_host "$host"
  cat >"$MH_DIR/$host.yaml" <<EOF
node: $host
data_dir: $MH_DIR/$host
listen_address: $(ip_of "$host")
port: 5432
cluster: $MH_CLUSTER
dcs:
  ttl: $MH_TTL
  loop_wait: 1
  etcd:
    endpoints: [$MH_ETCD_URLS]
replication: {sync: "$MH_SYNC"}
http: {tls: $MH_HTTP_TLS}
EOF
  ip netns exec "$(ns_of "$host")" "$PGFLEET" agent --config "$MH_DIR/$host.yaml" >>"$MH_DIR/$host.log" 2>&1 &
  MH_PIDS+=($!)
  MH_AGENT_PID[$host]=$!
}

# pgfleet status --json from the etcd host (any machine would do).
status_json() { in_ns px "$PGFLEET" status --dcs "$MH_DCS" --cluster "$MH_CLUSTER" --json 2>/dev/null; }
# Any pgfleet command against the cluster from the client host (another machine, as a user would).
pgfleet_dcs() { in_ns px "$PGFLEET" "$@" --dcs "$MH_DCS" --cluster "$MH_CLUSTER"; }
# jq-free field extraction with python3.
leader() { status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"] or "")' 2>/dev/null || true; }
node_state() {
  status_json | python3 -c "import json,sys
for n in json.load(sys.stdin)['nodes']:
    if n['name']=='$1': print(n['role'], n['state'])" 2>/dev/null || true
}
count_streaming() {
  status_json | python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["state"]=="streaming"))' 2>/dev/null || echo 0
}

# Superuser password, from the data directory of a host.
password() { python3 -c "import json; print(json.load(open('$MH_DIR/$1/secrets.json'))['superuser_password'])"; }
# SQL as the superuser over TCP from host $1 to node $2; prints the value, or fails.
sql() {
  local from=$1 to=$2 query=$3
  in_ns "$from" env PGPASSWORD="$(password "$from")" PGCONNECT_TIMEOUT=2 \
    psql -h "$(ip_of "$to")" -p 5432 -U postgres -d postgres -XAtqc "$query" 2>/dev/null
}
# Whether node $1 accepts a write (asked from its own host, so a partition does not hide it).
writable() { [ "$(sql "$1" "$1" "SELECT NOT pg_is_in_recovery()" || true)" = "t" ]; }

# wait_for SECONDS DESCRIPTION CONDITION: polls every 0.2 s until the shell CONDITION holds.
wait_for() {
  local seconds=$1 what=$2 condition=$3
  local deadline=$((SECONDS + seconds))
  until eval "$condition"; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

# Cutting links: the host's bridge port down (cut off from everyone), or one route blackholed.
isolate() { ip -n "$MH_HUB" link set "v${MH_ID}$1" down; }
heal() { ip -n "$MH_HUB" link set "v${MH_ID}$1" up; }
block_route() { in_ns "$1" ip route add blackhole "$(ip_of "$2")/32"; }
unblock_route() { in_ns "$1" ip route del blackhole "$(ip_of "$2")/32"; }

# tc netem on the link between hosts $1 and $2 only (both directions); the rest: netem arguments.
# A kernel without sch_netem (or the prio qdisc that selects the link) gets what nftables can do
# instead: the same packet loss, at random (`numgen`), on that link only; no added delay.
MH_NETEM_HOW=""
netem_between() {
  local a=$1 b=$2 x y
  shift 2
  if in_ns "$a" tc qdisc add dev lo root handle 1: prio 2>/dev/null && in_ns "$a" tc qdisc add dev lo parent 1:3 netem delay 1ms 2>/dev/null; then
    in_ns "$a" tc qdisc del dev lo root
    MH_NETEM_HOW="tc netem $*"
    for x in "$a" "$b"; do
      y=$([ "$x" = "$a" ] && echo "$b" || echo "$a")
      in_ns "$x" tc qdisc add dev eth0 root handle 1: prio
      in_ns "$x" tc qdisc add dev eth0 parent 1:3 handle 30: netem "$@"
      in_ns "$x" tc filter add dev eth0 parent 1:0 protocol ip u32 match ip dst "$(ip_of "$y")/32" flowid 1:3
    done
    return
  fi
  in_ns "$a" tc qdisc del dev lo root 2>/dev/null || true
  local loss="" prev=""
  for x in "$@"; do [ "$prev" = loss ] && loss=${x%%%}; prev=$x; done
  [ -n "$loss" ] || die "this kernel has no netem queueing discipline and nftables can only drop packets: give a loss"
  command -v nft >/dev/null || die "no sch_netem in this kernel and no nftables (scripts/setup.sh installs it)"
  MH_NETEM_HOW="nftables: ${loss}% of packets dropped at random each way (no sch_netem in this kernel: no delay)"
  for x in "$a" "$b"; do
    y=$([ "$x" = "$a" ] && echo "$b" || echo "$a")
    in_ns "$x" nft add table inet pgfmh_loss
    in_ns "$x" nft add chain inet pgfmh_loss out '{ type filter hook output priority 0; }'
    in_ns "$x" nft add rule inet pgfmh_loss out ip daddr "$(ip_of "$y")" numgen random mod 100 lt "$loss" drop
  done
}
netem_clear() {
  local x
  for x in "$@"; do
    in_ns "$x" tc qdisc del dev eth0 root 2>/dev/null || true
    in_ns "$x" nft delete table inet pgfmh_loss 2>/dev/null || true
  done
}

# The client host "px" runs a proxy following etcd (pgfleet proxy --config, a watch) and the
# write workload through it.
MH_PROXY_PORT=6432
start_proxy() {
  mkdir -p "$MH_DIR/px"
  printf '*:*:*:postgres:%s\n' "$(password n1)" >"$MH_DIR/px/passfile"
  chmod 0600 "$MH_DIR/px/passfile"
  cat >"$MH_DIR/px/proxy.yaml" <<EOF
cluster: $MH_CLUSTER
listen_address: $(ip_of px)
dcs:
  ttl: $MH_TTL
  loop_wait: 1
  etcd:
    endpoints: [$MH_ETCD_URLS]
ports:
  proxy: $MH_PROXY_PORT
  proxy_primary: $((MH_PROXY_PORT + 1))
  proxy_replicas: $((MH_PROXY_PORT + 2))
EOF
  ip netns exec "$(ns_of px)" env PGPASSFILE="$MH_DIR/px/passfile" "$PGFLEET" proxy --config "$MH_DIR/px/proxy.yaml" \
    >>"$MH_DIR/proxy.log" 2>&1 &
  MH_PIDS+=($!)
}
# SQL through the proxy (it sends every client to the primary), from the client host; prints the value, or fails.
proxy_sql() {
  in_ns px env PGPASSWORD="$(password n1)" PGCONNECT_TIMEOUT=2 \
    psql -h "$(ip_of px)" -p $MH_PROXY_PORT -U postgres -d postgres -XAtqc "$1" 2>/dev/null
}
MH_WORKLOAD_LOG=""
start_workload() {
  MH_WORKLOAD_LOG="$MH_DIR/workload.acks"
  ip netns exec "$(ns_of px)" env PGPASSWORD="$(password n1)" python3 "$MH_LIB_DIR/workload.py" \
    write "$MH_WORKLOAD_LOG" "$(ip_of px)" "$MH_PROXY_PORT" >>"$MH_DIR/workload.log" 2>&1 &
  MH_PIDS+=($!)
}
# check_workload SINCE_MS: prints the checker's JSON line; fails on a lost or split-brain write.
check_workload() {
  in_ns px env PGPASSWORD="$(password n1)" python3 "$MH_LIB_DIR/workload.py" \
    check "$MH_WORKLOAD_LOG" "$(ip_of px)" "$MH_PROXY_PORT" "$MH_SYNC" "$1"
}
json_field() { python3 -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print('' if v is None else v)" "$1" "$2"; }
now_ms() { date +%s%3N; }
acks_since() { awk -v t="$1" '$2 >= t' "$MH_WORKLOAD_LOG" 2>/dev/null | wc -l; }
# Synchronous mode: the leader published one constraint naming a standby (no transition under way,
# so a failover has a candidate). Always true in asynchronous mode.
sync_settled() {
  [ "$MH_SYNC" = off ] && return 0
  local urls
  urls=$(echo "$MH_ETCD_URLS" | tr -d ' ')
  in_ns px etcdctl --endpoints "$urls" --command-timeout=2s get "/pgfleet/$MH_CLUSTER/sync" --print-value-only 2>/dev/null |
    python3 -c 'import json,sys
d=json.loads(sys.stdin.read() or "{}")
c=d.get("constraints",[])
sys.exit(0 if len(c)==1 and d.get("leader") not in c[0]["members"] else 1)'
}
# Every node of $@ in the DCS status: the leader a primary, each other one a streaming replica.
all_follow_leader() {
  status_json | python3 -c 'import json,sys
s=json.load(sys.stdin)
nodes={n["name"]:n for n in s["nodes"]}
ok=bool(s["leader"]) and all(n in nodes and ((n==s["leader"] and nodes[n]["role"]=="primary") or
    (n!=s["leader"] and nodes[n]["role"]=="replica" and nodes[n]["state"]=="streaming")) for n in sys.argv[1:])
sys.exit(0 if ok else 1)' "$@" 2>/dev/null
}
