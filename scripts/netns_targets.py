#!/usr/bin/env python3
"""Issue 18's targets from a `picsou bench --netns` bench.json: prints a Markdown table of every
point (msgs/s, MB/s, cross-RSM bytes per message, copies) and the targets with their measured
values, and writes the same as targets.md next to the JSON.

Usage: python3 scripts/netns_targets.py bench-results/netns/<run>/bench.json
"""
import json
import os
import sys


def main(path):
    b = json.load(open(path))
    tb = b.get("testbed", {})
    rows = {}
    for r in b["results"]:
        p = r["point"]
        rows[(p["transport"], p["n"], p["size"], p["strategy"])] = r
    out = []
    out.append(f"commit {tb.get('commit')} (dirty: {tb.get('dirty')}), shaping {tb.get('shaping')}, "
               f"cpus {b.get('cpus')}, load at end {tb.get('loadavg_at_end')}")
    out.append("")
    out.append("| transport | n | size | strategy | msgs/s | MB/s | vs ATA | cross-RSM B/msg | copies | resends |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for (t, n, size, s), r in rows.items():
        ata = rows.get((t, n, size, "ata"))
        ratio = (f"{r['msgs_per_s'] / ata['msgs_per_s']:.2f}x"
                 if ata and ata["ok"] and r["ok"] and ata["msgs_per_s"] > 0 else "-")
        l = r.get("link") or {}
        rate = f"{r['msgs_per_s']:,.0f}" if r["ok"] else "FAILED"
        out.append(f"| {t} | {n} | {size:,} B | {s} | {rate} | {r['mb_per_s']:.2f} | {ratio} | "
                   f"{l.get('cross_rsm_bytes_per_message', 0):,.0f} | {l.get('copies', 0):.3f} | {r.get('resends', 0)} |")
    out.append("")
    out.append("| target | transport | measured | met |")
    out.append("|---|---|---|---|")

    def ratio(t, n, size, a, b_):
        x, y = rows.get((t, n, size, a)), rows.get((t, n, size, b_))
        if not x or not y or not x["ok"] or not y["ok"] or y["msgs_per_s"] == 0:
            return None
        return x["msgs_per_s"] / y["msgs_per_s"]

    transports = sorted({k[0] for k in rows})
    for t in transports:
        for (n, size, other, want) in [(4, 1_000_000, "ata", 8.0), (4, 100, "ata", 8.0),
                                       (4, 1_000_000, "ost", 0.9), (4, 100, "ost", 0.9),
                                       (7, 1_000_000, "ata", 20.0)]:
            v = ratio(t, n, size, "picsou", other)
            if v is None:
                continue
            out.append(f"| Picsou ≥ {want:g}× {other.upper()}, {n}+{n}, {size:,} B | {t} | {v:.2f}× | "
                       f"{'yes' if v >= want else '**no**'} |")
        for (tt, n, size, s), r in rows.items():
            if tt == t and s == "picsou" and r.get("link"):
                c = r["link"]["copies"]
                out.append(f"| Picsou cross-RSM bytes/msg ≤ 1.10 × one copy + headers, {n}+{n}, {size:,} B | {t} | "
                           f"{c:.3f}× ({r['link']['cross_rsm_bytes_per_message']:,.0f} B vs "
                           f"{r['link']['one_copy_bytes']:,.0f} B) | {'yes' if c <= 1.10 else '**no**'} |")
    text = "\n".join(out) + "\n"
    print(text)
    with open(os.path.join(os.path.dirname(path), "targets.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1])
