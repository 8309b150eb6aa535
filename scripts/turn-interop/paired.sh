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
#   SWITCHBOARD_ARGS='--turn-relay-loops 1' scripts/turn-interop/paired.sh …   extra
#       `switchboard turn` options (by default it relays on one event loop per core)
set -euo pipefail
BIN=${1:?path of the switchboard binary}
ROUNDS=${2:-20}
SIZE=${3:-100}
MESSAGES=${4:-4000}
# shellcheck source=bench-common.sh
source "$(dirname "$0")/bench-common.sh"

start_peer
PS=$(start_switchboard "$BIN" 34981 61000-61999)
PC=$(start_coturn 34982)
trap 'kill -9 $PEER $PS $PC 2>/dev/null || true' EXIT
# both servers still running, or the figures are not what they claim
all_running() {
    kill -0 "$PS" 2>/dev/null || { echo "switchboard exited" >&2; exit 1; }
    kill -0 "$PC" 2>/dev/null || { echo "coturn exited" >&2; exit 1; }
}
sleep 2
all_running
bench_credentials

ours=() theirs=()
for _ in $(seq "$ROUNDS"); do
    if [ $((RANDOM % 2)) = 0 ]; then
        s=$(relay_rate "$PS" 34981); c=$(relay_rate "$PC" 34982)
    else
        c=$(relay_rate "$PC" 34982); s=$(relay_rate "$PS" 34981)
    fi
    all_running
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
