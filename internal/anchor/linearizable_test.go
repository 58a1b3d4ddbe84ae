package anchor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

// The register model: each key holds a value and the resource version the
// scope gave it. Operations whose outcome is unknown (the client saw an error
// that does not prove rejection) may or may not have taken effect.
type regState struct {
	val string
	ver uint64 // 0: absent; anyVer: present at a version nobody observed
}

const anyVer = ^uint64(0)

type regInput struct {
	op     string // "put", "get", "cas"
	key    string
	val    string
	expect uint64 // cas
}

type regOutput struct {
	unknown bool // outcome not known: the op may or may not have happened
	ok      bool // cas: applied; get: found
	val     string
	ver     uint64
}

var regModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(regInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{regState{}} },
	Step: func(s, in, out any) []any {
		st, i, o := s.(regState), in.(regInput), out.(regOutput)
		switch i.op {
		case "get":
			if o.unknown {
				return []any{st}
			}
			if !o.ok {
				if st.ver == 0 {
					return []any{st}
				}
				return nil
			}
			if st.ver == 0 || st.val != o.val || (st.ver != anyVer && st.ver != o.ver) {
				return nil
			}
			return []any{regState{val: o.val, ver: o.ver}}
		case "put":
			if o.unknown {
				return []any{st, regState{val: i.val, ver: anyVer}}
			}
			if st.ver != anyVer && o.ver <= st.ver {
				return nil
			}
			return []any{regState{val: i.val, ver: o.ver}}
		case "cas":
			matches := st.ver == i.expect || (st.ver == anyVer && i.expect != 0)
			if o.unknown {
				if matches {
					return []any{st, regState{val: i.val, ver: anyVer}}
				}
				return []any{st}
			}
			if o.ok {
				if !matches || o.ver <= i.expect {
					return nil
				}
				return []any{regState{val: i.val, ver: o.ver}}
			}
			if st.ver == i.expect {
				return nil // rejected although the version matched
			}
			return []any{st}
		}
		return nil
	},
	DescribeOperation: func(in, out any) string {
		return fmt.Sprintf("%+v -> %+v", in, out)
	},
}

// TestLinearizableUnderFailures runs concurrent put/get/CAS clients against
// all anchors while the leader is killed and restarted and a partition comes
// and goes, then checks the history with porcupine.
func TestLinearizableUnderFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds of failure injection")
	}
	c := startCluster(t, meshtest.Options{RequestTimeout: time.Second})
	clients := make([]*api.Client, c.Len())
	for i := range clients {
		clients[i] = client(t, c, i)
	}
	keys := []string{"k1", "k2", "k3"}
	ns := "default." + mesh

	var (
		mu  sync.Mutex
		ops []porcupine.Operation
	)
	record := func(id int, in regInput, call time.Time, out regOutput) {
		mu.Lock()
		ops = append(ops, porcupine.Operation{ClientId: id, Input: in, Call: call.UnixNano(), Output: out, Return: time.Now().UnixNano()})
		mu.Unlock()
	}
	const workers, perWorker = 6, 50
	var wg sync.WaitGroup
	stopFaults := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			lastVer := map[string]uint64{}
			for n := range perWorker {
				key := keys[rng.IntN(len(keys))]
				cl := clients[rng.IntN(len(clients))]
				val := fmt.Sprintf("w%d-%d", w, n)
				obj := resource.Object{Kind: "Alias", Namespace: ns, Name: key, Spec: []byte(fmt.Sprintf(`{"target":"%s.default.demo.mesh","actions":["resolve"]}`, val))}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				call := time.Now()
				switch rng.IntN(3) {
				case 0:
					in := regInput{op: "put", key: key, val: val}
					res, err := cl.Apply(ctx, []resource.Object{obj}, false, nil)
					if err != nil {
						record(w, in, call, regOutput{unknown: true})
					} else {
						record(w, in, call, regOutput{ok: true, ver: res.Objects[0].Version})
					}
				case 1:
					in := regInput{op: "get", key: key}
					res, err := cl.Get(ctx, "Alias", ns, key, "")
					switch {
					case err == nil:
						var spec struct{ Target string }
						_ = json.Unmarshal(res.Objects[0].Spec, &spec)
						v := spec.Target[:len(spec.Target)-len(".default.demo.mesh")]
						lastVer[key] = res.Objects[0].Version
						record(w, in, call, regOutput{ok: true, val: v, ver: res.Objects[0].Version})
					case api.Code(err) == 5:
						record(w, in, call, regOutput{})
					default:
						record(w, in, call, regOutput{unknown: true})
					}
				case 2:
					in := regInput{op: "cas", key: key, val: val, expect: lastVer[key]}
					res, err := cl.Apply(ctx, []resource.Object{obj}, false, []uint64{in.expect})
					switch {
					case err == nil:
						record(w, in, call, regOutput{ok: true, ver: res.Objects[0].Version})
					case api.Code(err) == 10: // Aborted: version mismatch, definitely not applied
						record(w, in, call, regOutput{})
					default:
						record(w, in, call, regOutput{unknown: true})
					}
				}
				cancel()
			}
		}()
	}
	// Faults: kill the leader, restart it, partition one anchor away, heal.
	faults := make(chan error, 1)
	go func() {
		faults <- func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			time.Sleep(300 * time.Millisecond) // let some history build up
			l, err := c.WaitLeader(ctx, mesh)
			if err != nil {
				return err
			}
			if err := c.Stop(l); err != nil {
				return err
			}
			time.Sleep(600 * time.Millisecond) // operations run against the survivors
			if err := c.Restart(ctx, l); err != nil {
				return err
			}
			time.Sleep(300 * time.Millisecond)
			c.Partition([]int{(l + 1) % c.Len()})
			time.Sleep(600 * time.Millisecond)
			c.Heal()
			return nil
		}()
		close(stopFaults)
	}()
	wg.Wait()
	<-stopFaults
	if err := <-faults; err != nil {
		t.Fatal(err)
	}
	// The anchors restarted mid-run: refresh clients are not needed, connections reconnect.
	known := 0
	for _, op := range ops {
		if !op.Output.(regOutput).unknown {
			known++
		}
	}
	t.Logf("%d operations, %d with known outcome", len(ops), known)
	if known < len(ops)/2 {
		t.Fatalf("only %d of %d operations completed: the cluster was unavailable too long", known, len(ops))
	}
	res := porcupine.CheckOperationsTimeout(regModel.ToModel(), ops, 30*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history is not linearizable: %s", res)
	}
}

// TestRegisterModelRejectsStaleRead proves the checker above can fail: a read
// that returns the old value after a newer write completed is not linearizable.
func TestRegisterModelRejectsStaleRead(t *testing.T) {
	ops := []porcupine.Operation{
		{ClientId: 0, Input: regInput{op: "put", key: "k", val: "a"}, Call: 0, Output: regOutput{ok: true, ver: 5}, Return: 10},
		{ClientId: 0, Input: regInput{op: "put", key: "k", val: "b"}, Call: 20, Output: regOutput{ok: true, ver: 7}, Return: 30},
		{ClientId: 1, Input: regInput{op: "get", key: "k"}, Call: 40, Output: regOutput{ok: true, val: "a", ver: 5}, Return: 50},
	}
	if porcupine.CheckOperations(regModel.ToModel(), ops) {
		t.Fatal("stale read accepted as linearizable")
	}
	ops[2].Output = regOutput{ok: true, val: "b", ver: 7}
	if !porcupine.CheckOperations(regModel.ToModel(), ops) {
		t.Fatal("fresh read rejected")
	}
}
