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
cd "$(dirname "$0")/.."
# Fetch every crate once, so later steps can run --locked/offline.
cargo fetch --locked
echo "setup done"
