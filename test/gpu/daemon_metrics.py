#!/usr/bin/env python3
"""Summarize sluiced's /metrics for test/gpu/run.sh's daemon step.

usage: daemon_metrics.py METRICS_FILE DAEMON_LOG [LAUNCH_PROBED_JSON LAUNCH_BASE_JSON]

Prints one JSON object: what NVML reported (memory, utilization), whether the
eBPF probes attached, what they saw (launches, allocations, syncs summed over
all series), and, given the launch loop's output with the probes attached and
without, the nanoseconds the probes add per launch.
"""
import json
import re
import sys


def total(text, name):
    vals = [float(m.group(1)) for m in
            re.finditer(r"^" + re.escape(name) + r"(?:\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M)]
    return sum(vals) if vals else None


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        text = open(sys.argv[1]).read()
    except OSError:
        text = ""
    try:
        log = open(sys.argv[2]).read()
    except OSError:
        log = ""
    d = {
        "metrics_served": bool(text),
        "gpu_memory_total_bytes": total(text, "sluice_gpu_memory_total_bytes"),
        "gpu_memory_used_bytes": total(text, "sluice_gpu_memory_used_bytes"),
        "gpu_utilization_ratio": total(text, "sluice_gpu_utilization_ratio"),
        "ebpf_attached": total(text, "sluice_ebpf_polls_total") is not None,
        "launches_seen": total(text, "sluice_gpu_launches_total"),
        "allocations_seen": total(text, "sluice_gpu_allocations_total"),
        "syncs_seen": total(text, "sluice_gpu_syncs_total"),
    }
    if len(sys.argv) >= 5:
        try:
            probed, base = json.loads(sys.argv[3]), json.loads(sys.argv[4])
            d["launch_ns_probed"] = probed["ns_per_launch_best"]
            d["launch_ns_added_by_probes"] = round(probed["ns_per_launch_best"] - base["ns_per_launch_best"], 1)
        except (ValueError, KeyError, TypeError):
            pass
    keep = [l for l in log.splitlines()
            if any(w in l.lower() for w in ("ebpf", "nvml", "gpu ", "level=error", "level=warn"))]
    d["log"] = keep[:8]
    print(json.dumps(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
