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
SECRET=bench-secret
PEER_PORT=34990
SERVER_CPU=()
CLIENT_CPU=()
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
start() {
    "${SERVER_CPU[@]}" "$1" turn --host 127.0.0.1 --turn-port "$2" --admin-port 0 --turn-public-ip 127.0.0.1 \
        --turn-secrets "$SECRET" --turn-allow-loopback --turn-relay-ports "$3" --log-level error >/dev/null 2>&1 &
    echo $!
}

"${CLIENT_CPU[@]}" turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PEER=$!
PA=$(start "$A" 34981 61000-61999)
PB=$(start "$B" 34983 63000-63999)
"${SERVER_CPU[@]}" turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 -p 34982 --use-auth-secret \
    --static-auth-secret="$SECRET" --realm=switchboard --allow-loopback-peers --no-tls --no-dtls \
    --min-port=62000 --max-port=62999 --no-cli --log-file=stdout >/dev/null 2>&1 &
PC=$!
trap 'kill -9 $PEER $PA $PB $PC 2>/dev/null || true' EXIT
sleep 1
user="$(( $(date +%s) + 3600 )):bench:peer"
pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)

run() {
    local pid=$1 port=$2 before after received
    before=$(cpu_ns "$pid")
    received=$("${CLIENT_CPU[@]}" turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$port" \
        -m 20 -n "$MESSAGES" -l "$SIZE" -z 1 -c 127.0.0.1 2>&1 | grep -o 'tot_recv_msgs=[0-9]*' | tail -1 | cut -d= -f2)
    after=$(cpu_ns "$pid")
    python3 -c "print(round(2 * $received / (($after - $before) / 1e9)))"
}

ra=() rb=() rc=()
for _ in $(seq "$ROUNDS"); do
    ra+=("$(run "$PA" 34981)")
    rb+=("$(run "$PB" 34983)")
    rc+=("$(run "$PC" 34982)")
done
python3 - "${ra[*]}" "${rb[*]}" "${rc[*]}" <<'PY'
import statistics, sys
a, b, c = ([int(x) for x in arg.split()] for arg in sys.argv[1:4])
print("A     ", a); print("B     ", b); print("coturn", c)
ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
print(f"medians: A {ma:.0f}, B {mb:.0f}, coturn {mc:.0f} relayed packets per CPU second — "
      f"B/A {mb / ma:.3f}, A/coturn {ma / mc:.2f}, B/coturn {mb / mc:.2f}")
PY
