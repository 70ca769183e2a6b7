#!/usr/bin/env bash
# Runs the counter example end to end: every replica of two RSMs of three replicas (alpha,
# beta; examples/counter.toml, TCP on loopback ports 23100-23102 and 23200-23202) as its own
# process, each submitting N increments and mirroring the other RSM's. Checks that every process
# exits 0 and that every replica's mirrored counter equals the other RSM's local counter after
# all N increments.
#
#     run_counter.sh COUNTER [REPLICA] [N]
#
# COUNTER is the C program (examples/counter.c); with REPLICA (examples/replica.cpp, C++), a
# second round runs alpha in C and beta in C++. `make counter` builds both and runs this.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
counter="${1:?usage: run_counter.sh COUNTER [REPLICA] [N]}"
replica="${2:-}"
n="${3:-2000}"
config="$here/counter.toml"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# round NAME ALPHA_BIN BETA_BIN
round() {
  local name="$1" alpha_bin="$2" beta_bin="$3" pids=() failed=0
  echo "== counter round '$name': alpha runs $(basename "$alpha_bin"), beta runs $(basename "$beta_bin"), $n increments each"
  for i in 0 1 2; do
    timeout 180 "$alpha_bin" "$config" alpha "$i" "$n" >"$logs/$name-alpha-$i.log" 2>&1 & pids+=($!)
    timeout 180 "$beta_bin" "$config" beta "$i" "$n" >"$logs/$name-beta-$i.log" 2>&1 & pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  # The final line of each replica: counter RSM/I: local=L submitted=N quacked=Q mirrored=M applied=A ok
  local -A local_of=()
  for f in "$logs/$name"-*.log; do
    line="$(grep '^counter .*: local=' "$f" || true)"
    echo "   ${line:-$(basename "$f"): no result line}"
    [[ "$line" =~ ^counter\ ([a-z]+)/([0-9]+):\ local=(-?[0-9]+)\ submitted=([0-9]+)\ quacked=([0-9]+)\ mirrored=(-?[0-9]+)\ applied=([0-9]+)\ ok$ ]] || {
      echo "   FAILED: $(basename "$f"):"; sed 's/^/     /' "$f"; failed=1; continue; }
    local rsm="${BASH_REMATCH[1]}" l="${BASH_REMATCH[3]}" q="${BASH_REMATCH[5]}" a="${BASH_REMATCH[7]}"
    if [[ "$q" != "$n" || "$a" != "$n" ]]; then echo "   FAILED: $rsm quacked $q / applied $a of $n"; failed=1; fi
    if [[ -n "${local_of[$rsm]:-}" && "${local_of[$rsm]}" != "$l" ]]; then
      echo "   FAILED: replicas of $rsm disagree on their local counter"; failed=1
    fi
    local_of[$rsm]="$l"
  done
  for f in "$logs/$name"-*.log; do
    line="$(grep '^counter .*: local=' "$f" || true)"
    [[ "$line" =~ ^counter\ ([a-z]+)/[0-9]+:.*\ mirrored=(-?[0-9]+) ]] || continue
    local rsm="${BASH_REMATCH[1]}" m="${BASH_REMATCH[2]}" other=alpha
    [[ "$rsm" == alpha ]] && other=beta
    if [[ "$m" != "${local_of[$other]:-none}" ]]; then
      echo "   FAILED: $(basename "$f" .log) mirrored $m but $other's counter is ${local_of[$other]:-unknown}"; failed=1
    fi
  done
  if (( failed )); then echo "== counter round '$name' FAILED"; return 1; fi
  echo "== counter round '$name' ok: every replica of each RSM mirrored all $n increments of the other"
}

round c "$counter" "$counter"
if [[ -n "$replica" ]]; then round c-and-cpp "$counter" "$replica"; fi
