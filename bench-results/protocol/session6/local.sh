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
  "$(dirname "$0")/../local_run.sh" "$bin" "$out/local-$b-$i-$s-$size.json" $s $msgs $size
done; done; done; done
python3 "$(dirname "$0")/local_summary.py" "$out"
