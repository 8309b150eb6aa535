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
SECRET=bench-secret
SERVER_CPU=()
CLIENT_CPU=()
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi
PEER_PORT=34990
OUTPUT=$(mktemp /tmp/switchboard-turn-bench.XXXXXX)
RESULTS=$(mktemp /tmp/switchboard-turn-bench-results.XXXXXX)
TURN_PORT=34981
COTURN_PORT=34982

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }  # %d stops at 2^31 in mawk

run_client() {
    local port=$1
    local user="$(( $(date +%s) + 3600 )):bench:peer"
    local pass
    pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)
    "${CLIENT_CPU[@]}" turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$port" \
        -m "$CLIENTS" -n "$MESSAGES" -l "$SIZE" -z 1 -c 127.0.0.1 > "$OUTPUT" 2>&1
    grep -o 'tot_recv_msgs=[0-9]*' "$OUTPUT" | tail -1 | cut -d= -f2
}

measure() {
    local name=$1 pid=$2 port=$3
    sleep 1
    local before after received
    before=$(cpu_ns "$pid")
    received=$(run_client "$port")
    after=$(cpu_ns "$pid")
    python3 -c "r=$received; t=($after - $before)/1e9; print(f'$name: {r} messages echoed, server CPU {t:.3f} s, {2*r/t if t else float(\"inf\"):.0f} relayed packets per CPU second')" | tee -a "$RESULTS"
    grep -o 'Average round trip delay.*\|Average jitter.*' "$OUTPUT" | sed 's/^/    /'

}

"${CLIENT_CPU[@]}" turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PEER=$!
"${SERVER_CPU[@]}" "$SWITCHBOARD" turn --host 127.0.0.1 --turn-port "$TURN_PORT" --admin-port 0 --turn-public-ip 127.0.0.1 \
    --turn-secrets "$SECRET" --turn-allow-loopback --turn-relay-ports 61000-61999 --log-level error >/dev/null 2>&1 &
OURS=$!
"${SERVER_CPU[@]}" turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 -p "$COTURN_PORT" --use-auth-secret \
    --static-auth-secret="$SECRET" --realm=switchboard --allow-loopback-peers --no-tls --no-dtls \
    --min-port=62000 --max-port=62999 --no-cli --log-file=stdout >/dev/null 2>&1 &
COTURN=$!
trap 'kill -9 $PEER $OURS $COTURN 2>/dev/null || true; rm -f "$OUTPUT" "$RESULTS"' EXIT
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
