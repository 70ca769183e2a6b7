#!/usr/bin/env python3
"""Fault-robustness experiments of the simulator (issue 16), as recorded in the README.

Every number comes from `picsou sim --json` (deterministic: same seed, same result), run side by
side in one invocation. Two parts:

1. Retention: throughput with f faulty replicas per side (crashed, or each Byzantine behaviour on
   the side it acts on; BFT, f = (n-1)/3, the artifact's placement i = 2 mod 3) divided by the
   fault-free run of the same model and n; and each behaviour divided by the crash run of the
   same side. Models: WAN (1 MB, 100 Mbit/s cross link, 20 ms) and LAN (4 KB, defaults, runs of
   at least one virtual second).
2. Timeline: WAN n=4, each behaviour (and a crash) starting mid-run on one replica; messages
   delivered to every correct receiver per interval, and `recovery_ms`.

Outputs: results/fault-experiments.json (every report), results/fault-experiments.md (tables),
results/fault-timeline.svg (the figure; no plotting library needed).

Usage: python3 scripts/fault_experiments.py [--quick] [--n 4,7,13,19] [--bin PATH]
"""
import json
import subprocess
import sys
from pathlib import Path

from simrun import run_sim

ROOT = Path(__file__).resolve().parent.parent
ARGS = sys.argv[1:]
QUICK = "--quick" in ARGS


def arg(name, default):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else default


BIN = Path(arg("--bin", ROOT / "target" / "release" / "picsou"))
NS = [int(x) for x in arg("--n", "4,7" if QUICK else "4,7,13,19").split(",")]
OUT = Path(arg("--out", ROOT / "results"))

# Behaviours and the side each acts on.
SENDER_SIDE = ["silent", "forge", "drop-some:50"]
RECEIVER_SIDE = ["no-rebroadcast", "zero-ack", "stale-ack", "inflate-ack", "lie-phi", "slow-ack:100"]
MODELS = {
    "WAN": ["--fault", "bft", "--size", "1000000", "--cross-link-mbps", "100", "--cross-latency-ms", "20",
            "--messages", "200" if QUICK else "500"],
    "LAN": ["--fault", "bft", "--size", "4096", "--messages", "100000" if QUICK else "400000"],
}


def sim(*args):
    return run_sim(BIN, *args)


def placement(prefix, n, f):
    return [f"{prefix}{i}" for i in range(n) if i % 3 == 2][:f]


def retention():
    rows = []
    for model, base in MODELS.items():
        for n in NS:
            f = (n - 1) // 3
            common = [*base, "--n", str(n)]
            s, r = placement("s", n, f), placement("r", n, f)
            cases = [("fault-free", [], None),
                     ("crash senders", ["--crash", ",".join(s)], "s"),
                     ("crash receivers", ["--crash", ",".join(r)], "r"),
                     ("crash both", ["--crash", ",".join(s + r)], "both")]
            cases += [(b, ["--byzantine", ",".join(f"{x}={b}" for x in s)], "s") for b in SENDER_SIDE]
            cases += [(b, ["--byzantine", ",".join(f"{x}={b}" for x in r)], "r") for b in RECEIVER_SIDE]
            free = crash = None
            crash_by_side = {}
            for label, extra, side in cases:
                rep = sim(*common, *extra)
                mbps = rep["throughput_mb_per_s"]
                if label == "fault-free":
                    free = mbps
                if label.startswith("crash"):
                    crash_by_side[side] = mbps
                row = {
                    "model": model, "n": n, "f": f, "case": label, "side": side,
                    "mb_per_s": round(mbps, 2), "c3b_ok": rep["c3b_ok"], "delivered": rep["delivered"],
                    "messages": rep["messages"], "virtual_seconds": rep["virtual_seconds"],
                    "retained": round(mbps / free, 3) if free else None,
                    "vs_crash": (round(mbps / crash_by_side[side], 3)
                                 if side in ("s", "r") and not label.startswith("crash") and crash_by_side.get(side)
                                 else None),
                    "report": rep,
                }
                rows.append(row)
                print(f"{model} n={n:<2} {label:<16} {mbps:9.1f} MB/s  retained {row['retained']}  "
                      f"vs crash {row['vs_crash']}  ok={rep['c3b_ok']}  ({rep['real_seconds']} s)", flush=True)
    return rows


def timelines():
    base = [*MODELS["WAN"], "--n", "4", "--timeline-ms", "100"]
    free = sim(*base)
    onset = int(free["virtual_seconds"] * 1000 / 3)
    lines = [("fault-free", free)]
    lines.append(("crash s1+r1", sim(*base, "--crash", f"s1@{onset},r1@{onset}")))
    for b in SENDER_SIDE:
        lines.append((f"s1={b}", sim(*base, "--byzantine", f"s1={b}@{onset}")))
    for b in RECEIVER_SIDE:
        lines.append((f"r1={b}", sim(*base, "--byzantine", f"r1={b}@{onset}")))
    for label, rep in lines:
        print(f"timeline {label:<20} recovery {rep.get('recovery_ms')} ms  ok={rep['c3b_ok']}  "
              f"end {rep['virtual_seconds']:.2f} s", flush=True)
    return onset, lines


def svg(onset, lines, path):
    w, h, left, bottom, top, right = 900, 420, 60, 40, 20, 190
    interval = lines[0][1]["timeline"]["interval_ms"]
    xmax = max(len(r["timeline"]["delivered"]) for _, r in lines) * interval
    rate = lambda c: c * 1000 / interval  # messages per second
    ymax = max(rate(c) for _, r in lines for c in r["timeline"]["delivered"]) * 1.1 or 1
    X = lambda ms: left + (w - left - right) * ms / xmax
    Y = lambda v: h - bottom - (h - bottom - top) * v / ymax
    colours = ["#000", "#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{left}" y1="{h-bottom}" x2="{w-right}" y2="{h-bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h-bottom}" stroke="black"/>',
           f'<line x1="{X(onset)}" y1="{top}" x2="{X(onset)}" y2="{h-bottom}" stroke="#999" stroke-dasharray="4"/>',
           f'<text x="{X(onset)+4}" y="{top+12}" fill="#666">fault onset</text>',
           f'<text x="{(w-right+left)/2}" y="{h-8}" text-anchor="middle">virtual time (s)</text>',
           f'<text x="14" y="{(h-bottom+top)/2}" transform="rotate(-90 14 {(h-bottom+top)/2})" '
           f'text-anchor="middle">messages/s (1 MB) delivered everywhere</text>']
    for i in range(6):
        ms = xmax * i / 5
        out.append(f'<text x="{X(ms)}" y="{h-bottom+16}" text-anchor="middle">{ms/1000:.1f}</text>')
        v = ymax * i / 5
        out.append(f'<text x="{left-6}" y="{Y(v)+4}" text-anchor="end">{v:.0f}</text>')
    for k, (label, r) in enumerate(lines):
        d = r["timeline"]["delivered"]
        pts = " ".join(f"{X((i + 0.5) * interval):.1f},{Y(rate(c)):.1f}" for i, c in enumerate(d))
        c = colours[k % len(colours)]
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
        rec = r.get("recovery_ms")
        tag = "" if label == "fault-free" else f" ({rec:.0f} ms)" if rec is not None else " (—)"
        out.append(f'<text x="{w-right+10}" y="{top+14+16*k}" fill="{c}">{label}{tag}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


def table(rows):
    md = ["| model | n | case | MB/s | retained (× fault-free) | × same side's crash | C3B |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = "" if r["vs_crash"] is None else f"{r['vs_crash']:.2f}"
        md.append(f"| {r['model']} | {r['n']} | {r['case']} | {r['mb_per_s']:.1f} | {r['retained']:.2f} | {vs} | "
                  f"{'ok' if r['c3b_ok'] and r['delivered'] == r['messages'] else 'FAIL'} |")
    return "\n".join(md)


def main():
    if not BIN.exists():
        raise SystemExit(f"{BIN} not found: cargo build --release -p picsou-cli")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    OUT.mkdir(parents=True, exist_ok=True)
    onset, lines = timelines()
    svg(onset, lines, OUT / "fault-timeline.svg")
    rows = retention()
    tl = "\n".join(["| behaviour (onset at %d ms) | recovery_ms |" % onset, "|---|---|"] +
                   [f"| {l} | {r.get('recovery_ms')} |" for l, r in lines[1:]])
    (OUT / "fault-experiments.md").write_text(
        f"Commit {commit}; `python3 scripts/fault_experiments.py{' --quick' if QUICK else ''}`.\n\n"
        f"{table(rows)}\n\n{tl}\n")
    for r in rows:
        r["report"].pop("timeline", None)
    (OUT / "fault-experiments.json").write_text(json.dumps(
        {"commit": commit, "retention": rows,
         "timeline": {"onset_ms": onset, "lines": [{"label": l, "report": r} for l, r in lines]}}, indent=1))
    bad = [r for r in rows if not r["c3b_ok"] or r["delivered"] != r["messages"]]
    print(f"wrote {OUT}/fault-experiments.{{json,md}} and fault-timeline.svg; {len(bad)} runs broke C3B")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
