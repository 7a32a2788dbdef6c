package core

// FlowStatus is a copy of one flow's state.
type FlowStatus struct {
	Fn       FnID
	Name     string
	State    FlowState
	Queued   int
	InFlight int
	S, F     float64 // tags, virtual seconds
	Tau      float64 // GPU time estimate, seconds
	Weight   float64
	Resident int // containers whose memory is on the GPU
	Idle     int // idle containers
	Starting int // containers starting
	MeanIAT  float64
	TTL      float64 // current grace period, seconds
}

// GPUStatus is a copy of one GPU's state.
type GPUStatus struct {
	Index         int
	SlotsUsed     int
	SlotLimit     int // D, or Improvements.AdaptiveD's current limit
	ResidentBytes int64
	Containers    int
	Util          float64
}

// Status is a snapshot for the API, metrics and tests.
type Status struct {
	Now         Time
	VirtualTime float64
	Throttle    float64 // current T, virtual seconds
	Queued      int
	Flows       []FlowStatus
	GPUs        []GPUStatus
}

// Status returns a copy of the scheduler's state. It allocates; it is not
// meant for the hot path.
func (s *Scheduler) Status() Status {
	st := Status{Now: s.now, VirtualTime: s.v, Throttle: s.throttle(), Queued: s.queued}
	for _, f := range s.flows {
		if f == nil {
			continue
		}
		fs := FlowStatus{Fn: f.id, Name: f.name, State: f.state, Queued: f.q.len(), InFlight: f.inFlight,
			S: f.S, F: f.F, Tau: f.tau, Weight: f.weight, Starting: f.starting, MeanIAT: f.meanIAT(), TTL: s.ttl(f)}
		for _, c := range f.ctrs {
			if c.resident {
				fs.Resident++
			}
			if c.state == ctrIdle {
				fs.Idle++
			}
		}
		st.Flows = append(st.Flows, fs)
	}
	for _, g := range s.gpus {
		st.GPUs = append(st.GPUs, GPUStatus{Index: g.idx, SlotsUsed: g.used, SlotLimit: g.lim, ResidentBytes: g.resident, Containers: len(g.ctrs), Util: g.utilEst})
	}
	return st
}
