//go:build linux && (amd64 || arm64)

package bpf

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// Probe holds the loaded programs, their links and the ring-buffer reader.
// Its methods are safe for concurrent use; Close detaches everything.
type Probe struct {
	lib    string
	objs   probeObjects
	ex     *link.Executable
	groups map[probeKind]*group // every probed function the library exports
	multi  bool                 // attach through uprobe_multi links
	rd     *ringbuf.Reader

	mu        sync.Mutex
	kindLinks map[probeKind][]link.Link // attached now, by program
	tpLinks   []link.Link
	closed    bool

	closeOnce sync.Once
	closeErr  error
}

// group is the functions one program is attached to, with their cookies.
type group struct {
	syms    []string
	cookies []uint64
}

// Open checks that eBPF can run, loads the programs and attaches them to the
// driver library. The returned error wraps [ErrNotSupported] when this host
// cannot run them; any other error is a real failure.
func Open(opts *Options) (*Probe, error) {
	if opts == nil {
		opts = &Options{}
	}
	lib, err := opts.library()
	if err != nil {
		return nil, err
	}
	if err := checkSupport(lib, hostEnv()); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", notSupportedIfPerm(err))
	}
	p := &Probe{lib: lib}
	spec, err := loadProbe()
	if err != nil {
		return nil, err
	}
	// uprobe_multi links (Linux 6.6+) attach and detach all of a program's
	// functions at once: detaching per-function perf-event uprobes costs a
	// grace period each (~0.1 s, serialized).
	p.multi = !opts.PerFunctionUprobes && features.HaveBPFLinkUprobeMulti() == nil
	if p.multi {
		for _, ps := range spec.Programs {
			if ps.Type == ebpf.Kprobe && (strings.HasPrefix(ps.SectionName, "uprobe") || strings.HasPrefix(ps.SectionName, "uretprobe")) {
				ps.AttachType = ebpf.AttachTraceUprobeMulti
			}
		}
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		// A verifier rejection (*ebpf.VerifierError, full log with %+v) is a
		// real failure, not a missing feature.
		return nil, fmt.Errorf("load probes: %w", notSupportedIfPerm(err))
	}
	if err := p.attach(opts); err != nil {
		p.Close()
		return nil, err
	}
	rd, err := ringbuf.NewReader(p.objs.Events)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	p.rd = rd
	return p, nil
}

// notSupportedIfPerm wraps ErrNotSupported around permission errors and
// kernel features cilium/ebpf finds missing.
func notSupportedIfPerm(err error) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (needs CAP_BPF and CAP_PERFMON): %w", ErrNotSupported, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}

// supportEnv is what checkSupport asks of the host (a parameter so that
// tests can take each prerequisite away).
type supportEnv struct {
	stat       func(string) (os.FileInfo, error)
	euid       func() int
	kernelBTF  func() error
	uprobeType string // the uprobe PMU's type file
}

func hostEnv() supportEnv {
	return supportEnv{
		stat:       os.Stat,
		euid:       os.Geteuid,
		kernelBTF:  func() error { _, err := btf.LoadKernelSpec(); return err },
		uprobeType: "/sys/bus/event_source/devices/uprobe/type",
	}
}

// checkSupport reports, as ErrNotSupported, the missing prerequisites that
// can be told without loading anything.
func checkSupport(lib string, env supportEnv) error {
	if _, err := env.stat(lib); err != nil {
		return fmt.Errorf("driver library: %w: %w", ErrNotSupported, err)
	}
	if env.euid() != 0 {
		return fmt.Errorf("%w: needs root (CAP_BPF, CAP_PERFMON)", ErrNotSupported)
	}
	if err := env.kernelBTF(); err != nil {
		return fmt.Errorf("%w: no kernel BTF: %w", ErrNotSupported, err)
	}
	if _, err := env.stat(env.uprobeType); err != nil {
		return fmt.Errorf("%w: kernel has no uprobe PMU: %w", ErrNotSupported, err)
	}
	return nil
}

// exportedFuncs returns the library's exported function symbols and their
// addresses, so that aliases at one address are probed once.
func exportedFuncs(lib string) (map[string]uint64, error) {
	f, err := elf.Open(lib)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", lib, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("read dynamic symbols of %s: %w", lib, err)
	}
	out := make(map[string]uint64, len(syms))
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF && s.Value != 0 {
			out[s.Name] = s.Value
		}
	}
	return out, nil
}

func (p *Probe) attach(opts *Options) error {
	funcs, err := exportedFuncs(p.lib)
	if err != nil {
		return err
	}
	p.ex, err = link.OpenExecutable(p.lib)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.lib, err)
	}
	// Group the functions by program, one address once (aliases).
	p.groups = map[probeKind]*group{}
	p.kindLinks = map[probeKind][]link.Link{}
	seen := map[uint64]bool{}
	for _, s := range symbols {
		addr, ok := funcs[s.name]
		if !ok || seen[addr] {
			continue
		}
		seen[addr] = true
		g := p.groups[s.kind]
		if g == nil {
			g = &group{}
			p.groups[s.kind] = g
		}
		g.syms = append(g.syms, s.name)
		g.cookies = append(g.cookies, s.cookie)
	}
	if len(p.groups) == 0 {
		return fmt.Errorf("%s exports none of the CUDA driver functions Sluice probes: %w", p.lib, ErrNotSupported)
	}
	for k := kindLaunch; k <= kindFree; k++ {
		switch {
		case k == kindLaunch && !opts.Launches,
			k == kindSync && opts.DisableSyncs,
			(k == kindAlloc || k == kindFree) && opts.DisableMemory,
			(k == kindMemcpy || k == kindMemcpyAsync || k == kindPrefetch) && opts.DisableCopies:
			continue
		}
		if err := p.attachKind(k); err != nil {
			return err
		}
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{{"sched_process_exit", p.objs.TpExit}, {"sched_process_exec", p.objs.TpExec}} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			return fmt.Errorf("raw tracepoint %s: %w", tp.name, notSupportedIfPerm(err))
		}
		p.tpLinks = append(p.tpLinks, l)
	}
	return nil
}

// attachKind attaches program k to its functions. Called with p.mu held
// (or before p is shared).
func (p *Probe) attachKind(k probeKind) error {
	g := p.groups[k]
	if g == nil || len(p.kindLinks[k]) > 0 {
		return nil
	}
	entry, ret := p.programs(k)
	var links []link.Link
	var err error
	if p.multi {
		links, err = p.attachMulti(g.syms, g.cookies, entry, ret)
	} else {
		for i, name := range g.syms {
			var ls []link.Link
			ls, err = p.attachOne(name, g.cookies[i], entry, ret)
			links = append(links, ls...)
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		closeAll(links)
		return err
	}
	p.kindLinks[k] = links
	return nil
}

func closeAll(links []link.Link) error {
	var errs []error
	for _, l := range links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// SetLaunches attaches (on) or detaches (off) the kernel-launch probes
// while the others stay attached, e.g. to look at one function's launch
// rate for a while. See [Options.Launches] for the cost.
func (p *Probe) SetLaunches(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("set launch probing: probe closed")
	}
	if on {
		return p.attachKind(kindLaunch)
	}
	links := p.kindLinks[kindLaunch]
	delete(p.kindLinks, kindLaunch)
	if err := closeAll(links); err != nil {
		return fmt.Errorf("detach launch probes: %w", err)
	}
	return nil
}

func (p *Probe) attachMulti(syms []string, cookies []uint64, entry, ret *ebpf.Program) ([]link.Link, error) {
	opts := &link.UprobeMultiOptions{Cookies: cookies}
	l, err := p.ex.UprobeMulti(syms, entry, opts)
	if err != nil {
		return nil, fmt.Errorf("uprobe %v in %s: %w", syms, p.lib, notSupportedIfPerm(err))
	}
	links := []link.Link{l}
	if ret != nil {
		l, err := p.ex.UretprobeMulti(syms, ret, opts)
		if err != nil {
			return links, fmt.Errorf("uretprobe %v in %s: %w", syms, p.lib, notSupportedIfPerm(err))
		}
		links = append(links, l)
	}
	return links, nil
}

func (p *Probe) attachOne(name string, cookie uint64, entry, ret *ebpf.Program) ([]link.Link, error) {
	uo := &link.UprobeOptions{Cookie: cookie}
	l, err := p.ex.Uprobe(name, entry, uo)
	if err != nil {
		return nil, fmt.Errorf("uprobe %s in %s: %w", name, p.lib, notSupportedIfPerm(err))
	}
	links := []link.Link{l}
	if ret != nil {
		l, err := p.ex.Uretprobe(name, ret, uo)
		if err != nil {
			return links, fmt.Errorf("uretprobe %s in %s: %w", name, p.lib, notSupportedIfPerm(err))
		}
		links = append(links, l)
	}
	return links, nil
}

func (p *Probe) programs(k probeKind) (entry, ret *ebpf.Program) {
	switch k {
	case kindLaunch:
		return p.objs.UprobeLaunch, nil
	case kindSync:
		return p.objs.UprobeSync, p.objs.UretprobeSync
	case kindMemcpy:
		return p.objs.UprobeMemcpy, p.objs.UretprobeMemcpy
	case kindMemcpyAsync:
		return p.objs.UprobeMemcpy, nil
	case kindPrefetch:
		return p.objs.UprobePrefetch, nil
	case kindAlloc:
		return p.objs.UprobeAlloc, p.objs.UretprobeAlloc
	default:
		return p.objs.UprobeFree, nil
	}
}

// Library is the path the probes are attached to.
func (p *Probe) Library() string { return p.lib }

// Attached lists the driver functions probed now.
func (p *Probe) Attached() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k := kindLaunch; k <= kindFree; k++ {
		if g := p.groups[k]; g != nil && len(p.kindLinks[k]) > 0 {
			out = append(out, g.syms...)
		}
	}
	return out
}

// Counters reads every cgroup's counters, keyed by cgroup-v2 id.
func (p *Probe) Counters() (map[uint64]Counters, error) {
	out := map[uint64]Counters{}
	var key uint64
	var val probeCounters
	it := p.objs.Stats.Iterate()
	for it.Next(&key, &val) {
		out[key] = *fromProbe(&val)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	return out, nil
}

// Forget deletes a cgroup's counters (after the cgroup is gone).
func (p *Probe) Forget(cgroupID uint64) error {
	if err := p.objs.Stats.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete counters of cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// Drops reads the BPF side's drop counters.
func (p *Probe) Drops() (Drops, error) {
	var d [5]uint64
	for i := range d {
		var perCPU []uint64
		if err := p.objs.Drops.Lookup(uint32(i), &perCPU); err != nil {
			return Drops{}, fmt.Errorf("read drops: %w", err)
		}
		d[i] = sum(perCPU)
	}
	return Drops{StatsFull: d[0], AllocsFull: d[1], InflightFull: d[2], ProcsFull: d[3], RingbufFull: d[4]}, nil
}

// ReadEvent blocks until the next ring-buffer event. After Close it returns
// an error wrapping [ringbuf.ErrClosed]. A record that does not decode is
// returned as an error wrapping [ErrBadRecord]; the next call reads on.
func (p *Probe) ReadEvent() (Event, error) {
	rec, err := p.rd.Read()
	if err != nil {
		return Event{}, fmt.Errorf("read ring buffer: %w", err)
	}
	return DecodeEvent(rec.RawSample)
}

// Close detaches the links, then closes the reader, then the objects.
// It is safe to call more than once and concurrently with ReadEvent.
func (p *Probe) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		var links []link.Link
		for _, ls := range p.kindLinks {
			links = append(links, ls...)
		}
		links = append(links, p.tpLinks...)
		p.kindLinks, p.tpLinks = nil, nil
		p.mu.Unlock()
		// Each perf-event uprobe detach waits for a grace period (~0.1 s
		// on the dev box), serialized; a uprobe_multi link waits once.
		errs := []error{closeAll(links)}
		if p.rd != nil {
			errs = append(errs, p.rd.Close())
		}
		errs = append(errs, p.objs.Close())
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

func fromProbe(pc *probeCounters) *Counters {
	return &Counters{
		Launches:          pc.Launches,
		Syncs:             pc.Syncs,
		SyncNs:            pc.SyncNs,
		Allocs:            pc.Allocs,
		AllocBytes:        pc.AllocBytes,
		Frees:             pc.Frees,
		FreedBytes:        pc.FreedBytes,
		ExitReleased:      pc.ExitReleased,
		ExitReleasedBytes: pc.ExitReleasedBytes,
		UntrackedBytes:    pc.UntrackedBytes,
		Memcpys:           pc.Memcpys,
		MemcpyBytes:       pc.MemcpyBytes,
		MemcpyNs:          pc.MemcpyNs,
		Prefetches:        pc.Prefetches,
		PrefetchBytes:     pc.PrefetchBytes,
		FailedCalls:       pc.FailedCalls,
		SyncHist:          pc.SyncHist,
	}
}
