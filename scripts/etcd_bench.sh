#!/usr/bin/env bash
# The measurements of the README's "Using Picsou with an existing RSM: etcd disaster recovery"
# section: picsou-etcd demo runs (strategies side by side, kill/restart on either side,
# reconciliation), one JSON report each under bench-results/etcd/ (each names the commit).
# Waits for a quiet machine before each run (1-minute load average below 1.5, at most
# QUIET_MAX_S seconds; each report records the load average it started at), since the numbers
# are CPU- and disk-bound on this 2-core host.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results/etcd}
PUTS=${PUTS:-20000}
mkdir -p "$OUT"
cargo build --release --locked -q -p picsou-etcd
BIN=target/release/picsou-etcd
QUIET_MAX_S=${QUIET_MAX_S:-1200}   # how long to wait for a quiet machine before each run
quiet() {
  for _ in $(seq 1 $((QUIET_MAX_S / 10))); do
    awk '{exit !($1 < 1.5)}' /proc/loadavg && return 0
    sleep 10
  done
  echo "the machine did not get quiet (load $(cut -d' ' -f1 /proc/loadavg)); measuring anyway" >&2
}
run() {
  local name=$1; shift
  # RESUME=1: keep the reports already written.
  if [ "${RESUME:-0}" = 1 ] && [ -s "$OUT/$name.json" ]; then return 0; fi
  quiet
  echo "== $name: $BIN demo $*" >&2
  "$BIN" demo --puts "$PUTS" --out "$OUT/$name.json" "$@" || echo "$name: FAILED (see $OUT/$name.json)" >&2
}
# Data directories on this host's disk (the default: a temporary folder), which the six
# members share ...
run dr-picsou --strategy picsou
run dr-ata --strategy ata
run dr-ll --strategy ll
run dr-picsou-kill-primary --strategy picsou --kill primary/1@2 --restart primary/1@6
run dr-picsou-kill-standby --strategy picsou --kill standby/0@2 --restart standby/0@6
run reconcile-picsou --strategy picsou --mode reconcile
# ... and in memory (tmpfs): no member waits for another's fsyncs, CPU is what they share.
for s in picsou ata ll; do
  run "dr-$s-tmpfs" --strategy "$s" --dir /dev/shm
done
