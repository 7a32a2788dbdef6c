package core

// Heap slots: each flow records its index in each heap it can be in.
const (
	hBacklog   = iota // flows with queued work, by start tag: V is its top
	hActive           // Active flows with queued work, by start tag
	hThrottled        // Throttled flows with queued work, by start tag
	nHeaps
)

// flowHeap is a binary min-heap of flows by (S, id) that tracks each flow's
// position, so membership changes and key updates are O(log n) and allocate
// nothing once the backing array has grown. Each entry caches its key, so
// comparisons do not chase pointers.
type flowHeap struct {
	items []heapItem
	slot  int
}

type heapItem struct {
	s  float64
	id FnID
	f  *flow
}

func tagLess(a, b *flow) bool {
	if a.S != b.S {
		return a.S < b.S
	}
	return a.id < b.id
}

func itemLess(a, b *heapItem) bool {
	if a.s != b.s {
		return a.s < b.s
	}
	return a.id < b.id
}

func (h *flowHeap) len() int { return len(h.items) }

// at returns the i-th flow in heap (not sorted) order.
func (h *flowHeap) at(i int) *flow { return h.items[i].f }

func (h *flowHeap) top() *flow {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0].f
}

func (h *flowHeap) has(f *flow) bool { return f.hidx[h.slot] >= 0 }

func (h *flowHeap) push(f *flow) {
	f.hidx[h.slot] = len(h.items)
	h.items = append(h.items, heapItem{s: f.S, id: f.id, f: f})
	h.up(len(h.items) - 1)
}

func (h *flowHeap) remove(f *flow) {
	i := f.hidx[h.slot]
	if i < 0 {
		return
	}
	last := len(h.items) - 1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = heapItem{}
	h.items = h.items[:last]
	f.hidx[h.slot] = -1
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

// fix restores the order after f's key changed.
func (h *flowHeap) fix(f *flow) {
	i := f.hidx[h.slot]
	if i < 0 {
		return
	}
	h.items[i].s = f.S
	if !h.down(i) {
		h.up(i)
	}
}

func (h *flowHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].f.hidx[h.slot] = i
	h.items[j].f.hidx[h.slot] = j
}

func (h *flowHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !itemLess(&h.items[i], &h.items[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *flowHeap) down(i int) bool {
	start := i
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && itemLess(&h.items[r], &h.items[l]) {
			m = r
		}
		if !itemLess(&h.items[m], &h.items[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

// walker yields a heap's flows in increasing (S, id) order without changing
// the heap: a small frontier heap of copies of entries, O(log k) per step.
type walker struct {
	h        *flowHeap
	frontier []walkItem
}

type walkItem struct {
	heapItem
	idx int
}

func (w *walker) reset(h *flowHeap) {
	w.h = h
	w.frontier = w.frontier[:0]
	if h.len() > 0 {
		w.frontier = append(w.frontier, walkItem{h.items[0], 0})
	}
}

// next returns the next flow in order, or nil when done.
func (w *walker) next() *flow {
	fr := w.frontier
	n := len(fr)
	if n == 0 {
		return nil
	}
	top := fr[0]
	fr[0] = fr[n-1]
	fr = fr[:n-1]
	siftDown(fr, 0)
	for c := 2*top.idx + 1; c <= 2*top.idx+2 && c < w.h.len(); c++ {
		fr = append(fr, walkItem{w.h.items[c], c})
		siftUp(fr, len(fr)-1)
	}
	w.frontier = fr
	return top.f
}

func siftUp(fr []walkItem, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !itemLess(&fr[i].heapItem, &fr[p].heapItem) {
			return
		}
		fr[i], fr[p] = fr[p], fr[i]
		i = p
	}
}

func siftDown(fr []walkItem, i int) {
	n := len(fr)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && itemLess(&fr[r].heapItem, &fr[l].heapItem) {
			m = r
		}
		if !itemLess(&fr[m].heapItem, &fr[i].heapItem) {
			return
		}
		fr[i], fr[m] = fr[m], fr[i]
		i = m
	}
}

// timer is a deadline for a flow (TTL) or a container (keep-alive).
type timer struct {
	at   Time
	kind uint8
	id   uint64
}

const (
	tmTTL = iota + 1
	tmKeepAlive
)

// timerHeap, the walker's frontier and the simulator's event queue are
// binary heaps written out for their element types: a shared generic heap
// (less as a func value, or as a method through a type constraint) made
// BenchmarkCandidates 1.7-2x and BenchmarkSimEvents about 10% slower.
type timerHeap []timer

func timerLess(a, b timer) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.id < b.id
}

func (h *timerHeap) push(t timer) {
	*h = append(*h, t)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !timerLess(s[i], s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *timerHeap) pop() timer {
	s := *h
	t := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && timerLess(s[r], s[l]) {
			m = r
		}
		if !timerLess(s[m], s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return t
}
