#!/bin/bash
# Longer `picsou local` runs side by side, interleaved in one sitting: the build at the start of
# session 6 (base, c7632a9) and the current one (new). 4+4 replicas, one process each, TCP on
# loopback, both RSMs sending, receiver-confirmed; CPU is user + system of all nine processes.
# Usage: local.sh BASE_BIN NEW_BIN OUTDIR   (ROUNDS=3 for three rounds; session 7 reused it so)
set -euo pipefail
base=$1 new=$2 out=${3:-.}
mkdir -p "$out"
for i in $(seq 1 "${ROUNDS:-2}"); do for size in 100 1000000; do for s in picsou ost ata; do for b in base new; do
  bin=$base; [ $b = new ] && bin=$new
  msgs=1000000; [ $size = 1000000 ] && msgs=1000
  f="$out/local-$b-$i-$s-$size.json"
  /usr/bin/time -f "%U %S" -o "$out/cpu.tmp" "$bin" local --strategy $s --messages $msgs --size $size \
    --base-port 26000 --json > "$f" 2>/dev/null || true
  python3 - "$f" "$out/cpu.tmp" <<'PY'
import json, sys
f, cpu = sys.argv[1], open(sys.argv[2]).read().split()
d = json.load(open(f)); d["cpu_seconds"] = float(cpu[0]) + float(cpu[1]); json.dump(d, open(f, "w"))
PY
done; done; done; done
rm -f "$out/cpu.tmp"
python3 "$(dirname "$0")/local_summary.py" "$out"
