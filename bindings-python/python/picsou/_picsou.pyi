# Hand-written type stubs of the extension module `picsou._picsou` (Rust, pyo3).
# Checked against the built module by `python -m mypy.stubtest picsou picsou._picsou`.

import os
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, final

from typing_extensions import Self

__all__ = [
    "Config",
    "ConfigError",
    "DeliveryIterator",
    "MemNetwork",
    "MisuseError",
    "Node",
    "PicsouError",
    "ProofError",
    "ProtocolError",
    "QuorumVerifier",
    "SIM_KEYWORDS",
    "Scenario",
    "SigningKey",
    "SimResult",
    "StateTransferNeeded",
    "TransportError",
    "__version__",
    "_pump_logs",
    "_stop_log_pump",
    "assemble_certificate",
    "bench",
    "certificate_shares",
    "commit_digest",
    "flush_logs",
    "local",
    "run_scenarios",
    "sign_certificate",
    "simulate",
]
__version__: str
SIM_KEYWORDS: list[str]

# ---------------------------------------------------------------------------------------------
# Errors

class PicsouError(Exception):
    """Base class of every error picsou raises on purpose."""

class ConfigError(PicsouError):
    """An invalid deployment, scenario or setting."""

    field: str
    """Dotted path of the field at fault, e.g. `rsm[0].f` or `sender_n` ("" for a whole file)."""
    reason: str
    """What is wrong and what would be valid."""
    file: str | None
    """The file (or `<text>`, `<dict>`, ...) the configuration came from, if any."""
    line: int | None
    """1-based line of the offending value, when it is in text the user wrote."""
    column: int | None
    """1-based column of the offending value, with `line`."""

class TransportError(PicsouError):
    """A transport could not start, or failed."""

class ProtocolError(PicsouError):
    """The protocol's guarantees did not hold."""

class ProofError(ProtocolError):
    """A commit certificate does not verify."""

class MisuseError(PicsouError):
    """The API was used wrongly: a closed node, an out-of-order submission, a bad value."""

class StateTransferNeeded(PicsouError):
    """This replica fell further behind than its peers retain; resume from a peer's snapshot."""

    next: int
    """The first seq this replica lacks."""
    peers_at: int
    """Where its peers are."""

# ---------------------------------------------------------------------------------------------
# Simulator

_Number = int | float
_Strategy = Literal["picsou", "ost", "ata", "ll", "otu"]
# A behaviour name, optionally with a parameter and an onset in ms: "zero-ack@500",
# "slow-ack:100" (ack advances ≤ 100 msgs/s), "drop-some:30" (skips 30 % of first sends).
_Behaviour = (
    Literal[
        "inflate-ack", "zero-ack", "stale-ack", "lie-phi", "forge", "silent", "no-rebroadcast", "slow-ack", "drop-some"
    ]
    | str
)
_ScenarioBase = str | os.PathLike[str] | Mapping[str, Any] | Scenario
_Partition = str | tuple[_Number, _Number] | Mapping[str, _Number]

@final
class Scenario:
    """A simulated experiment: a base (TOML text, a path, a dict, a Scenario) plus keywords,
    one per flag of `picsou sim`; checked when built."""

    def __new__(
        cls,
        base: _ScenarioBase | None = None,
        /,
        *,
        strategy: _Strategy | str | None = None,
        n: int | None = None,
        sender_n: int | None = None,
        receiver_n: int | None = None,
        f: int | None = None,
        sender_f: int | None = None,
        receiver_f: int | None = None,
        fault: Literal["cft", "bft"] | None = None,
        stake: Sequence[int] | str | None = None,
        sender_stake: Sequence[int] | str | None = None,
        receiver_stake: Sequence[int] | str | None = None,
        size: int | None = None,
        messages: int | None = None,
        nic_mbps: _Number | None = None,
        local_latency_ms: _Number | None = None,
        cross_latency_ms: _Number | None = None,
        cross_link_mbps: _Number | None = None,
        loss: _Number | None = None,
        local_loss: _Number | None = None,
        jitter_ms: _Number | None = None,
        partition: _Partition | Sequence[_Partition] | None = None,
        crash: Sequence[str] | str | None = None,
        byzantine: Mapping[str, _Behaviour | str] | Sequence[str] | str | None = None,
        seed: int | None = None,
        phi_bits: int | None = None,
        send_window: int | None = None,
        cpu_us_per_frame: _Number | None = None,
        cpu_ns_per_byte: _Number | None = None,
        warmup_fraction: _Number | None = None,
        max_virtual_seconds: _Number | None = None,
        timeline_ms: _Number | None = None,
        real_signatures: bool | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Self: ...
    def replace(
        self,
        *,
        strategy: _Strategy | str | None = None,
        n: int | None = None,
        sender_n: int | None = None,
        receiver_n: int | None = None,
        f: int | None = None,
        sender_f: int | None = None,
        receiver_f: int | None = None,
        fault: Literal["cft", "bft"] | None = None,
        stake: Sequence[int] | str | None = None,
        sender_stake: Sequence[int] | str | None = None,
        receiver_stake: Sequence[int] | str | None = None,
        size: int | None = None,
        messages: int | None = None,
        nic_mbps: _Number | None = None,
        local_latency_ms: _Number | None = None,
        cross_latency_ms: _Number | None = None,
        cross_link_mbps: _Number | None = None,
        loss: _Number | None = None,
        local_loss: _Number | None = None,
        jitter_ms: _Number | None = None,
        partition: _Partition | Sequence[_Partition] | None = None,
        crash: Sequence[str] | str | None = None,
        byzantine: Mapping[str, _Behaviour | str] | Sequence[str] | str | None = None,
        seed: int | None = None,
        phi_bits: int | None = None,
        send_window: int | None = None,
        cpu_us_per_frame: _Number | None = None,
        cpu_ns_per_byte: _Number | None = None,
        warmup_fraction: _Number | None = None,
        max_virtual_seconds: _Number | None = None,
        timeline_ms: _Number | None = None,
        real_signatures: bool | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Scenario:
        """A copy with more keyword overrides."""
    def to_toml(self) -> str:
        """The effective scenario as TOML (what `picsou sim --print-scenario` prints)."""
    def to_dict(self) -> dict[str, Any]:
        """The effective scenario as a dict of the TOML file's fields."""
    @property
    def overrides(self) -> dict[str, Any]:
        """The keyword overrides this scenario was built with."""
    def run(self) -> SimResult:
        """Runs the scenario in the deterministic simulator."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class SimResult:
    """What one simulation measured: the fields of `picsou sim --json`."""

    def to_dict(self) -> dict[str, Any]:
        """The report as a dict, equal to `json.loads` of `picsou sim --json`'s output."""
    def check(self) -> None:
        """Raises `ProtocolError` listing the violations if the C3B checker found any."""
    @property
    def scenario(self) -> Scenario: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def real_seconds(self) -> float: ...
    @property
    def strategy(self) -> str: ...
    @property
    def sender_n(self) -> int: ...
    @property
    def receiver_n(self) -> int: ...
    @property
    def sender_f(self) -> int: ...
    @property
    def receiver_f(self) -> int: ...
    @property
    def fault(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def messages(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def c3b_ok(self) -> bool: ...
    @property
    def violations(self) -> list[str]: ...
    @property
    def delivered(self) -> int: ...
    @property
    def throughput_msgs_per_s(self) -> float: ...
    @property
    def throughput_mb_per_s(self) -> float: ...
    @property
    def wire_bytes_per_message(self) -> float: ...
    @property
    def cross_bytes_per_message(self) -> float: ...
    @property
    def resends(self) -> int: ...
    @property
    def max_sends_per_message(self) -> int: ...
    @property
    def latency_p50_ms(self) -> float: ...
    @property
    def latency_p99_ms(self) -> float: ...
    @property
    def virtual_seconds(self) -> float: ...
    @property
    def frames(self) -> int: ...
    @property
    def misbehaviors_detected(self) -> int: ...
    @property
    def engine(self) -> dict[str, int]: ...
    @property
    def timeline(self) -> dict[str, Any]: ...
    @property
    def fault_onset_ms(self) -> float | None: ...
    @property
    def recovery_ms(self) -> float | None: ...

def simulate(
    base: _ScenarioBase | None = None,
    /,
    *,
    strategy: _Strategy | str | None = None,
    n: int | None = None,
    sender_n: int | None = None,
    receiver_n: int | None = None,
    f: int | None = None,
    sender_f: int | None = None,
    receiver_f: int | None = None,
    fault: Literal["cft", "bft"] | None = None,
    stake: Sequence[int] | str | None = None,
    sender_stake: Sequence[int] | str | None = None,
    receiver_stake: Sequence[int] | str | None = None,
    size: int | None = None,
    messages: int | None = None,
    nic_mbps: _Number | None = None,
    local_latency_ms: _Number | None = None,
    cross_latency_ms: _Number | None = None,
    cross_link_mbps: _Number | None = None,
    loss: _Number | None = None,
    local_loss: _Number | None = None,
    jitter_ms: _Number | None = None,
    partition: _Partition | Sequence[_Partition] | None = None,
    crash: Sequence[str] | str | None = None,
    byzantine: Mapping[str, _Behaviour | str] | Sequence[str] | str | None = None,
    seed: int | None = None,
    phi_bits: int | None = None,
    send_window: int | None = None,
    cpu_us_per_frame: _Number | None = None,
    cpu_ns_per_byte: _Number | None = None,
    warmup_fraction: _Number | None = None,
    max_virtual_seconds: _Number | None = None,
    timeline_ms: _Number | None = None,
    real_signatures: bool | None = None,
    params: Mapping[str, Any] | None = None,
) -> SimResult:
    """Runs a scenario in the deterministic simulator (keywords: the flags of `picsou sim`)."""

def run_scenarios(scenarios: Sequence[Scenario], threads: int | None = None) -> list[SimResult]:
    """Runs scenarios on worker threads with the GIL released; results in the same order."""

# ---------------------------------------------------------------------------------------------
# Deployments

_ConfigSource = str | os.PathLike[str] | Mapping[str, Any]
_Kind = Literal["mem", "tcp", "uring", "rdma"]
_Senders = Literal["both", "first", "second"]
_Bytes = bytes | bytearray | memoryview

@final
class Config:
    """A checked deployment: two RSMs, their replicas, transport, tuning, keys and load."""

    def __new__(cls, source: _ConfigSource | Config | None = None) -> Self: ...
    @staticmethod
    def from_toml(source: str | os.PathLike[str], name: str | None = None) -> Config:
        """A deployment from a file path or TOML text."""
    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Config:
        """A deployment from a dict shaped like the file."""
    @staticmethod
    def default() -> Config:
        """The embedded default deployment (what `picsou local` runs with no arguments)."""
    @staticmethod
    def loopback(
        n: int = 4,
        *,
        receiver_n: int | None = None,
        f: int | None = None,
        fault: Literal["cft", "bft"] | str = "cft",
        transport: _Kind | str = "mem",
        strategy: _Strategy | str = "picsou",
        base_port: int = 27100,
        names: tuple[str, str] | None = None,
        messages: int | None = None,
        size: int | None = None,
        senders: _Senders | str | None = None,
        rate: int | None = None,
        timeout_s: int | None = None,
        secret: _Bytes | None = None,
        signing_seed: _Bytes | None = None,
    ) -> Config:
        """Two RSMs on this machine (random keys unless given)."""
    def with_overrides(
        self,
        *,
        transport: _Kind | str | None = None,
        strategy: _Strategy | str | None = None,
        messages: int | None = None,
        size: int | None = None,
        senders: _Senders | str | None = None,
        rate: int | None = None,
        base_port: int | None = None,
    ) -> Config:
        """A copy with `picsou local`'s overrides applied, checked again."""
    def generate_keys(self, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Config:
        """A copy with per-replica keys: one identity file per replica in `out_dir` (mode 0600)."""
    @staticmethod
    def template(path: str | os.PathLike[str]) -> Config:
        """A deployment file read for `generate_keys`: every check but the keys."""
    @property
    def per_replica_keys(self) -> bool: ...
    @property
    def deployment_id(self) -> bytes:
        """Commit certificates and session handshakes are bound to it (`deployment=`)."""
    def to_toml(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...
    @property
    def source(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def transport(self) -> str: ...
    @property
    def rsms(self) -> list[dict[str, Any]]: ...
    @property
    def load(self) -> dict[str, Any]: ...
    def replicas(self) -> list[tuple[str, int]]: ...
    def signing_keys(self, rsm: str | int) -> list[SigningKey]: ...
    def certify(self, rsm: str | int, seq: int, payload: _Bytes) -> bytes: ...
    def verifier(self, rsm: str | int) -> QuorumVerifier | None: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class MemNetwork:
    """An in-process network for `kind = "mem"` deployments."""

    def __new__(cls, link_bytes: int | None = None) -> Self: ...

@final
class Node:
    """One replica of a deployment, running in this process over the configured transport."""

    def __new__(
        cls,
        config: Config | _ConfigSource,
        rsm: str | int,
        replica: int,
        *,
        network: MemNetwork | None = None,
        byzantine: _Behaviour | str | None = None,
        resume_transmit: int = 0,
        resume_receive: int = 0,
        key_file: str | os.PathLike[str] | None = None,
        identity: _Bytes | None = None,
    ) -> Self:
        """`key_file` (a `picsou keygen` identity file) or `identity` (its 32-byte seed) gives
        the replica its secret key under per-replica keys; default: `keys.identity_file`."""
    def submit(self, seq: int, payload: _Bytes, proof: _Bytes | None = None, timeout: float | None = None) -> None:
        """Submits message `seq` of this RSM's stream; blocks while backlogged."""
    def try_submit(self, seq: int, payload: _Bytes, proof: _Bytes | None = None) -> bool: ...
    def submit_many(
        self,
        first: int,
        payloads: Sequence[_Bytes],
        proofs: Sequence[_Bytes | None] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Submits `payloads` as messages `first, first + 1, ...` in one queue operation."""
    def next_delivery(self, timeout: float | None = None) -> tuple[int, bytes] | None: ...
    def take_deliveries(self, max: int = 1024, timeout: float | None = None) -> list[tuple[int, bytes]]: ...
    def deliveries(self, timeout: float | None = None, count: int | None = None) -> DeliveryIterator: ...
    def local_has(self, seq: int) -> None: ...
    def certify(self, seq: int, payload: _Bytes) -> bytes: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> dict[str, Any]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> bool: ...
    @property
    def replica(self) -> str: ...
    @property
    def rsm(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def transport(self) -> str: ...
    @property
    def next_seq(self) -> int: ...
    @property
    def quacked(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def stopped(self) -> bool: ...

@final
class DeliveryIterator:
    """The iterator `Node.deliveries()` returns: `(seq, payload)` pairs."""

    def __iter__(self) -> Self: ...
    def __next__(self) -> tuple[int, bytes]: ...

def local(
    config: Config | _ConfigSource | None = None,
    /,
    *,
    transport: _Kind | str | None = None,
    strategy: _Strategy | str | None = None,
    messages: int | None = None,
    size: int | None = None,
    senders: _Senders | str | None = None,
    rate: int | None = None,
    base_port: int | None = None,
    check: bool = False,
) -> dict[str, Any]:
    """Runs a whole deployment in this process; returns `picsou local --json`'s report."""

def bench(
    config: Config | _ConfigSource | None = None,
    /,
    *,
    strategies: list[str] | None = None,
    sizes: list[int] | None = None,
    n: list[int] | None = None,
    transports: list[str] | None = None,
    bft: bool = False,
    bytes_per_run: int = 16_000_000,
    min_messages: int = 100,
    max_messages: int = 100_000,
    timeout_s: float = 60.0,
    base_port: int = 24_000,
) -> dict[str, Any]:
    """Runs the `picsou bench` grid in this process; returns `picsou bench --json`'s report."""

# ---------------------------------------------------------------------------------------------
# Commit certificates

_Stream = tuple[int, int]

@final
class SigningKey:
    """An ed25519 signing key of one replica."""

    @staticmethod
    def generate() -> SigningKey: ...
    @staticmethod
    def from_seed(seed: _Bytes) -> SigningKey: ...
    @staticmethod
    def derive(master: _Bytes, rsm: int, index: int) -> SigningKey: ...
    @property
    def seed(self) -> bytes: ...
    @property
    def public_key(self) -> bytes: ...
    def sign_share(
        self, index: int, seq: int, payload: _Bytes, stream: _Stream | None = None, *, deployment: _Bytes | None = None
    ) -> tuple[int, bytes]: ...

@final
class QuorumVerifier:
    """Checks commit certificates of one sending RSM."""

    def __new__(
        cls, public_keys: Sequence[_Bytes], *, f: int, stakes: Sequence[int] | None = None, deployment: _Bytes | None = None
    ) -> Self: ...
    @property
    def required_stake(self) -> int: ...
    def verify(self, seq: int, payload: _Bytes, proof: _Bytes, stream: _Stream | None = None) -> None: ...
    def is_valid(self, seq: int, payload: _Bytes, proof: _Bytes, stream: _Stream | None = None) -> bool: ...

def commit_digest(seq: int, payload: _Bytes, stream: _Stream | None = None, *, deployment: _Bytes | None = None) -> bytes: ...
def assemble_certificate(shares: Sequence[tuple[int, _Bytes]]) -> bytes: ...
def certificate_shares(proof: _Bytes) -> list[tuple[int, bytes]]: ...
def sign_certificate(
    signers: Sequence[tuple[int, SigningKey]],
    seq: int,
    payload: _Bytes,
    stream: _Stream | None = None,
    *,
    deployment: _Bytes | None = None,
) -> bytes: ...

# ---------------------------------------------------------------------------------------------
# Logging

def flush_logs() -> None:
    """Emits the queued Rust log records through `logging` now."""

def _pump_logs() -> None: ...
def _stop_log_pump() -> None: ...
