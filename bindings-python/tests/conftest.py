"""Shared fixtures: the `picsou` command (for comparisons with the CLI), free TCP ports, and a
signal-based stand-in for Ctrl-C."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


@pytest.fixture(scope="session")
def picsou_bin() -> Path:
    """The release `picsou` binary of this checkout (`$PICSOU_BIN`, or
    `$CARGO_TARGET_DIR/release/picsou`), built with cargo if missing or older than the
    sources it is built from."""
    explicit = os.environ.get("PICSOU_BIN")
    if explicit:
        return Path(explicit)
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "-q", "-p", "picsou-cli"],
        cwd=REPO,
        check=True,
    )
    path = _target_dir() / "release" / "picsou"
    assert path.exists(), f"cargo did not produce {path}"
    return path


def free_port_base(count: int) -> int:
    """A base such that 127.0.0.1 ports base .. base+count-1 are free right now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_700 - count)  # below the ephemeral ports
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free range of ports")


class Interrupted(Exception):
    """Raised by the SIGALRM handler of `interrupt_after`: stands for Ctrl-C (pytest treats a
    real KeyboardInterrupt as 'stop the session')."""


@pytest.fixture
def interrupt_after() -> Iterator[Callable[[float], None]]:
    """`interrupt_after(s)` raises `Interrupted` in the main thread `s` seconds later, through
    a signal handler, exactly as Ctrl-C raises KeyboardInterrupt."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted()

    old = signal.signal(signal.SIGALRM, handler)

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def thread_count() -> int:
    """Threads of this process (Rust threads included)."""
    return len(os.listdir("/proc/self/task"))
