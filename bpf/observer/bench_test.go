package observer

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/cgroups"
)

// BenchmarkPoll1000Cgroups measures one poll (diff, rates, aggregation,
// samples) over 1000 active cgroups, with the map read faked.
func BenchmarkPoll1000Cgroups(b *testing.B) {
	src := newFakeSource()
	res := &fakeResolver{infos: map[uint64]cgroups.Info{}}
	for i := range uint64(1000) {
		ctr := fmt.Sprintf("%064x", i)
		res.infos[i] = cgroups.Info{ID: i, Path: "/docker/" + ctr, Runtime: "docker", Container: ctr}
	}
	clk := &clock{t: time.Unix(0, 0)}
	o, err := New(Config{Now: clk.now, Function: func(id string) string { return id[60:] }}, src, res)
	if err != nil {
		b.Fatal(err)
	}
	n := uint64(0)
	for b.Loop() {
		b.StopTimer()
		n++
		for i := range uint64(1000) {
			src.counters[i] = bpf.Counters{Launches: [4]uint64{n * i}, SyncNs: [3]uint64{n}}
		}
		clk.t = clk.t.Add(time.Second)
		b.StartTimer()
		o.Poll()
		select {
		case <-o.Samples():
		default:
		}
	}
}
