"""Runs `picsou sim --json` for the experiment scripts (sim_experiments.py, fault_experiments.py)."""

import json
import subprocess
import time


def run_sim(binary, *args):
    """The report of `binary sim --json ARGS`, with the arguments and the real time it took.

    Exit code 1 (a run that failed its checks) still has a report; anything else stops the
    script with picsou's error.
    """
    t = time.time()
    out = subprocess.run([str(binary), "sim", "--json", *args], capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise SystemExit(f"picsou sim {' '.join(args)} failed: {out.stderr}")
    report = json.loads(out.stdout)
    report["args"] = list(args)
    report["real_seconds"] = round(time.time() - t, 3)
    return report
