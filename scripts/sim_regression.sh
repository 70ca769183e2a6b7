#!/usr/bin/env bash
# Records or compares `picsou sim --json` reports for a fixed set of scenarios, to show that a
# refactoring of the engine or the simulator changed no behaviour: the simulator is
# deterministic and its report holds no wall-clock values, so the same build inputs must give
# byte-identical reports.
#
#   scripts/sim_regression.sh record /tmp/sim-baseline      # before the change
#   scripts/sim_regression.sh compare /tmp/sim-baseline     # after it: exit 1 on any difference
#
# PICSOU=path/to/picsou selects the binary (default: target/release/picsou).
set -euo pipefail

mode=${1:?usage: $0 record|compare DIR}
dir=${2:?usage: $0 record|compare DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PICSOU:-$root/target/release/picsou}
[[ -x $bin ]] || { echo "no binary at $bin (cargo build --release -p picsou-cli)" >&2; exit 2; }

# name | arguments of `picsou sim`
scenarios=(
  "n4-100B|--n 4"
  "n7-100B|--n 7"
  "n4-1MB|--n 4 --size 1000000 --messages 500"
  "n7-1MB|--n 7 --size 1000000 --messages 500"
  "ost|--strategy ost"
  "ata|--strategy ata"
  "ll|--strategy ll"
  "otu|--strategy otu"
  "crash-s0-r2|--n 7 --crash s0,r2"
  "byz-inflate-ack|--fault bft --byzantine r1=inflate-ack"
  "byz-zero-ack|--fault bft --byzantine r1=zero-ack"
  "byz-stale-ack|--fault bft --byzantine r1=stale-ack"
  "byz-lie-phi|--fault bft --byzantine r1=lie-phi"
  "byz-forge|--fault bft --byzantine s1=forge"
  "byz-silent|--fault bft --byzantine s1=silent"
  "byz-no-rebroadcast|--fault bft --byzantine r1=no-rebroadcast"
  "loss-0.01|--loss 0.01"
  "stake-4111|--stake 4,1,1,1"
  "wan|--scenario $root/examples/sim/wan.toml --n 4 --messages 200"
  "otu-crash-s0|--strategy otu --crash s0"
  "cft-n5-jitter|--fault cft --n 5 --jitter-ms 0.5 --seed 7"
  # Longer runs that exercise the timers (keep-alives, suspicion, repairs, backoff).
  "zero-ack-slow|--fault bft --byzantine r1=zero-ack --nic-mbps 100 --messages 20000"
  "lie-phi-loss|--fault bft --byzantine r1=lie-phi --loss 0.02 --jitter-ms 0.3"
  "stale-ack-slow|--fault bft --byzantine r1=stale-ack --nic-mbps 200"
  "inflate-ack-crash-n7|--n 7 --fault bft --byzantine r1=inflate-ack --crash s2"
  "partition|--partition 1-50 --nic-mbps 1000 --messages 20000"
  "crash-mid-n7|--n 7 --crash s1@1,r3@1 --nic-mbps 1000"
  "loss-0.05-n7|--n 7 --loss 0.05 --jitter-ms 1"
  "local-loss-n7|--n 7 --local-loss 0.05 --size 10000 --messages 3000"
  "n19-mixed|--n 19 --crash s2,s5 --byzantine r1=no-rebroadcast,s7=forge --messages 5000"
  "n7-1MB-crash-loss|--n 7 --size 1000000 --messages 300 --crash r1 --loss 0.01"
  "otu-silent|--strategy otu --byzantine s1=silent --nic-mbps 500"
  "ll-crash-r3|--strategy ll --crash r3 --nic-mbps 1000"
  "ata-loss|--strategy ata --loss 0.05 --jitter-ms 0.5 --seed 3"
  "no-rebroadcast-n7-loss|--n 7 --fault bft --byzantine r0=no-rebroadcast,r4=zero-ack --local-loss 0.05 --nic-mbps 500"
)

mkdir -p "$dir"
status=0
for entry in "${scenarios[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  out=$(mktemp)
  # shellcheck disable=SC2086
  "$bin" sim --json $args >"$out" 2>/dev/null || true
  case $mode in
    record) mv "$out" "$dir/$name.json"; echo "recorded $name" ;;
    compare)
      if cmp -s "$out" "$dir/$name.json"; then
        echo "identical $name"
      else
        echo "DIFFERENT $name"; diff <(tr ',' '\n' <"$dir/$name.json") <(tr ',' '\n' <"$out") | head -20 || true
        status=1
      fi
      rm -f "$out" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done
exit $status
