//go:build linux

package e2e_test

import (
	"fmt"

	"github.com/sluice-gpu/sluice/internal/emugpu"
)

// The tests check the shim's claims against the emulated GPU's own
// accounting, read from its device file by internal/emugpu (lock-free, like
// the daemon's reads: a field may be torn against another, never within
// itself).

// emuProcOf returns the live slot of the process with pid (in its own
// namespace), which the shim reports as its claimed pid.
func emuProcOf(path string, pid int32) (emugpu.Proc, error) {
	d, err := emugpu.Read(path)
	if err != nil {
		return emugpu.Proc{}, err
	}
	if p, ok := d.Proc(pid); ok {
		return p, nil
	}
	return emugpu.Proc{}, fmt.Errorf("no live process %d on the emulated GPU (%d live: %+v)", pid, len(d.Procs), d.Procs)
}
