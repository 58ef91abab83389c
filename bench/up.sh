#!/usr/bin/env bash
# Measures `pgfleet up --replicas 2` from nothing to every replica streaming, several runs,
# and prints the median with its breakdown (initdb, basebackup, start and streaming).
# Usage: bench/up.sh [runs]   (default 5; builds first if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
[ -x build/pgfleet ] || ./scripts/build.sh >/dev/null

work=$(mktemp -d /tmp/pgfleet-bench-XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # free_base

results=()
for i in $(seq 1 "$runs"); do
  dir="$work/c$i"
  line=$(./build/pgfleet up --dir "$dir" --replicas 2 --base-port "$(free_base)" 2>/dev/null | grep '^ready in')
  ./build/pgfleet down --purge --dir "$dir" >/dev/null
  echo "run $i: $line"
  results+=("$line")
done

printf '%s\n' "${results[@]}" | awk '
  { gsub(/[(),]/, ""); total[NR]=$3; initdb[NR]=$6; bb[NR]=$9; rest[NR]=$14 }
  function median(a, n,   i, j, t, s) { for (i=1;i<=n;i++) s[i]=a[i]; for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (s[j]<s[i]) { t=s[i]; s[i]=s[j]; s[j]=t }
                                        return (n%2) ? s[(n+1)/2] : (s[n/2]+s[n/2+1])/2 }
  END { printf "median of %d runs: %.2f s to all-streaming (initdb %.2f s, basebackup %.2f s, start and streaming %.2f s); goal < 10 s: %s\n",
        NR, median(total,NR), median(initdb,NR), median(bb,NR), median(rest,NR), (median(total,NR) < 10 ? "met" : "MISSED") }'
