#!/usr/bin/env bash
# Paired comparison with coturn under bench.sh's load: one `switchboard turn` and one coturn,
# started side by side; each round runs the same uclient load once against each, in a random
# order, and takes the ratio of the two (switchboard / coturn, relayed packets per CPU
# second). A ratio of two runs a few seconds apart cancels the slow drift of a shared
# machine's state, which moves both servers' absolute rates by ±10 % between sessions.
# Prints every round, the median ratio, a bootstrap 95 % interval for it, and how many
# rounds were at or above coturn.
#
#   scripts/turn-interop/paired.sh path/to/switchboard [rounds] [size] [messages]
#   PIN=1 scripts/turn-interop/paired.sh …   servers on CPU 0, client and peer on CPU 1
#   COTURN_ARGS=--relay-threads=1 scripts/turn-interop/paired.sh …   extra turnserver options
set -euo pipefail
BIN=${1:?path of the switchboard binary}
ROUNDS=${2:-20}
SIZE=${3:-100}
MESSAGES=${4:-4000}
SECRET=bench-secret
PEER_PORT=34990
SERVER_CPU=()
CLIENT_CPU=()
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }

"${CLIENT_CPU[@]}" turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PEER=$!
"${SERVER_CPU[@]}" "$BIN" turn --host 127.0.0.1 --turn-port 34981 --admin-port 0 --turn-public-ip 127.0.0.1 \
    --turn-secrets "$SECRET" --turn-allow-loopback --turn-relay-ports 61000-61999 --log-level error >/dev/null 2>&1 &
PS=$!
"${SERVER_CPU[@]}" turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 -p 34982 --use-auth-secret \
    --static-auth-secret="$SECRET" --realm=switchboard --allow-loopback-peers --no-tls --no-dtls \
    --min-port=62000 --max-port=62999 --no-cli --log-file=stdout ${COTURN_ARGS:-} >/dev/null 2>&1 &
PC=$!
trap 'kill -9 $PEER $PS $PC 2>/dev/null || true' EXIT
sleep 1
user="$(( $(date +%s) + 3600 )):bench:peer"
pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)

run() {
    local pid=$1 port=$2 before after received
    before=$(cpu_ns "$pid")
    received=$("${CLIENT_CPU[@]}" turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$port" \
        -m 20 -n "$MESSAGES" -l "$SIZE" -z 1 -c 127.0.0.1 2>&1 | grep -o 'tot_recv_msgs=[0-9]*' | tail -1 | cut -d= -f2)
    after=$(cpu_ns "$pid")
    python3 -c "print(round(2 * ${received:-0} / (($after - $before) / 1e9)))"
}

ours=() theirs=()
for _ in $(seq "$ROUNDS"); do
    if [ $((RANDOM % 2)) = 0 ]; then
        s=$(run "$PS" 34981); c=$(run "$PC" 34982)
    else
        c=$(run "$PC" 34982); s=$(run "$PS" 34981)
    fi
    ours+=("$s"); theirs+=("$c")
done
python3 - "${ours[*]}" "${theirs[*]}" <<'PY'
import random, statistics, sys
ours, theirs = ([int(x) for x in arg.split()] for arg in sys.argv[1:3])
ratios = [s / c for s, c in zip(ours, theirs)]
for index, (s, c, r) in enumerate(zip(ours, theirs, ratios), 1):
    print(f"round {index:2d}: switchboard {s:7d}  coturn {c:7d}  ratio {r:.3f}")
rng = random.Random(1)
medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(10000))
low, high = medians[249], medians[9749]
print(f"medians: switchboard {statistics.median(ours):.0f}, coturn {statistics.median(theirs):.0f} relayed packets per CPU second")
print(f"paired ratio switchboard/coturn: median {statistics.median(ratios):.3f}, "
      f"95 % bootstrap interval {low:.3f}–{high:.3f}, rounds at or above coturn {sum(r >= 1 for r in ratios)} of {len(ratios)}")
PY
