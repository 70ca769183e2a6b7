#!/bin/bash
# Side by side, fault-free `picsou local` (embedded default deployment, TCP, 4+4 processes):
# the last commit before sessions (BEFORE) and the commit with sessions (AFTER), alternated
# in pairs so that machine noise hits both. Binaries built with the fast release profile:
#   git worktree add /tmp/before 4036199 && cd /tmp/before && cargo build --release -p picsou-cli
# Usage: side_by_side.sh BEFORE_BIN AFTER_BIN > side_by_side.txt
set -euo pipefail
BEFORE=$1
AFTER=$2
CFG=$(dirname "$0")/../../examples/local-4x4-tcp.toml
for size in 100 1000000; do
  if [ $size = 100 ]; then M=1000000; else M=1000; fi
  for i in 1 2 3 4; do
    for which in $( [ $((i%2)) = 1 ] && echo "before after" || echo "after before" ); do
      if [ $which = before ]; then P=$BEFORE; else P=$AFTER; fi
      out=$($P local --config "$CFG" --messages $M --size $size --rate 0 --json 2>/dev/null)
      echo "$size $which $(echo "$out" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["ok"], " ".join("%.1f"%(d["msgs_per_s"]) for d in v["directions"]))')"
    done
  done
done
