"""Test 4, ctypes: python3 loads the driver with ctypes.CDLL, as CuPy's and
pynvml-style bindings do; the lookups go through dlsym and must reach the
shim, and cuMemAlloc_v2 must come back as managed memory (fake driver)."""
import ctypes
import sys

cuda = ctypes.CDLL("libcuda.so.1")
fails = []


def check(cond, msg):
    if not cond:
        fails.append(msg)


check(cuda.cuInit(0) == 0, "cuInit")
dev = ctypes.c_int()
check(cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0, "cuDeviceGet")
ctx = ctypes.c_void_p()
check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0, "cuDevicePrimaryCtxRetain")
check(cuda.cuCtxSetCurrent(ctx) == 0, "cuCtxSetCurrent")

# The function ctypes found is the shim's wrapper.
libdl = ctypes.CDLL(None)


class DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]


info = DlInfo()
addr = ctypes.cast(cuda.cuMemAlloc_v2, ctypes.c_void_p)
check(libdl.dladdr(addr, ctypes.byref(info)) != 0 and b"libsluice" in info.fname,
      "cuMemAlloc_v2 resolved to %r" % (info.fname,))

ptr = ctypes.c_uint64()
cuda.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
check(cuda.cuMemAlloc_v2(ctypes.byref(ptr), 1 << 20) == 0, "cuMemAlloc_v2")
try:
    resident = cuda.fakecuda_resident_bytes
    resident.restype = ctypes.c_longlong
    resident.argtypes = [ctypes.c_uint64]
    check(resident(ptr.value) >= 0, "allocation is not managed")
except AttributeError:
    pass  # a real driver: no fake hooks
free, total = ctypes.c_size_t(), ctypes.c_size_t()
check(cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) == 0, "cuMemGetInfo_v2")
check(free.value + (1 << 20) <= total.value, "capacity view")
check(cuda.cuMemFree_v2(ptr) == 0, "cuMemFree_v2")

if fails:
    print("ctypes: FAIL:", "; ".join(fails), file=sys.stderr)
    sys.exit(1)
print("ctypes: ok")
