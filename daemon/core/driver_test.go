package core

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// driver is a test executor: it keeps the actions the scheduler asked for
// and answers them in a random order, as a real executor might.
type driver struct {
	t   testing.TB
	s   *Scheduler
	rng *rand.Rand
	now Time

	pendingStart map[CtrID]bool
	running      map[InvID]Action
	moving       []CtrID
	dispatched   map[InvID]bool
	failed       map[InvID]bool
	check        func(d *driver)
	log          []string
	// failOneIn, if set, answers about one container start in failOneIn
	// with ContainerFailed; dead holds those containers, which no later
	// action may name.
	failOneIn int
	dead      map[CtrID]bool
}

func newDriver(t testing.TB, cfg Config, seed uint64) *driver {
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &driver{t: t, s: s, rng: rand.New(rand.NewPCG(seed, 7)), pendingStart: map[CtrID]bool{},
		running: map[InvID]Action{}, dispatched: map[InvID]bool{}, failed: map[InvID]bool{}, dead: map[CtrID]bool{}}
}

func (d *driver) step(ev Event) {
	d.t.Helper()
	if err := d.s.Step(d.now, ev); err != nil {
		d.t.Fatalf("step %v at %v: %v", ev.Kind, d.now, err)
	}
	d.collect()
}

func (d *driver) collect() {
	rd := d.s.Ready()
	for _, a := range rd.Actions {
		d.log = append(d.log, fmt.Sprintf("%v %v", d.now, a))
		if a.Ctr != 0 && d.dead[a.Ctr] {
			d.t.Fatalf("at %v: %v names container %d, which failed to start\n%s", d.now, a, a.Ctr, tail(d.log))
		}
		switch a.Kind {
		case ActStartContainer:
			d.pendingStart[a.Ctr] = true
		case ActDispatch:
			if d.dispatched[a.Inv] {
				d.t.Fatalf("invocation %d dispatched twice", a.Inv)
			}
			d.dispatched[a.Inv] = true
			d.running[a.Inv] = a
		case ActPrefetch, ActEvict:
			d.moving = append(d.moving, a.Ctr)
		case ActFail:
			d.failed[a.Inv] = true
		}
	}
	if d.check != nil {
		d.check(d)
	}
}

// answerOne completes one outstanding action chosen at random; false if
// nothing is outstanding.
func (d *driver) answerOne(gpuTime func(Action) time.Duration) bool {
	n := len(d.pendingStart) + len(d.running) + len(d.moving)
	if n == 0 {
		return false
	}
	i := d.rng.IntN(n)
	if i < len(d.pendingStart) {
		ids := sortedKeys(d.pendingStart)
		c := ids[i]
		delete(d.pendingStart, c)
		if d.failOneIn > 0 && d.rng.IntN(d.failOneIn) == 0 {
			d.dead[c] = true
			d.step(ContainerFailed(c, "test"))
			return true
		}
		d.step(ContainerReady(c))
		return true
	}
	i -= len(d.pendingStart)
	if i < len(d.running) {
		ids := sortedKeys(d.running)
		a := d.running[ids[i]]
		delete(d.running, ids[i])
		d.step(Completed(a.Inv, gpuTime(a), 0))
		return true
	}
	i -= len(d.running)
	c := d.moving[i]
	d.moving = slices.Delete(d.moving, i, i+1)
	d.step(MemoryMoved(c, true))
	return true
}

func sortedKeys[K ~uint64, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
