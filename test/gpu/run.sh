#!/bin/bash
# test/gpu/run.sh - Sluice's prepared real-GPU check (at most 8 minutes).
#
# On the GPU host (H100/H200, driver 580 / CUDA 13, PyTorch; no Docker, no
# network) it builds the C artifacts it needs, then:
#   1. runs the shim's test programs against the real driver,
#   2. runs the driver-API example program (build/gpu-matmul) with and
#      without LD_PRELOAD=build/libsluice.so: results checked, times compared,
#   3. measures launch overhead with and without the shim,
#   4. measures managed-memory prefetch GB/s (to device, to host), the
#      demand-fault cost and what a swap-in costs after a partial eviction,
#   5. runs a PyTorch inference with and without the shim: outputs must be
#      identical, allocations converted to managed memory, latency overhead,
# and writes $OUT/results.json and $OUT/run.log.
#
# SLUICE_GPU_DRIVER_DIR names the real driver's directory when ldconfig does
# not know it; SLUICE_GPU_MM_N, SLUICE_GPU_MM_ITERS and SLUICE_GPU_LAUNCHES
# override the matmul size, its iterations and the launch count.
# SLUICE_GPU_FAKE=1 runs the same script against the FAKE driver and
# EMULATED GPU (build/fakecuda): real-GPU-only parts are reported as skipped
# and figures are labelled emulated. SLUICE_GPU_QUICK=1 skips the shim test
# suite (used by make test-fakecuda). It never asks for more managed memory
# than a quarter of the GPU's free memory.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
OUT=${OUT:-$ROOT/build/gpu-check}
mkdir -p "$OUT"
LOG=$OUT/run.log
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
FAKE=${SLUICE_GPU_FAKE:-0}
QUICK=${SLUICE_GPU_QUICK:-0}
B=$ROOT/build
STEPS=$OUT/steps.jsonl
: >"$STEPS"
T0=$(date +%s)
DEADLINE=$((T0 + ${SLUICE_GPU_BUDGET_S:-450}))
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

log() { echo "[$(($(date +%s) - T0))s] $*"; }
left() { echo $((DEADLINE - $(date +%s))); }
# budget for a step: min(want, time left - 5), at least 1 ("timeout 0" would
# mean no limit)
budget() {
	local l; l=$(($(left) - 5))
	[ "$l" -lt 1 ] && l=1
	[ "$1" -lt "$l" ] && echo "$1" || echo "$l"
}
# record NAME STATUS SECONDS DETAIL(json object or plain text)
record() {
	local detail
	# a JSON object stays one; anything else (or broken JSON) becomes a string
	detail=$(python3 -c '
import json, sys
s = sys.argv[1]
try:
    v = json.loads(s)
    if not isinstance(v, dict):
        raise ValueError
except ValueError:
    v = s
print(json.dumps(v))' "$4")
	printf '{"name":"%s","status":"%s","seconds":%s,"detail":%s}\n' "$1" "$2" "$3" "$detail" >>"$STEPS"
	log "$1: $2"
}
# last JSON line of a file (the programs print one)
jline() { grep -E '^\{' "$1" | tail -n 1; }
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null; }

log "Sluice GPU check: mode $([ "$FAKE" = 1 ] && echo fake || echo real), out $OUT"

# ------------------------------------------------------------ environment
if [ "$FAKE" = 1 ]; then
	DRVDIR=$B/fakecuda
	export FAKECUDA_DEVICE_FILE=$TMP/emugpu FAKECUDA_CAPACITY=${FAKECUDA_CAPACITY:-8G}
	MODE=fake
else
	MODE=real
	DRVDIR=${SLUICE_GPU_DRIVER_DIR:-}
	[ -n "$DRVDIR" ] || for d in $(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 / {print $NF}' | xargs -r -n1 dirname) \
		/usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64; do
		if [ -e "$d/libcuda.so.1" ] && [ "$d" != "$B/fakecuda" ]; then DRVDIR=$d; break; fi
	done
	if [ -z "$DRVDIR" ]; then
		record environment fail 0 "no real libcuda.so.1 found (set SLUICE_GPU_FAKE=1 to use the fake driver)"
	fi
	nvidia-smi --query-gpu=name,driver_version,memory.total,memory.free --format=csv 2>&1 | tee "$TMP/smi.txt"
fi
export LD_LIBRARY_PATH=${DRVDIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
record environment pass 0 "{\"mode\":\"$MODE\",\"driver_dir\":\"$DRVDIR\",\"host\":\"$(hostname)\",\"cpus\":$(nproc)}"

# ------------------------------------------------------------------ build
s=$(date +%s)
# make's targets are relative to the repository root (rules are written
# that way; an absolute path has no rule where the file is not built yet)
TARGETS="build/libsluice.so build/gpu-matmul"
[ "$FAKE" = 1 ] && TARGETS="$TARGETS build/fakecuda/libcuda.so.1"
if [ "$QUICK" != 1 ]; then TARGETS="$TARGETS shim-test-bins"; fi
if ! command -v make >/dev/null || ! command -v cc >/dev/null; then
	# no toolchain on this host: use what was built elsewhere and carried
	missing=
	need="$B/libsluice.so $B/gpu-matmul"
	[ "$FAKE" = 1 ] && need="$need $B/fakecuda/libcuda.so.1"
	for t in $need; do [ -e "$t" ] || missing="$missing $t"; done
	if [ -z "$missing" ]; then
		record build skip 0 "no make or cc on this host: using the carried build"
	else
		record build fail 0 "no make or cc on this host and not carried:$missing"
	fi
elif timeout "$(budget 150)" make -s -j"$(nproc)" $TARGETS >"$TMP/build.out" 2>&1; then
	record build pass $(($(date +%s) - s)) "make $TARGETS"
else
	tail -n 30 "$TMP/build.out"
	record build fail $(($(date +%s) - s)) "make failed: $(tail -n 5 "$TMP/build.out" | tr '\n' ' ')"
fi
SHIM=$B/libsluice.so
GM=$B/gpu-matmul

# ------------------------------------------------- free memory and caps
FREE_MB=0
if [ "$FAKE" = 1 ]; then
	FREE_MB=$(python3 -c 'import re,os; s=os.environ["FAKECUDA_CAPACITY"]; m=re.match(r"(\d+)([MG]?)",s); print(int(m.group(1))*(1024 if m.group(2)=="G" else 1))')
else
	FREE_MB=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits 2>/dev/null | head -n 1 | tr -d ' ')
fi
case "$FREE_MB" in '' | *[!0-9]*) FREE_MB=0 ;; esac
CAP_MB=$((FREE_MB / 4)) # never more managed memory than a quarter of what is free
[ $CAP_MB -gt 4096 ] && CAP_MB=4096
if [ "$FAKE" = 1 ]; then
	PF_MB=$((CAP_MB < 256 ? CAP_MB : 256)); MM_N=128; MM_ITERS=3; MM_MB=32; LAUNCHES=20000
else
	PF_MB=$CAP_MB; MM_N=1024; MM_ITERS=20; MM_MB=$((CAP_MB < 512 ? CAP_MB : 512)); LAUNCHES=200000
fi
MM_N=${SLUICE_GPU_MM_N:-$MM_N}
MM_ITERS=${SLUICE_GPU_MM_ITERS:-$MM_ITERS}
LAUNCHES=${SLUICE_GPU_LAUNCHES:-$LAUNCHES}
record memory $([ $CAP_MB -gt 0 ] && echo pass || echo fail) 0 \
	"{\"free_mb\":$FREE_MB,\"cap_mb\":$CAP_MB,\"prefetch_mb\":$PF_MB,\"matmul_buffer_mb\":$MM_MB}"

# ------------------------------------- 0. the example's PTX through ptxas
PTXAS=$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null | head -n 1)
if [ -n "$PTXAS" ] && [ -x "$GM" ]; then
	s=$(date +%s)
	# the GPU's own architecture (CUDA 13's ptxas starts at sm_75)
	ARCH=sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
	case "$ARCH" in sm_[0-9][0-9] | sm_[0-9][0-9][0-9]) ;; *) ARCH=sm_75 ;; esac
	if "$GM" --ptx >"$TMP/gm.ptx" && "$PTXAS" -arch="$ARCH" "$TMP/gm.ptx" -o "$TMP/gm.cubin" >"$TMP/ptxas.out" 2>&1; then
		record ptxas pass $(($(date +%s) - s)) "$ARCH, $("$PTXAS" --version | tail -n 1)"
	else
		cat "$TMP/ptxas.out"
		record ptxas fail $(($(date +%s) - s)) "$(head -n 5 "$TMP/ptxas.out" | tr '\n' ' ')"
	fi
else
	record ptxas skip 0 "no ptxas on this host"
fi

# ------------------------------------------- 1. shim tests on this driver
if [ "$QUICK" = 1 ]; then
	record shim-tests skip 0 "SLUICE_GPU_QUICK=1"
elif [ ! -x shim/tests/run.sh ]; then
	record shim-tests skip 0 "shim/tests/run.sh missing"
elif [ "$(left)" -lt 60 ]; then
	record shim-tests skip 0 "out of time"
else
	s=$(date +%s)
	# the shim's runner treats any SLUICE_DRIVER_DIR as a real driver
	drvenv=(SLUICE_DRIVER_DIR="$DRVDIR")
	[ "$FAKE" = 1 ] && drvenv=(X=1)
	if env "${drvenv[@]}" timeout "$(budget 150)" shim/tests/run.sh "$B" >"$TMP/shim.out" 2>&1; then
		record shim-tests pass $(($(date +%s) - s)) "$(tail -n 3 "$TMP/shim.out" | tr '\n' ' ')"
	else
		cat "$TMP/shim.out"
		record shim-tests fail $(($(date +%s) - s)) "$(grep -E '^FAIL' "$TMP/shim.out" | head -n 10 | tr '\n' ' ')"
	fi
fi

# run_gm NAME STEP-TIMEOUT [env...] -- gpu-matmul args ; sets J to its JSON
run_gm() {
	local name=$1 to=$2; shift 2
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	local s; s=$(date +%s)
	J=
	if [ "$(left)" -lt 10 ]; then record "$name" skip 0 "out of time"; return 1; fi
	env "${envs[@]}" timeout "$(budget "$to")" "$GM" "$@" >"$TMP/$name.out" 2>&1
	local rc=$?
	J=$(jline "$TMP/$name.out")
	# a preload that did not happen must not pass for a run under the shim
	if grep -q 'cannot be preloaded' "$TMP/$name.out"; then rc=98; fi
	if [ $rc -eq 0 ] && [ -n "$J" ] && [ "$(jget "$J" ok)" = True ]; then
		record "$name" pass $(($(date +%s) - s)) "$J"
		return 0
	fi
	cat "$TMP/$name.out"
	record "$name" fail $(($(date +%s) - s)) "${J:-rc=$rc $(tail -n 3 "$TMP/$name.out" | tr '\n' ' ')}"
	J=
	return 1
}

# ------------------------------ 2. example program, with and without shim
MMARGS=(--mode matmul --n "$MM_N" --iters "$MM_ITERS" --mb "$MM_MB")
run_gm matmul-base 60 X=1 -- "${MMARGS[@]}"; J_MB=$J
run_gm matmul-shim 60 LD_PRELOAD="$SHIM" -- "${MMARGS[@]}"; J_MS=$J

# ---------------------------------- 3. launch overhead with/without shim
run_gm launch-base 40 X=1 -- --mode launch --count "$LAUNCHES"; J_LB=$J
run_gm launch-shim 40 LD_PRELOAD="$SHIM" -- --mode launch --count "$LAUNCHES"; J_LS=$J

# ---------------------------- 4. prefetch bandwidth and demand-fault cost
if [ "$PF_MB" -ge 1 ]; then
	run_gm prefetch 60 X=1 -- --mode prefetch --mb "$PF_MB" --iters 3; J_PF=$J
	run_gm fault 60 X=1 -- --mode fault --mb "$PF_MB"; J_FT=$J
	# partial moves (the scheduling core's partialevict): part of the
	# buffer to the host, then all of it back; the swap-in should cost what
	# was missing, not the whole buffer
	run_gm partial 60 X=1 -- --mode partial --mb "$PF_MB" --iters 3
else
	record prefetch fail 0 "no free GPU memory figure"; J_PF=; J_FT=
fi

# ------------------------------------ 5. PyTorch inference under the shim
J_TB=; J_TS=
if [ "$FAKE" = 1 ]; then
	record torch skip 0 "real GPU only (the fake driver cannot run PyTorch's kernels)"
elif [ "$(left)" -lt 40 ]; then
	record torch skip 0 "out of time"
elif ! timeout 60 python3 -c 'import torch' >/dev/null 2>&1; then
	record torch skip 0 "torch not importable on this host"
else
	s=$(date +%s)
	timeout "$(budget 120)" python3 test/gpu/torch_infer.py --out "$TMP/base.pt" >"$TMP/tb.out" 2>&1
	J_TB=$(jline "$TMP/tb.out")
	LD_PRELOAD="$SHIM" timeout "$(budget 120)" python3 test/gpu/torch_infer.py --out "$TMP/shim.pt" >"$TMP/ts.out" 2>&1
	J_TS=$(jline "$TMP/ts.out")
	verdict=$(python3 - "$J_TB" "$J_TS" <<'EOF'
import json, sys
try:
    b, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
except Exception as e:
    print("fail bad output: %s" % e); sys.exit()
if not b.get("ok") or not s.get("ok"):
    print("fail %s / %s" % (b.get("skip", b.get("ok")), s.get("skip", s.get("ok")))); sys.exit()
probs = []
if b["sha256"] != s["sha256"]:
    probs.append("outputs differ")
if s.get("weights_managed") is not True:
    probs.append("allocations not converted to managed memory under the shim")
print(("fail " + "; ".join(probs)) if probs else "pass")
EOF
)
	detail="{\"base\":${J_TB:-null},\"shim\":${J_TS:-null}}"
	case "$verdict" in
	pass) record torch pass $(($(date +%s) - s)) "$detail" ;;
	*) cat "$TMP/tb.out" "$TMP/ts.out"; record torch fail $(($(date +%s) - s)) "{\"why\":\"${verdict#fail }\",\"base\":${J_TB:-null},\"shim\":${J_TS:-null}}" ;;
	esac
fi

# ------------------- 6. the daemon on this host: NVML and the eBPF probes
# sluiced is a Go program, built where Go is (make build/sluiced) and
# carried. It reads the GPU through NVML and attaches its uprobes (launch
# probing on) to this host's driver; programs run beside it must show up in
# /metrics, and the launch loop measures what the probes cost per launch.
J_DN=
SLUICED=$B/sluiced
if [ ! -x "$SLUICED" ]; then
	record daemon skip 0 "build/sluiced not here: build it with make and carry it"
elif [ "$(left)" -lt 40 ]; then
	record daemon skip 0 "out of time"
else
	s=$(date +%s)
	PORT=${SLUICE_GPU_PORT:-17691}
	printf '{"version":1,"listen":"127.0.0.1:%s","nvml":true,"monitor_interval":"200ms","ebpf":{"enabled":true,"launches":true,"library":"%s","interval":"200ms"}}\n' \
		"$PORT" "$DRVDIR/libcuda.so.1" >"$TMP/sluiced.json"
	"$SLUICED" -config "$TMP/sluiced.json" >"$TMP/sluiced.log" 2>&1 &
	DPID=$!
	metrics() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
		"http://127.0.0.1:$PORT/metrics" 2>/dev/null; }
	up=0 J_DL=
	for _ in $(seq 1 100); do
		if metrics >"$TMP/m0.txt"; then up=1; break; fi
		kill -0 $DPID 2>/dev/null || break
		sleep 0.1
	done
	if [ $up = 1 ]; then
		timeout "$(budget 30)" "$GM" --mode matmul --n 256 --iters 3 --mb 16 >"$TMP/dm.out" 2>&1
		timeout "$(budget 40)" "$GM" --mode launch --count "$LAUNCHES" >"$TMP/dl.out" 2>&1
		J_DL=$(jline "$TMP/dl.out")
		sleep 1
		metrics >"$TMP/m1.txt"
	fi
	# stop the daemon: SIGTERM, then SIGKILL if it is still there after 15 s
	kill $DPID 2>/dev/null
	for _ in $(seq 1 150); do kill -0 $DPID 2>/dev/null || break; sleep 0.1; done
	kill -9 $DPID 2>/dev/null
	wait $DPID 2>/dev/null
	J_DN=$(python3 test/gpu/daemon_metrics.py "$TMP/m1.txt" "$TMP/sluiced.log" "$J_DL" "${J_LB:-}")
	mem=$(jget "$J_DN" gpu_memory_total_bytes)
	# NVML must answer on a real GPU host; the fake driver has no NVML
	if [ $up = 1 ] && { [ "$FAKE" = 1 ] || { [ -n "$mem" ] && [ "$mem" != None ] && [ "$mem" != 0.0 ]; }; }; then
		record daemon pass $(($(date +%s) - s)) "$J_DN"
	else
		cat "$TMP/sluiced.log"
		record daemon fail $(($(date +%s) - s)) "${J_DN:-sluiced served no metrics}"
	fi
	# the probes get their own verdict: a host may not allow uprobes
	if [ "$(jget "$J_DN" ebpf_attached)" = True ]; then
		n=$(jget "$J_DN" launches_seen)
		case "$n" in
		'' | None | 0.0) record ebpf fail 0 "probes attached but saw no launches: $J_DN" ;;
		*) record ebpf pass 0 "{\"launches_seen\":$n,\"allocations_seen\":$(jget "$J_DN" allocations_seen)}" ;;
		esac
	else
		record ebpf skip 0 "probes did not attach on this host (the daemon step's log lines say why)"
	fi
fi

# --------------- 7. concurrency slowdown: k copies of one inference at once
# Calibration data for the simulator's concurrency model (docs/EVALUATION.md):
# k processes (no MPS: the GPU time-slices their contexts) each run the probe
# back to back inside one shared window of a few seconds (test/gpu/conc.sh).
# Batch 32 keeps the GPU busy (GPU-bound); batch 1 is launch- and CPU-bound,
# nearer a serverless function whose work is not all kernels.
for cb in 32 1; do
	name=concurrency
	[ "$cb" = 32 ] || name=concurrency-b$cb
	if [ "$FAKE" = 1 ] || [ -z "$J_TB" ] || [ "$(jget "$J_TB" ok)" != True ]; then
		record "$name" skip 0 "needs a real GPU and a passing torch step"
		continue
	fi
	if [ "$(left)" -lt 60 ]; then
		record "$name" skip 0 "out of time"
		continue
	fi
	s=$(date +%s)
	J_CC=$(CONC_DEADLINE=$((DEADLINE - 5)) test/gpu/conc.sh "$cb" "${SLUICE_GPU_CONC:-1 2 4 6}" 2>"$TMP/conc$cb.err" | tail -n 1)
	if [ -n "$J_CC" ] && python3 -c 'import json, sys; assert len(json.loads(sys.argv[1]).get("slowdown", {})) >= 2' "$J_CC" 2>/dev/null; then
		record "$name" pass $(($(date +%s) - s)) "$J_CC"
	else
		tail -n 10 "$TMP/conc$cb.err"
		record "$name" fail $(($(date +%s) - s)) "${J_CC:-no figures}"
	fi
done

# ----------------------------------------------------------- results
python3 - "$STEPS" "$OUT/results.json" "$MODE" "$T0" <<'EOF'
import json, sys, time
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {s["name"]: s for s in steps}
def d(name):
    s = by.get(name)
    return s["detail"] if s and s["status"] == "pass" and isinstance(s["detail"], dict) else None
fig = {}
mb, ms = d("matmul-base"), d("matmul-shim")
if mb and ms:
    fig["matmul_per_iter_ms"] = {"base": mb["ms"]["per_iter"], "shim": ms["ms"]["per_iter"]}
    if mb["ms"]["per_iter"]:
        fig["matmul_shim_overhead_pct"] = round((ms["ms"]["per_iter"] / mb["ms"]["per_iter"] - 1) * 100, 2)
lb, ls = d("launch-base"), d("launch-shim")
if lb and ls:
    fig["launch_ns"] = {"base": lb["ns_per_launch_best"], "shim": ls["ns_per_launch_best"],
                        "added": round(ls["ns_per_launch_best"] - lb["ns_per_launch_best"], 1)}
pf = d("prefetch")
if pf:
    fig["prefetch_gbps"] = {"to_device": pf["to_device_gbps"], "to_host": pf["to_host_gbps"], "mb": pf["mb"]}
ft = d("fault")
if ft:
    fig["demand_fault"] = {"us_per_mb": ft["fault_us_per_mb"], "gbps": ft["fault_gbps"],
                           "faulting_kernel_ms": ft["faulting_kernel_ms"], "resident_kernel_ms": ft["resident_kernel_ms"],
                           "prefetch_then_kernel_ms": ft["prefetch_then_kernel_ms"]}
pm = d("partial")
if pm:
    fig["partial_moves"] = {"parts": pm["parts"], "resident_prefetch_ms": pm["resident_prefetch_ms"]}
t = d("torch")
if t:
    fig["torch_median_ms"] = {"base": t["base"]["median_ms"], "shim": t["shim"]["median_ms"],
                              "overhead_pct": round((t["shim"]["median_ms"] / t["base"]["median_ms"] - 1) * 100, 2)}
dn = d("daemon")
if dn:
    fig["daemon"] = {k: dn.get(k) for k in ("gpu_memory_total_bytes", "launches_seen", "allocations_seen",
                                             "launch_ns_probed", "launch_ns_added_by_probes")}
cc = d("concurrency")
if cc:
    fig["concurrency_slowdown"] = cc.get("slowdown")
cc = d("concurrency-b1")
if cc:
    fig["concurrency_slowdown_batch1"] = cc.get("slowdown")
res = {
    "mode": sys.argv[3],
    "emulated": sys.argv[3] == "fake",
    "started_unix": int(sys.argv[4]),
    "seconds": int(time.time()) - int(sys.argv[4]),
    "passed": sum(s["status"] == "pass" for s in steps),
    "failed": sum(s["status"] == "fail" for s in steps),
    "skipped": sum(s["status"] == "skip" for s in steps),
    "figures": fig,
    "steps": steps,
}
json.dump(res, open(sys.argv[2], "w"), indent=1)
print(json.dumps({k: res[k] for k in ("mode", "seconds", "passed", "failed", "skipped")}))
print(json.dumps(fig, indent=1))
EOF
log "results: $OUT/results.json, log: $LOG"
grep -q '"failed": 0' "$OUT/results.json"
