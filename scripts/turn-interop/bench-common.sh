# Shared by bench.sh, compare.sh and paired.sh (sourced, not run): the servers, the peer,
# the credentials and the CPU accounting of the TURN benchmark.
#
#   PIN=1   servers on CPU 0, client and peer on CPU 1 (taskset): both servers wake the
#           clients across CPUs alike, instead of however the scheduler places them

SECRET=bench-secret
PEER_PORT=34990
SERVER_CPU=()
CLIENT_CPU=()
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi

# The CPU time of every thread of the given processes (a space-separated list), in
# nanoseconds: /proc's schedstat, as the clock ticks of /proc/PID/stat (10 ms) are too coarse
# for a run of half a second. awk's %d stops at 2^31 in mawk, hence %.0f.
cpu_ns() { for p in $1; do cat /proc/"$p"/task/*/schedstat; done 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }

# coturn's echo peer, in the background; its pid in PEER.
start_peer() {
    "${CLIENT_CPU[@]}" turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
    PEER=$!
}

# `switchboard turn` BINARY on PORT with relay ports RANGE, plus SWITCHBOARD_ARGS, in the
# background; prints its pid.
start_switchboard() {
    # shellcheck disable=SC2086 # SWITCHBOARD_ARGS is a list of options
    "${SERVER_CPU[@]}" "$1" turn --host 127.0.0.1 --turn-port "$2" --admin-port 0 --turn-public-ip 127.0.0.1 \
        --turn-secrets "$SECRET" --turn-allow-loopback --turn-relay-ports "$3" --log-level error ${SWITCHBOARD_ARGS:-} >/dev/null 2>&1 &
    echo $!
}

# coturn on PORT with relay ports 62000–62999 and its defaults, plus COTURN_ARGS; prints its pid.
start_coturn() {
    # shellcheck disable=SC2086 # COTURN_ARGS is a list of options
    "${SERVER_CPU[@]}" turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 -p "$1" --use-auth-secret \
        --static-auth-secret="$SECRET" --realm=switchboard --allow-loopback-peers --no-tls --no-dtls \
        --min-port=62000 --max-port=62999 --no-cli --log-file=stdout ${COTURN_ARGS:-} >/dev/null 2>&1 &
    echo $!
}

# REST credentials (SPEC §6) valid for an hour, in user and pass.
bench_credentials() {
    user="$(( $(date +%s) + 3600 )):bench:peer"
    pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)
}

# One uclient run of CLIENTS × MESSAGES messages of SIZE bytes through the server on PORT,
# its whole output to FILE; prints how many messages came back.
uclient_run() {
    "${CLIENT_CPU[@]}" turnutils_uclient -u "$user" -w "$pass" -e 127.0.0.1 -r "$PEER_PORT" -p "$1" \
        -m "${CLIENTS:-20}" -n "$MESSAGES" -l "$SIZE" -z 1 -c 127.0.0.1 > "$2" 2>&1
    grep -o 'tot_recv_msgs=[0-9]*' "$2" | tail -1 | cut -d= -f2
}

# Relayed packets per CPU second of the processes PIDS for one uclient run through PORT
# (each message echoed is relayed twice: to the peer and back).
relay_rate() {
    local before after received output
    output=$(mktemp /tmp/switchboard-turn-bench.XXXXXX)
    before=$(cpu_ns "$1")
    received=$(uclient_run "$2" "$output")
    after=$(cpu_ns "$1")
    rm -f "$output"
    python3 -c "print(round(2 * ${received:-0} / (($after - $before) / 1e9)))"
}
