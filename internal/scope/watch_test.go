package scope

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestEvents(t *testing.T) {
	s := newState(t)
	s.Apply(2, encode(t, put(svc(bk, "a", 1), svc(bk, "b", 1))))
	s.Apply(3, encode(t, put(svc(bk, "a", 1))))          // unchanged: no event
	s.Apply(4, encode(t, del("Service", bk, "missing"))) // rejected: no event
	s.Apply(5, encode(t, put(svc(bk, "a", 2))))
	s.Apply(6, encode(t, del("Service", bk, "b")))
	evs, err := s.Events(0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, itoa(e.Revision)+":"+e.Type+":"+e.Object.Name+"@"+itoa(e.Object.Version))
	}
	want := "2:put:a@2 2:put:b@2 5:put:a@5 6:delete:b@2"
	if j := join(got); j != want {
		t.Errorf("events = %s, want %s", j, want)
	}
	if evs, _ := s.Events(5); len(evs) != 2 || evs[0].Revision != 5 {
		t.Errorf("Events(5) = %+v", evs)
	}
	if evs, _ := s.Events(7); len(evs) != 0 {
		t.Errorf("Events(7) = %+v", evs)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func TestEventsCompacted(t *testing.T) {
	s := newState(t)
	s.historyLimit = 5
	s.Apply(2, encode(t, put(svc(bk, "a", 1), svc(bk, "b", 1), svc(bk, "c", 1))))
	s.Apply(3, encode(t, put(svc(bk, "a", 2), svc(bk, "b", 2))))
	// 5 events kept so far; the next put pushes out revision 2 as a whole.
	s.Apply(4, encode(t, put(svc(bk, "a", 3))))
	if _, err := s.Events(2); !errors.Is(err, ErrCompacted) {
		t.Errorf("Events(2) error = %v, want ErrCompacted", err)
	}
	if _, err := s.Events(0); !errors.Is(err, ErrCompacted) {
		t.Errorf("Events(0) error = %v, want ErrCompacted", err)
	}
	evs, err := s.Events(3)
	if err != nil || len(evs) != 3 || evs[0].Revision != 3 || evs[2].Revision != 4 {
		t.Errorf("Events(3) = %+v, %v", evs, err)
	}
	// After Restore, history restarts at the snapshot's revision.
	snap, _ := s.Snapshot()
	r := New(testDomain)
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Events(4); !errors.Is(err, ErrCompacted) {
		t.Errorf("after Restore, Events(4) error = %v", err)
	}
	if evs, err := r.Events(5); err != nil || len(evs) != 0 {
		t.Errorf("after Restore, Events(5) = %v, %v", evs, err)
	}
	r.Apply(5, encode(t, del("Service", bk, "c")))
	if evs, err := r.Events(5); err != nil || len(evs) != 1 || evs[0].Type != EventDelete {
		t.Errorf("after Restore and a delete, Events(5) = %v, %v", evs, err)
	}
}

func waitNotified(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s")
	}
}

func TestSubscribe(t *testing.T) {
	s := newState(t)
	ch, cancel := s.Subscribe()
	ch2, cancel2 := s.Subscribe()
	defer cancel2()
	s.Apply(2, encode(t, put(svc(bk, "a", 1))))
	waitNotified(t, ch)
	// Coalescing: three applies while nobody reads leave exactly one pending notification.
	for i := uint64(3); i <= 5; i++ {
		s.Apply(i, encode(t, put(svc(bk, "a", int(i)))))
	}
	waitNotified(t, ch)
	select {
	case <-ch:
		t.Fatal("more than one pending notification")
	default:
	}
	if s.Revision() != 5 {
		t.Errorf("revision %d", s.Revision())
	}
	cancel()
	cancel() // idempotent
	s.Apply(6, encode(t, del("Service", bk, "a")))
	select {
	case <-ch:
		t.Fatal("notified after cancel")
	default:
	}
	waitNotified(t, ch2) // the other subscriber still works
	snap, _ := s.Snapshot()
	if err := s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	waitNotified(t, ch2)
}

// TestConcurrentReads runs readers against Apply; meaningful under -race.
func TestConcurrentReads(t *testing.T) {
	s := newState(t)
	log := randomLog(t, 300, 7)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, cancel := s.Subscribe()
			defer cancel()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				case <-ch:
				default:
				}
				_ = s.List("", "")
				_, _ = s.Get("svc", bk, "s1")
				_, _ = s.Events(s.Revision())
				_ = s.Lineage(0, 5)
				_, _ = s.LineageHead()
				_ = s.Leases()
				_ = s.Owns("a.shop.demo.mesh")
				_ = s.Governance()
			}
		}()
	}
	applyLog(t, s, log[1:], 2)
	close(stop)
	wg.Wait()
	if err := VerifyLineage(s.Lineage(0, 0)); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryStaysBoundedAndInOrder: over many more revisions than the history
// keeps, the history holds the last ones in order, the revisions before are
// reported compacted, and the memory behind it stays bounded (dropping old
// events reslices; append moves the rest when it outgrows the array).
func TestHistoryStaysBoundedAndInOrder(t *testing.T) {
	s := newState(t)
	s.historyLimit = 64
	for i := 2; i < 5000; i++ {
		s.Apply(uint64(i), encode(t, put(svc(bk, "a", i))))
		if len(s.history) > s.historyLimit {
			t.Fatalf("after revision %d: %d events kept, limit %d", i, len(s.history), s.historyLimit)
		}
		if c := cap(s.history); c > 4*s.historyLimit {
			t.Fatalf("after revision %d: the history's array holds %d events for a limit of %d", i, c, s.historyLimit)
		}
	}
	if _, err := s.Events(4999 - 64); !errors.Is(err, ErrCompacted) {
		t.Errorf("Events(%d) error = %v, want ErrCompacted", 4999-64, err)
	}
	evs, err := s.Events(4999 - 63)
	if err != nil || len(evs) != 64 {
		t.Fatalf("Events(%d) = %d events, %v; want 64", 4999-63, len(evs), err)
	}
	for i, e := range evs {
		if want := uint64(4999 - 63 + i); e.Revision != want || e.Object.Version != want {
			t.Fatalf("event %d: revision %d, object version %d; want %d", i, e.Revision, e.Object.Version, want)
		}
	}
}
