#!/usr/bin/env bash
# Three-way alternating comparison under bench.sh's load: two `switchboard` builds (A, B) and
# coturn, started side by side, then round after round one uclient run against each, so that
# all three see the same state of a shared machine. Prints each server's relayed packets per
# CPU second per round, the medians and their ratios.
#
#   scripts/turn-interop/compare.sh path/to/switchboard-A path/to/switchboard-B [rounds] [size] [messages]
#   PIN=1 scripts/turn-interop/compare.sh …   servers on CPU 0, client and peer on CPU 1
set -euo pipefail
A=${1:?path of switchboard build A}
B=${2:?path of switchboard build B}
ROUNDS=${3:-6}
SIZE=${4:-100}
MESSAGES=${5:-4000}
# shellcheck source=bench-common.sh
source "$(dirname "$0")/bench-common.sh"

start_peer
PA=$(start_switchboard "$A" 34981 61000-61999)
PB=$(start_switchboard "$B" 34983 63000-63999)
PC=$(start_coturn 34982)
trap 'kill -9 $PEER $PA $PB $PC 2>/dev/null || true' EXIT
sleep 1
bench_credentials

ra=() rb=() rc=()
for _ in $(seq "$ROUNDS"); do
    ra+=("$(relay_rate "$PA" 34981)")
    rb+=("$(relay_rate "$PB" 34983)")
    rc+=("$(relay_rate "$PC" 34982)")
done
python3 - "${ra[*]}" "${rb[*]}" "${rc[*]}" <<'PY'
import statistics, sys
a, b, c = ([int(x) for x in arg.split()] for arg in sys.argv[1:4])
print("A     ", a); print("B     ", b); print("coturn", c)
ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
print(f"medians: A {ma:.0f}, B {mb:.0f}, coturn {mc:.0f} relayed packets per CPU second — "
      f"B/A {mb / ma:.3f}, A/coturn {ma / mc:.2f}, B/coturn {mb / mc:.2f}")
PY
