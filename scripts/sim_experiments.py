#!/usr/bin/env python3
"""Runs the simulator experiments recorded in the README and writes results/.

Every number comes from `picsou sim --json` (deterministic: same seed, same result), run
side by side in one invocation. Outputs:
  results/sim-experiments.json   every run's full report
  results/sim-experiments.md     the tables the README quotes

Usage: python3 scripts/sim_experiments.py [--quick]   (builds the release binary first)
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from simrun import run_sim

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "target" / "release" / "picsou"
# A frozen copy, so that rebuilding during a long run cannot mix two binaries' results.
BIN = ROOT / "target" / "experiments" / "picsou"
QUICK = "--quick" in sys.argv
STRATEGIES = ["picsou", "ost", "ata", "ll", "otu"]


def crash_list(n, f):
    """The artifact's crash placement: replicas with index = 2 mod 3, f per side."""
    idx = [i for i in range(n) if i % 3 == 2][:f]
    return ",".join([f"s{i}" for i in idx] + [f"r{i}" for i in idx])


def sim(*args):
    return run_sim(BIN, *args)


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "picsou-cli"], cwd=ROOT, check=True)
    BIN.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUILT, BIN)
    runs, md = [], []

    # 1. Speed of the simulator itself.
    m = "20000" if QUICK else "100000"
    r = sim("--n", "19", "--messages", m, "--size", "100")
    runs.append(r)
    md.append(f"Simulator speed: {m} messages of 100 B between two 19-replica RSMs: "
              f"{r['real_seconds']} s of real time, c3b_ok = {r['c3b_ok']}.\n")

    # 2. Strategies side by side, LAN defaults (10 Gb/s NICs, 0.1 ms local, 1 ms cross).
    md.append("| n | size | " + " | ".join(STRATEGIES) + " |")
    md.append("|---|---|" + "---|" * len(STRATEGIES))
    for n in (4, 19):
        for size, msgs in ((100, 20000 if QUICK else 100000), (1_000_000, 200 if QUICK else 500)):
            cells = []
            for s in STRATEGIES:
                # All-to-all moves n² copies of each message: fewer messages keep it tractable.
                m = msgs if s != "ata" or size == 100 else min(msgs, 100)
                r = sim("--n", str(n), "--size", str(size), "--messages", str(m), "--strategy", s)
                runs.append(r)
                unit = f"{r['throughput_msgs_per_s']:,.0f} msg/s" if size == 100 else f"{r['throughput_mb_per_s']:,.0f} MB/s"
                cells.append(unit + ("" if r["c3b_ok"] else " (C3B violated)"))
            md.append(f"| {n} | {size:,} B | " + " | ".join(cells) + " |")
    md.append("")

    # 3. WAN-like model (examples/sim/wan.toml): 1 MB messages, 300 Mb/s per replica pair,
    # 30 ms cross latency, windows sized for that bandwidth-delay product.
    wan = ["--scenario", str(ROOT / "examples" / "sim" / "wan.toml")]
    msgs = "200" if QUICK else "1000"
    md.append("| n | picsou MB/s | ost MB/s | ata MB/s | picsou/ost | picsou/ata | picsou, f crashed per side | kept |")
    md.append("|---|---|---|---|---|---|---|---|")
    for n in ((4, 19) if QUICK else (4, 7, 13, 19)):
        f = (n - 1) // 3
        res = {}
        for s in ("picsou", "ost", "ata"):
            r = sim(*wan, "--n", str(n), "--messages", msgs if s != "ata" else "100", "--strategy", s)
            runs.append(r)
            res[s] = r["throughput_mb_per_s"]
        r = sim(*wan, "--n", str(n), "--messages", msgs, "--crash", crash_list(n, f))
        runs.append(r)
        crashed = r["throughput_mb_per_s"]
        md.append(f"| {n} | {res['picsou']:,.0f} | {res['ost']:,.0f} | {res['ata']:,.1f} | "
                  f"{res['picsou'] / res['ost']:.2f}× | {res['picsou'] / res['ata']:.1f}× | "
                  f"{crashed:,.0f} (f={f}, c3b_ok={r['c3b_ok']}) | {crashed / res['picsou']:.0%} |")
    md.append("")

    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "sim-experiments.json").write_text(json.dumps(runs, indent=1))
    (out / "sim-experiments.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    bad = [r for r in runs if not r["c3b_ok"] and r["strategy"] == "picsou"]
    if bad:
        raise SystemExit(f"{len(bad)} Picsou runs violated C3B")


if __name__ == "__main__":
    main()
