# Shared by the bench scripts (sourced): a free --base-port for `pgfleet up`, a work directory.
# A base port whose proxy (+0..3), node (+10..12) and agent API (+50..52) ports all look free.
free_base() {
  while true; do
    local p=$(( (RANDOM % 300) * 100 + 20000 )) ok=1
    for i in 0 1 2 3 10 11 12 50 51 52; do
      if (exec 3<>/dev/tcp/127.0.0.1/$((p + i))) 2>/dev/null; then ok=0; break; fi
    done
    [ $ok -eq 1 ] && { echo $p; return; }
  done
}

# A temporary directory for one bench run: sets $work and $dir (a cluster directory inside it), and
# on exit stops that cluster (`pgfleet down --purge` with $bin, by PID) and removes both.
make_workdir() {
  work=$(mktemp -d /tmp/pgfleet-bench-XXXXXX)
  chmod 755 "$work"
  dir="$work/cluster"
  trap remove_workdir EXIT
}
remove_workdir() {
  "$bin" down --purge --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
