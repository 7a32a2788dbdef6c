// Package sim runs the scheduler core in virtual time against a documented
// GPU model: device concurrency with a fitted slowdown curve (processor
// sharing among running invocations), GPU memory with swap over a host link
// and a demand-paging penalty, container cold starts from the catalog, and
// NVML-like utilization samples. The model's parameters are the same for
// every policy; see docs/EVALUATION.md for their calibration.
package sim
