#!/usr/bin/env python3
"""Throughput of the five dissemination strategies in the deterministic simulator, as in the
Picsou paper: throughput against RSM size, and throughput against message size.

Every point is one `picsou.simulate` run (the same run as `picsou sim --json` with the same
flags); the grid runs in parallel threads through `picsou.sweep`. Throughput is
receiver-confirmed: a message counts once every correct receiver delivered it.

Network model (the README's WAN-like setting, the paper's for these figures, in
examples/sim/wan.toml): 10 Gbit/s NICs, 0.1 ms inside an RSM, 30 ms between the RSMs and at
most 300 Mbit/s per pair of replicas across them, with flow-control windows sized for that
bandwidth-delay product (256 MiB in flight), as a WAN deployment would set them. The RSM-size
figure sends 1 MB messages between two RSMs of n replicas (BFT, f = (n - 1) / 3); the
message-size figure uses two RSMs of 4 replicas.

    python3 examples/python/figures.py --threads 1     # the real figures, in docs/figures/
                                                       # (a run at n = 19 holds ~20 GB: every
                                                       # receiver retains the 1 GB stream)
    python3 examples/python/figures.py --quick --out /tmp/figs   # a small, fast version

Writes throughput_vs_rsm_size.png, throughput_vs_message_size.png and figures.json (every
run's report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import picsou  # noqa: E402

STRATEGIES = ["picsou", "ost", "ata", "ll", "otu"]
LABELS = {"picsou": "Picsou", "ost": "OST (one shot)", "ata": "ATA (all to all)", "ll": "LL (leader to leader)",
          "otu": "OTU (GeoBFT-style)"}
REPO = Path(__file__).resolve().parents[2]
WAN = REPO / "examples" / "sim" / "wan.toml"


def messages_for(strategy: str, size: int, n: int, quick: bool) -> int:
    """Enough messages for a steady state. ATA sends n² copies of every message, and LL and OTU
    push everything through one pair of replicas, so they level off early and cost more
    per message: they get fewer."""
    if strategy in ("picsou", "ost"):
        budget, lo, hi = (40e6, 60, 5_000) if quick else (1e9, 200, 100_000)
    else:
        budget, lo, hi = (10e6, 30, 2_000) if quick else (60e6 / max(1, n // 2), 60, 20_000)
    return int(max(lo, min(budget / size, hi)))


def size_grid(quick: bool) -> list[dict[str, Any]]:
    ns = [4, 7] if quick else [4, 7, 10, 13, 16, 19]
    return [
        {"strategy": s, "n": n, "messages": messages_for(s, 1_000_000, n, quick)}
        for s in STRATEGIES
        for n in ns
    ]


def message_size_grid(quick: bool) -> list[dict[str, Any]]:
    sizes = [1_000, 100_000] if quick else [100, 1_000, 10_000, 100_000, 1_000_000]
    return [
        {"strategy": s, "size": size, "messages": messages_for(s, size, 4, quick)}
        for s in STRATEGIES
        for size in sizes
    ]


STYLES = {
    "picsou": dict(marker="o", linestyle="-", linewidth=2.2, markersize=7),
    "ost": dict(marker="s", linestyle="-", linewidth=1.6, markersize=6),
    "ata": dict(marker="^", linestyle="--", linewidth=1.4, markersize=9),
    "ll": dict(marker="v", linestyle="-.", linewidth=1.4, markersize=7),
    "otu": dict(marker="x", linestyle=":", linewidth=1.8, markersize=7),
}


def plot(runs: list[dict[str, Any]], x: str, path: Path, title: str, xlabel: str, logx: bool) -> None:
    """One line per strategy: throughput against `x` ("sender_n" or "size"). ATA, LL and OTU
    coincide in this model (one pair's 300 Mbit/s bounds them), hence distinct markers."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for s in STRATEGIES:
        pts = sorted((r[x], r["throughput_mb_per_s"]) for r in runs if r["strategy"] == s)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=LABELS[s], **STYLES[s])  # type: ignore[arg-type]
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput (MB/s, receiver-confirmed)")
    ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_all(by_size: list[dict[str, Any]], by_msg: list[dict[str, Any]], out: Path) -> None:
    plot(by_size, "sender_n", out / "throughput_vs_rsm_size.png",
         "Throughput vs RSM size\n1 MB messages; 300 Mbit/s and 30 ms per cross-RSM replica pair",
         "replicas per RSM (n; BFT, f = (n-1)/3)", logx=False)
    plot(by_msg, "size", out / "throughput_vs_message_size.png",
         "Throughput vs message size\n4 + 4 replicas (BFT); 300 Mbit/s and 30 ms per cross-RSM replica pair",
         "message size (bytes)", logx=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points and messages (seconds, not minutes)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures", help="output directory")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: one per CPU)")
    parser.add_argument("--from-json", type=Path, help="re-plot the runs of an earlier figures.json, run nothing")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    if args.from_json:
        runs = json.loads(args.from_json.read_text())
        plot_all([r for r in runs if r["figure"] == "rsm_size"], [r for r in runs if r["figure"] == "message_size"],
                 args.out)
        print(f"re-plotted {len(runs)} runs from {args.from_json} into {args.out}")
        return 0

    started = time.monotonic()
    by_size = picsou.sweep(size_grid(args.quick), base=WAN, size=1_000_000, fault="bft", threads=args.threads)
    by_msg = picsou.sweep(message_size_grid(args.quick), base=WAN, n=4, fault="bft", threads=args.threads)
    elapsed = time.monotonic() - started

    runs = [dict(r.to_dict(), figure="rsm_size", params=r.params, real_seconds=r.real_seconds) for r in by_size]
    runs += [dict(r.to_dict(), figure="message_size", params=r.params, real_seconds=r.real_seconds) for r in by_msg]
    plot_all(runs[: len(by_size)], runs[len(by_size) :], args.out)
    (args.out / "figures.json").write_text(json.dumps(runs, indent=1) + "\n")

    print(f"{len(runs)} simulations in {elapsed:.1f} s of real time; figures in {args.out}")
    for r in by_size:
        print(f"  n={r.sender_n:<3} {r.strategy:<7} {r.throughput_mb_per_s:10.1f} MB/s  c3b_ok={r.c3b_ok}")
    bad = [r for r in by_size + by_msg if not r.c3b_ok]
    for r in bad:
        print(f"C3B violated: {r!r}: {r.violations[:3]}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
