#!/usr/bin/env bash
# Coverage-guided fuzzing of everything that parses bytes from the network (fuzz/: the frame
# decoder, the TCP and io_uring framers, the hello and accept loop, the RDMA bootstrap
# messages, commit certificates, the engine fed authenticated garbage).
#
# Built with libFuzzer's coverage instrumentation through libfuzzer-sys, using the flags
# cargo-fuzz passes; they are all stable rustc options, so this needs neither a nightly
# toolchain nor a cargo-fuzz install. Each target runs FUZZ_SECONDS (default 40) from its seed
# corpus (fuzz/corpus/<target>, copied: this script writes nothing into the repository). A
# crash fails the script and leaves its input in target/fuzz/artifacts/<target>/: reproduce it
# with `target/fuzz/<triple>/release/<target> <file>` and add it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
EACH="${FUZZ_SECONDS:-40}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TARGETS=(frame_decode framer hello rdma_bootstrap proof engine)

export CARGO_TARGET_DIR="$ROOT/target/fuzz"
# --target keeps these flags off build scripts and proc macros, as cargo-fuzz does.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --locked -q --manifest-path fuzz/Cargo.toml --target "$TRIPLE" $(printf -- '--bin %s ' "${TARGETS[@]}")

for t in "${TARGETS[@]}"; do
  work="$CARGO_TARGET_DIR/work/$t"
  artifacts="$CARGO_TARGET_DIR/artifacts/$t"
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  cp fuzz/corpus/"$t"/* "$work"/
  echo "-- $t (${EACH}s)"
  if ! "$CARGO_TARGET_DIR/$TRIPLE/release/$t" "$work" -max_total_time="$EACH" -max_len=8192 -rss_limit_mb=2048 \
      -timeout=10 -artifact_prefix="$artifacts/" -print_final_stats=1 > "$CARGO_TARGET_DIR/$t.log" 2>&1; then
    tail -n 40 "$CARGO_TARGET_DIR/$t.log"
    echo "FAIL: fuzz target $t found a crash: $(ls "$artifacts")" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|#[0-9]+ *DONE" "$CARGO_TARGET_DIR/$t.log" | tr '\n' ' '
  echo "corpus: $(ls "$work" | wc -l) inputs"
done
echo "fuzzing: no crash in ${#TARGETS[@]} targets"
