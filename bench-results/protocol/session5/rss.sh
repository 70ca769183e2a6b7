#!/bin/bash
# Peak RSS per replica against stream length: `picsou local` (4+4 replicas, one process each,
# TCP on loopback, both RSMs sending) with streams of 0.25, 1 and 2 GB per direction of 1 MB
# messages, and 0.25 and 1 GB of 100 B messages. Bounded memory means the peak stops growing
# once the windows, queues and retention are full. Usage: rss.sh PICSOU_BIN OUTDIR
set -euo pipefail
bin=$1 out=${2:-.}
run() { # size messages
  echo "== $1 B x $2"
  $bin local --strategy picsou --size "$1" --messages "$2" --base-port 25200 --json \
    > "$out/rss-$1-$2.json" 2>/dev/null || true
  python3 -c "
import json,sys; d=json.load(open('$out/rss-$1-$2.json'))
print('  ok', d['ok'], 'max peak RSS', d['max_peak_rss_kib']//1024, 'MiB', ' '.join(f\"{x['mb_per_s']:.1f} MB/s\" for x in d['directions']))"
}
run 1000000 250
run 1000000 1000
run 1000000 2000
run 100 2500000
run 100 10000000
