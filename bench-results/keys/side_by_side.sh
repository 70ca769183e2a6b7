#!/bin/bash
# Side by side: embedded default (shared secret) vs the same deployment with per-replica keys.
P=/work/main/target/release/picsou
for size in 100 1000000; do
  if [ $size = 100 ]; then M=1000000; else M=1000; fi
  for i in 1 2 3 4; do
    for which in $( [ $((i%2)) = 1 ] && echo "shared keyed" || echo "keyed shared" ); do
      if [ $which = shared ]; then cfg=/work/main/examples/local-4x4-tcp.toml; else cfg=/tmp/sbskeys/keys/deployment.toml; fi
      out=$($P local --config $cfg --messages $M --size $size --rate 0 --json 2>/dev/null)
      echo "$size $which $(echo "$out" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["ok"], " ".join("%.1f"%(d["msgs_per_s"]) for d in v["directions"]))')"
    done
  done
done
