#!/bin/bash
# shim/tests/run.sh BUILD_DIR [bench] - run the shim's test programs against
# the fake driver (build/fakecuda/libcuda.so.1), or with "bench" the overhead
# micro-benchmark against the test-only null driver.
# Set SLUICE_DRIVER_DIR to a directory holding another libcuda.so.1 (the real
# driver's, on a GPU host) to run the same programs against it.
set -u
B=${1:?usage: run.sh BUILD_DIR [bench]}
MODE=${2:-test}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=$B/shim-tests
SHIM=$B/libsluice.so
DRV=${SLUICE_DRIVER_DIR:-$B/fakecuda}
REALDRV=0
[ -n "${SLUICE_DRIVER_DIR:-}" ] && REALDRV=1
fail=0

# Real-driver resolution (internal pointers): against the null driver.
if [ "$MODE" = test ]; then
	LD_LIBRARY_PATH=$T/null LD_PRELOAD=$SHIM "$T/internal" || fail=1
fi

if [ "$MODE" = bench ]; then
	LD_LIBRARY_PATH=$T/null LD_PRELOAD=$SHIM "$T/bench" "$SHIM"
	exit $?
fi

if [ ! -e "$DRV/libcuda.so.1" ]; then
	msg="skipping shim tests: no driver at $DRV/libcuda.so.1 (make build/fakecuda/libcuda.so.1)"
	if [ "${SLUICE_CI:-}" = 1 ]; then echo "FAIL: $msg"; exit 1; fi
	echo "$msg"; exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The emulated GPU is shared through a file: give the tests their own.
export FAKECUDA_DEVICE_FILE=$TMP/emugpu
export LD_LIBRARY_PATH=$DRV${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

run() { # name, command...
	local name=$1; shift
	if ! "$@" >"$TMP/$name.out" 2>&1; then
		echo "FAIL $name:"; sed 's/^/    /' "$TMP/$name.out"; fail=1
	else
		tail -n 3 "$TMP/$name.out"
	fi
}

for p in direct kinds runtime dlsym_new dlsym_old capture graphmem async; do
	run "$p" env LD_PRELOAD="$SHIM" "$T/$p"
done
if [ $REALDRV = 0 ]; then
	# The capacity view's reserve (SLUICE_RESERVE_MB), and its clamp to a
	# quarter of the device, on an 8 GiB emulated device of its own.
	cap=8589934592
	run reserve env LD_PRELOAD="$SHIM" FAKECUDA_DEVICE_FILE="$TMP/emugpu-reserve" FAKECUDA_CAPACITY=$cap \
		SLUICE_RESERVE_MB=1000 SLUICE_TEST_EXPECT_TOTAL=$((cap - 1000 * 1048576)) "$T/direct"
	run reserve-clamp env LD_PRELOAD="$SHIM" FAKECUDA_DEVICE_FILE="$TMP/emugpu-reserve2" FAKECUDA_CAPACITY=$cap \
		SLUICE_RESERVE_MB=4000 SLUICE_TEST_EXPECT_TOTAL=$((cap - cap / 4)) "$T/direct"
fi
# New ranges left unplaced (first touch faults them in).
run direct-nopopulate env LD_PRELOAD="$SHIM" SLUICE_POPULATE=0 "$T/direct"
# No conversion: by request, and (fake only) where the device lacks
# concurrent managed access.
run nouvm-env env LD_PRELOAD="$SHIM" SLUICE_UVM=0 "$T/nouvm"
if [ $REALDRV = 0 ]; then
	run nouvm-device env LD_PRELOAD="$SHIM" FAKECUDA_CONCURRENT_MANAGED=0 "$T/nouvm"
	# A CUDA 12.x driver: no managed pools, so the synchronous fallback with
	# deferred frees (the fake reads FAKECUDA_DRIVER_VERSION).
	run async-12 env LD_PRELOAD="$SHIM" FAKECUDA_DRIVER_VERSION=12080 "$T/async"
	# ... and its resolution: the 12.8 batched-copy ABI, no _v2 yet.
	run runtime-12 env LD_PRELOAD="$SHIM" FAKECUDA_DRIVER_VERSION=12080 "$T/runtime"
fi
# A free captured into a graph: the shim's answer must be the driver's own.
if "$T/capfree" >"$TMP/capfree-ref.out" 2>&1 && LD_PRELOAD="$SHIM" "$T/capfree" >"$TMP/capfree.out" 2>&1; then
	ref=$(grep '^capfree free=' "$TMP/capfree-ref.out")
	got=$(grep '^capfree free=' "$TMP/capfree.out")
	if [ -n "$ref" ] && [ "$ref" = "$got" ]; then
		echo "$got (same as the driver alone)"
	else
		echo "FAIL capfree: with the shim \"$got\", driver alone \"$ref\""; fail=1
	fi
else
	echo "FAIL capfree:"; sed 's/^/    /' "$TMP/capfree-ref.out" "$TMP/capfree.out" 2>/dev/null; fail=1
fi
# dlsym_old really references the pre-2.34 binding.
if ! objdump -T "$T/dlsym_old" | grep -q 'GLIBC_2.2.5.* dlsym$'; then
	echo "FAIL dlsym_old: binary does not reference dlsym@GLIBC_2.2.5"; fail=1
fi
run ctypes env LD_PRELOAD="$SHIM" python3 "$HERE/ctypes_test.py"
run robust env LD_PRELOAD="$SHIM" "$T/robust"
if [ $REALDRV = 1 ]; then
	# valgrind and the Go daemon tests exercise the shim's own code with the
	# fake driver; `make test-shim` runs them.
	echo "real driver at $DRV: valgrind and Go daemon tests skipped"
else
	if command -v valgrind >/dev/null; then
		# Valgrind runs use a private copy of the driver: uprobes that other
		# tests (bpf/) attach to build/fakecuda/libcuda.so.1 put int3 into
		# every mapping of that file, which valgrind reports as SIGTRAP.
		mkdir -p "$TMP/vglib"
		cp "$DRV/libcuda.so.1" "$TMP/vglib/"
		run robust-memcheck env LD_PRELOAD="$SHIM" LD_LIBRARY_PATH="$TMP/vglib" valgrind -q --error-exitcode=3 \
			--suppressions="$HERE/valgrind.supp" "$T/robust"
		run robust-helgrind env LD_PRELOAD="$SHIM" LD_LIBRARY_PATH="$TMP/vglib" valgrind -q --tool=helgrind --error-exitcode=3 \
			--suppressions="$HERE/valgrind.supp" "$T/robust"
		# graph memory accounting and context teardown sweeps
		for p in graphmem direct; do
			run "$p-memcheck" env LD_PRELOAD="$SHIM" LD_LIBRARY_PATH="$TMP/vglib" valgrind -q --error-exitcode=3 \
				--suppressions="$HERE/valgrind.supp" "$T/$p"
		done
	else
		echo "valgrind missing: memcheck/helgrind runs skipped"
		[ "${SLUICE_CI:-}" = 1 ] && fail=1
	fi
	# Commands (test 6) and fork (test 8) need the Go test daemon.
	(cd "$ROOT" && SLUICE_BUILD=$B ${GO:-go} test -race -count=1 -run 'TestShim' ./cgo/...) >"$TMP/go.out" 2>&1 \
		|| { echo "FAIL go shim tests:"; sed 's/^/    /' "$TMP/go.out"; fail=1; }
	grep -E '^(ok|---|FAIL)' "$TMP/go.out" || true
	# The control thread (commands, prefetch gate, loss of the daemon and
	# registering again) under memcheck and helgrind.
	if command -v valgrind >/dev/null; then
		for tool in memcheck helgrind; do
			(cd "$ROOT" && SLUICE_SHIM_VALGRIND=$tool SLUICE_BUILD=$B ${GO:-go} test -count=1 \
				-run 'TestShimCommands|TestShimSubmissionWaitsForPrefetch|TestShimReregistersAfterDaemonRestart' \
				./cgo/shimctl) >"$TMP/go-$tool.out" 2>&1 \
				|| { echo "FAIL control channel under $tool:"; sed 's/^/    /' "$TMP/go-$tool.out"; fail=1; }
			grep -E '^ok' "$TMP/go-$tool.out" | sed "s/\$/ ($tool)/" || true
		done
	fi
fi
[ $fail -eq 0 ] && echo "shim tests: all passed"
exit $fail
