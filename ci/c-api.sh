#!/usr/bin/env bash
# The C API (libpicsou, bindings-c/): Rust tests of the FFI layer and the check that the
# committed include/picsou.h is what cbindgen generates; the C tests (-Wall -Wextra -Werror)
# against the static and the shared library, under valgrind and with AddressSanitizer; then what
# bindings-c/README.md tells a C developer to do: `make install`, compile examples/counter.c with
# pkg-config, and run two RSMs of three counter processes each over TCP (and once more with the
# second RSM in C++), checking that every replica mirrors every increment.
#
# Runs from a fresh clone after `bash ci/setup.sh`; installs valgrind, pkg-config and a C/C++
# compiler with apt-get if they are missing. Honours CARGO_TARGET_DIR (default: target/).
# Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

# What the C side needs, installed quietly if missing (idempotent).
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "c-api: missing ${missing[*]} and no apt-get to install them" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "== installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

# The library is built with cargo's test profile (optimised, with debug assertions), so that
# it shares the dependencies' build with `cargo test` instead of building them a second time.
mk() { make -s -C bindings-c PROFILE=test "$@"; }

echo "== picsou-c: Rust tests of the FFI layer, and include/picsou.h up to date"
cargo test --locked -q -p picsou-c

echo "== libpicsou: C tests (static, shared, valgrind, AddressSanitizer)"
mk test

echo "== README path: make install, cc counter.c \$(pkg-config --cflags --libs picsou), two RSMs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mk install PREFIX="$work/prefix"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
test "$(pkg-config --modversion picsou)" = "$(sed -n 's/^#define PICSOU_VERSION_STRING "\(.*\)"/\1/p' bindings-c/include/picsou.h)"
cc bindings-c/examples/counter.c $(pkg-config --cflags --libs picsou) -o "$work/counter"
c++ -std=c++17 bindings-c/examples/replica.cpp $(pkg-config --cflags --libs picsou) -o "$work/replica"
bindings-c/examples/run_counter.sh "$work/counter" "$work/replica" 2000
mk uninstall PREFIX="$work/prefix"
if [ -n "$(find "$work/prefix" -type f)" ]; then
  echo "c-api: make uninstall left files behind:" >&2
  find "$work/prefix" -type f >&2
  exit 1
fi
echo "c-api: all passed"
