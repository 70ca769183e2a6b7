#!/usr/bin/env python3
"""Prints the table of local.sh's JSON files (argument: their folder)."""
import json, pathlib, sys

folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
runs = {}
for f in sorted(folder.glob("local-*.json")):
    _, build, rnd, strategy, size = f.stem.split("-")
    d = json.load(open(f))
    dirs = d.get("directions", [])
    ok = d.get("ok") and len(dirs) == 2
    rate = sum(x["msgs_per_s"] if int(size) < 10000 else x["mb_per_s"] for x in dirs) / 2 if ok else None
    runs[(int(size), int(rnd), build, strategy)] = (rate, d.get("cpu_seconds"))
print("| size | round | build | picsou | ost | ata | picsou ÷ ata | CPU-s picsou / ata |")
print("|---|---|---|---|---|---|---|---|")
for size, rnd, build in sorted({k[:3] for k in runs}, key=lambda k: (k[0], k[1], k[2] != "base")):
    get = lambda s: runs.get((size, rnd, build, s), (None, None))
    def cell(s):
        rate = get(s)[0]
        if rate is None:
            return "failed"
        return f"{rate / 1000:.0f}k msgs/s" if size < 10000 else f"{rate:.0f} MB/s"
    p, a = get("picsou"), get("ata")
    ratio = f"{p[0] / a[0]:.2f}×" if p[0] and a[0] else "-"
    cpu = f"{p[1]:.1f} / {a[1]:.1f}" if p[1] and a[1] else "-"
    label = "100 B × 1M" if size == 100 else "1 MB × 1000"
    print(f"| {label} | {rnd} | {build} | {cell('picsou')} | {cell('ost')} | {cell('ata')} | {ratio} | {cpu} |")
