#!/usr/bin/env python3
"""PyTorch inference probe for test/gpu/run.sh (run with and without the shim).

Builds a fixed, seeded convolutional network (no downloads), runs inference on
a fixed input, and prints one JSON line: a SHA-256 of the output bytes (the
run with the shim must match the run without), latency statistics, and whether
the tensors' memory is managed (CU_POINTER_ATTRIBUTE_IS_MANAGED, read through
the driver API with ctypes: the shim converts cudaMalloc to managed memory).

usage: torch_infer.py [--iters N] [--batch B] [--out FILE]
                      [--ready-file F --go-file G --seconds S]

With --go-file (the concurrency probe of test/gpu/run.sh) it warms up, creates
--ready-file, waits until --go-file exists, then runs inferences back to back
for --seconds instead of --iters times: several copies started together then
overlap for the whole timed window.
"""
import argparse
import ctypes
import hashlib
import json
import os
import statistics
import sys
import time


def is_managed(ptr):
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    val = ctypes.c_int(-1)
    rc = cuda.cuPointerGetAttribute(ctypes.byref(val), ctypes.c_int(8), ctypes.c_ulonglong(ptr))
    return bool(val.value) if rc == 0 else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default="")
    ap.add_argument("--ready-file", default="")
    ap.add_argument("--go-file", default="")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    if a.iters < 1 or a.seconds <= 0 or a.batch < 1:
        ap.error("--iters and --batch must be at least 1 and --seconds above 0")
    try:
        import torch
        import torch.nn as nn
    except Exception as e:  # noqa: BLE001 - report any import problem
        print(json.dumps({"ok": False, "skip": "torch not importable: %s" % e}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"ok": False, "skip": "torch.cuda not available"}))
        return 0
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(1234)
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.BatchNorm2d(256), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 1000),
    ).eval()
    g = torch.Generator().manual_seed(42)
    x_cpu = torch.randn(a.batch, 3, 224, 224, generator=g)
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    model = model.to(dev)
    x = x_cpu.to(dev)
    torch.cuda.synchronize()
    load_ms = (time.perf_counter() - t0) * 1e3
    lat = []
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        if a.go_file:
            if a.ready_file:
                open(a.ready_file, "w").close()
            give_up = time.monotonic() + 120
            while not os.path.exists(a.go_file):
                if time.monotonic() > give_up:
                    print(json.dumps({"ok": False, "skip": "no go file within 120 s"}))
                    return 0
                time.sleep(0.001)
        # with --go-file: back to back for --seconds; else --iters times
        end = time.perf_counter() + a.seconds
        while (time.perf_counter() < end) if a.go_file else (len(lat) < a.iters):
            t = time.perf_counter()
            y = model(x)
            torch.cuda.synchronize()
            lat.append((time.perf_counter() - t) * 1e3)
    out = y.float().cpu().contiguous()
    digest = hashlib.sha256(out.numpy().tobytes()).hexdigest()
    if a.out:
        torch.save(out, a.out)
    free, total = torch.cuda.mem_get_info()
    res = {
        "ok": True,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0),
        "sha256": digest,
        "load_ms": round(load_ms, 3),
        "median_ms": round(statistics.median(lat), 4),
        "p90_ms": round(sorted(lat)[int(0.9 * (len(lat) - 1))], 4),
        "mean_ms": round(statistics.fmean(lat), 4),
        "iters": len(lat),
        "batch": a.batch,
        "weights_managed": is_managed(next(model.parameters()).data_ptr()),
        "input_managed": is_managed(x.data_ptr()),
        "mem_get_info": [free, total],
        "preloaded": os.environ.get("LD_PRELOAD", ""),
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
