package observer

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/cgroups"
)

// closeCheckSource blocks in Counters until released and records any use
// of the source while (or after) it is closed.
type closeCheckSource struct {
	mu        sync.Mutex
	reading   bool
	closed    bool
	misuse    []string
	inCounter chan struct{}
	release   chan struct{}
}

func (s *closeCheckSource) use(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.misuse = append(s.misuse, what+" after Close")
	}
}

func (s *closeCheckSource) Counters() (map[uint64]bpf.Counters, error) {
	s.use("Counters")
	s.mu.Lock()
	s.reading = true
	s.mu.Unlock()
	select {
	case s.inCounter <- struct{}{}:
	default:
	}
	<-s.release
	s.mu.Lock()
	s.reading = false
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.mu.Lock()
		s.misuse = append(s.misuse, "Close during Counters")
		s.mu.Unlock()
	}
	return map[uint64]bpf.Counters{}, nil
}
func (s *closeCheckSource) Drops() (bpf.Drops, error) { s.use("Drops"); return bpf.Drops{}, nil }
func (s *closeCheckSource) ReadEvent() (bpf.Event, error) {
	return bpf.Event{}, errors.New("closed")
}
func (s *closeCheckSource) Forget(uint64) error { s.use("Forget"); return nil }
func (s *closeCheckSource) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

type nopResolver struct{}

func (nopResolver) Lookup(id uint64) (cgroups.Info, bool) { return cgroups.Info{ID: id}, false }
func (nopResolver) LookupPID(id uint64, _ uint32) (cgroups.Info, bool) {
	return cgroups.Info{ID: id}, false
}
func (nopResolver) Exists(uint64) bool { return false }
func (nopResolver) Forget(uint64)      {}

// Close (the daemon's shutdown) may come while Run's Poll reads the maps:
// the source must not be closed under a running Poll, nor read after.
func TestCloseWaitsForPoll(t *testing.T) {
	src := &closeCheckSource{inCounter: make(chan struct{}, 1), release: make(chan struct{})}
	o, err := New(Config{}, src, nopResolver{})
	if err != nil {
		t.Fatal(err)
	}
	polled := make(chan struct{})
	go func() { o.Poll(); close(polled) }()
	<-src.inCounter
	closed := make(chan struct{})
	go func() { o.Close(); close(closed) }()
	time.Sleep(50 * time.Millisecond) // let Close run if it does not wait
	close(src.release)
	<-polled
	<-closed
	o.Poll() // after Close: must not touch the source
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.misuse) > 0 {
		t.Fatalf("source used while closed: %v", src.misuse)
	}
}
