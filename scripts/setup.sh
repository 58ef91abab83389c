#!/usr/bin/env bash
# Installs every Debian package pgfleet needs to build, run and test; does nothing when all are present.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config git
  # libraries
  libpq-dev libcurl4-openssl-dev libssl-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libfmt-dev libpg-query-dev liburing-dev libzstd-dev
  # tests
  libgtest-dev libgmock-dev
  # fuzzing the protocol decoder and the SQL parsing (libFuzzer)
  clang libclang-rt-14-dev
  # the servers and clients pgfleet drives
  postgresql-15 postgresql-client-15 postgresql-contrib
  # the multi-host DCS (etcd v3) and its tests
  etcd-server etcd-client
  # the multi-host tests' workload, checker and status parsing
  python3
  # integration tests of bad input (port holders, disk full)
  procps iproute2 util-linux
  # multi-host tests: packet loss on a link where the kernel has no netem queueing discipline
  nftables
  # pgfleet top under a real terminal (tmux); the dashboard in real headless Chromium
  tmux chromium chromium-driver fonts-dejavu-core
  # monitoring tests: the real HAProxy with deploy/haproxy.cfg, promtool on metrics and alert rules
  haproxy prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian's postgresql, etcd-server, haproxy and prometheus packages start services on install (a
# default cluster on 5432, etcd, HAProxy, a Prometheus server); pgfleet and its tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
