#!/usr/bin/env bash
# Memory per TURN allocation: RSS of `switchboard turn` (or coturn) before and after M
# turnutils_uclient clients each hold an allocation (-h keeps them).
#   WAIT=35 scripts/turn-interop/mem.sh path/to/switchboard|coturn [M]
#   SWITCHBOARD_ARGS='--turn-relay-loops 1' scripts/turn-interop/mem.sh …   extra `switchboard turn` options
# Our node answers at most 10 unauthenticated requests per second per source address (the
# 401 challenge of every Allocate counts), so M clients from one address need M/10 seconds:
# set WAIT accordingly. Needs `ulimit -n` above 2×M.
set -euo pipefail
BIN=${1:?path of the switchboard executable, or coturn}
M=${2:-300}
WAIT=${WAIT:-35}
SECRET=bench-secret
PEER_PORT=34990
PORT=34981
PIDS=()
trap 'kill -9 "${PIDS[@]}" 2>/dev/null || true' EXIT

turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
if [ "$BIN" = coturn ]; then
    turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 -p "$PORT" --use-auth-secret \
        --static-auth-secret="$SECRET" --realm=switchboard --allow-loopback-peers --no-tls --no-dtls \
        --min-port=50000 --max-port=59999 --no-cli --log-file=stdout >/dev/null 2>&1 &
else
    # shellcheck disable=SC2086 # SWITCHBOARD_ARGS is a list of options
    "$BIN" turn --host 127.0.0.1 --turn-port "$PORT" --admin-port 0 --turn-public-ip 127.0.0.1 \
        --turn-secrets "$SECRET" --turn-allow-loopback --turn-relay-ports 50000-59999 --log-level error ${SWITCHBOARD_ARGS:-} >/dev/null 2>&1 &
fi
SERVER=$!
PIDS+=("$SERVER")
sleep 1.5
user="$(( $(date +%s) + 3600 )):bench:peer"
pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)
# A few allocations first, so one-time costs are in the baseline.
turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$PORT" -m 10 -n 5 -z 5 -c 127.0.0.1 >/dev/null 2>&1
sleep 1
before=$(awk '/VmRSS/{print $2}' "/proc/$SERVER/status")
turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$PORT" -m "$M" -n 2 -z 20 -h -c 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
sleep "$WAIT"
after=$(awk '/VmRSS/{print $2}' "/proc/$SERVER/status")
descriptors=$(ls "/proc/$SERVER/fd" | wc -l)
python3 -c "print(f'$BIN: RSS {$before} KB -> {$after} KB with $M clients holding allocations ({$descriptors} open descriptors): {($after-$before)/$M:.1f} KB per allocation')"
