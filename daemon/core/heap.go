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
// nothing once the backing array has grown.
type flowHeap struct {
	items []*flow
	slot  int
}

func tagLess(a, b *flow) bool {
	if a.S != b.S {
		return a.S < b.S
	}
	return a.id < b.id
}

func (h *flowHeap) len() int { return len(h.items) }

func (h *flowHeap) top() *flow {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func (h *flowHeap) has(f *flow) bool { return f.hidx[h.slot] >= 0 }

func (h *flowHeap) push(f *flow) {
	f.hidx[h.slot] = len(h.items)
	h.items = append(h.items, f)
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
	h.items[last] = nil
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
	if !h.down(i) {
		h.up(i)
	}
}

func (h *flowHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].hidx[h.slot] = i
	h.items[j].hidx[h.slot] = j
}

func (h *flowHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !tagLess(h.items[i], h.items[p]) {
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
		if r := l + 1; r < n && tagLess(h.items[r], h.items[l]) {
			m = r
		}
		if !tagLess(h.items[m], h.items[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

// walker yields a heap's flows in increasing (S, id) order without changing
// the heap: a small frontier heap of indices, O(log k) per step.
type walker struct {
	h        *flowHeap
	frontier []int
}

func (w *walker) reset(h *flowHeap) {
	w.h = h
	w.frontier = w.frontier[:0]
	if h.len() > 0 {
		w.frontier = append(w.frontier, 0)
	}
}

func (w *walker) less(a, b int) bool { return tagLess(w.h.items[a], w.h.items[b]) }

// next returns the next flow in order, or nil when done.
func (w *walker) next() *flow {
	n := len(w.frontier)
	if n == 0 {
		return nil
	}
	fr := w.frontier
	top := fr[0]
	fr[0] = fr[n-1]
	fr = fr[:n-1]
	w.siftDown(fr, 0)
	for _, c := range [2]int{2*top + 1, 2*top + 2} {
		if c < w.h.len() {
			fr = append(fr, c)
			w.siftUp(fr, len(fr)-1)
		}
	}
	w.frontier = fr
	return w.h.items[top]
}

func (w *walker) siftUp(fr []int, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !w.less(fr[i], fr[p]) {
			return
		}
		fr[i], fr[p] = fr[p], fr[i]
		i = p
	}
}

func (w *walker) siftDown(fr []int, i int) {
	n := len(fr)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && w.less(fr[r], fr[l]) {
			m = r
		}
		if !w.less(fr[m], fr[i]) {
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
