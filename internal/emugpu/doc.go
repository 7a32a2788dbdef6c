// Package emugpu reads the emulated GPU's device file: TEST AND DEMO
// INFRASTRUCTURE for the fake CUDA driver (shim/fakecuda, a test double, not
// a GPU driver), never a production path.
//
// Every process that loads the fake driver shares one emulated GPU through a
// file (FAKECUDA_DEVICE_FILE), whose layout is documented in docs/FAKECUDA.md
// ("Device file layout (version 1)") and defined in shim/fakecuda/emugpu.h.
// Read takes a lock-free snapshot of its header and live process slots, so
// that tests and demos can check what the shim and the daemon claim against
// the emulator's own accounting: capacity, non-evictable and resident bytes,
// and per process its pid, device, managed and resident bytes, kernels,
// faults, prefetches and evictions.
//
// A snapshot is taken without the file's mutex, as the daemon would: one
// field may be torn against another (read between two updates), never
// within itself. Read opens and closes its own descriptor, so it must not be
// called from a process that itself uses the fake driver (closing a second
// descriptor of the file drops that process's fcntl liveness locks); Go test
// processes, which run CUDA programs as children, are fine.
//
// A file that is too short, is not a device file (wrong magic), has another
// layout version or an inconsistent header gives an error wrapping
// ErrShort, ErrNotDevice, ErrVersion or ErrLayout, naming the file.
package emugpu
