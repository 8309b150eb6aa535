#!/usr/bin/env bash
# User-space instructions per relayed packet, counted by callgrind (repeatable to the
# instruction, unlike CPU time on a shared machine), for `switchboard turn` or coturn.
#
#   scripts/turn-interop/instructions.sh path/to/switchboard|coturn [size]
#
# The node runs under `valgrind --tool=callgrind --instr-atstart=no`; after a warm-up,
# counting is switched on around two turnutils_uclient runs (10 clients × 300 and × 1,000
# messages through turnutils_peer); the difference between them is the cost of 14,000
# relayed packets without the allocations' set-up. valgrind cannot read this toolchain's
# DWARF 5, so a copy of the switchboard binary without debug sections (`strip -g`) is run.
set -euo pipefail
BIN=${1:?path of the switchboard executable, or coturn}
SIZE=${2:-100}
SECRET=bench-secret
PEER_PORT=34990
PORT=34981
work=$(mktemp -d /tmp/switchboard-turn-instructions.XXXXXX)
PIDS=()
trap 'kill -9 "${PIDS[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
user="$(( $(date +%s) + 3600 )):bench:peer"
pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)

count() { # count MESSAGES: instructions (all threads) during one client run of MESSAGES per client
    local messages=$1 server
    rm -f "$work"/cg.out*
    if [ "$BIN" = coturn ]; then
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --instr-atstart=no \
            turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 -p "$PORT" --use-auth-secret \
            --static-auth-secret="$SECRET" --realm=switchboard --allow-loopback-peers --no-tls --no-dtls \
            --min-port=62000 --max-port=62999 --no-cli --log-file=stdout >/dev/null 2>&1 &
    else
        strip -g -o "$work/switchboard" "$BIN"
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --instr-atstart=no \
            "$work/switchboard" turn --host 127.0.0.1 --turn-port "$PORT" --admin-port 0 --turn-public-ip 127.0.0.1 \
            --turn-secrets "$SECRET" --turn-allow-loopback --turn-relay-ports 61000-61999 --log-level error >/dev/null 2>&1 &
    fi
    server=$!
    PIDS+=("$server")
    sleep 8
    turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$PORT" -m 10 -n 20 -l "$SIZE" -z 5 -c 127.0.0.1 >/dev/null 2>&1
    callgrind_control -i on "$server" >/dev/null
    received=$(turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$PORT" -m 10 -n "$messages" -l "$SIZE" \
        -z 5 -c 127.0.0.1 2>&1 | grep -o 'tot_recv_msgs=[0-9]*' | tail -1 | cut -d= -f2)
    callgrind_control -i off "$server" >/dev/null
    callgrind_control -d "$server" >/dev/null
    sleep 1
    kill -9 "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    local instructions
    instructions=$(cat "$work"/cg.out* | awk '/^totals:/ {s += $2} END {print s}')
    echo "$instructions $received"
}

read -r small small_received < <(count 300)
read -r large large_received < <(count 1000)
python3 - "$BIN" "$SIZE" "$small" "$small_received" "$large" "$large_received" <<'PY'
import sys
name, size, small, small_rx, large, large_rx = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
packets = 2 * (large_rx - small_rx)  # each echoed message is relayed twice
print(f"{name}, {size} B: {small:,} instructions for {small_rx} messages, {large:,} for {large_rx}: "
      f"{(large - small) / packets:,.0f} user-space instructions per relayed packet")
PY
