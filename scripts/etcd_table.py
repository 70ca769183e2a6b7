#!/usr/bin/env python3
"""Markdown tables of the picsou-etcd demo reports in bench-results/etcd/ (for the README)."""
import json
import sys
from pathlib import Path

ORDER = ["dr-picsou", "dr-ata", "dr-ll", "dr-picsou-kill-primary", "dr-picsou-kill-standby",
         "dr-picsou-kill-standby-2",
         "reconcile-picsou", "dr-picsou-tmpfs", "dr-ata-tmpfs", "dr-ll-tmpfs"]


def main(folder: str = "bench-results/etcd") -> None:
    reports = {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}
    names = [n for n in ORDER if n in reports] + [n for n in reports if n not in ORDER]
    print("| run | storage | strategy | writes/s baseline → mirrored | cost | lag p50 / p99 at full rate | "
          "writes/s at half rate, lag p50 / p99 | revisions mirrored | identical | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        r = reports[n]
        ph = {p["name"]: p for p in r["phases"]}
        b, m, h = ph.get("baseline"), ph.get("mirrored"), ph.get("half-rate")
        storage = "tmpfs" if "tmpfs" in n else "disk"
        def rate(p, i=0):
            return p["loads"][i]["writes_per_s"] if p else 0
        def lag(p, i=0):
            g = p and p["loads"][i].get("lag")
            return f"{g['p50_ms']:.0f} / {g['p99_ms']:.0f} ms" if g else "–"
        half = f"{rate(h):,.0f}, {lag(h)}" if h else "–"
        mirrored = sum(d["revisions_mirrored"] for d in r["directions"])
        expected = sum(d["source_revisions"] for d in r["directions"])
        same = all(d["identical"] for d in r["directions"])
        print(f"| {n} | {storage} | {r['strategy']} | {rate(b):,.0f} → {rate(m):,.0f} | "
              f"{r['mirroring_cost_pct']:.0f}% | {lag(m)} | {half} | {mirrored:,} of {expected:,} | "
              f"{'yes' if same else 'NO'} | {r['load_average_start']:.1f} |")
    print()
    print("| run | phase | CPU cores: etcd primary / standby, sidecars primary / standby, load generator | "
          "primary etcd CPU ms per write | primary WAL: fsyncs/s, mean ms, disk busy | standby WAL |")
    print("|---|---|---|---|---|---|")
    for n in names:
        r = reports[n]
        for p in r["phases"]:
            if p["name"] == "half-rate":
                continue
            c = p["cpu_cores"]
            g = lambda k: c.get(k, 0.0)
            w = p["loads"][0]["writes_per_s"] or 1
            wal = p.get("wal_fsync", {})
            def f(k):
                x = wal.get(k)
                return f"{x['per_s']:.0f}, {x['mean_ms']:.1f}, {100 * x['busy']:.0f}%" if x else "–"
            print(f"| {n} | {p['name']} | {g('etcd primary'):.2f} / {g('etcd standby'):.2f}, "
                  f"{g('sidecars primary'):.2f} / {g('sidecars standby'):.2f}, {g('load generator (demo process)'):.2f} | "
                  f"{1000 * g('etcd primary') / w:.2f} | {f('primary')} | {f('standby')} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
