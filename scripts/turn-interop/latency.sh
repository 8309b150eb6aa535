#!/usr/bin/env bash
# Round-trip latency of one relayed ping (client → TURN → turnutils_peer → TURN → client)
# through `switchboard turn` and through coturn on this machine, idle otherwise, with the
# same client (latency.py: aioice from PyPI, in the venv of run-ci).
#
#   scripts/turn-interop/latency.sh path/to/switchboard [count] [size]
set -euo pipefail
cd "$(dirname "$0")/../.."
SWITCHBOARD=$(realpath "${1:?path of the switchboard executable}")
COUNT=${2:-2000}
SIZE=${3:-100}
SECRET=bench-secret
PEER_PORT=34990
TURN_PORT=34981
COTURN_PORT=34982
venv=${INTEROP_VENV:-.venv-interop}
if ! "$venv/bin/python" -c 'import aioice' 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check aioice==0.13.0
fi

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
sleep 1
for target in "switchboard turn:$TURN_PORT" "coturn:$COTURN_PORT"; do
    printf '%s: ' "${target%%:*}"
    "$venv/bin/python" scripts/turn-interop/latency.py --server "127.0.0.1:${target##*:}" --secret "$SECRET" \
        --peer "127.0.0.1:$PEER_PORT" --count "$COUNT" --size "$SIZE"
done
