"""Every C3B property on adversarial scenarios, in the simulator and with real nodes.

C3B: every message the sending RSM transmits reaches the receiving RSM (validity) and every
correct receiver delivers it (agreement, with library-managed dissemination), in order,
exactly once, with exactly the transmitted bytes (integrity); nothing is delivered that was
not transmitted; the QUACK never runs ahead of what correct receivers hold; Picsou resends a
message at most f_s + f_r times (equal sizes, unit stake). The simulator's checker verifies
these on every event; here they are asserted through the report, and, for real nodes, by
checking every delivered byte in Python."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import picsou

ADVERSARIAL: list[dict[str, Any]] = [
    dict(n=4, crash=["s1", "r2"]),
    dict(n=4, crash=["s0@0.5"], byzantine={"r1": "inflate-ack"}),
    dict(n=4, byzantine={"r0": "zero-ack", "s1": "forge"}),
    dict(n=4, byzantine={"r3": "stale-ack", "s2": "silent"}),
    dict(n=7, byzantine={"r1": "lie-phi", "r4": "no-rebroadcast", "s0": "silent", "s5": "forge"}),
    dict(n=7, crash=["r0", "s6"], byzantine={"r3": "inflate-ack", "s2": "forge"}, loss=0.02, jitter_ms=0.3),
    dict(n=4, partition=[(0.5, 3.0)], loss=0.05, local_loss=0.02),
    dict(sender_n=4, receiver_n=19, byzantine={f"r{i}": "no-rebroadcast" for i in range(6)}),
    dict(stake=[4, 1, 1, 1, 1, 1, 1], byzantine={"s1": "silent", "r2": "zero-ack"}),
]


@pytest.mark.parametrize("kwargs", ADVERSARIAL, ids=[str(i) for i in range(len(ADVERSARIAL))])
def test_simulated_adversaries_cannot_break_c3b(kwargs: dict[str, Any]) -> None:
    # Large RSMs cost more per message: fewer messages keep the test quick.
    messages = 3000 if max(kwargs.get("n", 4), kwargs.get("receiver_n", 4)) <= 7 else 1000
    r = picsou.simulate(messages=messages, seed=17, **kwargs)
    # The checker saw every event: no violation of any property.
    assert r.c3b_ok, r.violations
    assert r.violations == []
    # Validity and agreement: every correct receiver delivered every message.
    assert r.delivered == messages
    # Bounded resends: with unit stake and equal sizes, at most f_s + f_r resends along the
    # rotation plus one reassignment (a first pair with a replica known to be down or faulty).
    if "stake" not in kwargs and r.sender_n == r.receiver_n:
        assert r.max_sends_per_message <= 2 + r.sender_f + r.receiver_f
    # Forged messages are caught as misbehaviour, never delivered.
    if "forge" in kwargs.get("byzantine", {}).values():
        assert r.misbehaviors_detected > 0


@pytest.mark.parametrize("strategy", ["ost", "ata", "ll", "otu"])
def test_baselines_keep_c3b_without_faults(strategy: str) -> None:
    r = picsou.simulate(strategy=strategy, n=4, messages=2000, seed=2)
    assert r.c3b_ok and r.delivered == 2000


def test_the_checker_does_detect_violations() -> None:
    # The negative control: the one-shot baseline has no recovery, so a crashed sender loses
    # messages; the same checker must report it.
    r = picsou.simulate(strategy="ost", n=4, crash=["s2"], messages=2000)
    assert not r.c3b_ok
    assert any("delivered" in v for v in r.violations)


def run_nodes(
    config: picsou.Config,
    messages: int,
    byzantine: dict[tuple[str, int], str],
    payload: Any = lambda seq: b"payload %d " % seq + bytes([seq % 251]) * (seq % 97),
) -> dict[tuple[str, int], list[tuple[int, bytes]]]:
    """Runs every replica of `config` as a Node (alpha sends, beta receives), with the given
    Byzantine behaviours; returns what each correct beta replica delivered."""
    nodes = {(rsm, i): picsou.Node(config, rsm, i, byzantine=byzantine.get((rsm, i))) for rsm, i in config.replicas()}
    try:
        senders = [n for (rsm, _), n in nodes.items() if rsm == "alpha"]

        def submit(node: picsou.Node) -> None:
            for seq in range(messages):
                node.submit(seq, payload(seq), timeout=30)

        threads = [threading.Thread(target=submit, args=(n,)) for n in senders]
        for t in threads:
            t.start()
        got: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
        for key, node in nodes.items():
            if key[0] != "beta" or key in byzantine:
                continue
            got[key] = list(node.deliveries(timeout=20, count=messages))
            # Exactly once: nothing more arrives.
            assert node.take_deliveries(timeout=0.3) == []
        for t in threads:
            t.join()
        for key, node in nodes.items():
            if key[0] == "alpha" and key not in byzantine:
                assert node.quacked == messages
        return got
    finally:
        for n in nodes.values():
            n.close()


@pytest.mark.parametrize(
    "byzantine",
    [
        {("beta", 1): "inflate-ack"},
        {("beta", 2): "no-rebroadcast", ("alpha", 3): "silent"},
        {("alpha", 0): "forge", ("beta", 0): "zero-ack"},
        {("beta", 3): "lie-phi", ("alpha", 1): "forge"},
    ],
    ids=["inflate-ack", "no-rebroadcast+silent", "forge+zero-ack", "lie-phi+forge"],
)
def test_real_nodes_keep_c3b_against_byzantine_replicas(byzantine: dict[tuple[str, int], str]) -> None:
    # BFT, so that forged messages are caught by their commit certificates.
    config = picsou.Config.loopback(4, fault="bft", transport="mem", senders="first")
    messages = 1500

    def payload(seq: int) -> bytes:
        return b"m%d-" % seq + bytes([seq % 256]) * (seq % 50)

    got = run_nodes(config, messages, byzantine, payload)
    assert len(got) == 4 - sum(1 for k in byzantine if k[0] == "beta")
    for key, delivered in got.items():
        # In order, exactly once, exactly the submitted bytes (nothing forged).
        assert [s for s, _ in delivered] == list(range(messages)), key
        assert all(p == payload(s) for s, p in delivered), key
