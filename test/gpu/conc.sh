#!/bin/bash
# test/gpu/conc.sh BATCH [LEVELS] [SECONDS] - concurrency slowdown on a real GPU.
#
# For each level k of LEVELS (default "1 2 4 6") it starts k copies of
# test/gpu/torch_infer.py with batch size BATCH, waits until every copy has
# warmed up, then lets them all run inferences back to back for SECONDS
# (default 4) in one shared window (no MPS: the GPU time-slices their
# contexts). It prints one JSON line: each copy's median latency per level
# and the slowdown per level (mean median over the level-1 median). With
# CONC_DEADLINE (unix seconds) set it starts no level that could end after it.
set -u
BATCH=${1:?usage: conc.sh BATCH [LEVELS] [SECONDS]}
LEVELS=${2:-1 2 4 6}
SEC=${3:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
: >"$TMP/conc.txt"
for k in $LEVELS; do
	# a level takes at most 60 s to warm up plus the window and some slack
	if [ -n "${CONC_DEADLINE:-}" ] && [ $(($(date +%s) + 70 + ${SEC%.*})) -gt "$CONC_DEADLINE" ]; then
		break
	fi
	rm -f "$TMP"/ready.* "$TMP/go"
	pids=
	for i in $(seq 1 "$k"); do
		timeout 90 python3 "$HERE/torch_infer.py" --batch "$BATCH" --seconds "$SEC" \
			--ready-file "$TMP/ready.$i" --go-file "$TMP/go" >"$TMP/c$k.$i.out" 2>&1 &
		pids="$pids $!"
	done
	for _ in $(seq 1 600); do
		[ "$(find "$TMP" -maxdepth 1 -name 'ready.*' | wc -l)" -ge "$k" ] && break
		# a copy that died (no torch, no GPU) will never be ready
		alive=0
		for p in $pids; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
		[ "$alive" -lt "$k" ] && break
		sleep 0.1
	done
	touch "$TMP/go"
	# shellcheck disable=SC2086
	wait $pids
	for i in $(seq 1 "$k"); do
		printf '%s %s\n' "$k" "$(grep -E '^\{' "$TMP/c$k.$i.out" | tail -n 1 |
			python3 -c 'import json, sys
try:
    print(json.loads(sys.stdin.read()).get("median_ms", ""))
except ValueError:
    print("")')"
	done >>"$TMP/conc.txt"
	tail -n 3 "$TMP"/c"$k".*.out >&2
done
python3 - "$TMP/conc.txt" "$BATCH" <<'PY'
import collections, json, statistics, sys
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) != 2:
        continue
    try:
        by[parts[0]].append(float(parts[1]))
    except ValueError:
        pass
out = {"batch": int(sys.argv[2]), "median_ms": by}
if by.get("1"):
    base = statistics.fmean(by["1"])
    out["slowdown"] = {k: round(statistics.fmean(v) / base, 3) for k, v in by.items() if v}
print(json.dumps(out))
PY
