#!/usr/bin/env bash
# Side-by-side relay benchmark: `switchboard serve` (embedded mode) against a minimal
# python-socketio relay (server.py, aiohttp), same Python client process model on both
# sides (client.py). Prints one line per server: messages, server CPU µs per relayed
# message, round-trip p50/p99. Exits 1 if a client failed (errors, lost messages).
#
#   scripts/bench-socketio/run.sh path/to/switchboard [messages]
#
# Environment:
#   BENCH_VENV      Python venv (default ${TMPDIR:-/tmp}/sb-sio-venv; created and filled
#                   from PyPI when missing)
#   BENCH_TARGETS   "switchboard socketio" (default); any of switchboard, socketio (server.py
#                   on aiohttp), socketio-uvicorn (server.py as ASGI under uvicorn[standard]),
#                   socketio-raw (server.py on aiohttp, driven by a hand-written socket.io client
#                   on `websockets`, the same client code path as for switchboard)
#   BENCH_RATE      0 (default) = sequential round trips; R = pipelined, R messages/s
#   BENCH_WARMUP    warm-up messages (default 1000)
#   BENCH_SPACERS   switchboard: HTTP requests between connecting A and B (default 0): with
#                   SWITCHBOARD_EVENT_LOOPS=N this picks whether A and B share an event loop
#   BENCH_PERF      a file: `perf record -g` the switchboard node during its measured run
#   SWITCHBOARD_EVENT_LOOPS etc. are passed to `switchboard serve` as usual.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: run.sh path/to/switchboard [messages]}
messages=${2:-20000}
[[ -x "$bin" ]] || { echo "no executable at $bin" >&2; exit 2; }
bin=$(realpath "$bin")
venv=${BENCH_VENV:-${TMPDIR:-/tmp}/sb-sio-venv}
targets=${BENCH_TARGETS:-switchboard socketio}
rate=${BENCH_RATE:-0}
warmup=${BENCH_WARMUP:-1000}
requirements=(python-socketio==5.18.1 python-engineio==4.15.1 aiohttp==3.14.5 websockets==17.4)

if ! "$venv/bin/python" -c 'import socketio, aiohttp, websockets' 2>/dev/null; then
    echo "== installing ${requirements[*]} into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
fi
py="$venv/bin/python"
if [[ " $targets " == *" socketio-uvicorn "* ]] && ! "$py" -c 'import uvicorn, uvloop' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'uvicorn[standard]==0.55.0'
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sb-sio-bench.XXXXXX")
pids=()
failed=0
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_ports() { # N: N distinct free TCP ports on 127.0.0.1, one line
    "$py" -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

wait_http() { # URL: until it answers (any status), 20 s at most
    local url=$1
    for _ in $(seq 200); do
        if "$py" -c "import sys, urllib.request, urllib.error
try: urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError: pass
except Exception: sys.exit(1)" "$url" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing answers at $url" >&2
    return 1
}

client_args=(--messages "$messages" --warmup "$warmup" --rate "$rate")
echo "messages=$messages warmup=$warmup rate=$rate (0 = sequential) payload=256 B; load: $(cut -d' ' -f1-3 /proc/loadavg)"

for target in $targets; do
    case $target in
    switchboard)
        read -r port admin_port < <(free_ports 2)
        token=$("$py" -c 'import secrets; print(secrets.token_urlsafe(24))')
        (cd "$work" && exec "$bin" serve --host 127.0.0.1 --port "$port" --admin-port "$admin_port" \
            --admin-token "$token" --log-level warning --sqlite-path "$work/switchboard.sqlite" \
            --master-key-file "$work/switchboard.key" --turn-embedded false \
            --audit-spill-dir "$work/audit-spill" >"$work/switchboard.log" 2>&1) &
        server=$!
        pids+=("$server")
        wait_http "http://127.0.0.1:$admin_port/readyz" || { cat "$work/switchboard.log" >&2; exit 1; }
        perf_pid=""
        if [[ -n "${BENCH_PERF:-}" ]]; then
            perf record -g -o "$BENCH_PERF" -p "$server" 2>"$work/perf.log" &
            perf_pid=$!
            sleep 0.5
        fi
        "$py" "$here/client.py" --target switchboard --url "http://127.0.0.1:$port" --admin-token "$token" \
            --server-pid "$server" --label "switchboard" --spacers "${BENCH_SPACERS:-0}" "${client_args[@]}" || { echo "switchboard: client failed" >&2; failed=1; }
        if [[ -n "$perf_pid" ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
        ;;
    socketio | socketio-uvicorn | socketio-raw)
        mode=aiohttp label=socket.io client=socketio
        [[ $target == socketio-uvicorn ]] && mode=uvicorn label=sio-uvicorn
        [[ $target == socketio-raw ]] && label=sio-raw client=socketio-raw
        port=$(free_ports 1)
        "$py" "$here/server.py" --host 127.0.0.1 --port "$port" --mode "$mode" >"$work/$target.log" 2>&1 &
        server=$!
        pids+=("$server")
        wait_http "http://127.0.0.1:$port/socket.io/?EIO=4&transport=polling" || { cat "$work/$target.log" >&2; exit 1; }
        "$py" "$here/client.py" --target "$client" --url "http://127.0.0.1:$port" \
            --server-pid "$server" --label "$label" "${client_args[@]}" || { echo "$label: client failed" >&2; failed=1; }
        ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
    esac
    # Stop this server before the next one runs: one server on the machine at a time.
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
done
exit $failed
