#!/usr/bin/env bash
# Relays the same load through `switchboard turn` and through coturn on this machine with
# coturn's turnutils_uclient + turnutils_peer, and prints relayed packets per server CPU
# second (messages received by the client, each relayed twice: to the peer and back).
#
#   scripts/turn-interop/bench.sh path/to/switchboard [clients] [messages] [size]
set -euo pipefail
SWITCHBOARD=${1:?path of the switchboard executable}
CLIENTS=${2:-20}
MESSAGES=${3:-2000}
SIZE=${4:-100}
SECRET=bench-secret
PEER_PORT=34990
TURN_PORT=34981
COTURN_PORT=34982

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_client() {
    local port=$1
    local user="$(( $(date +%s) + 3600 )):bench:peer"
    local pass
    pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)
    turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$port" \
        -m "$CLIENTS" -n "$MESSAGES" -l "$SIZE" -z 1 -c 127.0.0.1 2>&1 | grep -o 'tot_recv_msgs=[0-9]*' | tail -1 | cut -d= -f2
}

measure() {
    local name=$1 pid=$2 port=$3
    sleep 1
    local before after received
    before=$(cpu_ticks "$pid")
    received=$(run_client "$port")
    after=$(cpu_ticks "$pid")
    local ticks=$(( after - before ))
    local hz
    hz=$(getconf CLK_TCK)
    python3 -c "r=$received; t=$ticks/$hz; print(f'$name: {r} messages echoed, server CPU {t:.2f} s, {2*r/t if t else float(\"inf\"):.0f} relayed packets per CPU second')"
}

turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PEER=$!
"$SWITCHBOARD" turn --host 127.0.0.1 --turn-port "$TURN_PORT" --admin-port 0 --turn-public-ip 127.0.0.1 \
    --turn-secrets "$SECRET" --turn-allow-loopback --turn-relay-ports 61000-61999 --log-level error >/dev/null 2>&1 &
OURS=$!
turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 -p "$COTURN_PORT" --use-auth-secret \
    --static-auth-secret="$SECRET" --realm=switchboard --allow-loopback-peers --no-tls --no-dtls \
    --min-port=62000 --max-port=62999 --no-cli --log-file=stdout >/dev/null 2>&1 &
COTURN=$!
trap 'kill -9 $PEER $OURS $COTURN 2>/dev/null || true' EXIT
echo "clients=$CLIENTS messages=$MESSAGES size=$SIZE"
measure "switchboard turn" "$OURS" "$TURN_PORT"
measure "coturn" "$COTURN" "$COTURN_PORT"
