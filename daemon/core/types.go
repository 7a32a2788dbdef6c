package core

import (
	"fmt"
	"math"
	"time"
)

// Time is a point in time: nanoseconds since an epoch the caller chooses
// (the simulator's start, or the daemon's boot). The core never reads a clock.
type Time int64

// Never is a WakeAt that means "no deadline".
const Never Time = math.MaxInt64

// Add returns t+d.
func (t Time) Add(d time.Duration) Time { return t + Time(d) }

// Sub returns t-u as a duration.
func (t Time) Sub(u Time) time.Duration { return time.Duration(t - u) }

// Seconds returns t in seconds since the epoch.
func (t Time) Seconds() float64 { return float64(t) / 1e9 }

// TimeOf returns the Time s seconds after the epoch.
func TimeOf(s float64) Time { return Time(math.Round(s * 1e9)) }

func (t Time) String() string {
	if t == Never {
		return "never"
	}
	return time.Duration(t).String()
}

// FnID names a registered function (one flow per function). The owner picks
// it; IDs are small dense integers (0, 1, 2, ...).
type FnID int32

// InvID names one invocation. The owner picks it; it must be unique among
// invocations that are queued or running.
type InvID uint64

// CtrID names a container. The core allocates them (1, 2, 3, ...) in
// StartContainer actions.
type CtrID uint64

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds. The comment lists the fields each one uses.
const (
	_ EventKind = iota
	// EvRegister adds function Fn: Name, Weight (0 = 1; else 0.001 to
	// 1000), MemBytes (0 = Config.DefaultMemBytes), Prewarm containers
	// (started in the background: see Scheduler.prewarm).
	EvRegister
	// EvArrived queues invocation Inv of function Fn.
	EvArrived
	// EvContainerReady: container Ctr finished starting.
	EvContainerReady
	// EvContainerFailed: container Ctr could not start (Reason); it is gone.
	EvContainerFailed
	// EvCompleted: invocation Inv finished after GPUTime of execution; Bytes is
	// the container's reported GPU memory footprint (0 = unknown).
	EvCompleted
	// EvMemoryMoved: a Prefetch (Resident true) or Evict (Resident false) of
	// container Ctr finished.
	EvMemoryMoved
	// EvMonitorTick: GPU's utilization sample Util (0-1, NVML's
	// utilization.gpu) and per-container activity Activity.
	EvMonitorTick
)

var eventNames = [...]string{"", "register", "arrived", "container-ready", "container-failed", "completed", "memory-moved", "monitor-tick"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", k)
}

// CtrActivity is one container's activity over a monitor period.
type CtrActivity struct {
	Ctr CtrID
	// Busy is the fraction of the period the container had kernels running.
	Busy float64
}

// Event is one input to Step. It is a plain value (no interface), so stepping
// allocates nothing; Kind says which fields matter.
type Event struct {
	Kind     EventKind
	Fn       FnID
	Inv      InvID
	Ctr      CtrID
	GPU      int
	GPUTime  time.Duration
	Bytes    int64
	Resident bool
	Util     float64
	Weight   float64
	Prewarm  int
	Name     string
	Reason   string
	Activity []CtrActivity
}

// Register returns an EvRegister event.
func Register(fn FnID, name string, weight float64, memBytes int64) Event {
	return Event{Kind: EvRegister, Fn: fn, Name: name, Weight: weight, Bytes: memBytes}
}

// Arrived returns an EvArrived event.
func Arrived(inv InvID, fn FnID) Event { return Event{Kind: EvArrived, Inv: inv, Fn: fn} }

// ContainerReady returns an EvContainerReady event.
func ContainerReady(c CtrID) Event { return Event{Kind: EvContainerReady, Ctr: c} }

// ContainerFailed returns an EvContainerFailed event.
func ContainerFailed(c CtrID, reason string) Event {
	return Event{Kind: EvContainerFailed, Ctr: c, Reason: reason}
}

// Completed returns an EvCompleted event.
func Completed(inv InvID, gpuTime time.Duration, memFootprint int64) Event {
	return Event{Kind: EvCompleted, Inv: inv, GPUTime: gpuTime, Bytes: memFootprint}
}

// MemoryMoved returns an EvMemoryMoved event.
func MemoryMoved(c CtrID, resident bool) Event {
	return Event{Kind: EvMemoryMoved, Ctr: c, Resident: resident}
}

// MonitorTick returns an EvMonitorTick event.
func MonitorTick(gpu int, util float64, act []CtrActivity) Event {
	return Event{Kind: EvMonitorTick, GPU: gpu, Util: util, Activity: act}
}

// ActionKind says what an Action asks for.
type ActionKind uint8

// Action kinds.
const (
	_ ActionKind = iota
	// ActStartContainer: start container Ctr of function Fn on GPU. Answer
	// with ContainerReady or ContainerFailed.
	ActStartContainer
	// ActDispatch: run invocation Inv in container Ctr on GPU. Answer with
	// Completed.
	ActDispatch
	// ActPrefetch: move container Ctr's memory (Bytes) to GPU. Answer with
	// MemoryMoved{Resident: true}.
	ActPrefetch
	// ActEvict: move container Ctr's memory (Bytes) to the host. Answer with
	// MemoryMoved{Resident: false}.
	ActEvict
	// ActStopContainer: stop and remove container Ctr. No answer.
	ActStopContainer
	// ActFail: invocation Inv cannot run (Reason); it left the scheduler.
	ActFail
)

var actionNames = [...]string{"", "start-container", "dispatch", "prefetch", "evict", "stop-container", "fail"}

func (k ActionKind) String() string {
	if int(k) < len(actionNames) {
		return actionNames[k]
	}
	return fmt.Sprintf("action(%d)", k)
}

// Action is one piece of work for the executor.
type Action struct {
	Kind  ActionKind
	Inv   InvID
	Ctr   CtrID
	Fn    FnID
	GPU   int
	Bytes int64
	// Cold marks a Dispatch that is the first invocation of a container
	// started for it (it waited for a cold start).
	Cold   bool
	Reason string
}

func (a Action) String() string {
	switch a.Kind {
	case ActStartContainer:
		return fmt.Sprintf("start-container ctr=c%d fn=%d gpu=%d", a.Ctr, a.Fn, a.GPU)
	case ActDispatch:
		cold := ""
		if a.Cold {
			cold = " cold"
		}
		return fmt.Sprintf("dispatch inv=%d ctr=c%d gpu=%d%s", a.Inv, a.Ctr, a.GPU, cold)
	case ActPrefetch:
		return fmt.Sprintf("prefetch ctr=c%d gpu=%d bytes=%d", a.Ctr, a.GPU, a.Bytes)
	case ActEvict:
		return fmt.Sprintf("evict ctr=c%d gpu=%d bytes=%d", a.Ctr, a.GPU, a.Bytes)
	case ActStopContainer:
		return fmt.Sprintf("stop-container ctr=c%d gpu=%d", a.Ctr, a.GPU)
	case ActFail:
		return fmt.Sprintf("fail inv=%d reason=%q", a.Inv, a.Reason)
	}
	return a.Kind.String()
}

// FlowState is a flow's MQFQ state.
type FlowState uint8

// Flow states.
const (
	Inactive FlowState = iota
	Active
	Throttled
)

func (s FlowState) String() string {
	switch s {
	case Active:
		return "active"
	case Throttled:
		return "throttled"
	}
	return "inactive"
}

// FlowChange is one flow state transition.
type FlowChange struct {
	Fn       FnID
	From, To FlowState
}

// Ready is the work a Step or Tick produced. See the package doc for the
// ordering contract and buffer lifetime.
type Ready struct {
	// Actions in start order.
	Actions []Action
	// WakeAt is the next deadline (TTL expiry, keep-alive, utilization
	// re-check): call Tick then, or earlier. Never if there is none.
	WakeAt Time
	// Changes lists flow state transitions in the order they happened.
	Changes []FlowChange
}
