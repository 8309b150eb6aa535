#!/usr/bin/env bash
# Relays the same load through `switchboard turn` and through coturn on this machine with
# coturn's turnutils_uclient + turnutils_peer, and prints relayed packets per server CPU
# second (messages received by the client, each relayed twice: to the peer and back).
# Server CPU is the sum of its threads' run time in /proc/PID/task/*/schedstat (nanoseconds;
# the clock ticks of /proc/PID/stat are 10 ms, too coarse for a 5-second run), and it prints
# the client's round trip and jitter (turnutils_uclient measures them in whole milliseconds).
#
#   scripts/turn-interop/bench.sh path/to/switchboard [clients] [messages] [size]
#   PIN=1 scripts/turn-interop/bench.sh …   the servers on CPU 0, the client and the peer on
#                                            CPU 1 (taskset): both servers wake the clients
#                                            across CPUs alike, instead of however the
#                                            scheduler places them
#   ROUNDS=N scripts/turn-interop/bench.sh …  N alternating runs against each server, then
#                                            the median of each and their ratio (one run on a
#                                            shared 2-vCPU machine varies by ±5 %)
set -euo pipefail
SWITCHBOARD=${1:?path of the switchboard executable}
CLIENTS=${2:-20}
MESSAGES=${3:-2000}
SIZE=${4:-100}
# shellcheck source=bench-common.sh
source "$(dirname "$0")/bench-common.sh"
OUTPUT=$(mktemp /tmp/switchboard-turn-bench.XXXXXX)
RESULTS=$(mktemp /tmp/switchboard-turn-bench-results.XXXXXX)
TURN_PORT=34981
COTURN_PORT=34982

measure() {
    local name=$1 pid=$2 port=$3
    sleep 1
    local before after received
    before=$(cpu_ns "$pid")
    received=$(uclient_run "$port" "$OUTPUT")
    after=$(cpu_ns "$pid")
    python3 -c "r=$received; t=($after - $before)/1e9; print(f'$name: {r} messages echoed, server CPU {t:.3f} s, {2*r/t if t else float(\"inf\"):.0f} relayed packets per CPU second')" | tee -a "$RESULTS"
    grep -o 'Average round trip delay.*\|Average jitter.*' "$OUTPUT" | sed 's/^/    /'

}

start_peer
OURS=$(start_switchboard "$SWITCHBOARD" "$TURN_PORT" 61000-61999)
COTURN=$(start_coturn "$COTURN_PORT")
trap 'kill -9 $PEER $OURS $COTURN 2>/dev/null || true; rm -f "$OUTPUT" "$RESULTS"' EXIT
bench_credentials
echo "clients=$CLIENTS messages=$MESSAGES size=$SIZE pinned=${PIN:-0} rounds=${ROUNDS:-1}"
for _ in $(seq "${ROUNDS:-1}"); do
    measure "switchboard turn" "$OURS" "$TURN_PORT"
    measure "coturn" "$COTURN" "$COTURN_PORT"
done
if [ "${ROUNDS:-1}" -gt 1 ]; then
    python3 - "$RESULTS" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rate = line.split(":")[0], float(re.search(r"(\d+) relayed packets per CPU second", line).group(1))
    runs.setdefault(name, []).append(rate)
ours, theirs = statistics.median(runs["switchboard turn"]), statistics.median(runs["coturn"])
print(f"median: switchboard turn {ours:.0f}, coturn {theirs:.0f} relayed packets per CPU second — {ours / theirs:.2f}×")
PY
fi
