# shim/fakecuda/fakecuda.mk - Sluice's FAKE CUDA driver with an EMULATED GPU
# (a test double, not a driver): build/fakecuda/libcuda.so.1, its tests, the
# gpu-matmul example program (driver API only) and the test/gpu/run.sh
# self-check against the fake. See docs/FAKECUDA.md.

FAKECUDA_DIR := $(BUILD)/fakecuda
FAKECUDA_SRCS := $(addprefix shim/fakecuda/,fakecuda.c mem.c copy.c vmm.c stream.c launch.c procaddr.c ptx.c emugpu.c)
FAKECUDA_HDRS := $(addprefix shim/fakecuda/,fakecuda.h fake_internal.h fake_extra.h emugpu.h procaddr_table.h) \
	shim/include/cuda_min.h
FAKECUDA_CFLAGS := $(CFLAGS_COMMON) -std=gnu11 -fvisibility=hidden -Ishim/fakecuda -Ishim/include
FAKECUDA_LIB := $(FAKECUDA_DIR)/libcuda.so.1

FAKECUDA_TEST_PROGS := t_driver t_emugpu
FAKECUDA_TEST_BINS := $(addprefix $(FAKECUDA_DIR)/tests/,$(FAKECUDA_TEST_PROGS))

BUILD_TARGETS += $(FAKECUDA_LIB) $(FAKECUDA_DIR)/libcuda.so $(BUILD)/gpu-matmul
TEST_TARGETS += test-fakecuda
BENCH_TARGETS += bench-fakecuda

$(FAKECUDA_LIB): $(FAKECUDA_SRCS) $(FAKECUDA_HDRS) shim/fakecuda/fakecuda.mk
	@mkdir -p $(FAKECUDA_DIR)
	$(CC) $(FAKECUDA_CFLAGS) -shared -Wl,-soname,libcuda.so.1 -Wl,-z,defs -o $@ $(FAKECUDA_SRCS) -lpthread

$(FAKECUDA_DIR)/libcuda.so: $(FAKECUDA_LIB)
	ln -sf libcuda.so.1 $@

# The example program links -lcuda (the fake here, the real driver on a GPU
# host: libcuda.so.1 is resolved at run time).
$(BUILD)/gpu-matmul: containers/functions/gpu-matmul/gpumatmul.c shim/include/cuda_min.h $(FAKECUDA_DIR)/libcuda.so
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_COMMON) -std=gnu11 -Ishim/include -o $@ $< -L$(FAKECUDA_DIR) -lcuda -lpthread -lm

$(FAKECUDA_DIR)/tests/%: shim/fakecuda/tests/%.c shim/fakecuda/tests/ft.h shim/include/t_check.h $(FAKECUDA_LIB) $(FAKECUDA_HDRS)
	@mkdir -p $(FAKECUDA_DIR)/tests
	$(CC) $(CFLAGS_COMMON) -std=gnu11 -Ishim/fakecuda -Ishim/include -o $@ $< -L$(FAKECUDA_DIR) -l:libcuda.so.1 -lpthread -ldl

.PHONY: test-fakecuda bench-fakecuda fakecuda-test-bins
fakecuda-test-bins: $(FAKECUDA_LIB) $(FAKECUDA_DIR)/libcuda.so $(FAKECUDA_TEST_BINS) $(BUILD)/gpu-matmul

test-fakecuda: fakecuda-test-bins
	shim/fakecuda/tests/run.sh $(ABS_BUILD)

bench-fakecuda: fakecuda-test-bins
	shim/fakecuda/tests/run.sh $(ABS_BUILD) bench
