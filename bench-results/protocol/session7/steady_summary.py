#!/usr/bin/env python3
"""Prints the table of steady.sh's JSON files (argument: their folder), one row per round and
the median of the rounds. Rates are per direction (the mean of the two), receiver-confirmed."""
import json, pathlib, statistics, sys

folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
runs = {}
for f in sorted(folder.glob("steady-*.json")):
    _, rnd, strategy, size = f.stem.split("-")
    d = json.load(open(f))
    dirs = d.get("directions", [])
    ok = d.get("ok") and len(dirs) == 2
    key = "msgs_per_s" if int(size) < 10000 else "mb_per_s"
    rate = sum(x[key] for x in dirs) / 2 if ok else None
    msgs = dirs[0]["messages"] if dirs else 0
    runs[(int(size), int(rnd), strategy)] = (rate, d.get("cpu_seconds"), msgs, d.get("max_peak_rss_kib"))

def fmt(size, rate):
    if rate is None:
        return "failed"
    return f"{rate / 1000:.0f}k msgs/s" if size < 10000 else f"{rate:.0f} MB/s"

print("| size | round | picsou | ost | ata | picsou ÷ ata | CPU-s picsou / ost / ata | peak RSS picsou |")
print("|---|---|---|---|---|---|---|---|")
for size in sorted({k[0] for k in runs}):
    rounds = sorted({k[1] for k in runs if k[0] == size})
    msgs = max(runs[k][2] for k in runs if k[0] == size)
    label = f"100 B × {msgs // 1000000}M" if size < 10000 else f"1 MB × {msgs}"
    rows = [(str(r), {s: runs.get((size, r, s), (None, None, 0, None)) for s in ("picsou", "ost", "ata")}) for r in rounds]
    med = {}
    for s in ("picsou", "ost", "ata"):
        vals = [v[s] for _, v in rows]
        rates = [v[0] for v in vals if v[0] is not None]
        cpus = [v[1] for v in vals if v[1] is not None]
        rss = [v[3] for v in vals if v[3] is not None]
        med[s] = (statistics.median(rates) if rates else None, statistics.median(cpus) if cpus else None, 0,
                  statistics.median(rss) if rss else None)
    for name, v in rows + [("median", med)]:
        p, o, a = v["picsou"], v["ost"], v["ata"]
        ratio = f"{p[0] / a[0]:.2f}×" if p[0] and a[0] else "-"
        cpu = " / ".join(f"{x[1]:.1f}" if x[1] else "-" for x in (p, o, a))
        rss = f"{p[3] / 1024:.0f} MiB" if p[3] else "-"
        print(f"| {label} | {name} | {fmt(size, p[0])} | {fmt(size, o[0])} | {fmt(size, a[0])} | {ratio} | {cpu} | {rss} |")
