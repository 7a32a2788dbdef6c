// Package process is the Runtime backend that runs function instances as
// child processes of the daemon, for hosts without Docker (the GPU host).
//
// Each instance gets its own process group, a host directory (its working
// directory, holding the function socket and the shim's control socket), a
// clean environment, rlimits and, for GPU functions, the shim through
// LD_PRELOAD. Isolation is much weaker than Docker's: the function shares the
// host's filesystem, network and process namespaces, and limits are rlimits
// (address space, open files), not cgroups. docs/FUNCTIONS.md says so.
package process
