// Package monitor turns device and activity readings into the scheduling
// core's monitor events. [NVML] reads each GPU's utilization and memory
// through an injected nvml.Interface (the real library in the daemon, the
// go-nvml mocks in tests); [Ticks] combines those samples with the eBPF
// observer's per-container activity into one core.MonitorTick per GPU.
//
// Nothing here runs on its own: the daemon's event loop calls Sample on its
// monitor timer and steps the core with the events Ticks returns.
package monitor
