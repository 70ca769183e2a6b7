"""`picsou.local`, the commit-certificate helpers, the exception hierarchy, and logging."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest

import picsou

from conftest import Interrupted, free_port_base, thread_count


def test_local_over_mem() -> None:
    report = picsou.local(picsou.Config.loopback(4, transport="mem"), messages=20_000, check=True)
    assert report["ok"] is True and report["transport"] == "mem" and report["n"] == [4, 4]
    assert [(d["from"], d["to"], d["complete"]) for d in report["directions"]] == [
        ("alpha", "beta", True),
        ("beta", "alpha", True),
    ]
    assert all(d["msgs_per_s"] > 0 for d in report["directions"])
    assert len(report["replicas"]) == 8
    assert all(r["in_order_exact"] and r["delivered"] == 20_000 for r in report["replicas"])


def test_local_over_tcp_bft_one_direction() -> None:
    config = picsou.Config.loopback(4, fault="bft", transport="tcp", base_port=free_port_base(8))
    report = picsou.local(config, messages=2000, senders="first", size=256)
    assert report["ok"] and report["transport"] == "tcp"
    assert [d["from"] for d in report["directions"]] == ["alpha"]
    assert report["directions"][0]["size"] == 256


def test_local_errors() -> None:
    with pytest.raises(picsou.ConfigError):
        picsou.local(picsou.Config.loopback(4), size=0)
    base = free_port_base(8)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 5))
        busy.listen()
        with pytest.raises(picsou.TransportError, match="listen"):
            picsou.local(picsou.Config.loopback(4), transport="tcp", base_port=base)
    with pytest.raises(TypeError):
        picsou.local(42)  # type: ignore[arg-type]


def test_local_answers_ctrl_c_and_cleans_up(interrupt_after: Any) -> None:
    before = thread_count()
    interrupt_after(0.5)
    t = time.monotonic()
    with pytest.raises(Interrupted):
        picsou.local(picsou.Config.loopback(4, transport="mem"), messages=100_000_000)
    assert time.monotonic() - t < 3.0
    # Every node thread has been joined.
    deadline = time.monotonic() + 5
    while thread_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thread_count() <= before


def test_certificates() -> None:
    keys = [picsou.SigningKey.generate() for _ in range(4)]
    assert len({k.public_key for k in keys}) == 4 and all(len(k.public_key) == 32 for k in keys)
    verifier = picsou.QuorumVerifier([k.public_key for k in keys], f=1)
    assert verifier.required_stake == 2
    cert = picsou.sign_certificate([(0, keys[0]), (2, keys[2])], 7, b"payload")
    verifier.verify(7, b"payload", cert)
    assert verifier.is_valid(7, b"payload", cert)
    assert [i for i, _ in picsou.certificate_shares(cert)] == [0, 2]
    # The wrong message, position, direction; too few signers; garbage.
    wrong: list[tuple[Any, ...]] = [(7, b"payloaD", cert), (8, b"payload", cert), (7, b"payload", cert, (1, 0))]
    for args in wrong:
        assert not verifier.is_valid(*args)
        with pytest.raises(picsou.ProofError):
            verifier.verify(*args)
    one = picsou.sign_certificate([(1, keys[1])], 7, b"payload")
    with pytest.raises(picsou.ProofError, match="insufficient stake"):
        verifier.verify(7, b"payload", one)
    with pytest.raises(picsou.ProofError, match="malformed"):
        verifier.verify(7, b"payload", b"\x01")
    # Shares assembled by hand make the same certificate.
    shares = [keys[2].sign_share(2, 7, b"payload"), keys[0].sign_share(0, 7, b"payload")]
    assert picsou.assemble_certificate(shares) == cert
    # Stake-weighted: replica 0 alone holds f + 1.
    heavy = picsou.QuorumVerifier([k.public_key for k in keys], f=3, stakes=[4, 1, 1, 1])
    heavy.verify(7, b"payload", picsou.sign_certificate([(0, keys[0])], 7, b"payload"))
    # Keys from seeds and derived keys are deterministic.
    assert picsou.SigningKey.from_seed(keys[0].seed).public_key == keys[0].public_key
    assert picsou.SigningKey.derive(b"s" * 32, 0, 1).public_key == picsou.SigningKey.derive(b"s" * 32, 0, 1).public_key
    assert len(picsou.commit_digest(7, b"payload")) == 32
    assert picsou.commit_digest(7, b"payload") != picsou.commit_digest(7, b"payload", (1, 0))
    # Misuse and bad values.
    with pytest.raises(picsou.MisuseError):
        picsou.commit_digest(0, b"", (0, 0))
    with pytest.raises(picsou.ConfigError):
        picsou.QuorumVerifier([b"x" * 31], f=0)
    with pytest.raises(picsou.ConfigError):
        picsou.QuorumVerifier([k.public_key for k in keys], f=1, stakes=[1, 1])
    with pytest.raises(TypeError):
        picsou.sign_certificate([(0, "key")], 0, b"")  # type: ignore[list-item]


def test_deployment_keys_match_the_deployment_verifier() -> None:
    config = picsou.Config.loopback(4, fault="bft")
    keys = config.signing_keys("beta")
    deployment = config.deployment_id
    assert len(deployment) == 32
    cert = picsou.sign_certificate([(0, keys[0]), (1, keys[1])], 3, b"m", stream=(1, 0), deployment=deployment)
    verifier = config.verifier("beta")
    assert verifier is not None
    verifier.verify(3, b"m", cert)  # its default stream is beta -> alpha
    # Certificates are bound to their deployment: the same signatures outside it do not count.
    elsewhere = picsou.sign_certificate([(0, keys[0]), (1, keys[1])], 3, b"m", stream=(1, 0))
    with pytest.raises(picsou.ProofError):
        verifier.verify(3, b"m", elsewhere)
    assert picsou.commit_digest(3, b"m", (1, 0), deployment=deployment) != picsou.commit_digest(3, b"m", (1, 0))
    verifier.verify(3, b"m", config.certify("beta", 3, b"m"))
    with pytest.raises(picsou.ProofError):
        verifier.verify(3, b"m", config.certify("alpha", 3, b"m"))


def test_exception_hierarchy() -> None:
    for cls in (picsou.ConfigError, picsou.TransportError, picsou.ProtocolError, picsou.MisuseError):
        assert issubclass(cls, picsou.PicsouError)
    assert issubclass(picsou.ProofError, picsou.ProtocolError)
    assert issubclass(picsou.PicsouError, Exception)
    assert picsou.ConfigError.__module__ == "picsou"


def test_rust_logs_reach_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="picsou")
    config = picsou.Config.loopback(4, transport="mem")
    # Alone on its network, the node reports its peers down (an INFO line of the runtime).
    with picsou.Node(config, "alpha", 0) as node:
        node.submit(0, b"x")
        deadline = time.monotonic() + 5
        while not any(r.name == "picsou.runtime.node.driver" for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
            picsou.flush_logs()
    records = [r for r in caplog.records if r.name == "picsou.runtime.node.driver"]
    assert records, [r.name for r in caplog.records]
    assert records[0].levelno == logging.INFO and "peer down" in records[0].getMessage()
    assert records[0].pathname.endswith("driver.rs") and str(records[0].threadName).startswith("picsou-")
    # Below the logger's level nothing is forwarded.
    caplog.clear()
    caplog.set_level(logging.ERROR, logger="picsou")
    with picsou.Node(picsou.Config.loopback(4, transport="mem"), "beta", 1):
        time.sleep(0.3)
    picsou.flush_logs()
    assert not [r for r in caplog.records if r.name.startswith("picsou")]


def test_bench_grid_in_process() -> None:
    report = picsou.bench(
        strategies=["picsou", "ata"],
        sizes=[100, 2000],
        n=[4],
        transports=["mem"],
        bytes_per_run=200_000,
        min_messages=100,
        max_messages=1000,
    )
    results = report["results"]
    assert [(r["point"]["strategy"], r["point"]["size"]) for r in results] == [
        ("picsou", 100),
        ("ata", 100),
        ("picsou", 2000),
        ("ata", 2000),
    ]
    assert [r["point"]["messages"] for r in results] == [1000, 1000, 100, 100]
    for r in results:
        assert r["ok"] is True, r["error"]
        assert r["msgs_per_s"] > 0
        assert all(rep["delivered"] == rep["expected"] for rep in r["report"]["replicas"])
    assert report["runner"] == "in-process"


def test_bench_rejects_bad_grids() -> None:
    with pytest.raises(picsou.ConfigError):
        picsou.bench(strategies=["nope"])
    with pytest.raises(picsou.ConfigError):
        picsou.bench(n=[3], bft=True)
    with pytest.raises(picsou.ConfigError):
        picsou.bench(transports=["carrier-pigeon"])
