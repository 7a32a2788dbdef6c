//go:build !linux || !(amd64 || arm64)

package bpf

import (
	"errors"
	"fmt"
	"runtime"
)

// Probe is unavailable on this platform; Open always fails.
type Probe struct{}

// Open returns an error wrapping [ErrNotSupported]: Sluice's BPF objects are
// built for Linux on x86-64 and arm64 only.
func Open(*Options) (*Probe, error) {
	return nil, fmt.Errorf("%w on %s/%s", ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}

var errNoProbe = errors.New("no probe on this platform")

// Library is empty.
func (p *Probe) Library() string { return "" }

// Attached is empty.
func (p *Probe) Attached() []string { return nil }

// Counters fails.
func (p *Probe) Counters() (map[uint64]Counters, error) { return nil, errNoProbe }

// Forget fails.
func (p *Probe) Forget(uint64) error { return errNoProbe }

// Drops fails.
func (p *Probe) Drops() (Drops, error) { return Drops{}, errNoProbe }

// ReadEvent fails.
func (p *Probe) ReadEvent() (Event, error) { return Event{}, errNoProbe }

// SetLaunches fails.
func (p *Probe) SetLaunches(bool) error { return errNoProbe }

// Close does nothing.
func (p *Probe) Close() error { return nil }
