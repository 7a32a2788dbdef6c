package shimctl

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Protocol constants, mirrored from ../sluice_proto.h (asserted by tests).
const (
	protoMagic      = 0x45434c53
	protoVersion    = 2
	usageMagic      = 0x47534c53
	usagePageSize   = 4096
	functionIDMax   = 128
	maxDevices      = 16
	maxMsg          = 1024
	msgRegister     = 1
	msgWelcome      = 2
	msgCommand      = 3
	msgResult       = 4
	regUsagePage    = 0x1
	regConverting   = 0x2
	regForked       = 0x4
	regAgain        = 0x8
	hdrSize         = 16
	registerSize    = hdrSize + 16 + functionIDMax + maxDevices*16 + 8*KindCount
	welcomeSize     = 32
	commandSize     = 40
	resultSize      = 48 + 8*KindCount
	usagePageLayout = 16 + 8*KindCount + 8 + 8*KindCount + 6*8 // bytes of struct sluice_usage_page in use
)

// Op is a command the daemon sends to a shim.
type Op uint32

// Commands.
const (
	OpPrefetchDevice Op = 1 // move all evictable memory to its GPU
	OpEvictHost      Op = 2 // arg 0: move all evictable memory to host memory; else the next arg bytes
	OpSetBudget      Op = 3 // arg: bytes, 0 removes the budget
	OpReportUsage    Op = 4 // reply carries the usage counters
)

func (o Op) String() string {
	switch o {
	case OpPrefetchDevice:
		return "prefetch-device"
	case OpEvictHost:
		return "evict-host"
	case OpSetBudget:
		return "set-budget"
	case OpReportUsage:
		return "report-usage"
	}
	return fmt.Sprintf("op(%d)", uint32(o))
}

// Kind indexes the shim's memory accounting.
type Kind int

// Memory kinds.
const (
	KindManaged      Kind = 0 // cuMemAlloc/Pitch converted to managed memory
	KindAsyncManaged Kind = 1 // stream-ordered allocations made managed
	KindAppManaged   Kind = 2 // the application's own managed memory
	KindDevice       Kind = 3 // device memory (IPC pools, no-UVM mode)
	KindVMM          Kind = 4 // cuMemCreate on a device
	KindArray        Kind = 5 // CUDA arrays
	KindGraph        Kind = 6 // the driver's graph memory pools (bytes reserved, per process)
	KindCount             = 7
)

// Evictable reports whether the daemon can move memory of this kind.
func (k Kind) Evictable() bool { return k <= KindAppManaged }

// Status values of a Result other than CUresult codes.
const (
	StatusOK          = 0
	StatusUnknownOp   = -1
	StatusBadArg      = -2
	StatusUnavailable = -3
)

// Result is a shim's reply to one command.
type Result struct {
	Op         Op
	Status     int32 // 0 ok, > 0 a CUresult, < 0 a Status* value
	Bytes      uint64
	DurationNs uint64
	Usage      [KindCount]uint64 // live bytes by kind after the command
}

// Err returns nil for a successful result, else an error naming the status.
func (r Result) Err() error {
	if r.Status == StatusOK {
		return nil
	}
	switch r.Status {
	case StatusUnknownOp:
		return fmt.Errorf("%v: shim does not know the command", r.Op)
	case StatusBadArg:
		return fmt.Errorf("%v: bad argument", r.Op)
	case StatusUnavailable:
		return fmt.Errorf("%v: shim cannot run it now", r.Op)
	}
	return fmt.Errorf("%v: CUDA error %d", r.Op, r.Status)
}

// registration is a decoded REGISTER message.
type registration struct {
	ClaimedPID    int32
	DriverVersion int32
	Devices       [][16]byte
	Flags         uint32
	FunctionID    string
	Bytes         [KindCount]uint64
}

var le = binary.LittleEndian

var errMalformed = errors.New("malformed message")

// checkHeader validates a packet's header and returns its type.
func checkHeader(b []byte) (uint16, error) {
	if len(b) < hdrSize {
		return 0, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	if m := le.Uint32(b[0:]); m != protoMagic {
		return 0, fmt.Errorf("%w: magic %#x", errMalformed, m)
	}
	if v := le.Uint16(b[4:]); v != protoVersion {
		return 0, fmt.Errorf("%w: protocol version %d, want %d", errMalformed, v, protoVersion)
	}
	if sz := le.Uint32(b[8:]); int(sz) != len(b) {
		return 0, fmt.Errorf("%w: size field %d, packet %d", errMalformed, sz, len(b))
	}
	return le.Uint16(b[6:]), nil
}

func putHeader(b []byte, typ uint16) {
	le.PutUint32(b[0:], protoMagic)
	le.PutUint16(b[4:], protoVersion)
	le.PutUint16(b[6:], typ)
	le.PutUint32(b[8:], uint32(len(b)))
	le.PutUint32(b[12:], 0)
}

func decodeRegister(b []byte) (registration, error) {
	var r registration
	typ, err := checkHeader(b)
	if err != nil {
		return r, err
	}
	if typ != msgRegister || len(b) != registerSize {
		return r, fmt.Errorf("%w: want REGISTER (%d bytes), got type %d (%d bytes)", errMalformed, registerSize, typ, len(b))
	}
	p := b[hdrSize:]
	r.ClaimedPID = int32(le.Uint32(p[0:]))
	r.DriverVersion = int32(le.Uint32(p[4:]))
	n := le.Uint32(p[8:])
	r.Flags = le.Uint32(p[12:])
	if n > maxDevices {
		return r, fmt.Errorf("%w: %d devices", errMalformed, n)
	}
	id := p[16 : 16+functionIDMax]
	end := 0
	for end < len(id) && id[end] != 0 {
		end++
	}
	for _, c := range id[end:] {
		if c != 0 {
			return r, fmt.Errorf("%w: function id not NUL-padded", errMalformed)
		}
	}
	if end == len(id) {
		return r, fmt.Errorf("%w: function id not terminated", errMalformed)
	}
	for _, c := range id[:end] {
		if c < 0x20 || c > 0x7e {
			return r, fmt.Errorf("%w: function id has byte %#x", errMalformed, c)
		}
	}
	r.FunctionID = string(id[:end])
	u := p[16+functionIDMax:]
	for i := 0; i < int(n); i++ {
		var d [16]byte
		copy(d[:], u[i*16:])
		r.Devices = append(r.Devices, d)
	}
	bs := u[maxDevices*16:]
	for k := 0; k < KindCount; k++ {
		r.Bytes[k] = le.Uint64(bs[k*8:])
	}
	return r, nil
}

func encodeWelcome(session, budget uint64) []byte {
	b := make([]byte, welcomeSize)
	putHeader(b, msgWelcome)
	le.PutUint64(b[16:], session)
	le.PutUint64(b[24:], budget)
	return b
}

func encodeCommand(id uint64, op Op, arg uint64) []byte {
	b := make([]byte, commandSize)
	putHeader(b, msgCommand)
	le.PutUint64(b[16:], id)
	le.PutUint32(b[24:], uint32(op))
	le.PutUint32(b[28:], 0)
	le.PutUint64(b[32:], arg)
	return b
}

func decodeResult(b []byte) (uint64, Result, error) {
	var r Result
	typ, err := checkHeader(b)
	if err != nil {
		return 0, r, err
	}
	if typ != msgResult || len(b) != resultSize {
		return 0, r, fmt.Errorf("%w: want RESULT (%d bytes), got type %d (%d bytes)", errMalformed, resultSize, typ, len(b))
	}
	id := le.Uint64(b[16:])
	r.Op = Op(le.Uint32(b[24:]))
	r.Status = int32(le.Uint32(b[28:]))
	r.Bytes = le.Uint64(b[32:])
	r.DurationNs = le.Uint64(b[40:])
	for k := 0; k < KindCount; k++ {
		r.Usage[k] = le.Uint64(b[48+8*k:])
	}
	return id, r, nil
}
