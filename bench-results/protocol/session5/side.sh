#!/bin/bash
# Side by side, interleaved in one sitting: the build at the start of session 5 (base, 1be6bcc)
# and the current one (new). Each point is a whole 4+4 deployment, one process per replica,
# TCP on loopback, both RSMs sending, receiver-confirmed. Usage: side.sh BASE_BIN NEW_BIN OUTDIR
set -euo pipefail
base=$1 new=$2 out=${3:-.}
for i in 1 2; do for b in base new; do
  bin=$base; [ $b = new ] && bin=$new
  echo "== $b round $i: 100 B"
  $bin bench --processes --strategies picsou,ost,ata --sizes 100 --transports tcp \
    --bytes-per-run 40000000 --max-messages 400000 --base-port 25000 --out /tmp/side5-$b-$i >/dev/null 2>&1 || true
  cp /tmp/side5-$b-$i/bench.json "$out/side-$b-$i.json"
  echo "== $b round $i: 1 MB"
  $bin bench --processes --strategies picsou,ost,ata --sizes 1000000 --transports tcp \
    --bytes-per-run 500000000 --max-messages 500 --base-port 25100 --timeout-s 120 --out /tmp/side5m-$b-$i >/dev/null 2>&1 || true
  cp /tmp/side5m-$b-$i/bench.json "$out/side1m-$b-$i.json"
done; done
python3 "$(dirname "$0")/summary.py" "$out"
