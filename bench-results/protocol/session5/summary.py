#!/usr/bin/env python3
"""Prints the side-by-side table of side.sh's JSON files (argument: their folder)."""
import json, pathlib, sys

folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
rows = []
for f in sorted(folder.glob("side*-*-*.json")):
    build, rnd = f.stem.split("-")[1:3]
    for r in json.load(open(f))["results"]:
        p = r["point"]
        rows.append((p["size"], int(rnd), build, p["strategy"], r))
print("| size | round | build | picsou | ost | ata | picsou ÷ ata | peak RSS / replica (picsou) |")
print("|---|---|---|---|---|---|---|---|")
keys = sorted({(s, rnd, b) for s, rnd, b, _, _ in rows}, key=lambda k: (k[0], k[1], k[2] != "base"))
for size, rnd, build in keys:
    got = {st: r for s, rd, b, st, r in rows if (s, rd, b) == (size, rnd, build)}
    def cell(st):
        r = got.get(st)
        if r is None or not r["ok"]:
            return "failed"
        return f"{r['msgs_per_s'] / 1000:.0f}k msgs/s" if size < 10000 else f"{r['mb_per_s']:.0f} MB/s"
    ratio = "-"
    if all(st in got and got[st]["ok"] for st in ("picsou", "ata")):
        ratio = f"{got['picsou']['msgs_per_s'] / got['ata']['msgs_per_s']:.2f}×"
    rss = got.get("picsou", {}).get("max_peak_rss_kib", 0) // 1024
    label = "100 B" if size == 100 else f"{size // 1000000} MB"
    print(f"| {label} | {rnd} | {build} | {cell('picsou')} | {cell('ost')} | {cell('ata')} | {ratio} | {rss} MiB |")
