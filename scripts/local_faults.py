#!/usr/bin/env python3
"""Real-deployment fault runs of `picsou local` (issue 16), recorded side by side.

    scripts/local_faults.py byzantine [--messages N] [--transport tcp] [--out DIR]
    scripts/local_faults.py restart   [--messages N] [--rate R] [--out DIR]

`byzantine` (BFT deployment, examples/bft-4x4-tcp.toml by default): a fault-free run, then one run per Byzantine behaviour with one Byzantine replica
in each RSM (alpha/2 and beta/1, the same behaviour), back to back in one invocation; reports
receiver-confirmed msgs/s per direction (correct receivers only) and the ratio to the
fault-free run.

`restart`: a fault-free run at a fixed rate, then one replica of each RSM killed and restarted
briefly (0.4 s down), then beyond retention (a deployment with `retention` small enough that
the downtime exceeds it, so the replica performs a state transfer). From each replica's
delivery timeline it reports, per restarted replica and for its RSM's correct peers, the
incoming stream's rate in the 1 s after the restart, relative to the configured rate, and
whether every replica completed exactly.

Writes `DIR/<mode>.json` (every report) and `DIR/<mode>.md` (the table), with the commit
measured and the machine's load average.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "picsou")
BEHAVIOURS = ["inflate-ack", "zero-ack", "stale-ack", "lie-phi", "forge", "silent", "no-rebroadcast"]


def commit():
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    return rev + ("-dirty" if dirty else "")


def load():
    return open("/proc/loadavg").read().split()[:3]


def run(args):
    p = subprocess.run([BIN, "local", "--json", *args], capture_output=True, text=True)
    try:
        rep = json.loads(p.stdout)
    except json.JSONDecodeError:
        rep = {"ok": False, "directions": [], "replicas": [], "error": p.stderr[-2000:]}
    rep["exit"] = p.returncode
    rep["args"] = args
    return rep


def rates(rep):
    return {f"{d['from']}->{d['to']}": d["msgs_per_s"] for d in rep.get("directions", [])}


def config_with(tuning):
    text = open(os.path.join(ROOT, "examples", "local-4x4-tcp.toml")).read()
    text = text.replace("[tuning]\n", "[tuning]\n" + "".join(f"{k} = {v}\n" for k, v in tuning.items()), 1)
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write(text)
    f.close()
    return f.name


def byzantine(a):
    common = ["--config", a.config or os.path.join(ROOT, "examples", "bft-4x4-tcp.toml"),
              "--transport", a.transport, "--messages", str(a.messages)]
    runs = [("fault-free", run(common))]
    for b in BEHAVIOURS:
        runs.append((b, run(common + ["--byzantine", f"alpha/2={b}", "--byzantine", f"beta/1={b}"])))
    base = rates(runs[0][1])
    rows = []
    for name, rep in runs:
        r = rates(rep)
        rows.append({
            "behaviour": name, "ok": rep.get("ok"), "msgs_per_s": r,
            "retained": {k: (r.get(k, 0) / v if v else 0) for k, v in base.items()},
        })
    return runs, rows, ["| behaviour (alpha/2 and beta/1) | ok | alpha->beta msgs/s | retained | beta->alpha msgs/s | retained |",
                        "|---|---|---|---|---|---|"] + [
        f"| {x['behaviour']} | {x['ok']} | {x['msgs_per_s'].get('alpha->beta', 0):,.0f} | {x['retained'].get('alpha->beta', 0):.2f} "
        f"| {x['msgs_per_s'].get('beta->alpha', 0):,.0f} | {x['retained'].get('beta->alpha', 0):.2f} |" for x in rows]


def recovery(rep, restarted, restart_s, base):
    """Per RSM of a restarted replica: the rate of its incoming stream from 1 s to 2 s after the
    restart (at the restarted replica and at each peer), over `base` (per RSM: the rate its
    incoming stream reached in the fault-free run of the same invocation)."""
    out = {}
    start_ms = min((r["start_unix_ns"] for r in rep["replicas"] if r["start_unix_ns"] > 0), default=0) // 1_000_000
    for who in restarted:
        rsm = who.split("/")[0]
        rate = base[rsm]
        t0 = start_ms + int(restart_s[who] * 1000)

        def rate_in(tl, lo, hi):
            pts = [(t, d) for t, d in tl if lo <= t <= hi]
            if len(pts) < 2:
                return None
            (ta, da), (tb, db) = pts[0], pts[-1]
            return (db - da) / ((tb - ta) / 1000) if tb > ta else None

        def done_by(tl):
            return max((d for t, d in tl), default=0)

        res = {}
        for r in rep["replicas"]:
            if r["rsm"] != rsm:
                continue
            tl = r.get("timeline", [])
            # The window [restart + 1 s, restart + 2 s]: the rate once the first second is over
            # (None if the stream was already complete there).
            late = rate_in(tl, t0 + 1000, t0 + 2000)
            finished_by = next((t - t0 for t, d in tl if d >= r["expected"]), None)
            res[r["replica"]] = {
                "rate_1s_to_2s_after_restart": late,
                "ratio": (late / rate) if late is not None else None,
                "complete_ms_after_restart": finished_by,
                "delivered": done_by(tl),
                "state_transfers": r.get("state_transfers", 0),
                "transferred": r.get("transferred", 0),
            }
        out[who] = res
    return out


def restart(a):
    common = ["--transport", a.transport, "--messages", str(a.messages), "--rate", str(a.rate)]
    kill = {"beta/1": (1.0, 1.4), "alpha/2": (1.0, 1.4)}
    acts = []
    for who, (k, s) in kill.items():
        acts += ["--kill", f"{who}@{k}", "--restart", f"{who}@{s}"]
    runs = [("fault-free", run(common))]
    runs.append(("brief (0.4 s down, default retention)", run(common + acts)))
    small = config_with({"retention": a.rate // 4})
    runs.append((f"beyond retention (0.4 s down, retention {a.rate // 4})", run(["--config", small] + common + acts)))
    os.unlink(small)
    ff = rates(runs[0][1])
    base = {"beta": ff.get("alpha->beta", a.rate) or a.rate, "alpha": ff.get("beta->alpha", a.rate) or a.rate}
    rows = []
    for name, rep in runs:
        rec = recovery(rep, list(kill), {w: s for w, (k, s) in kill.items()}, base) if name != "fault-free" else {}
        rows.append({"run": name, "ok": rep.get("ok"), "msgs_per_s": rates(rep), "recovery": rec})
    lines = ["| run | ok | alpha->beta msgs/s | beta->alpha msgs/s | restarted replica: state transfers, rate 1-2 s after restart / fault-free rate, done after restart | slowest peer: rate 1-2 s after restart / fault-free rate |",
             "|---|---|---|---|---|---|"]
    for x in rows:
        cells = []
        peers = []
        for who, res in x["recovery"].items():
            me = res.get(who, {})
            ratio = me.get("ratio")
            cells.append(f"{who}: {me.get('state_transfers')}, {'%.2f' % ratio if ratio is not None else 'n/a (done)'}, {me.get('complete_ms_after_restart')} ms")
            others = [v["ratio"] for k, v in res.items() if k != who and v["ratio"] is not None]
            peers.append(f"{who.split('/')[0]}: {'%.2f' % min(others) if others else 'n/a (done)'}")
        lines.append(f"| {x['run']} | {x['ok']} | {x['msgs_per_s'].get('alpha->beta', 0):,.0f} | {x['msgs_per_s'].get('beta->alpha', 0):,.0f} | {'; '.join(cells)} | {'; '.join(peers)} |")
    return runs, rows, lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["byzantine", "restart"])
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--transport", default="tcp")
    ap.add_argument("--config", default=None, help="deployment file (byzantine: default examples/bft-4x4-tcp.toml)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "faults"))
    a = ap.parse_args()
    if a.messages is None:
        a.messages = 200_000 if a.mode == "byzantine" else 4 * a.rate
    before = load()
    runs, rows, lines = (byzantine if a.mode == "byzantine" else restart)(a)
    after = load()
    meta = {"commit": commit(), "loadavg_before": before, "loadavg_after": after, "mode": a.mode,
            "messages": a.messages, "rate": a.rate if a.mode == "restart" else 0, "transport": a.transport}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"{a.mode}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "runs": [{"name": n, "report": r} for n, r in runs]}, f)
    md = [f"# picsou local fault runs: {a.mode}", "",
          f"commit {meta['commit']}, {a.transport}, {a.messages} messages of 100 B per direction"
          + (f" at {a.rate} msgs/s per sending replica" if a.mode == "restart" else " (as fast as backpressure allows)")
          + f", load average before {' '.join(before)}, after {' '.join(after)} (2-core machine)", ""] + lines + [""]
    with open(os.path.join(a.out, f"{a.mode}.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    return 0 if all(x["ok"] for x in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
