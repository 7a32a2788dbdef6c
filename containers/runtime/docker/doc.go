// Package docker is the Runtime backend that runs function instances as
// Docker containers through the moby client (github.com/moby/moby/client).
//
// Every container carries Sluice's labels (managed, daemon instance,
// function, generation), so List, Recover and cleanup only ever touch this
// daemon's own. Each instance has a host directory bind-mounted at
// /run/sluice (the function socket and the shim's control socket). Security
// defaults: no network unless the spec asks, no-new-privileges, all
// capabilities dropped, a read-only root filesystem with a tmpfs /tmp, and
// memory, CPU and pid limits. GPU functions get the shim by a read-only bind
// mount and LD_PRELOAD, and either the emulated GPU (the fake driver mounted
// as libcuda.so.1, test and demo infrastructure) or real GPUs through
// DeviceRequests when the NVIDIA runtime is installed.
package docker
