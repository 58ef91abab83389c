# Shared by the bench scripts (sourced): a free --base-port for `pgfleet up`.
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
