"""Picsou (Cross-Cluster Consistent Broadcast) from Python.

A thin layer over the Rust crates of the `picsou` workspace (the extension module
`picsou._picsou`); no protocol logic lives in Python.

- The deterministic simulator: `simulate(...)`, `Scenario`, `SimResult`, `sweep(...)`.
- Real deployments: `Config`, `Node` (one replica in this process), `MemNetwork`,
  `local(config)` (a whole deployment in this process), `bench(...)` (the `picsou bench`
  grid, in this process).
- Commit certificates (BFT): `SigningKey`, `QuorumVerifier`, `sign_certificate`, ...
- Errors: `PicsouError` and its subclasses `ConfigError`, `TransportError`, `ProtocolError`
  (`ProofError`), `MisuseError`, `StateTransferNeeded` (a replica beyond its peers' retention).
- Logs: the Rust side's `tracing` events go to the `logging` logger `picsou`.

See the package README (`bindings-python/README.md`) for a guide.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Union

from . import _picsou
from ._picsou import (
    SIM_KEYWORDS,
    Config,
    ConfigError,
    DeliveryIterator,
    MemNetwork,
    MisuseError,
    Node,
    PicsouError,
    ProofError,
    ProtocolError,
    QuorumVerifier,
    Scenario,
    SigningKey,
    SimResult,
    StateTransferNeeded,
    TransportError,
    __version__,
    assemble_certificate,
    bench,
    certificate_shares,
    commit_digest,
    flush_logs,
    local,
    sign_certificate,
    simulate,
)

__all__ = [
    "SIM_KEYWORDS",
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
    "Scenario",
    "SigningKey",
    "SimResult",
    "StateTransferNeeded",
    "TransportError",
    "__version__",
    "assemble_certificate",
    "bench",
    "certificate_shares",
    "commit_digest",
    "flush_logs",
    "local",
    "sign_certificate",
    "simulate",
    "sweep",
]

ScenarioBase = Union[str, "os.PathLike[str]", Mapping[str, Any], Scenario]
"""What a scenario can start from: TOML text, a file path, a dict of the file's fields, or a
`Scenario`."""


def _points(
    grid: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    """The grid's points: the cartesian product of a mapping of lists (first key slowest), or
    the given list of keyword dicts."""
    if grid is None:
        return [{}]
    if isinstance(grid, Mapping):
        keys = list(grid)
        values: list[list[Any]] = []
        for k in keys:
            v = grid[k]
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                raise TypeError(f"sweep(): grid[{k!r}] must be a list of values, not {type(v).__name__}")
            values.append(list(v))
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    points = []
    for i, p in enumerate(grid):
        if not isinstance(p, Mapping):
            raise TypeError(f"sweep(): run {i} must be a dict of keywords, not {type(p).__name__}")
        points.append(dict(p))
    return points


def sweep(
    grid: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]] | None = None,
    /,
    *,
    base: ScenarioBase | None = None,
    threads: int | None = None,
    **fixed: Any,
) -> list[SimResult]:
    """Runs a grid of simulations in parallel threads (the GIL released) and returns their
    results in grid order.

    `grid` is either a mapping from keyword to the values to try, e.g.
    `{"strategy": ["picsou", "ata"], "n": [4, 7, 13]}` (the cartesian product, first key
    slowest), or a list of keyword dicts (one per run). `fixed` keywords apply to every run
    and `base` is the scenario every run starts from (as for `Scenario`). Every scenario is
    checked before any runs: an invalid one raises `ConfigError` naming the field (and, in
    a note, the run). `threads` defaults to one per CPU. Each result's `params` holds its
    keywords.
    """
    scenarios = []
    for i, point in enumerate(_points(grid)):
        both = sorted(set(point) & set(fixed))
        if both:
            raise TypeError(f"sweep(): {', '.join(both)} given both in the grid and as a fixed keyword")
        try:
            scenarios.append(Scenario(base, **fixed, **point))
        except ConfigError as e:
            if hasattr(e, "add_note"):
                e.add_note(f"in sweep run {i}: {point!r}")
            raise
    return _picsou.run_scenarios(scenarios, threads)


def _start_log_pump() -> None:
    """Starts the daemon thread that forwards Rust log records to `logging`, and stops it at
    exit, before the interpreter shuts down."""
    thread = threading.Thread(target=_picsou._pump_logs, name="picsou-log", daemon=True)
    thread.start()

    def stop() -> None:
        _picsou._stop_log_pump()
        thread.join(timeout=2.0)

    atexit.register(stop)


_start_log_pump()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_start_log_pump)
