"""Real replicas driven from Python: delivery in order exactly once over mem and TCP, commit
proofs, misuse, Ctrl-C, and surviving a killed peer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import picsou

from conftest import Interrupted, free_port_base


def payload_of(rsm: str, seq: int) -> bytes:
    return f"{rsm}:{seq}:".encode() + bytes([seq % 256]) * (seq % 300)


def exchange(config: picsou.Config, messages: int, batch: int = 1, **node_kw: Any) -> None:
    """Both RSMs send `messages` messages to each other through one Node per replica; every
    replica must deliver the other RSM's stream in order, exactly once, byte for byte. With
    `batch` > 1 the senders submit that many at a time (`submit_many`)."""
    nodes = [picsou.Node(config, rsm, i, **node_kw) for rsm, i in config.replicas()]
    errors: list[BaseException] = []

    def sender(node: picsou.Node) -> None:
        try:
            if batch > 1:
                for first in range(0, messages, batch):
                    last = min(first + batch, messages)
                    node.submit_many(first, [payload_of(node.rsm, s) for s in range(first, last)], timeout=30)
                    assert node.next_seq == last
            else:
                for seq in range(messages):
                    node.submit(seq, payload_of(node.rsm, seq), timeout=30)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    def receiver(node: picsou.Node, other: str) -> None:
        try:
            seqs = []
            for seq, payload in node.deliveries(timeout=20, count=messages):
                assert payload == payload_of(other, seq)
                seqs.append(seq)
            assert seqs == list(range(messages)), node.replica
            assert node.next_delivery(timeout=0.3) is None, "a message was delivered twice"
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    names = [r["name"] for r in config.rsms]
    threads = [threading.Thread(target=sender, args=(n,)) for n in nodes]
    threads += [
        threading.Thread(target=receiver, args=(n, names[1] if n.rsm == names[0] else names[0])) for n in nodes
    ]
    with_nodes = nodes
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        deadline = time.monotonic() + 10
        while any(n.quacked < messages for n in nodes) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(n.quacked == messages for n in nodes)
        for n in nodes:
            s = n.stats()
            assert s["transmitted"] == messages
    finally:
        stats = [n.close() for n in with_nodes]
    assert all(s["delivered"] == messages for s in stats)


def test_mem_nodes_deliver_in_order_exactly_once() -> None:
    exchange(picsou.Config.loopback(4, transport="mem"), 3000)


def test_tcp_nodes_deliver_in_order_exactly_once() -> None:
    base = free_port_base(8)
    exchange(picsou.Config.loopback(4, transport="tcp", base_port=base), 3000)


def test_per_replica_keys_from_key_files_and_from_bytes(tmp_path: Path) -> None:
    base = free_port_base(8)
    plain = picsou.Config.loopback(4, fault="bft", transport="tcp", base_port=base)
    keyed = plain.generate_keys(tmp_path / "keys")
    assert keyed.per_replica_keys and not plain.per_replica_keys
    assert "public_key" in keyed.to_toml() and "secret" not in keyed.to_toml()
    assert oct((tmp_path / "keys" / "alpha-0.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(picsou.ConfigError, match="out_dir"):
        plain.generate_keys(tmp_path / "keys")  # no silent overwrite
    # Every node reads its identity file (keys.identity_file); BFT certificates use them.
    exchange(keyed, 300)
    # The identity can also be handed over as a path or as bytes; another replica's is refused.
    seed = bytes.fromhex((tmp_path / "keys" / "beta-1.key").read_text().strip())
    with picsou.Node(keyed, "beta", 1, identity=seed) as node:
        assert node.replica == "beta/1"
    with pytest.raises(picsou.ConfigError, match="lists"):
        picsou.Node(keyed, "beta", 2, key_file=tmp_path / "keys" / "beta-1.key")
    with pytest.raises(picsou.ConfigError, match="32-byte"):
        picsou.Node(keyed, "beta", 2, identity=b"short")


def test_batched_submissions_deliver_in_order_exactly_once() -> None:
    base = free_port_base(8)
    exchange(picsou.Config.loopback(4, transport="tcp", base_port=base), 3000, batch=97)


def test_submit_many_is_all_or_nothing() -> None:
    config = picsou.Config.loopback(4, fault="bft", transport="mem")
    with picsou.Node(config, "alpha", 1) as node:
        node.submit_many(0, [])
        assert node.next_seq == 0
        with pytest.raises(picsou.MisuseError, match="expected seq 0"):
            node.submit_many(1, [b"a", b"b"])
        with pytest.raises(TypeError, match="payloads"):
            node.submit_many(0, b"ab")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"payloads\[1\]"):
            node.submit_many(0, [b"a", "b"])  # type: ignore[list-item]
        with pytest.raises(picsou.MisuseError, match="proofs"):
            node.submit_many(0, [b"a", b"b"], proofs=[None])
        # One bad certificate refuses the whole batch.
        good = config.certify("alpha", 0, b"a")
        with pytest.raises(picsou.ProofError):
            node.submit_many(0, [b"a", b"b"], proofs=[good, good])
        assert node.next_seq == 0
        node.submit_many(0, [b"a", b"b"], proofs=[good, None])
        assert node.next_seq == 2
        node.submit(2, b"c")
        node.submit_many(3, (b"d", bytearray(b"e"), memoryview(b"f")))
        assert node.next_seq == 6
    with pytest.raises(picsou.MisuseError, match="closed"):
        node.submit_many(6, [b"g"])


def test_bft_nodes_over_tcp_with_unequal_sizes() -> None:
    base = free_port_base(11)
    config = picsou.Config.loopback(4, receiver_n=7, fault="bft", transport="tcp", base_port=base)
    exchange(config, 500)


def test_explicit_mem_network_and_strategies() -> None:
    config = picsou.Config.loopback(4, transport="mem", strategy="ata")
    exchange(config, 500, network=picsou.MemNetwork())


def test_proofs_are_checked_under_bft() -> None:
    config = picsou.Config.loopback(4, fault="bft", transport="mem")
    with picsou.Node(config, "alpha", 0) as node:
        good = config.certify("alpha", 0, b"hello")
        assert node.certify(0, b"hello") == good
        with pytest.raises(picsou.ProofError):
            node.submit(0, b"hello", proof=config.certify("alpha", 0, b"other"))
        with pytest.raises(picsou.ProofError):
            node.submit(0, b"hello", proof=b"\x00\x00")
        node.submit(0, b"hello", proof=good)
        node.submit(1, b"next")  # signed with the deployment's keys
        assert node.next_seq == 2
    cft = picsou.Config.loopback(4, transport="mem")
    assert cft.certify("alpha", 0, b"x") == b"" and cft.verifier("alpha") is None


def test_misuse_raises_misuse_error() -> None:
    config = picsou.Config.loopback(4, transport="mem")
    node = picsou.Node(config, "beta", 2)
    with pytest.raises(picsou.MisuseError, match="expected seq 0"):
        node.submit(1, b"x")
    with pytest.raises(picsou.MisuseError):
        node.submit(-1, b"x")
    with pytest.raises(TypeError):
        node.submit(0, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        node.submit("0", b"x")  # type: ignore[arg-type]
    with pytest.raises(picsou.MisuseError):
        node.next_delivery(timeout=-1)
    assert node.next_delivery(timeout=0.05) is None
    assert node.take_deliveries(timeout=0.05) == []
    final = node.close()
    assert final["replica"] == "r2" and node.closed and node.stopped
    assert node.close() == final and node.stats() == final
    with pytest.raises(picsou.MisuseError, match="closed"):
        node.submit(0, b"x")
    with pytest.raises(picsou.MisuseError):
        node.deliveries()
    with pytest.raises(picsou.ConfigError) as e:
        picsou.Node(config, "gamma", 0)
    assert e.value.field == "rsm"
    with pytest.raises(picsou.ConfigError):
        picsou.Node(config, "alpha", 9)
    with pytest.raises(TypeError):
        picsou.Node(config, 1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(picsou.ConfigError) as e:
        picsou.Node(config, "alpha", 0, byzantine="evil")
    assert e.value.field == "byzantine"
    with pytest.raises(picsou.MisuseError):
        picsou.Node(picsou.Config.loopback(transport="tcp", base_port=free_port_base(8)), 0, 0, network=picsou.MemNetwork())


def test_same_replica_twice_on_one_network_and_port_in_use() -> None:
    config = picsou.Config.loopback(4, transport="mem")
    with picsou.Node(config, "alpha", 0):
        with pytest.raises(picsou.TransportError, match="already"):
            picsou.Node(config, "alpha", 0)
    base = free_port_base(8)
    tcp = picsou.Config.loopback(4, transport="tcp", base_port=base)
    with picsou.Node(tcp, "alpha", 0):
        with pytest.raises(picsou.TransportError, match="listen"):
            picsou.Node(tcp, "alpha", 0)


def test_blocking_calls_answer_ctrl_c(interrupt_after: Any) -> None:
    config = picsou.Config.loopback(4, transport="mem")
    with picsou.Node(config, "beta", 0) as node:
        interrupt_after(0.2)
        t = time.monotonic()
        with pytest.raises(Interrupted):
            for _ in node.deliveries():
                pass
        assert time.monotonic() - t < 1.0
        interrupt_after(0.2)
        t = time.monotonic()
        with pytest.raises(Interrupted):
            node.next_delivery()
        assert time.monotonic() - t < 1.0
    # A submission blocked on backpressure (nobody receives, so nothing is QUACKed).
    small = picsou.Config.from_dict({**config.to_dict(), "node": {"queue_capacity": 4}})
    big = b"x" * (1 << 20)
    with picsou.Node(small, "alpha", 0) as sender:
        interrupt_after(1.0)
        t = time.monotonic()
        with pytest.raises(Interrupted):
            for seq in range(100_000):
                sender.submit(seq, big)
        assert time.monotonic() - t < 2.5
        # It was blocked in submit (byte backpressure), not still looping.
        assert sender.next_seq < 1000


def test_other_threads_run_while_a_node_blocks() -> None:
    config = picsou.Config.loopback(4, transport="mem")
    with picsou.Node(config, "beta", 0) as node:
        ticks = 0

        def count() -> None:
            nonlocal ticks
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                ticks += 1

        t = threading.Thread(target=count)
        t.start()
        assert node.next_delivery(timeout=0.5) is None
        t.join()
        assert ticks > 1000, "the GIL was held while waiting"


CHILD = """
import sys, time, picsou
config = picsou.Config.from_toml(sys.argv[1])
node = picsou.Node(config, sys.argv[2], int(sys.argv[3]))
print("ready", flush=True)
if config.load["senders"] in ("both", "first") and node.rsm == config.rsms[0]["name"]:
    for seq in range(int(sys.argv[4])):
        node.submit(seq, b"m%d" % seq)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("victim", [("beta", 3), ("alpha", 3)], ids=["receiver", "sender"])
def test_nodes_survive_a_killed_peer(tmp_path: Path, victim: tuple[str, int]) -> None:
    """One replica runs in another process and is SIGKILLed mid-stream; the others still
    deliver every message in order, exactly once, and the QUACK completes."""
    messages = 20_000
    base = free_port_base(8)
    config = picsou.Config.loopback(4, transport="tcp", base_port=base, senders="first")
    path = tmp_path / "deployment.toml"
    path.write_text(config.to_toml())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), victim[0], str(victim[1]), str(messages)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        nodes = {
            (rsm, i): picsou.Node(config, rsm, i) for rsm, i in config.replicas() if (rsm, i) != victim
        }
        progress = {"submitted": 0}

        def submit(node: picsou.Node) -> None:
            for seq in range(messages):
                node.submit(seq, b"m%d" % seq, timeout=30)
                if node.index == 0:
                    progress["submitted"] = seq + 1

        senders = [threading.Thread(target=submit, args=(n,)) for k, n in nodes.items() if k[0] == "alpha"]
        for t in senders:
            t.start()
        receivers = {k: n for k, n in nodes.items() if k[0] == "beta"}
        got: dict[tuple[str, int], list[int]] = {k: [] for k in receivers}
        killed = False
        deadline = time.monotonic() + 60
        while any(len(v) < messages for v in got.values()) and time.monotonic() < deadline:
            for k, n in receivers.items():
                for seq, payload in n.take_deliveries(timeout=0.01):
                    assert payload == b"m%d" % seq
                    got[k].append(seq)
            if not killed and min(len(v) for v in got.values()) > messages // 4:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                killed = True
        assert killed
        for t in senders:
            t.join(timeout=30)
        for k, seqs in got.items():
            assert seqs == list(range(messages)), (k, len(seqs))
        deadline = time.monotonic() + 20
        live_senders = [n for k, n in nodes.items() if k[0] == "alpha"]
        while any(n.quacked < messages for n in live_senders) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(n.quacked == messages for n in live_senders)
        assert any(n.stats()["peer_downs"] > 0 for n in nodes.values())
        for n in nodes.values():
            n.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
