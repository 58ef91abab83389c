# Multi-host test kit: hosts are network namespaces joined by veth pairs to a bridge that lives in
# a namespace of its own (no address outside the namespaces), etcd in one, an agent + PostgreSQL in
# each of the others. Sourced by the scenario scripts; everything is torn down by `mh_cleanup`
# (installed as an EXIT trap by mh_setup), processes ended by their pids only.
set -euo pipefail

PGFLEET=${PGFLEET:?set PGFLEET to the pgfleet binary}
MH_ID=${MH_ID:-$$}
MH_NET=10.231.$((MH_ID % 200 + 20))   # addresses exist only inside this run's namespaces
MH_HUB=pgfmh${MH_ID}hub
MH_DIR=$(mktemp -d /tmp/pgfleet-multihost.XXXXXX)
chmod 0755 "$MH_DIR"
MH_TTL=${MH_TTL:-6}
MH_CLUSTER=mh
MH_PIDS=()
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
  add_host etcd
  log "starting etcd at $(ip_of etcd):2379"
  # ip netns exec execs the command: $! is the server's own pid (what cleanup ends).
  ip netns exec "$(ns_of etcd)" etcd --name e --data-dir "$MH_DIR/etcd-data" \
    --listen-client-urls "http://$(ip_of etcd):2379" --advertise-client-urls "http://$(ip_of etcd):2379" \
    --listen-peer-urls "http://$(ip_of etcd):2380" --initial-advertise-peer-urls "http://$(ip_of etcd):2380" \
    --initial-cluster "e=http://$(ip_of etcd):2380" --heartbeat-interval 50 --election-timeout 500 \
    --log-level warn >"$MH_DIR/etcd.log" 2>&1 &
  MH_PIDS+=($!)
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
    endpoints: [http://$(ip_of etcd):2379]
EOF
  ip netns exec "$(ns_of "$host")" "$PGFLEET" agent --config "$MH_DIR/$host.yaml" >>"$MH_DIR/$host.log" 2>&1 &
  MH_PIDS+=($!)
}

# pgfleet status --json from the etcd host (any machine would do).
status_json() { in_ns etcd "$PGFLEET" status --dcs "etcd://$(ip_of etcd):2379" --cluster "$MH_CLUSTER" --json 2>/dev/null; }
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
