// Package e2e holds Sluice's end-to-end tests: the components that are
// tested alone in their own packages, run together the way the daemon runs
// them. A function (the gpu-matmul example) runs in a Docker container or as
// a child process on the emulated GPU (the fake CUDA driver: test
// infrastructure), with the real shim preloaded; the test plays the daemon:
// it listens on the shim's control socket in the instance directory the
// runtime mounts (cgo/shimctl), invokes the function through the warm pool
// (containers/pool), reads the emulated GPU's own accounting from its shared
// device file, and, as root, attaches the eBPF observer (bpf/observer) to the
// driver library the container loads.
//
// Everything lives in the _test files; see docs/TESTING.md for what each
// test covers and what it needs (root, a Docker engine, make build).
package e2e
