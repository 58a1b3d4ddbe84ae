package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCommitGRPC measures Propose on the leader of one 3-replica group over
// the gRPC transport on loopback, with real fsyncs, for several numbers of
// concurrent proposers. Each op is one 64-byte proposal applied on the leader.
//
//	go test -run '^$' -bench CommitGRPC -benchtime 3s ./internal/replica/
func BenchmarkCommitGRPC(b *testing.B) {
	for _, proposers := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			c := newGRPCCluster(b)
			c.tick = 50 * time.Millisecond
			peers := []uint64{1, 2, 3}
			for _, id := range peers {
				n := c.start(id)
				if _, err := n.host.StartGroup("bench", peers, &counterSM{}); err != nil {
					b.Fatal(err)
				}
			}
			lead := c.waitLeader("bench", peers...)
			g, _ := c.nodes[lead].host.Group("bench")
			payload := make([]byte, 64)
			propose(b, g, "warmup")
			sync0 := c.nodes[lead].host.Stats()

			lat := make([][]time.Duration, proposers)
			var next atomic.Int64
			var failed atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range proposers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						_, _, err := g.Propose(ctx, payload)
						cancel()
						if err != nil {
							failed.Add(1)
							continue
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d proposals failed", f)
			}
			all := slices.Concat(lat...)
			slices.Sort(all)
			pct := func(p float64) time.Duration { return all[min(len(all)-1, int(float64(len(all))*p))] }
			b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
			if testing.Verbose() {
				b.Logf("n=%d p90=%v p95=%v p99=%v p999=%v max=%v; slowest fsync on the leader %v",
					len(all), pct(0.9), pct(0.95), pct(0.99), pct(0.999), all[len(all)-1], c.nodes[lead].host.Stats().SyncMax)
			}
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commits/s")
			s := c.nodes[lead].host.Stats()
			syncs := max(1, s.Syncs-sync0.Syncs)
			b.ReportMetric(float64(len(all))/float64(syncs), "commits/fsync")
			b.ReportMetric(float64((s.SyncTime-sync0.SyncTime).Microseconds())/float64(syncs)/1000, "ms/fsync")
		})
	}
}

// BenchmarkIdleGroups measures what 1,000 idle groups on 3 hosts (in-memory
// network, real bbolt) cost once quiesced: raft messages, transport batches and
// process CPU per second of wall time (all 3 hosts together). Each iteration
// observes one second.
//
//	go test -run '^$' -bench IdleGroups -benchtime 3x ./internal/replica/
func BenchmarkIdleGroups(b *testing.B) {
	for _, quiesce := range []bool{true, false} {
		b.Run(fmt.Sprintf("quiesce=%v", quiesce), func(b *testing.B) {
			benchIdle(b, 1000, quiesce)
		})
	}
}

func benchIdle(b *testing.B, n int, quiesce bool) {
	c := newCluster(b, 1, 2, 3)
	c.tick = 100 * time.Millisecond // the production default
	c.noQuiesce = !quiesce
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
	}
	ids := make([]GroupID, n)
	for i := range ids {
		ids[i] = GroupID(fmt.Sprintf("s%04d.demo.mesh", i))
		for _, id := range peers {
			c.start(id, ids[i], peers)
		}
	}
	for _, g := range ids {
		c.waitLeader(g, peers...)
	}
	if quiesce {
		waitFor(b, 60*time.Second, "all groups quiesced", func() bool {
			for _, g := range ids {
				for _, id := range peers {
					if !c.group(id, g).Status().Quiesced {
						return false
					}
				}
			}
			return true
		})
	} else {
		time.Sleep(2 * time.Second) // let elections settle before measuring
	}
	var st0 [4]HostStats
	for _, id := range peers {
		st0[id] = c.hosts[id].Stats()
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		time.Sleep(time.Second)
	}
	elapsed := time.Since(start).Seconds()
	cpu := (cpuTime() - cpu0).Seconds()
	b.StopTimer()
	var msgs, batches uint64
	for _, id := range peers {
		s := c.hosts[id].Stats()
		msgs += s.Messages - st0[id].Messages
		batches += s.Batches - st0[id].Batches
	}
	b.ReportMetric(float64(msgs)/elapsed, "raftmsgs/s")
	b.ReportMetric(float64(batches)/elapsed, "batches/s")
	b.ReportMetric(100*cpu/elapsed, "cpu%")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// counterSM is a minimal state machine: it counts applied entries, so the
// benchmark measures replication, not the state machine.
type counterSM struct{ n atomic.Uint64 }

func (s *counterSM) Apply(uint64, []byte) any { return s.n.Add(1) }
func (s *counterSM) Snapshot() ([]byte, error) {
	return fmt.Appendf(nil, "%d", s.n.Load()), nil
}
func (s *counterSM) Restore(data []byte) error {
	var n uint64
	_, err := fmt.Sscanf(string(data), "%d", &n)
	s.n.Store(n)
	return err
}
