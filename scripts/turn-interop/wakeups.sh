#!/usr/bin/env bash
# Context switches (the node's threads going to sleep and being woken) and CPU per relayed
# packet under bench.sh's load, for `switchboard turn` with each of the given relay loop
# counts, alternating, ROUNDS times: how wake-ups weigh against the number of loops.
#
#   scripts/turn-interop/wakeups.sh path/to/switchboard [size] [loops…]   (default 100, 1 2)
#   ROUNDS=3 (default)
set -euo pipefail
BIN=${1:?path of the switchboard binary}
SIZE=${2:-100}
COUNTS=("${@:3}")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1 2)
MESSAGES=4000
# shellcheck source=bench-common.sh
source "$(dirname "$0")/bench-common.sh"

# voluntary and involuntary context switches over all threads of PID
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }

start_peer
trap 'kill -9 $PEER ${NODE:-} 2>/dev/null || true' EXIT
bench_credentials
for _ in $(seq "${ROUNDS:-3}"); do
    for loops in "${COUNTS[@]}"; do
        NODE=$(SWITCHBOARD_ARGS="--turn-relay-loops $loops" start_switchboard "$BIN" 34981 61000-61999)
        sleep 1.5
        c0=$(switches "$NODE"); t0=$(cpu_ns "$NODE")
        output=$(mktemp /tmp/switchboard-turn-wakeups.XXXXXX)
        received=$(uclient_run 34981 "$output")
        rm -f "$output"
        c1=$(switches "$NODE"); t1=$(cpu_ns "$NODE")
        python3 -c "p = 2 * ${received:-0}; print(f'loops=$loops: {p} relayed packets, {($c1 - $c0) / p:.3f} context switches and {($t1 - $t0) / p:.0f} ns of CPU per packet')"
        kill -9 "$NODE"
        sleep 0.5
    done
done
