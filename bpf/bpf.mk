# bpf/: eBPF observability of the CUDA driver (issue 5).
# The BPF objects are bpf2go output, committed: building and testing need no
# clang. `make generate` (go generate ./...) rebuilds them and alone needs
# clang, llvm-strip and libbpf's headers (Debian: clang llvm libbpf-dev).
# The Go tests (root, cgroup v2, Docker) run under test-go; they build the
# C test programs themselves. These targets add the C checks and the
# probe-cost benchmark against the fake driver.

BPF_TESTBIN := $(BUILD)/bpf

$(BPF_TESTBIN)/libcuda.so.1: bpf/testdata/drvdouble.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -shared -o $@ $<

$(BPF_TESTBIN)/caller: bpf/testdata/caller.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -o $@ $< -ldl

# The test programs build warning-free and run valgrind-clean.
test-bpf-c: $(BPF_TESTBIN)/libcuda.so.1 $(BPF_TESTBIN)/caller
	valgrind -q --error-exitcode=9 --leak-check=full $(BPF_TESTBIN)/caller $(ABS_BUILD)/bpf/libcuda.so.1 \
		launch=3 ptsz=2 ex=1 graph=1 alloc=100 managed=64 htod=10 dtoh=20 dtod=5 memcpy=7 htodasync=3 \
		prefetch=9 ctxsync streamsync=10 eventsync=1 free badalloc bench=1000 sleep=1 >/dev/null

# ns added per probed cuLaunchKernel, in one run (needs root): against the
# fake driver when it is built, else against the test double.
bench-bpf: $(BPF_TESTBIN)/libcuda.so.1
	@drv=$(ABS_BUILD)/fakecuda/libcuda.so.1; [ -f $$drv ] || { echo "bench-bpf: $$drv not built, measuring the test double"; drv=; }; \
	SLUICE_BPF_DRIVER=$$drv $(GO) test -count=1 -run '^$$' -bench 'LaunchProbeOverhead' ./bpf/

TEST_TARGETS += test-bpf-c
BENCH_TARGETS += bench-bpf
.PHONY: test-bpf-c bench-bpf
