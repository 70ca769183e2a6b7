#!/usr/bin/env python3
"""Two RSMs of Python-driven replicas exchanging messages over TCP.

Each RSM stands for a replicated service whose committed log is produced in Python: "alpha"
commits a stream of transfers, "beta" a stream of acknowledgements. Every replica is a real
`picsou.Node` (the Rust runtime and its TCP transport, in this process, on 127.0.0.1): every
replica of an RSM submits its RSM's whole committed stream (the protocol decides which
replica actually sends what), and every replica consumes the other RSM's stream. At the end
each replica checks it received the other log in order, exactly once, byte for byte.

    python3 examples/python/two_rsms.py                       # 4 + 4 replicas, CFT
    python3 examples/python/two_rsms.py --fault bft --messages 2000
    python3 examples/python/two_rsms.py --config examples/local-4x4-tcp.toml
    python3 examples/python/two_rsms.py --batch 1             # one submit call per entry

Entries go in as the RSM commits them, in blocks (`Node.submit_many`: one crossing into the
node per block), and come out in batches (`Node.take_deliveries`).

Exit status 0 iff every replica got the other RSM's whole log.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time

import picsou


def free_port_base(count: int) -> int:
    """A base port such that `count` consecutive 127.0.0.1 ports are free right now."""
    for base in range(27_500, 60_000, 97):
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no free ports")


def committed_log(rsm: str, seq: int) -> bytes:
    """Entry `seq` of an RSM's committed log (what its consensus would have decided)."""
    if rsm == "alpha":
        entry = {"seq": seq, "op": "transfer", "from": f"acct-{seq % 97}", "to": f"acct-{(seq * 7) % 97}",
                 "amount": (seq * 31) % 1000}
    else:
        entry = {"seq": seq, "op": "ack", "ref": seq, "ok": seq % 13 != 0}
    return json.dumps(entry, separators=(",", ":")).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a deployment file (default: 4 + 4 replicas on free loopback ports)")
    parser.add_argument("--messages", type=int, default=10_000, help="log entries per RSM (default 10000)")
    parser.add_argument("--fault", choices=["cft", "bft"], default="cft")
    parser.add_argument("--batch", type=int, default=100, help="entries per committed block (default 100)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the runtime's INFO logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")

    if args.config:
        config = picsou.Config.from_toml(args.config).with_overrides(transport="tcp")
    else:
        config = picsou.Config.loopback(4, fault=args.fault, transport="tcp", base_port=free_port_base(8))
    names = [r["name"] for r in config.rsms]
    print(f"{config!r}")
    m = args.messages
    nodes = [picsou.Node(config, rsm, i) for rsm, i in config.replicas()]
    failures: list[str] = []
    done_at: dict[str, float] = {}

    def produce(node: picsou.Node) -> None:
        # Under BFT each entry gets a commit certificate signed with the deployment's keys.
        if args.batch <= 1:
            for seq in range(m):
                node.submit(seq, committed_log(node.rsm, seq))
            return
        for first in range(0, m, args.batch):
            block = [committed_log(node.rsm, seq) for seq in range(first, min(first + args.batch, m))]
            node.submit_many(first, block)

    def consume(node: picsou.Node) -> None:
        other = names[1] if node.rsm == names[0] else names[0]
        expected = 0
        while expected < m:
            batch = node.take_deliveries(max=max(args.batch, 1), timeout=30)
            if not batch:
                break
            for seq, payload in batch:
                if seq != expected or payload != committed_log(other, seq):
                    failures.append(f"{node.replica}: got seq {seq} ({payload[:40]!r}) where {expected} was next")
                    return
                expected += 1
            if expected == m:
                done_at[node.replica] = time.monotonic()
                return
        failures.append(f"{node.replica}: only {expected} of {m} entries of {other}'s log arrived")

    started = time.monotonic()
    threads = [threading.Thread(target=produce, args=(n,)) for n in nodes]
    threads += [threading.Thread(target=consume, args=(n,)) for n in nodes]
    with_nodes = list(nodes)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Each RSM's log is QUACKed once a correct replica of the other RSM holds all of it.
        deadline = time.monotonic() + 10
        while any(n.quacked < m for n in nodes) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stats = [n.close() for n in with_nodes]

    if failures:
        for f in failures:
            print("FAILED:", f, file=sys.stderr)
        return 1
    seconds = max(done_at.values()) - started
    print(f"every replica of {names[0]} and {names[1]} got the other's {m}-entry log in order, exactly once, "
          f"in {seconds:.2f} s ({m / seconds:,.0f} entries/s per direction, Python-driven)")
    sent = sum(s["engine"]["first_sends"] + s["engine"]["resends"] for s in stats)
    forwards = sum(s["engine"]["forwards"] for s in stats)
    print(f"cross-RSM copies: {sent} for {2 * m} entries; forwards inside the RSMs: {forwards}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
