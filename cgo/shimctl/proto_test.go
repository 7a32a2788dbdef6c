package shimctl

import (
	"errors"
	"testing"
)

func registerPacket(fn string, devices int, flags uint32) []byte {
	b := make([]byte, registerSize)
	putHeader(b, msgRegister)
	p := b[hdrSize:]
	le.PutUint32(p[0:], 4242)
	le.PutUint32(p[4:], 12080)
	le.PutUint32(p[8:], uint32(devices))
	le.PutUint32(p[12:], flags)
	copy(p[16:], fn)
	for i := 0; i < devices && i < maxDevices; i++ {
		p[16+functionIDMax+i*16] = byte(i + 1)
	}
	le.PutUint64(p[16+functionIDMax+maxDevices*16:], 1<<20)
	return b
}

func TestDecodeRegister(t *testing.T) {
	good := registerPacket("fn-a", 2, regUsagePage|regConverting)
	r, err := decodeRegister(good)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if r.FunctionID != "fn-a" || r.ClaimedPID != 4242 || r.DriverVersion != 12080 ||
		len(r.Devices) != 2 || r.Devices[1][0] != 2 || r.Bytes[KindManaged] != 1<<20 ||
		r.Flags != regUsagePage|regConverting {
		t.Errorf("decoded %+v", r)
	}

	mut := func(f func(b []byte) []byte) []byte {
		b := append([]byte(nil), good...)
		return f(b)
	}
	tests := []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"short header", good[:10]},
		{"bad magic", mut(func(b []byte) []byte { b[0] ^= 0xff; return b })},
		{"bad version", mut(func(b []byte) []byte { le.PutUint16(b[4:], 99); return b })},
		{"size field lies", mut(func(b []byte) []byte { le.PutUint32(b[8:], 12); return b })},
		{"truncated", mut(func(b []byte) []byte { b = b[:len(b)-8]; le.PutUint32(b[8:], uint32(len(b))); return b })},
		{"wrong type", mut(func(b []byte) []byte { le.PutUint16(b[6:], msgResult); return b })},
		{"too many devices", mut(func(b []byte) []byte { le.PutUint32(b[hdrSize+8:], 17); return b })},
		{"unterminated id", mut(func(b []byte) []byte {
			for i := 0; i < functionIDMax; i++ {
				b[hdrSize+16+i] = 'x'
			}
			return b
		})},
		{"garbage after id", mut(func(b []byte) []byte { b[hdrSize+16+100] = 'x'; return b })},
		{"control byte in id", mut(func(b []byte) []byte { b[hdrSize+16+1] = '\n'; return b })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeRegister(tc.pkt); !errors.Is(err, errMalformed) {
				t.Errorf("decodeRegister = %v, want errMalformed", err)
			}
		})
	}
}

func TestCommandResultRoundTrip(t *testing.T) {
	cmd := encodeCommand(7, OpSetBudget, 1<<30)
	typ, err := checkHeader(cmd)
	if err != nil || typ != msgCommand || len(cmd) != commandSize {
		t.Fatalf("command header: typ %d err %v len %d", typ, err, len(cmd))
	}
	if le.Uint64(cmd[16:]) != 7 || Op(le.Uint32(cmd[24:])) != OpSetBudget || le.Uint64(cmd[32:]) != 1<<30 {
		t.Errorf("command fields wrong: % x", cmd)
	}
	res := make([]byte, resultSize)
	putHeader(res, msgResult)
	le.PutUint64(res[16:], 7)
	le.PutUint32(res[24:], uint32(OpPrefetchDevice))
	le.PutUint32(res[28:], uint32(0xffffffff)) // -1
	le.PutUint64(res[32:], 99)
	le.PutUint64(res[40:], 5)
	le.PutUint64(res[48+8*int(KindVMM):], 3)
	id, r, err := decodeResult(res)
	if err != nil {
		t.Fatalf("decodeResult: %v", err)
	}
	if id != 7 || r.Op != OpPrefetchDevice || r.Status != StatusUnknownOp || r.Bytes != 99 ||
		r.DurationNs != 5 || r.Usage[KindVMM] != 3 {
		t.Errorf("decoded %d %+v", id, r)
	}
	if r.Err() == nil {
		t.Error("status -1 reads as success")
	}
	if _, _, err := decodeResult(res[:resultSize-1]); err == nil {
		t.Error("short result accepted")
	}
}

func TestWelcome(t *testing.T) {
	w := encodeWelcome(3, 1<<29)
	if typ, err := checkHeader(w); err != nil || typ != msgWelcome || len(w) != welcomeSize {
		t.Fatalf("welcome header: %d %v", typ, err)
	}
	if le.Uint64(w[16:]) != 3 || le.Uint64(w[24:]) != 1<<29 {
		t.Errorf("welcome fields: % x", w)
	}
}
