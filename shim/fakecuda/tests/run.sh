#!/bin/bash
# shim/fakecuda/tests/run.sh BUILD_DIR [bench] - tests of Sluice's FAKE CUDA
# driver and EMULATED GPU (test doubles): the driver API (t_driver, several
# environment modes), the multi-process emulated GPU (t_emugpu), the
# gpu-matmul example program, and test/gpu/run.sh in fake mode.
set -u
B=${1:?usage: run.sh BUILD_DIR [bench]}
MODE=${2:-test}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
T=$B/fakecuda/tests
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export LD_LIBRARY_PATH=$B/fakecuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export FAKECUDA_TEST_DIR=$TMP
unset FAKECUDA_LOG FAKECUDA_FAIL FAKECUDA_DRIVER_VERSION FAKECUDA_SCHED
fail=0

if [ "$MODE" = bench ]; then
	FAKECUDA_DEVICE_FILE=$TMP/bench.dev "$T/t_emugpu" bench
	exit $?
fi

run() { # name, command... (runs with a fresh device file)
	local name=$1; shift
	if ! env FAKECUDA_DEVICE_FILE="$TMP/$name.dev" "$@" >"$TMP/$name.out" 2>&1; then
		echo "FAIL $name:"; sed 's/^/    /' "$TMP/$name.out"; fail=1
	else
		echo "$name: $(tail -n 1 "$TMP/$name.out")"
	fi
}
# a missing prerequisite: skip with one line, fail under SLUICE_CI=1
missing() {
	echo "skipping $1"
	[ "${SLUICE_CI:-}" = 1 ] && fail=1
}

run driver env FAKECUDA_CAPACITY=256M "$T/t_driver" all
run driver-v12 env FAKECUDA_DRIVER_VERSION=12080 "$T/t_driver" v12
run driver-faults env FAKECUDA_FAIL=cuMemAllocManaged:2,cuLaunchKernel:1+:719 "$T/t_driver" faults
run driver-sticky "$T/t_driver" sticky
run driver-threads "$T/t_driver" threads
nm -D --defined-only "$B/fakecuda/libcuda.so.1" | awk '$3 ~ /^cu/ {print $3}' >"$TMP/syms"
run driver-symbols sh -c "\"$T/t_driver\" symbols <\"$TMP/syms\""

# call log: one line per call, name first
run driver-log env FAKECUDA_LOG="$TMP/calls.log" "$T/t_driver" log
if ! grep -q '^cuMemAlloc_v2 rc=0 bytes=4096 ptr=0x' "$TMP/calls.log" ||
	! grep -q '^cuMemFree_v2 rc=0 ptr=0x' "$TMP/calls.log"; then
	echo "FAIL driver-log: expected lines missing:"; sed 's/^/    /' "$TMP/calls.log"; fail=1
fi

# a device file path naming some other file: left alone, the driver still works
printf 'not a device file\n' >"$TMP/other.txt"
if ! env FAKECUDA_DEVICE_FILE="$TMP/other.txt" "$T/t_driver" log >"$TMP/other.out" 2>&1 ||
	[ "$(cat "$TMP/other.txt")" != "not a device file" ]; then
	echo "FAIL device-file-guard: a foreign file was modified or the driver failed:"
	sed 's/^/    /' "$TMP/other.out"; fail=1
else
	echo "device-file-guard: ok"
fi

# only driver API names and the documented test hooks are exported
bad=$(nm -D --defined-only "$B/fakecuda/libcuda.so.1" | awk '$2 ~ /[TW]/ {print $3}' | grep -v -E '^(cu|fakecuda_)' || true)
if [ -n "$bad" ]; then echo "FAIL exports: unexpected symbols: $bad"; fail=1; fi
if ! readelf -d "$B/fakecuda/libcuda.so.1" | grep -q 'SONAME.*\[libcuda.so.1\]'; then
	echo "FAIL soname: not libcuda.so.1"; fail=1
fi

run emugpu "$T/t_emugpu"

if command -v valgrind >/dev/null; then
	# Valgrind runs use a private copy of the driver: uprobes that another
	# test attaches to build/fakecuda/libcuda.so.1 (eBPF tests) patch int3
	# into every mapping of that file, which valgrind reports as SIGTRAP.
	mkdir -p "$TMP/vglib"
	cp "$B/fakecuda/libcuda.so.1" "$TMP/vglib/"
	run driver-memcheck env LD_LIBRARY_PATH="$TMP/vglib" valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
		"$T/t_driver" threads
	run driver-helgrind env LD_LIBRARY_PATH="$TMP/vglib" valgrind -q --tool=helgrind --error-exitcode=3 \
		--suppressions="$HERE/helgrind.supp" "$T/t_driver" threads
else
	echo "valgrind missing: memcheck/helgrind runs skipped"
	[ "${SLUICE_CI:-}" = 1 ] && fail=1
fi

# the example program: result checked against the CPU, JSON line out
if [ -x "$B/gpu-matmul" ]; then
	run gpu-matmul "$B/gpu-matmul" --mb 4 --iters 3 --n 96
	if ! grep -q '"ok":true' "$TMP/gpu-matmul.out" || ! grep -q '"emulated":true' "$TMP/gpu-matmul.out"; then
		echo "FAIL gpu-matmul: no ok/emulated JSON line"; sed 's/^/    /' "$TMP/gpu-matmul.out"; fail=1
	fi
else
	missing "gpu-matmul: $B/gpu-matmul not built"
fi

# the prepared real-GPU check, in fake mode (real-GPU-only parts skipped)
if [ -x "$ROOT/test/gpu/run.sh" ] && [ -e "$B/libsluice.so" ]; then
	run gpu-check env SLUICE_GPU_FAKE=1 SLUICE_GPU_QUICK=1 OUT="$TMP/gpu-out" "$ROOT/test/gpu/run.sh"
	if ! grep -q '"failed": *0' "$TMP/gpu-out/results.json" 2>/dev/null; then
		echo "FAIL gpu-check: results.json missing or has failures"
		sed 's/^/    /' "$TMP/gpu-check.out" | tail -n 30; fail=1
	fi
else
	missing "test/gpu/run.sh in fake mode: needs $B/libsluice.so"
fi

[ $fail -eq 0 ] && echo "fakecuda tests: all passed"
exit $fail
