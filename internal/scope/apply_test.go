package scope

import (
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
)

// step is one mutation of a scenario, applied at the next index, and what must follow.
type step struct {
	m     Mutation
	raw   []byte // if set, applied instead of Encode(m)
	code  string // expected Error code; "" = accepted
	msg   string // if set, the exact error text
	check func(t *testing.T, s *State, r Result)
}

func runSteps(t *testing.T, steps []step) *State {
	t.Helper()
	s := newState(t)
	for i, st := range steps {
		index := uint64(i + 2)
		data := st.raw
		if data == nil {
			data = encode(t, st.m)
		}
		_, headBefore := s.LineageHead()
		snapBefore, _ := s.Snapshot()
		r := s.Apply(index, data).(Result)
		if r.Revision != index || s.Revision() != index {
			t.Fatalf("step %d: revision %d / %d, want %d", i, r.Revision, s.Revision(), index)
		}
		switch {
		case st.code == "" && r.Err != nil:
			t.Fatalf("step %d (%s): unexpected error: %v", i, st.m.Op, r.Err)
		case st.code != "":
			e, ok := r.Err.(*Error)
			if !ok {
				t.Fatalf("step %d (%s): err = %v, want code %s", i, st.m.Op, r.Err, st.code)
			}
			if e.Code != st.code {
				t.Fatalf("step %d (%s): code %s (%s), want %s", i, st.m.Op, e.Code, e.Msg, st.code)
			}
			if st.msg != "" && e.Error() != st.msg {
				t.Errorf("step %d: error\n got: %s\nwant: %s", i, e.Error(), st.msg)
			}
			// A rejected mutation changes nothing but the revision.
			if _, head := s.LineageHead(); head != headBefore {
				t.Errorf("step %d: lineage changed by a rejected mutation", i)
			}
			snapAfter, _ := s.Snapshot()
			if strings.Replace(string(snapBefore), `"revision":`+itoa(index-1), `"revision":`+itoa(index), 1) != string(snapAfter) {
				t.Errorf("step %d: state changed by a rejected mutation", i)
			}
		}
		if st.check != nil {
			st.check(t, s, r)
		}
	}
	return s
}

func itoa(n uint64) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	return string(b)
}

func wantObject(kind, ns, name, uid string, version, created uint64) func(t *testing.T, s *State, r Result) {
	return func(t *testing.T, s *State, r Result) {
		t.Helper()
		o, ok := s.Get(kind, ns, name)
		if !ok {
			t.Fatalf("%s %s/%s does not exist", kind, ns, name)
		}
		if o.UID != uid || o.Version != version || o.Created != created {
			t.Errorf("%s %s/%s: uid %s version %d created %d; want %s %d %d", kind, ns, name, o.UID, o.Version, o.Created, uid, version, created)
		}
	}
}

func wantGone(kind, ns, name string) func(t *testing.T, s *State, r Result) {
	return func(t *testing.T, s *State, r Result) {
		t.Helper()
		if _, ok := s.Get(kind, ns, name); ok {
			t.Errorf("%s %s/%s still exists", kind, ns, name)
		}
	}
}

func all(fs ...func(t *testing.T, s *State, r Result)) func(t *testing.T, s *State, r Result) {
	return func(t *testing.T, s *State, r Result) {
		t.Helper()
		for _, f := range fs {
			f(t, s, r)
		}
	}
}

const bk = "bookinfo.demo.mesh"

func TestApply(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"create update delete and uid stability", []step{
			{m: put(svc(bk, "web", 80)), check: all(wantObject("Service", bk, "web", "00c0ffee-2", 2, 2), func(t *testing.T, s *State, r Result) {
				if len(r.Objects) != 1 || r.Objects[0].UID != "00c0ffee-2" || r.Objects[0].Version != 2 {
					t.Errorf("result objects = %+v", r.Objects)
				}
			})},
			{m: put(svc(bk, "web", 8080)), check: wantObject("Service", bk, "web", "00c0ffee-2", 3, 2)},
			{m: put(svc(bk, "web", 8080)), check: wantObject("Service", bk, "web", "00c0ffee-2", 3, 2)}, // unchanged: same version
			{m: del("svc", bk, "web"), check: wantGone("Service", bk, "web")},
			{m: put(svc(bk, "web", 8080)), check: wantObject("Service", bk, "web", "00c0ffee-6", 6, 6)}, // never reused
			{m: put(svc(bk, "a", 1), svc(bk, "b", 2)), check: all(wantObject("Service", bk, "a", "00c0ffee-7", 7, 7), wantObject("Service", bk, "b", "00c0ffee-7.1", 7, 7))},
			{m: del("Service", bk, "nope"), code: CodeNotFound, msg: "not-found: Service bookinfo.demo.mesh/nope does not exist"},
			{m: del("Pod", bk, "web"), code: CodeInvalid, msg: `invalid: kind: "Pod" is not a supported kind`},
		}},
		{"optimistic concurrency", []step{
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "web", 80)}, IfVersion: u64(0)}},
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "web", 81)}, IfVersion: u64(0)}, code: CodeExists,
				msg: "exists: objects[0] (Service bookinfo.demo.mesh/web): already exists at version 2"},
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "web", 81)}, IfVersion: u64(3)}, code: CodeConflict,
				msg: "conflict: objects[0] (Service bookinfo.demo.mesh/web): expected version 3, found 2"},
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "web", 81)}, IfVersion: u64(2)}, check: wantObject("Service", bk, "web", "00c0ffee-2", 5, 2)},
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "new", 81)}, IfVersion: u64(9)}, code: CodeConflict,
				msg: "conflict: objects[0] (Service bookinfo.demo.mesh/new): expected version 9, but it does not exist"},
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "x", 1), svc(bk, "web", 82)}, IfVersions: []*uint64{nil, u64(2)}}, code: CodeConflict},
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "x", 1), svc(bk, "web", 82)}, IfVersions: []*uint64{nil}}, code: CodeInvalid,
				msg: "invalid: ifVersions: 1 entries for 2 objects"},
			{m: Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "x", 1), svc(bk, "web", 82)}, IfVersion: u64(5)}, code: CodeInvalid},
			{m: Mutation{Op: OpDelete, Proposer: admin, Kind: "Service", Namespace: bk, Name: "web", IfVersion: u64(4)}, code: CodeConflict,
				msg: "conflict: Service bookinfo.demo.mesh/web: expected version 4, found 5"},
			{m: Mutation{Op: OpDelete, Proposer: admin, Kind: "Service", Namespace: bk, Name: "web", IfVersion: u64(0)}, code: CodeInvalid},
			{m: Mutation{Op: OpDelete, Proposer: admin, Kind: "Service", Namespace: bk, Name: "web", IfVersion: u64(5)}, check: wantGone("Service", bk, "web")},
		}},
		{"zone", []step{
			{m: put(svc("other.mesh", "web", 80)), code: CodeOutOfZone, msg: "out-of-zone: objects[0] (Service other.mesh/web): namespace other.mesh is outside the zone of scope demo.mesh"},
			{m: put(svc("xdemo.mesh", "web", 80)), code: CodeOutOfZone},
			{m: put(svc("demo.mesh", "web", 80)), check: wantObject("Service", "demo.mesh", "web", "00c0ffee-4", 4, 4)},
			{m: put(svc("a.b.c.demo.mesh", "web", 80))},
			{m: del("Service", "other.mesh", "web"), code: CodeOutOfZone},
		}},
		{"delegated cut", []step{
			{m: put(svc("payments.shop.demo.mesh", "pay", 80))},
			{m: put(delegation("demo.mesh", "shop", "shop.demo.mesh")), code: CodeConflict,
				msg: "conflict: delegating shop.demo.mesh would cut away Service payments.shop.demo.mesh/pay; delete it first"},
			{m: del("Service", "payments.shop.demo.mesh", "pay")},
			{m: put(delegation("demo.mesh", "shop", "shop.demo.mesh")), check: func(t *testing.T, s *State, r Result) {
				if s.Owns("payments.shop.demo.mesh") || s.Owns("shop.demo.mesh") || !s.Owns("shopping.demo.mesh") || !s.Owns("demo.mesh") {
					t.Error("Owns does not reflect the cut")
				}
				if d := s.Delegations(); len(d) != 1 || d[0].Name != "shop" {
					t.Errorf("Delegations() = %v", d)
				}
			}},
			{m: put(svc("payments.shop.demo.mesh", "pay", 80)), code: CodeOutOfZone,
				msg: "out-of-zone: objects[0] (Service payments.shop.demo.mesh/pay): namespace payments.shop.demo.mesh is in the delegated zone shop.demo.mesh"},
			{m: put(svc("shop.demo.mesh", "pay", 80)), code: CodeOutOfZone},
			{m: put(svc("shopping.demo.mesh", "pay", 80))},
			{m: put(delegation("demo.mesh", "eu-shop", "eu.shop.demo.mesh")), code: CodeOutOfZone},
			{m: put(delegation("demo.mesh", "shop2", "shop.demo.mesh")), code: CodeConflict,
				msg: "conflict: objects[0] (Delegation demo.mesh/shop2): domain shop.demo.mesh is already delegated by Delegation demo.mesh/shop"},
			{m: put(delegation("demo.mesh", "all", "demo.mesh")), code: CodeInvalid},                               // resource: not below its namespace
			{m: put(svc("x.demo.mesh", "a", 1), delegation("demo.mesh", "x", "x.demo.mesh")), code: CodeOutOfZone}, // same put
			{m: del("Delegation", "demo.mesh", "shop")},
			{m: put(svc("payments.shop.demo.mesh", "pay", 80))},
		}},
		{"atomic put", []step{
			{m: put(svc(bk, "a", 80), svc(bk, "b", 0)), code: CodeInvalid,
				msg: "invalid: objects[1] (Service bookinfo.demo.mesh/b): spec.ports[0].port: port 0 must be 1..65535", check: wantGone("Service", bk, "a")},
			{m: put(svc(bk, "a", 80), svc("other.mesh", "b", 80)), code: CodeOutOfZone, check: wantGone("Service", bk, "a")},
			{m: put(svc(bk, "a", 80), svc(bk, "a", 81)), code: CodeInvalid, msg: "invalid: objects[1] (Service bookinfo.demo.mesh/a): same object as objects[0]"},
			{m: put(), code: CodeInvalid, msg: "invalid: objects: at least one object is required"},
			{m: put(svc(bk, "a", 80), svc(bk, "b", 81)), check: all(wantObject("Service", bk, "a", "00c0ffee-6", 6, 6), wantObject("Service", bk, "b", "00c0ffee-6.1", 6, 6))},
		}},
		{"leases", []step{
			{m: put(workload(bk, "w1", 2)), code: CodeNotFound, msg: "not-found: objects[0] (Workload bookinfo.demo.mesh/w1): spec.lease: lease 2 does not exist"},
			{m: Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 10}}, check: func(t *testing.T, s *State, r Result) {
				if r.Lease == nil || r.Lease.ID != 3 || r.Lease.TTLSeconds != 10 {
					t.Errorf("granted %+v", r.Lease)
				}
			}},
			{m: Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 20}}},
			{m: put(workload(bk, "w1", 3), workload(bk, "w2", 3), workload(bk, "w3", 4))},
			{m: Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{ID: 9, TTLSeconds: 20}}, code: CodeInvalid},
			{m: Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 0}}, code: CodeInvalid, msg: "invalid: lease.ttlSeconds: 0 must be 1..3600"},
			{m: Mutation{Op: OpRevokeLease, Proposer: admin, LeaseIDs: []uint64{99}}, code: CodeNotFound, msg: "not-found: leaseIds[0]: lease 99 does not exist"},
			{m: Mutation{Op: OpExpireLeases, Proposer: "anchor/a1", LeaseIDs: []uint64{99}}, code: CodeNotFound},
			{m: Mutation{Op: OpExpireLeases, Proposer: "anchor/a1", LeaseIDs: []uint64{99, 3}}, check: all(wantGone("Workload", bk, "w1"), wantGone("Workload", bk, "w2"),
				wantObject("Workload", bk, "w3", "00c0ffee-5.2", 5, 5), func(t *testing.T, s *State, r Result) {
					if ls := s.Leases(); len(ls) != 1 || ls[0].ID != 4 {
						t.Errorf("Leases() = %v", ls)
					}
					if l, ok := s.Lease(4); !ok || l.ID != 4 {
						t.Errorf("Lease(4) = %v, %v", l, ok)
					}
					if _, ok := s.Lease(3); ok {
						t.Error("Lease(3) still found after its expiry")
					}
					recs := s.Lineage(r.Revision, 1)
					if len(recs) != 1 || !strings.Contains(string(recs[0].Mutation), `"leaseIds":[3]`) {
						t.Errorf("lineage records %s, want only the expired lease 3", recs[0].Mutation)
					}
					evs, err := s.Events(r.Revision)
					if err != nil || len(evs) != 2 || evs[0].Type != EventDelete || evs[0].Object.Name != "w1" || evs[1].Object.Name != "w2" {
						t.Errorf("events = %+v, %v", evs, err)
					}
				})},
			{m: put(workload(bk, "w1", 3)), code: CodeNotFound},
			{m: put(workload(bk, "w3", 3)), code: CodeNotFound}, // moving to a dead lease
			{m: Mutation{Op: OpRevokeLease, Proposer: admin, LeaseIDs: []uint64{4, 4}}, code: CodeInvalid},
			{m: Mutation{Op: OpRevokeLease, Proposer: admin, LeaseIDs: []uint64{4}}, check: all(wantGone("Workload", bk, "w3"), func(t *testing.T, s *State, r Result) {
				if len(s.Leases()) != 0 || len(s.leaseWorkloads) != 0 {
					t.Errorf("leases left: %v %v", s.Leases(), s.leaseWorkloads)
				}
			})},
		}},
		{"workload moves between leases", []step{
			{m: Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 10}}},
			{m: Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 10}}},
			{m: put(workload(bk, "w", 2))},
			{m: put(workload(bk, "w", 3))},
			{m: Mutation{Op: OpExpireLeases, Proposer: "anchor/a1", LeaseIDs: []uint64{2}}, check: wantObject("Workload", bk, "w", "00c0ffee-4", 5, 4)},
			{m: Mutation{Op: OpExpireLeases, Proposer: "anchor/a1", LeaseIDs: []uint64{3}}, check: wantGone("Workload", bk, "w")},
		}},
		{"genesis and governance", []step{
			{m: genesis(), code: CodeExists, msg: "exists: scope demo.mesh already has a genesis (incarnation 00c0ffee)"},
			{m: Mutation{Op: OpSetGovernance, Proposer: admin, Governance: &Governance{Anchors: []AnchorRef{{ID: "a2", NodeID: 2, Voter: true}, {ID: "a1", NodeID: 1, Voter: true}, {ID: "a9", NodeID: 9}}}},
				check: func(t *testing.T, s *State, r Result) {
					g := s.Governance()
					if len(g.Anchors) != 3 || g.Anchors[0].ID != "a1" || g.Anchors[2].Voter {
						t.Errorf("governance = %+v", g)
					}
				}},
			{m: Mutation{Op: OpSetGovernance, Proposer: admin, Governance: &Governance{Anchors: []AnchorRef{{ID: "a1"}}}}, code: CodeInvalid, msg: "invalid: governance.anchors: at least one voter is required"},
			{m: Mutation{Op: OpSetGovernance, Proposer: admin, Governance: &Governance{Anchors: []AnchorRef{{ID: "a1", NodeID: 1, Voter: true}, {ID: "a2", NodeID: 1}}}}, code: CodeInvalid},
			{m: Mutation{Op: OpSetGovernance, Proposer: admin, Governance: &Governance{Anchors: []AnchorRef{{ID: "A_1", Voter: true}}}}, code: CodeInvalid},
		}},
		{"malformed", []step{
			{raw: []byte(`{"op":"put","proposer":"x","objects":[],"bogus":1}`), code: CodeInvalid, msg: `invalid: decode mutation: json: unknown field "bogus"`},
			{raw: []byte(`{"op":"put","proposer":"x","leaseIds":[1]}`), code: CodeInvalid, msg: `invalid: decode mutation: leaseIds: not allowed with op "put"`},
			{raw: []byte(`{"op":"fly","proposer":"x"}`), code: CodeInvalid, msg: `invalid: decode mutation: op: unknown op "fly"`},
			{raw: []byte(`not json`), code: CodeInvalid},
			{m: Mutation{Op: OpPut, Objects: []resource.Object{svc(bk, "a", 1)}}, code: CodeInvalid, msg: "invalid: proposer: required"},
			{m: Mutation{Op: OpNoop, Proposer: "anchor/a1"}},
			{raw: []byte{}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.steps) })
	}
}

func TestBeforeGenesis(t *testing.T) {
	s := New(testDomain)
	r := s.Apply(1, encode(t, put(svc(bk, "a", 1)))).(Result)
	if e, ok := r.Err.(*Error); !ok || e.Code != CodeInvalid || e.Msg != "scope demo.mesh has no genesis yet; only a genesis mutation is accepted" {
		t.Fatalf("put before genesis: %v", r.Err)
	}
	bad := genesis()
	bad.Genesis.Domain = "other.mesh"
	if r := s.Apply(2, encode(t, bad)).(Result); r.Err == nil || r.Err.Error() != `invalid: genesis.domain: "other.mesh" is not this scope's domain "demo.mesh"` {
		t.Fatalf("wrong domain: %v", r.Err)
	}
	bad = genesis()
	bad.Genesis.Incarnation = "XYZ"
	if r := s.Apply(3, encode(t, bad)).(Result); r.Err == nil || r.Err.(*Error).Code != CodeInvalid {
		t.Fatalf("bad incarnation: %v", r.Err)
	}
	child := New("shop.demo.mesh")
	g := Mutation{Op: OpGenesis, Proposer: "anchor/a4", Genesis: &Genesis{Domain: "shop.demo.mesh", Incarnation: "abcdef0123", Anchors: []string{"a4"}, Parent: "demo.mesh"}}
	if r := child.Apply(1, encode(t, g)).(Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if child.Parent() != "demo.mesh" || child.Incarnation() != "abcdef0123" {
		t.Errorf("parent %q incarnation %q", child.Parent(), child.Incarnation())
	}
	if r := s.Apply(4, encode(t, genesis())).(Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := s.Apply(4, encode(t, put(svc(bk, "a", 1)))).(Result); r.Err == nil || r.Err.(*Error).Code != CodeStale {
		t.Fatalf("replayed index: %v", r.Err)
	}
	if idx, _ := s.LineageHead(); idx != 4 {
		t.Errorf("lineage head at %d, want 4 (only the accepted genesis)", idx)
	}
	if g := s.Governance(); len(g.Anchors) != 3 || g.Anchors[0] != (AnchorRef{ID: "a1", Voter: true}) {
		t.Errorf("governance after genesis = %+v", g)
	}
}

func TestListAndGet(t *testing.T) {
	s := newState(t)
	s.Apply(2, encode(t, put(svc("b.demo.mesh", "z", 1), svc("a.demo.mesh", "y", 1), svc("b.demo.mesh", "a", 1),
		resource.Object{Kind: "Alias", Namespace: "a.demo.mesh", Name: "y", Spec: []byte(`{"target":"y.a.demo.mesh","actions":["resolve"]}`)})))
	var got []string
	for _, o := range s.List("", "") {
		got = append(got, o.Kind+":"+o.Namespace+"/"+o.Name)
	}
	want := "Alias:a.demo.mesh/y Service:a.demo.mesh/y Service:b.demo.mesh/a Service:b.demo.mesh/z"
	if strings.Join(got, " ") != want {
		t.Errorf("List = %v", got)
	}
	if l := s.List("svc", "b.demo.mesh"); len(l) != 2 || l[0].Name != "a" {
		t.Errorf("List(svc, b) = %v", l)
	}
	if l := s.List("pods", ""); l != nil {
		t.Errorf("List(pods) = %v", l)
	}
	o, ok := s.Get("services", "a.demo.mesh", "y")
	if !ok {
		t.Fatal("Get failed")
	}
	o.Spec[0] = 'X' // must not affect the state
	o2, _ := s.Get("Service", "a.demo.mesh", "y")
	if o2.Spec[0] != '{' {
		t.Error("Get returned shared spec bytes")
	}
}

// TestApplyTime: a mutation's time is checked for its one spelling and recorded as the
// proposer claimed it, never compared with a clock or with the previous record's time.
func TestApplyTime(t *testing.T) {
	timed := func(tm string) Mutation {
		m := put(svc(bk, "timed", 80))
		m.Time = tm
		return m
	}
	recordedAt := func(want string) func(t *testing.T, s *State, r Result) {
		return func(t *testing.T, s *State, r Result) {
			t.Helper()
			recs := s.Lineage(r.Revision, 1)
			if len(recs) != 1 || recs[0].Index != r.Revision {
				t.Fatalf("no record at index %d", r.Revision)
			}
			if recs[0].Time != want {
				t.Errorf("record at index %d: time %q, want %q", r.Revision, recs[0].Time, want)
			}
			if got, ok := recs[0].At(); ok != (want != "") || (ok && FormatTime(got) != want) {
				t.Errorf("At() = %v, %v", got, ok)
			}
		}
	}
	bad := func(raw string) string {
		return `invalid: decode mutation: time: "` + raw + `" is not a UTC time in the form 2006-01-02T15:04:05.000Z (RFC 3339, milliseconds)`
	}
	rawPut := func(tm string) []byte {
		return []byte(`{"op":"put","proposer":"p","time":"` + tm + `","objects":[{"kind":"Service","namespace":"bookinfo.demo.mesh","name":"x","spec":{"ports":[{"name":"http","port":80}]}}]}`)
	}
	steps := []step{
		{m: timed("2026-03-14T09:26:53.589Z"), check: recordedAt("2026-03-14T09:26:53.589Z")},
		// Earlier than the previous record: recorded anyway (clocks differ across anchors).
		{m: func() Mutation { m := timed("2001-01-01T00:00:00.000Z"); m.Objects[0] = svc(bk, "timed", 81); return m }(), check: recordedAt("2001-01-01T00:00:00.000Z")},
		// Far in the future: recorded anyway (Apply has no clock to compare with).
		{m: func() Mutation { m := timed("9999-12-31T23:59:59.999Z"); m.Objects[0] = svc(bk, "timed", 82); return m }(), check: recordedAt("9999-12-31T23:59:59.999Z")},
		{m: func() Mutation { m := timed(""); m.Objects[0] = svc(bk, "timed", 83); return m }(), check: recordedAt("")},
		{raw: rawPut("2026-03-14T09:26:53Z"), code: CodeInvalid, msg: bad("2026-03-14T09:26:53Z")},
		{raw: rawPut("2026-03-14T09:26:53.5890Z"), code: CodeInvalid, msg: bad("2026-03-14T09:26:53.5890Z")},
		{raw: rawPut("2026-03-14T10:26:53.589+01:00"), code: CodeInvalid, msg: bad("2026-03-14T10:26:53.589+01:00")},
		{raw: rawPut("2026-03-14 09:26:53.589Z"), code: CodeInvalid, msg: bad("2026-03-14 09:26:53.589Z")},
		{raw: rawPut("2026-02-30T09:26:53.589Z"), code: CodeInvalid, msg: bad("2026-02-30T09:26:53.589Z")},
		{raw: rawPut("1773480413589"), code: CodeInvalid, msg: bad("1773480413589")},
		{raw: []byte(`{"op":"noop","proposer":"p","time":1773480413589}`), code: CodeInvalid},
	}
	runSteps(t, steps)
}

func TestFormatTime(t *testing.T) {
	at := time.Date(2026, 3, 14, 10, 26, 53, 589_999_999, time.FixedZone("CET", 3600))
	if got := FormatTime(at); got != "2026-03-14T09:26:53.589Z" {
		t.Errorf("FormatTime = %q: want UTC, truncated to the millisecond", got)
	}
	if got := FormatTime(time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)); got != "2026-03-14T09:26:53.000Z" {
		t.Errorf("FormatTime of a whole second = %q: want three fractional digits", got)
	}
	back, err := ParseTime("2026-03-14T09:26:53.589Z")
	if err != nil || !back.Equal(at.Truncate(time.Millisecond)) || back.Location() != time.UTC {
		t.Errorf("ParseTime = %v, %v", back, err)
	}
}
