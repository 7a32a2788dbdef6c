# shim/shim.mk - Sluice's CUDA interception shim (build/libsluice.so), its
# test programs (shim/tests) and its C micro-benchmark.

SHIM_SRCS := shim/init.c shim/syms.c shim/mem.c shim/ctl.c
SHIM_HDRS := shim/shim.h shim/syms.def shim/include/cuda_min.h cgo/sluice_proto.h
ifeq ($(shell uname -m),x86_64)
SHIM_SRCS += shim/dlsym_x86_64.S
SHIM_MAP := shim/libsluice.map
else
SHIM_MAP := shim/libsluice-generic.map
endif
SHIM_CFLAGS := $(CFLAGS_COMMON) -std=gnu11 -fvisibility=hidden -Ishim -Ishim/include -Icgo
SHIM_LDFLAGS := -shared -Wl,-soname,libsluice.so -Wl,--version-script=$(SHIM_MAP) \
	-Wl,-z,defs -Wl,-z,now -Wl,--no-as-needed -ldl -lpthread

BUILD_TARGETS += $(BUILD)/libsluice.so
TEST_TARGETS += test-shim
BENCH_TARGETS += bench-shim

$(BUILD)/libsluice.so: $(SHIM_SRCS) $(SHIM_HDRS) $(SHIM_MAP) shim/tests/check_syms.sh
	@mkdir -p $(BUILD)
	$(CC) $(SHIM_CFLAGS) -o $@.tmp $(SHIM_SRCS) $(SHIM_LDFLAGS)
	shim/tests/check_syms.sh $@.tmp
	mv -f $@.tmp $@  # atomic: running processes keep the old mapping

# Test programs: built with gcc against the hand-written header; they link
# -lcuda against whichever libcuda.so.1 is first at run time (the fake in
# tests, the real driver on a GPU host).
SHIM_TEST_DIR := $(BUILD)/shim-tests
SHIM_TEST_CFLAGS := $(CFLAGS_COMMON) -std=gnu11 -Ishim/include -Icgo -Ishim/tests
SHIM_TEST_PROGS := direct nouvm kinds runtime internal dlsym_new dlsym_old capture graphmem commands async capfree robust bench
SHIM_TEST_BINS := $(addprefix $(SHIM_TEST_DIR)/,$(SHIM_TEST_PROGS))

# Link-time stub only (like the toolkit's stubs/libcuda.so): every driver
# name in cuda_min.h, each returning CUDA_ERROR_STUB_LIBRARY. At run time the
# tests put the fake driver (or the real one) first on LD_LIBRARY_PATH.
$(SHIM_TEST_DIR)/libcuda.so.1: shim/include/cuda_min.h
	@mkdir -p $(SHIM_TEST_DIR)
	grep -o 'CUDAAPI cu[A-Za-z0-9_]*(' $< | sed -E 's/CUDAAPI (cu[A-Za-z0-9_]*)\(/int \1(void) { return 34; }/' > $(SHIM_TEST_DIR)/stubcuda.c
	$(CC) -O2 -fPIC -shared -Wl,-soname,libcuda.so.1 -o $@ $(SHIM_TEST_DIR)/stubcuda.c

$(SHIM_TEST_DIR)/%: shim/tests/%.c shim/tests/t.h shim/include/t_check.h shim/include/cuda_min.h $(SHIM_TEST_DIR)/libcuda.so.1
	$(CC) $(SHIM_TEST_CFLAGS) -o $@ $< -L$(SHIM_TEST_DIR) -l:libcuda.so.1 -ldl -lpthread

$(SHIM_TEST_DIR)/dlsym_old: shim/tests/dlsym.c shim/tests/t.h shim/include/t_check.h $(SHIM_TEST_DIR)/libcuda.so.1
	$(CC) $(SHIM_TEST_CFLAGS) -DOLD_BINDING -o $@ $< -ldl -lpthread

$(SHIM_TEST_DIR)/dlsym_new: shim/tests/dlsym.c shim/tests/t.h shim/include/t_check.h $(SHIM_TEST_DIR)/libcuda.so.1
	$(CC) $(SHIM_TEST_CFLAGS) -o $@ $< -ldl -lpthread

# Test-only null driver for the overhead benchmark (not the emulator).
$(SHIM_TEST_DIR)/null/libcuda.so.1: shim/tests/nulldrv.c shim/include/cuda_min.h
	@mkdir -p $(SHIM_TEST_DIR)/null
	$(CC) $(CFLAGS_COMMON) -Wno-unused-parameter -Ishim/include -shared -Wl,-Bsymbolic -Wl,-soname,libcuda.so.1 -o $@ $<

# The Go tests (cgo/shimctl) drive these programs, so `make build` makes them.
BUILD_TARGETS += $(SHIM_TEST_BINS) $(SHIM_TEST_DIR)/null/libcuda.so.1

.PHONY: test-shim bench-shim shim-test-bins
shim-test-bins: $(BUILD)/libsluice.so $(SHIM_TEST_BINS) $(SHIM_TEST_DIR)/null/libcuda.so.1

test-shim: shim-test-bins
	shim/tests/run.sh $(ABS_BUILD)

bench-shim: shim-test-bins
	shim/tests/run.sh $(ABS_BUILD) bench
