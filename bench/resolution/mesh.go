package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

// importer is the scope whose proxy imports services of the hierarchy.
const importerLabel = "x"

// mesh is the running hierarchy.
type mesh struct {
	c          *meshtest.Cluster
	scopes     []string // scopes[k] is the scope at depth k; scopes[0] is the root
	anchorOf   []int    // index of the anchor hosting scopes[k] (the root: 0, a1)
	importer   string   // x.<mesh>
	importerAt int      // index of the importer's anchor
	root       *api.Client
	clients    map[int]*api.Client // admin clients by anchor index
}

// startMesh starts 3 root anchors, one anchor per child scope of the chain and one for the
// importer (the last to join), creates the scopes and their content.
func startMesh(ctx context.Context, dir string, depth int, propDepths []int) (*mesh, error) {
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: dir, Anchors: 3 + depth + 1, RootVoters: 3,
		TickInterval: 50 * time.Millisecond, RequestTimeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	m := &mesh{c: c, clients: map[int]*api.Client{}}
	if err := m.setup(ctx, depth, propDepths); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

func (m *mesh) close() {
	for _, cl := range m.clients {
		cl.Close()
	}
	m.c.Close()
}

// client returns an admin client of anchor i.
func (m *mesh) client(i int) (*api.Client, error) {
	if cl, ok := m.clients[i]; ok {
		return cl, nil
	}
	cl, err := m.c.Client(i)
	if err != nil {
		return nil, fmt.Errorf("client of %s: %w", m.c.Name(i), err)
	}
	m.clients[i] = cl
	return cl, nil
}

func (m *mesh) setup(ctx context.Context, depth int, propDepths []int) error {
	mesh := m.c.Mesh()
	if err := m.c.WaitScope(ctx, mesh); err != nil {
		return err
	}
	root, err := m.client(0)
	if err != nil {
		return err
	}
	m.root = root
	m.scopes, m.anchorOf = []string{mesh}, []int{0}
	for k := 1; k <= depth; k++ {
		domain := string(rune('a'+k-1)) + "." + m.scopes[k-1]
		// Deeper scopes go to anchors that joined earlier: an anchor outside the root
		// scope knows only the anchors that joined before it (its address book comes with
		// its join), and each parent must reach its child's anchor.
		idx := 3 + depth - k // depth 1: a<3+depth>, ..., depth (the deepest): a4
		if err := m.createScope(ctx, domain, idx); err != nil {
			return err
		}
		m.scopes, m.anchorOf = append(m.scopes, domain), append(m.anchorOf, idx)
	}
	m.importer, m.importerAt = importerLabel+"."+mesh, 3+depth
	if err := m.createScope(ctx, m.importer, m.importerAt); err != nil {
		return err
	}
	for _, s := range m.scopes {
		if err := m.apply(ctx, s, serviceYAML); err != nil {
			return err
		}
	}
	var imp strings.Builder
	imp.WriteString(clientYAML)
	for _, d := range propDepths {
		fmt.Fprintf(&imp, virtualServiceYAML, d, "svc."+m.scopes[d])
	}
	return m.apply(ctx, m.importer, imp.String())
}

// createScope delegates domain to anchor idx through the root client and waits for it.
func (m *mesh) createScope(ctx context.Context, domain string, idx int) error {
	if err := retry(ctx, 15*time.Second, func(ctx context.Context) error {
		_, err := m.root.CreateScope(ctx, domain, []string{m.c.Name(idx)})
		if api.Code(err) == codes.AlreadyExists { // an earlier attempt committed
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("create scope %s on %s: %w", domain, m.c.Name(idx), err)
	}
	if err := m.c.WaitScope(ctx, domain); err != nil {
		return err
	}
	return nil
}

// apply commits YAML in namespace ns through the root client, retrying while the scopes
// settle.
func (m *mesh) apply(ctx context.Context, ns, yaml string) error {
	objs, err := resource.Parse(ns+".yaml", []byte(yaml), m.c.Mesh(), ns)
	if err != nil {
		return err
	}
	if err := retry(ctx, 15*time.Second, func(ctx context.Context) error {
		_, err := m.root.Apply(ctx, objs, false, nil)
		return err
	}); err != nil {
		return fmt.Errorf("apply in %s: %w", ns, err)
	}
	return nil
}

// retry calls f (each call with 5 seconds) until it succeeds, ctx ends or timeout passes.
func retry(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serviceYAML is the Service of every scope of the hierarchy, exported to every scope.
const serviceYAML = `apiVersion: canton.dev/v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Export
metadata: {name: svc-to-all}
spec: {services: [svc], to: ["*"]}
`

// clientYAML is the importer's own service (its proxy's identity is client's).
const clientYAML = `apiVersion: canton.dev/v1
kind: Service
metadata: {name: client}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
`

// virtualServiceYAML names a remote host (%d: its depth, %s: the host), which makes the
// importer's anchors import it.
const virtualServiceYAML = `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-d%[1]d}
spec:
  hosts: [%[2]s]
  http:
  - route:
    - destination: {host: %[2]s}
`
