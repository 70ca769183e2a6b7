"""The simulator from Python: the same results as `picsou sim --json`, every flag as a
keyword, sweeps, and errors."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import picsou

from conftest import Interrupted, thread_count

# (keywords for picsou.simulate, flags for picsou sim): the same experiment both ways.
PARITY: list[tuple[dict[str, Any], list[str]]] = [
    ({}, []),
    (
        dict(strategy="ata", n=7, receiver_n=4, f=1, fault="cft", crash=["s0", "r1@5"], messages=3000, seed=7),
        "--strategy ata --n 7 --receiver-n 4 --f 1 --fault cft --crash s0,r1@5 --messages 3000 --seed 7".split(),
    ),
    (
        dict(
            strategy="picsou", n=4, f=1, fault="bft", size=1024, messages=5000, loss=0.01, local_loss=0.005,
            jitter_ms=0.2, crash=["s0"], byzantine={"r1": "inflate-ack"}, seed=42,
        ),
        "--strategy picsou --n 4 --f 1 --fault bft --size 1024 --messages 5000 --loss 0.01 --local-loss 0.005 "
        "--jitter-ms 0.2 --crash s0 --byzantine r1=inflate-ack --seed 42".split(),
    ),
    (
        dict(
            stake=[4, 1, 1, 1, 1], partition=[(1, 5)], cross_link_mbps=300, cross_latency_ms=10, local_latency_ms=0.2,
            nic_mbps=1000, size=100_000, messages=300, send_window=1000, phi_bits=128, warmup_fraction=0.2,
            max_virtual_seconds=100,
        ),
        "--stake 4,1,1,1,1 --partition 1-5 --cross-link-mbps 300 --cross-latency-ms 10 --local-latency-ms 0.2 "
        "--nic-mbps 1000 --size 100000 --messages 300 --send-window 1000 --phi-bits 128 --warmup-fraction 0.2 "
        "--max-virtual-seconds 100".split(),
    ),
    (
        dict(
            sender_n=7, receiver_n=5, sender_f=2, receiver_f=1, sender_stake="1,1,1,1,1,1,2", fault="bft",
            cpu_us_per_frame=2, cpu_ns_per_byte=0.5, real_signatures=True, messages=200, seed=9,
            byzantine="s3=forge,r0=lie-phi",
        ),
        "--sender-n 7 --receiver-n 5 --sender-f 2 --receiver-f 1 --sender-stake 1,1,1,1,1,1,2 --fault bft "
        "--cpu-us-per-frame 2 --cpu-ns-per-byte 0.5 --real-signatures --messages 200 --seed 9 "
        "--byzantine s3=forge,r0=lie-phi".split(),
    ),
    (
        dict(strategy="otu", n=7, byzantine=["s1=silent", "r2=zero-ack"], messages=2000, partition=["2-3", "6-8"]),
        "--strategy otu --n 7 --byzantine s1=silent,r2=zero-ack --messages 2000 --partition 2-3 --partition 6-8".split(),
    ),
    (
        dict(strategy="ll", n=4, crash="r2@1.5", byzantine={"s1": "stale-ack"}, messages=2000, seed=5),
        "--strategy ll --n 4 --crash r2@1.5 --byzantine s1=stale-ack --messages 2000 --seed 5".split(),
    ),
    (
        dict(strategy="ost", n=10, receiver_stake=[1, 1, 1, 1, 1, 1, 1, 1, 1, 3], messages=4000),
        "--strategy ost --n 10 --receiver-stake 1,1,1,1,1,1,1,1,1,3 --messages 4000".split(),
    ),
]


def cli_json(binary: Path, args: list[str]) -> dict[str, Any]:
    out = subprocess.run([str(binary), "sim", "--json", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("kwargs,flags", PARITY, ids=[str(i) for i in range(len(PARITY))])
def test_results_match_the_cli_json(picsou_bin: Path, kwargs: dict[str, Any], flags: list[str]) -> None:
    want = cli_json(picsou_bin, flags)
    got = picsou.simulate(**kwargs)
    assert got.to_dict() == want
    # Attributes carry the same values as the dict.
    for key, value in want.items():
        assert getattr(got, key) == value, key
    # The effective scenario is the one the CLI prints.
    printed = subprocess.run(
        [str(picsou_bin), "sim", "--print-scenario", *flags], capture_output=True, text=True, check=True
    ).stdout
    assert picsou.Scenario(**kwargs).to_toml() == printed


def test_scenario_file_with_overrides_matches_the_cli(picsou_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'strategy = "picsou"\nsender_n = 7\nreceiver_n = 4\nmessages = 3000\ncrash = ["r1@3"]\n'
        '[byzantine]\ns2 = "silent"\n[params]\ndup_threshold = 3\n'
    )
    want = cli_json(picsou_bin, ["--scenario", str(path), "--seed", "11", "--loss", "0.02"])
    assert picsou.simulate(str(path), seed=11, loss=0.02).to_dict() == want
    assert picsou.simulate(path, seed=11, loss=0.02).to_dict() == want
    assert picsou.simulate(path.read_text(), seed=11, loss=0.02).to_dict() == want
    # A dict of the file's fields, and params given as a keyword, are the same scenario.
    as_dict = picsou.Scenario(path).to_dict()
    assert picsou.simulate(as_dict, seed=11, loss=0.02).to_dict() == want
    kw: dict[str, Any] = dict(sender_n=7, receiver_n=4, messages=3000, crash=["r1@3"], byzantine={"s2": "silent"})
    assert picsou.simulate(**kw, params={"dup_threshold": 3}, seed=11, loss=0.02).to_dict() == want


def test_every_cli_flag_is_a_keyword(picsou_bin: Path) -> None:
    help_text = subprocess.run([str(picsou_bin), "sim", "--help"], capture_output=True, text=True, check=True).stdout
    flags = set(re.findall(r"--([a-z][a-z0-9-]*)", help_text))
    flags -= {"scenario", "json", "print-scenario", "help"}
    keywords = {k.replace("_", "-") for k in picsou.SIM_KEYWORDS} - {"params"}
    assert flags == keywords


def test_same_seed_same_report_and_seed_matters() -> None:
    a = picsou.simulate(n=4, messages=3000, loss=0.05, jitter_ms=0.5, seed=3)
    b = picsou.simulate(n=4, messages=3000, loss=0.05, jitter_ms=0.5, seed=3)
    c = picsou.simulate(n=4, messages=3000, loss=0.05, jitter_ms=0.5, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()


def test_sweep_runs_a_grid_in_order_and_matches_single_runs() -> None:
    grid: dict[str, list[Any]] = {"strategy": ["picsou", "ost", "ata"], "n": [4, 7]}
    results = picsou.sweep(grid, messages=1500, threads=2)
    assert [(r.strategy, r.sender_n) for r in results] == [
        (s, n) for s in grid["strategy"] for n in grid["n"]
    ]
    for r in results:
        assert r.params == {"messages": 1500, "strategy": r.strategy, "n": r.sender_n}
        alone = picsou.simulate(**r.params)
        assert alone.to_dict() == r.to_dict()
    # A list of keyword dicts, and a base scenario.
    base = picsou.Scenario(messages=1000, size=500)
    runs = picsou.sweep([{"seed": 1}, {"seed": 2, "loss": 0.1}], base=base)
    assert [r.seed for r in runs] == [1, 2]
    assert all(r.size == 500 and r.messages == 1000 for r in runs)


def test_sweep_of_a_hundred_runs_is_fast() -> None:
    t = time.monotonic()
    results = picsou.sweep({"seed": list(range(100))}, messages=500)
    assert len(results) == 100 and all(r.c3b_ok for r in results)
    assert len({r.latency_p99_ms for r in results}) >= 1
    assert time.monotonic() - t < 60


def test_sweep_checks_every_run_before_running() -> None:
    with pytest.raises(picsou.ConfigError) as e:
        picsou.sweep({"n": [4, 0]})
    assert e.value.field == "sender_n"
    with pytest.raises(TypeError):
        picsou.sweep({"n": 4})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        picsou.sweep({"n": [4]}, n=7)


def test_sweep_answers_ctrl_c(interrupt_after: Any) -> None:
    before = thread_count()
    interrupt_after(0.3)
    t = time.monotonic()
    with pytest.raises(Interrupted):
        picsou.sweep({"seed": list(range(200))}, messages=200_000, threads=2)
    assert time.monotonic() - t < 2.0
    # The workers stop taking runs: the ones in progress finish, then the threads exit.
    deadline = time.monotonic() + 120
    while thread_count() > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert thread_count() <= before


def test_simulate_answers_ctrl_c(interrupt_after: Any) -> None:
    interrupt_after(0.2)
    t = time.monotonic()
    with pytest.raises(Interrupted):
        picsou.simulate(n=19, messages=200_000)
    assert time.monotonic() - t < 1.5


def test_invalid_scenarios_name_the_field() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(n=0), "sender_n"),
        (dict(f=2), "sender_f"),
        (dict(receiver_f=5), "receiver_f"),
        (dict(size=0), "size"),
        (dict(messages=0), "messages"),
        (dict(loss=1.5), "loss"),
        (dict(crash=["x9"]), "crash"),
        (dict(crash=["s0", "s1"]), "crash"),
        (dict(byzantine={"r1": "evil"}), "byzantine"),
        (dict(byzantine=["r1=silent", "r1=forge"]), "byzantine"),
        (dict(fault="cft", byzantine={"r1": "silent"}), "byzantine"),
        (dict(strategy="nope"), "strategy"),
        (dict(fault="BFT?"), "fault"),
        (dict(stake=[1, 0, 1, 1]), "sender_stake"),
        (dict(n=-1), "n"),
        (dict(partition=["5"]), "partition"),
        (dict(phi_bits=65), "params.phi_bits"),
        (dict(params={"no_such": 1}), "params"),
        (dict(cross_link_mbps=0), "cross_link_mbps"),
    ]
    for kwargs, field in cases:
        with pytest.raises(picsou.ConfigError) as e:
            picsou.simulate(**kwargs)
        assert e.value.field == field, (kwargs, e.value)
        assert e.value.reason and field in str(e.value)
        assert isinstance(e.value, picsou.PicsouError)


def test_wrong_types_are_type_errors() -> None:
    wrong: list[dict[str, Any]] = [
        dict(n="4"),
        dict(n=4.0),
        dict(n=True),
        dict(loss="0.1"),
        dict(crash=7),
        dict(byzantine=3),
        dict(real_signatures=1),
        dict(strategy=1),
        dict(params=[1]),
    ]
    for kwargs in wrong:
        with pytest.raises(TypeError):
            picsou.simulate(**kwargs)
    with pytest.raises(TypeError, match="sendr_n.*sender_n"):
        picsou.simulate(sendr_n=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        picsou.simulate(42)  # type: ignore[arg-type]


def test_bad_scenario_text_and_files() -> None:
    with pytest.raises(picsou.ConfigError) as e:
        picsou.simulate("sendr_n = 3")
    assert "sendr_n" in str(e.value)
    with pytest.raises(picsou.ConfigError) as e:
        picsou.simulate("/no/such/scenario.toml")
    assert e.value.file == "/no/such/scenario.toml"


def test_check_raises_on_violations_only() -> None:
    ok = picsou.simulate(messages=1000)
    ok.check()
    # One-shot has no recovery: with a sender crashed, its messages never arrive.
    bad = picsou.simulate(strategy="ost", crash=["s1"], messages=1000)
    assert not bad.c3b_ok and bad.violations and bad.delivered < 1000
    with pytest.raises(picsou.ProtocolError, match="C3B violated"):
        bad.check()


def test_scenario_object() -> None:
    s = picsou.Scenario(n=7, messages=2000)
    t = s.replace(strategy="ata")
    assert s.overrides == {"n": 7, "messages": 2000}
    assert t.overrides == {"n": 7, "messages": 2000, "strategy": "ata"}
    assert t.to_dict()["strategy"] == "ata" and t.to_dict()["sender_n"] == 7
    assert picsou.Scenario(t.to_toml()) == t
    r = t.run()
    assert r.scenario == t and r.strategy == "ata" and r.real_seconds > 0
    assert picsou.simulate(s, strategy="ata").to_dict() == r.to_dict()
