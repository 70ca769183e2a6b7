"""Deployments from files, text and Python objects; errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import picsou

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


# Examples off loopback carry no keys: they are `picsou keygen` templates.
KEYGEN_TEMPLATES = {"multihost.toml", "rdma-4x4.toml"}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_file_loads_and_round_trips(name: str, tmp_path: Path) -> None:
    if name in KEYGEN_TEMPLATES:
        with pytest.raises(picsou.ConfigError, match="picsou keygen"):
            picsou.Config.from_toml(EXAMPLES / name)
        c = picsou.Config.template(EXAMPLES / name).generate_keys(tmp_path / "keys")
        assert c.per_replica_keys
    else:
        c = picsou.Config.from_toml(EXAMPLES / name)
        assert picsou.Config(str(EXAMPLES / name)) == c
    assert c.source.endswith(name)
    again = picsou.Config.from_toml(c.to_toml())
    assert again == c
    assert picsou.Config.from_dict(c.to_dict()) == c


def test_default_and_attributes() -> None:
    c = picsou.Config.default()
    assert c == picsou.Config()
    assert c.strategy == "picsou" and c.transport == "tcp"
    assert [r["name"] for r in c.rsms] == ["alpha", "beta"]
    assert c.rsms[0]["replicas"][1] == {"id": 1, "address": "127.0.0.1:27101", "stake": 1}
    assert c.load == {"messages": 100_000, "size": 100, "senders": "both", "rate": 0, "timeout_s": 120}
    assert c.replicas()[:2] == [("alpha", 0), ("alpha", 1)] and len(c.replicas()) == 8


def test_file_errors_have_file_line_column_and_field(tmp_path: Path) -> None:
    text = (EXAMPLES / "local-4x4-tcp.toml").read_text().replace("127.0.0.1:27201", "127.0.0.1:27101")
    path = tmp_path / "dup.toml"
    path.write_text(text)
    with pytest.raises(picsou.ConfigError) as e:
        picsou.Config.from_toml(path)
    err = e.value
    assert err.file == str(path)
    assert err.field == "rsm[1].replicas[1].address"
    assert err.line is not None and err.column is not None
    assert text.splitlines()[err.line - 1][err.column - 1 :].startswith('"127.0.0.1:27101"')
    assert str(err).startswith(f"{path}:{err.line}:{err.column}: rsm[1].replicas[1].address: ")
    assert "already the address" in err.reason


def test_text_errors_and_missing_files() -> None:
    with pytest.raises(picsou.ConfigError) as e:
        picsou.Config.from_toml('strategy = "picsou"\n[[rsm]]\nname = "a"\n', name="inline.toml")
    assert e.value.file == "inline.toml" and e.value.field in ("rsm", "rsm[0].fault", "keys")
    with pytest.raises(picsou.ConfigError) as e:
        picsou.Config.from_toml("/no/such/file.toml")
    assert "cannot read" in e.value.reason and e.value.line is None


def base_dict(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "strategy": "picsou",
        "rsm": [
            {"name": "a", "fault": "cft", "f": 1, "replicas": [{"id": i} for i in range(3)]},
            {"name": "b", "fault": "cft", "f": 1, "replicas": [{"id": i} for i in range(3)]},
        ],
        "transport": {"kind": "mem"},
        "keys": {"secret": "00" * 32},
    }
    d.update(changes)
    return d


def test_from_python_objects() -> None:
    c = picsou.Config.from_dict(base_dict(load={"messages": 50, "size": 10}))
    assert c.transport == "mem" and c.load["messages"] == 50 and c.source == "<dict>"
    cases: list[tuple[dict[str, Any], str]] = [
        (base_dict(strategy="nope"), "strategy"),
        (base_dict(transport={"kind": "carrier-pigeon"}), "transport.kind"),
        (base_dict(keys={"secret": "zz"}), "keys.secret"),
        (base_dict(keys={}), "keys"),
        (base_dict(tuning={"phi_bits": 65}), "tuning.phi_bits"),
        (base_dict(load={"size": 0}), "load.size"),
        (base_dict(node={"batch_messages": 0}), "node.batch_messages"),
        (base_dict(transport={"kind": "tcp"}), "rsm[0].replicas[0].address"),
    ]
    bad_f = base_dict()
    bad_f["rsm"][1]["f"] = 2
    cases.append((bad_f, "rsm[1].f"))
    dup = base_dict()
    dup["rsm"][0]["replicas"][2]["id"] = 0
    cases.append((dup, "rsm[0].replicas[2].id"))
    for d, field in cases:
        with pytest.raises(picsou.ConfigError) as e:
            picsou.Config.from_dict(d)
        assert e.value.field == field, (field, e.value)
        # Generated TOML has no meaningful line: none is reported.
        assert e.value.line is None and e.value.file == "<dict>"
    with pytest.raises(TypeError):
        picsou.Config.from_dict(base_dict(load={"size": object()}))
    with pytest.raises(TypeError):
        picsou.Config.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        picsou.Config.from_dict({1: "x"})  # type: ignore[dict-item]


def test_loopback_and_overrides() -> None:
    c = picsou.Config.loopback(5, receiver_n=7, fault="bft", transport="tcp", base_port=41000, names=("x", "y"))
    assert [r["f"] for r in c.rsms] == [1, 2]
    assert c.rsms[1]["replicas"][6]["address"] == "127.0.0.1:41011"
    assert len(c.signing_keys("x")) == 5 and c.verifier("y") is not None
    m = c.with_overrides(transport="mem", strategy="ata", messages=10, size=7, senders="second", rate=5)
    assert (m.transport, m.strategy, m.load["messages"], m.load["size"], m.load["senders"], m.load["rate"]) == (
        "mem", "ata", 10, 7, "second", 5,
    )
    moved = c.with_overrides(base_port=42000)
    assert moved.rsms[0]["replicas"][0]["address"] == "127.0.0.1:42000"
    with pytest.raises(picsou.ConfigError) as e:
        c.with_overrides(size=0)
    assert e.value.field == "load.size"
    with pytest.raises(picsou.ConfigError) as e:
        picsou.Config.loopback(4).with_overrides(transport="tcp")
    assert e.value.field.endswith(".address")
    with pytest.raises(picsou.ConfigError):
        c.with_overrides(senders="everyone")
    with pytest.raises(picsou.ConfigError) as e:
        picsou.Config.loopback(4, f=2)
    assert e.value.field == "rsm[0].f"
    with pytest.raises(picsou.ConfigError):
        picsou.Config.loopback(4, transport="tcp", base_port=65_530)
    with pytest.raises(picsou.ConfigError):
        picsou.Config.loopback(4, secret=b"short")
    with pytest.raises(TypeError):
        picsou.Config.loopback("4")  # type: ignore[arg-type]
    # Random keys unless given; given keys are used.
    assert picsou.Config.loopback(4) != picsou.Config.loopback(4)
    k = bytes(range(32))
    assert picsou.Config.loopback(4, secret=k) == picsou.Config.loopback(4, secret=k)


def test_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        picsou.Config(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        picsou.Config.from_toml(3.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        picsou.Config.default().with_overrides(messages="many")  # type: ignore[arg-type]
