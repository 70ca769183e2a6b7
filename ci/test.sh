#!/usr/bin/env bash
# Every test of the project: formatting, lints, the workspace's tests (unit, property,
# simulator sweeps, CLI), and a quick run of the engine benchmark harness (it prints numbers
# and writes JSON; it asserts nothing about speed). This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

# Release builds here check behaviour, not speed (nothing below asserts a speed; recorded
# benchmarks are run by scripts/ with the full profile): without whole-program LTO and with
# parallel codegen they build several times faster on a 2-core machine. PICSOU_CI_FULL_RELEASE=1
# keeps the workspace's release profile.
if [ "${PICSOU_CI_FULL_RELEASE:-0}" != 1 ]; then
  export CARGO_PROFILE_RELEASE_LTO="${CARGO_PROFILE_RELEASE_LTO:-false}"
  export CARGO_PROFILE_RELEASE_CODEGEN_UNITS="${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-16}"
  export CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-0}"
fi

# Each section's wall time, summed up at the end (CI has a time budget).
timings=()
section_name=""
section_start=$SECONDS
section() {
  [ -n "$section_name" ] && timings+=("$(printf '%6ds  %s' $((SECONDS - section_start)) "$section_name")")
  section_name="$1"
  section_start=$SECONDS
  [ -z "$1" ] || echo "== $1"
}

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

section "cargo test --workspace"
cargo test --workspace --locked

section "engine benchmark harness (quick)"
PICSOU_BENCH_QUICK=1 cargo run --release --locked -q -p picsou-benches --bin engine_json -- target/bench-quick/engine.json

section "transport benchmark (quick): tcp vs io_uring vs iperf3 on loopback"
PICSOU_BENCH_QUICK=1 cargo run --release --locked -q -p picsou-benches --bin transport_json -- target/bench-quick/transport.json

section "the README's main job: picsou local (embedded default: 4+4 replicas over TCP on loopback)"
cargo run --release --locked -q -p picsou-cli -- local --json > target/local-default.json
grep -q '"ok": *true' target/local-default.json

section "picsou-etcd: disaster recovery and reconciliation between two real etcd clusters (kill and restart on each side, digests)"
if command -v etcd >/dev/null; then
  # The demo test binary the workspace run above built (asking cargo for `--test demo` alone
  # resolved a different build and recompiled about 5 minutes' worth of crates), run as cargo
  # would: from its package's directory.
  demo=$(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "demo":
        print(m["executable"])')
  [ -x "$demo" ] || { echo "FAIL: the workspace build has no picsou-etcd demo test binary" >&2; exit 1; }
  (cd apps/etcd && "$demo" --ignored --nocapture --test-threads 1)
else
  echo "SKIPPED: etcd is not installed (ci/setup.sh installs Debian's etcd-server): the picsou-etcd demo test did not run"
fi

section "picsou sim smoke run"
cargo run --release --locked -q -p picsou-cli -- sim --n 4 --messages 2000 --json > target/sim-smoke.json
grep -q '"c3b_ok": *true' target/sim-smoke.json
section "picsou bench smoke run (tiny grid; JSON and plots)"
cargo run --release --locked -q -p picsou-cli -- bench --strategies picsou,ost,ata --sizes 100,10000 \
  --transports tcp --bytes-per-run 1000000 --max-messages 10000 --out target/bench-smoke > target/bench-smoke.txt
test -s target/bench-smoke/bench.json && test -s target/bench-smoke/tcp-n4-by-size.png

section "shaped-link testbed: picsou local/bench --netns (replicas in network namespaces, cross-RSM egress capped by htb)"
bash ci/netns.sh

section "fuzzing: every parser of peer bytes, coverage-guided (libFuzzer), about 30 s per target"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}" bash ci/fuzz.sh

section "Python package (build, pytest, stubtest, examples)"
bash ci/python.sh

section "C API (header check, C/C++ tests under valgrind and ASan, install, counter example)"
bash ci/c-api.sh

section "RDMA transport on soft-RoCE in a VM (device tests, picsou local and bench over rdma, vs perftest)"
if [ "${PICSOU_SKIP_RDMA_VM:-0}" = 1 ]; then
  echo "SKIPPED: PICSOU_SKIP_RDMA_VM=1 (the RDMA device tests, rdma local run and benchmark did not run)"
else
  bash ci/rdma-vm.sh
fi

section ""
echo "== time per section"
printf '%s\n' "${timings[@]}"
echo "$(printf '%6ds' "$SECONDS")  total"
echo "all tests passed"
