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
  "$(dirname "$0")/../local_run.sh" "$bin" "$out/steady-$i-$s-$size.json" $s $msgs $size
done; done; done
python3 "$(dirname "$0")/steady_summary.py" "$out"
