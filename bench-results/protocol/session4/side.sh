#!/bin/bash
# Side by side: 4a396bd (session start) vs merged main, interleaved rounds.
for i in 1 2; do for b in base new; do
  bin=/work/perf-base/picsou; [ $b = new ] && bin=/tmp/picsou-new
  echo "== $b round $i"
  $bin bench --processes --strategies picsou,ost,ata --sizes 100 --transports tcp --bytes-per-run 20000000 --max-messages 200000 --base-port 25000 --out /tmp/side-$b-$i 2>&1 | grep -E "^(picsou|ost|ata) +tcp"
done; done
