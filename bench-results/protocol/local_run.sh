#!/bin/bash
# One `picsou local` run for the protocol measurements: its JSON report, with the CPU time
# (user + system of all nine processes) added as "cpu_seconds". A failed run still leaves
# its (possibly partial) report. Usage: local_run.sh BIN OUT.json STRATEGY MESSAGES SIZE
set -uo pipefail
bin=$1 f=$2 s=$3 msgs=$4 size=$5
cpu=$(mktemp)
/usr/bin/time -f "%U %S" -o "$cpu" "$bin" local --strategy "$s" --messages "$msgs" --size "$size" \
  --base-port 26000 --json > "$f" 2>/dev/null
python3 - "$f" "$cpu" <<'PY'
import json, sys
f, cpu = sys.argv[1], open(sys.argv[2]).read().split()
d = json.load(open(f)); d["cpu_seconds"] = float(cpu[-2]) + float(cpu[-1]); json.dump(d, open(f, "w"))
PY
rm -f "$cpu"
