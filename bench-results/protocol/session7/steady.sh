#!/bin/bash
# Longer `picsou local` runs of one build (steady state: start-up, connection set-up and the
# first touch of each replica's memory are a smaller share than in local.sh's 1M-message runs).
# 4+4 replicas, one process each, TCP on loopback, both RSMs sending, receiver-confirmed;
# strategies interleaved within each round; CPU is user + system of all nine processes.
# Usage: steady.sh BIN OUTDIR   (ROUNDS, default 3; MSGS_SMALL, default 4000000 x 100 B;
#                                MSGS_LARGE, default 2000 x 1 MB)
set -euo pipefail
bin=$1 out=${2:-.}
mkdir -p "$out"
for i in $(seq 1 "${ROUNDS:-3}"); do for size in 100 1000000; do for s in picsou ost ata; do
  msgs=${MSGS_SMALL:-4000000}; [ $size = 1000000 ] && msgs=${MSGS_LARGE:-2000}
  f="$out/steady-$i-$s-$size.json"
  /usr/bin/time -f "%U %S" -o "$out/cpu.tmp" "$bin" local --strategy $s --messages $msgs --size $size \
    --base-port 26000 --json > "$f" 2>/dev/null || true
  python3 - "$f" "$out/cpu.tmp" <<'PY'
import json, sys
f, cpu = sys.argv[1], open(sys.argv[2]).read().split()
d = json.load(open(f)); d["cpu_seconds"] = float(cpu[0]) + float(cpu[1]); json.dump(d, open(f, "w"))
PY
done; done; done
rm -f "$out/cpu.tmp"
python3 "$(dirname "$0")/steady_summary.py" "$out"
