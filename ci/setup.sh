#!/usr/bin/env bash
# Installs what building and testing picsou needs on a fresh machine of this project's kind
# (Debian with a Rust toolchain from rustup). Idempotent: safe to run twice.
set -euo pipefail
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi
# clippy and rustfmt are rustup components; add them if this toolchain lacks them.
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add clippy rustfmt
fi
# iperf3: the transport benchmark's reference for loopback throughput (recorded as skipped
# if it cannot be installed).
if ! command -v iperf3 >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3 >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3 >/dev/null 2>&1; } \
    || echo "iperf3 not installed: the transport benchmark will record it as skipped"
fi
# etcd (Debian's etcd-server, 3.4) for picsou-etcd's demo and tests, and protoc, which the
# etcd client crate's build runs on etcd's .proto files. The demo picks its own ports, so a
# system etcd that the package may start on 2379/2380 does not get in the way.
if { ! command -v etcd >/dev/null || ! command -v protoc >/dev/null; } && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server protobuf-compiler >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server protobuf-compiler >/dev/null 2>&1; } \
    || echo "etcd-server or protobuf-compiler not installed: picsou-etcd needs protoc to build, and its etcd tests will say SKIPPED"
fi
# iproute2 (`ip`, `tc`): the shaped-link testbed (`picsou local/bench --netns`).
if { ! command -v ip >/dev/null || ! command -v tc >/dev/null; } && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null 2>&1; } \
    || echo "iproute2 not installed: the shaped-link testbed tests will say SKIPPED"
fi
cd "$(dirname "$0")/.."
# The RDMA transport's build needs cmake and libclang (sideway's verbs shim and bindgen).
bash ci/setup-rdma.sh
# Fetch every crate once, so later steps can run --locked/offline.
cargo fetch --locked
echo "setup done"
