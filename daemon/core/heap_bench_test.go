package core

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func randomHeap(rng *rand.Rand, n int, distinct bool) *flowHeap {
	h := &flowHeap{}
	for i := 0; i < n; i++ {
		s := rng.Float64() * 100
		if !distinct {
			s = float64(rng.IntN(50)) // ties on S
		}
		f := &flow{id: FnID(i), S: s}
		for j := range f.hidx {
			f.hidx[j] = -1
		}
		h.push(f)
	}
	return h
}

// BenchmarkCandidates measures the ordered walk (used by PolicyMQFQ; the
// sticky policies take the heap prefix) over the 20 lowest start tags.
func BenchmarkCandidates(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		h := randomHeap(rand.New(rand.NewPCG(1, 1)), n, true)
		var w walker
		out := make([]*flow, 0, 20)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				w.reset(h)
				out = out[:0]
				for f := w.next(); f != nil && len(out) < 20; f = w.next() {
					out = append(out, f)
				}
			}
		})
	}
}

// TestWalkerOrder: the walker yields exactly the heap's flows in (S, id)
// order, and the heap stays intact under removals and key changes.
func TestWalkerOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for trial := 0; trial < 200; trial++ {
		h := randomHeap(rng, rng.IntN(300), trial%2 == 0)
		for i := 0; i < h.len()/4; i++ { // shake it: remove some, change some keys
			f := h.at(rng.IntN(h.len()))
			if rng.IntN(2) == 0 {
				h.remove(f)
			} else {
				f.S = rng.Float64() * 100
				h.fix(f)
			}
		}
		var want []*flow
		for i := 0; i < h.len(); i++ {
			want = append(want, h.at(i))
		}
		slices.SortFunc(want, func(a, b *flow) int {
			if tagLess(a, b) {
				return -1
			}
			return 1
		})
		var w walker
		w.reset(h)
		var got []*flow
		for f := w.next(); f != nil; f = w.next() {
			got = append(got, f)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d: walker order differs from sorted order", trial)
		}
		if h.len() > 0 && h.top() != want[0] {
			t.Fatalf("trial %d: top is not the minimum", trial)
		}
	}
}
