package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// ErrBadRecord is wrapped by the errors of [DecodeEvent]: a ring-buffer
// record that is not an event this package knows.
var ErrBadRecord = errors.New("bad ring-buffer record")

// EventKind says what a ring-buffer [Event] reports.
type EventKind uint32

// Event kinds; they mirror enum event_kind in probe.h.
const (
	EventFirstAlloc  EventKind = 1 // a process's first device allocation
	EventExit        EventKind = 2 // a process that allocated exited; Bytes, Count: still live then
	EventExec        EventKind = 3 // such a process exec'd another image; same fields
	EventAllocFailed EventKind = 4 // an allocation failed; Bytes asked, Result the CUresult
)

func (k EventKind) String() string {
	switch k {
	case EventFirstAlloc:
		return "first-alloc"
	case EventExit:
		return "exit"
	case EventExec:
		return "exec"
	case EventAllocFailed:
		return "alloc-failed"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// EventSize is the size of a ring-buffer record (struct event in probe.h).
const EventSize = 64

// Event is a rare per-process event from the ring buffer.
type Event struct {
	Time     time.Duration // CLOCK_MONOTONIC since boot
	CgroupID uint64
	PID      uint32 // thread-group id
	TID      uint32
	Kind     EventKind
	Result   int32 // CUresult of a failed allocation
	Bytes    uint64
	Count    uint64
	Comm     string
}

// DecodeEvent parses one ring-buffer record. It rejects records of the wrong
// size and unknown kinds, so a BPF object and a loader out of step fail
// loudly instead of producing nonsense.
func DecodeEvent(b []byte) (Event, error) {
	if len(b) != EventSize {
		return Event{}, fmt.Errorf("decode event: %d bytes, want %d: %w", len(b), EventSize, ErrBadRecord)
	}
	le := binary.LittleEndian
	e := Event{
		Time:     time.Duration(le.Uint64(b[0:])),
		CgroupID: le.Uint64(b[8:]),
		PID:      le.Uint32(b[16:]),
		TID:      le.Uint32(b[20:]),
		Kind:     EventKind(le.Uint32(b[24:])),
		Result:   int32(le.Uint32(b[28:])),
		Bytes:    le.Uint64(b[32:]),
		Count:    le.Uint64(b[40:]),
	}
	if e.Kind < EventFirstAlloc || e.Kind > EventAllocFailed {
		return Event{}, fmt.Errorf("decode event: unknown kind %d: %w", uint32(e.Kind), ErrBadRecord)
	}
	comm := b[48:64]
	if i := bytes.IndexByte(comm, 0); i >= 0 {
		comm = comm[:i]
	}
	e.Comm = string(comm)
	return e, nil
}

// Encode is DecodeEvent's inverse (for tests and replay); Comm is cut to 16
// bytes (the kernel writes at most 15 and a NUL, but a record may hold 16).
func (e Event) Encode() []byte {
	b := make([]byte, EventSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(e.Time))
	le.PutUint64(b[8:], e.CgroupID)
	le.PutUint32(b[16:], e.PID)
	le.PutUint32(b[20:], e.TID)
	le.PutUint32(b[24:], uint32(e.Kind))
	le.PutUint32(b[28:], uint32(e.Result))
	le.PutUint64(b[32:], e.Bytes)
	le.PutUint64(b[40:], e.Count)
	copy(b[48:64], e.Comm)
	return b
}
