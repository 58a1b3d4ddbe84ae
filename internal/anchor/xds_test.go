package anchor_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"canton.dev/canton/internal/anchor"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/xds"
)

// claimsNS is the namespace of the claim tests' workloads, governed by the root scope.
const claimsNS = "default." + mesh

// claimsMesh is a one-anchor mesh with a Gateway selecting istio=ingressgateway on port 8080.
type claimsMesh struct {
	t *testing.T
	c *meshtest.Cluster
}

func startClaimsMesh(t *testing.T) *claimsMesh {
	t.Helper()
	c := startCluster(t, meshtest.Options{Anchors: 1})
	put(t, client(t, c, 0), resource.Object{Kind: "Gateway", Namespace: claimsNS, Name: "ingress",
		Spec: []byte(`{"selector":{"istio":"ingressgateway"},"servers":[{"port":{"number":8080,"name":"http","protocol":"HTTP"},"hosts":["*"]}]}`)})
	return &claimsMesh{t: t, c: c}
}

// creds issues a certificate of service svc of claimsNS with the join token.
func (m *claimsMesh) creds(svc string) *identity.Credentials {
	m.t.Helper()
	tok, err := os.ReadFile(filepath.Join(m.c.DataDir(0), "join.token"))
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	creds, err := issue(ctx, m.c.Addr(0), string(tok), identity.WorkloadID(claimsNS, svc))
	if err != nil {
		m.t.Fatal(err)
	}
	return creds
}

// register commits, as the workload holding creds, a Workload named after the proxy under a
// new lease (as canton proxy registers itself).
func (m *claimsMesh) register(creds *identity.Credentials, spec resource.WorkloadSpec) {
	m.t.Helper()
	cl, err := api.Dial(m.c.Addr(0), creds)
	if err != nil {
		m.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: claimsNS, TtlSeconds: 300})
	if err != nil {
		m.t.Fatal(api.Err(err))
	}
	spec.Lease = lease.LeaseId
	b, err := json.Marshal(spec)
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := cl.Apply(ctx, []resource.Object{{Kind: "Workload", Namespace: claimsNS, Name: spec.Proxy, Spec: b}}, false, nil); err != nil {
		m.t.Fatal(err)
	}
}

// stream opens a state-of-the-world ADS stream as creds (nil: the admin), describes itself
// as n and asks for every listener. sent, if not nil, runs after the request went out, before the answer
// is awaited. It returns the names of the listeners of the first response, or the stream's error.
func (m *claimsMesh) stream(creds *identity.Credentials, n xds.Node, sent func()) ([]string, error) {
	m.t.Helper()
	if creds == nil {
		var err error
		if creds, err = identity.LoadCredentials(m.c.AdminCredentials()); err != nil {
			m.t.Fatal(err)
		}
	}
	conn, err := grpc.NewClient(m.c.Addr(0), grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLS(creds, identity.AcceptAnchors(mesh)))))
	if err != nil {
		m.t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	fields := map[string]any{}
	for k, v := range xds.NodeMetadata(n) {
		fields[k] = v
	}
	md, err := structpb.NewStruct(fields)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: n.ID, Metadata: md}, TypeUrl: xds.ListenerType}); err != nil {
		return nil, err
	}
	if sent != nil {
		sent()
	}
	resp, err := st.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range resp.GetResources() {
		var l listenerv3.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			m.t.Fatal(err)
		}
		names = append(names, l.GetName())
	}
	slices.Sort(names)
	return names, nil
}

// webSidecar is a sidecar of service web as canton proxy describes it, and the Workload it registers.
func webSidecar() (xds.Node, resource.WorkloadSpec) {
	labels := map[string]string{"app": "web", "version": "v1"}
	n := xds.Node{ID: "web-v1-1", Service: "web", Namespace: claimsNS, Labels: labels, Kind: xds.KindSidecar,
		OutboundPort: 15001, InboundAddress: "127.0.0.1", InboundPort: 15006, AppAddress: "127.0.0.1:8080"}
	return n, resource.WorkloadSpec{Service: "web", Address: "127.0.0.1", Port: 15006, Labels: labels, Proxy: n.ID}
}

// ingressGateway is a gateway of service ingressgateway selected by the Gateway, and its Workload.
func ingressGateway() (xds.Node, resource.WorkloadSpec) {
	labels := map[string]string{"app": "ingressgateway", "istio": "ingressgateway"}
	n := xds.Node{ID: "ingress-1", Service: "ingressgateway", Namespace: claimsNS, Labels: labels, Kind: xds.KindGateway, InboundAddress: "127.0.0.1"}
	return n, resource.WorkloadSpec{Service: "ingressgateway", Address: "127.0.0.1", Port: 15006, Labels: labels, Proxy: n.ID, Gateway: true}
}

// TestXDSAdmitsProxiesAsTheirWorkloadsRegisterThem: a sidecar and a gateway describing
// themselves as their Workloads record them get their listeners (the gateway its Gateway's);
// a stream opened before its Workload is committed waits for it and is served; proxyless
// nodes (no Workload) and the admin inspecting a node are admitted on identity alone.
func TestXDSAdmitsProxiesAsTheirWorkloadsRegisterThem(t *testing.T) {
	m := startClaimsMesh(t)
	webCreds, gwCreds := m.creds("web"), m.creds("ingressgateway")

	n, spec := webSidecar()
	m.register(webCreds, spec)
	if got, err := m.stream(webCreds, n, nil); err != nil || !slices.Equal(got, []string{"inbound", "outbound"}) {
		t.Errorf("registered sidecar: listeners %v, %v; want inbound and outbound", got, err)
	}
	client := n
	client.ID, client.InboundAddress, client.InboundPort, client.AppAddress = "web-client-1", "", 0, ""
	cspec := spec
	cspec.Proxy = client.ID
	m.register(webCreds, cspec) // a client-only proxy registers an address nothing listens on
	if got, err := m.stream(webCreds, client, nil); err != nil || !slices.Equal(got, []string{"outbound"}) {
		t.Errorf("registered client-only sidecar: listeners %v, %v; want outbound", got, err)
	}

	// The gateway connects first and registers while its stream waits for the Workload.
	gw, gwSpec := ingressGateway()
	waiting := make(chan string, 4)
	defer anchor.OnWorkloadClaimWait(func(id string) { waiting <- id })()
	got, err := m.stream(gwCreds, gw, func() {
		select {
		case id := <-waiting:
			if id != gw.ID {
				t.Errorf("the stream of %s waits for its Workload, want %s", id, gw.ID)
			}
		case <-time.After(10 * time.Second):
			t.Error("the gateway's stream did not wait for its Workload")
		}
		m.register(gwCreds, gwSpec)
	})
	if err != nil || !slices.Equal(got, []string{"http.8080"}) {
		t.Errorf("gateway registered after connecting: listeners %v, %v; want http.8080", got, err)
	}

	pl := xds.Node{ID: "grpc-client-1", Service: "web", Namespace: claimsNS, Kind: xds.KindProxyless, Labels: map[string]string{"version": "v9"}}
	if _, err := m.stream(webCreds, pl, nil); err != nil {
		t.Errorf("proxyless node without a Workload: %v", err)
	}
	admin := gw
	admin.ID = "unregistered-gateway"
	if got, err := m.stream(nil, admin, nil); err != nil || !slices.Equal(got, []string{"http.8080"}) {
		t.Errorf("the admin inspecting an unregistered gateway: listeners %v, %v; want http.8080", got, err)
	}
}

// TestXDSRefusesClaimsTheWorkloadDoesNotHave: a sidecar claiming labels, a gateway kind or an
// inbound address its Workload does not record, or a gateway whose Workload is a sidecar's, is
// refused with PermissionDenied naming the difference; a node with no Workload at all is
// refused once the wait for it ends.
func TestXDSRefusesClaimsTheWorkloadDoesNotHave(t *testing.T) {
	m := startClaimsMesh(t)
	webCreds := m.creds("web")
	n, spec := webSidecar()
	m.register(webCreds, spec)
	gw, gwSpec := ingressGateway()
	gwSpec.Gateway = false // registered as a sidecar
	gwCreds := m.creds("ingressgateway")
	m.register(gwCreds, gwSpec)

	for _, tc := range []struct {
		name  string
		creds *identity.Credentials
		node  func(n xds.Node) xds.Node
		want  string
	}{
		{"other version", webCreds, func(n xds.Node) xds.Node {
			n.Labels = map[string]string{"app": "web", "version": "v2"}
			return n
		}, "it claims labels app=web,version=v2, the Workload has app=web,version=v1"},
		{"extra label", webCreds, func(n xds.Node) xds.Node {
			n.Labels = map[string]string{"app": "web", "version": "v1", "istio": "ingressgateway"}
			return n
		}, "it claims labels app=web,istio=ingressgateway,version=v1"},
		{"gateway kind", webCreds, func(n xds.Node) xds.Node {
			n.Kind, n.InboundPort, n.OutboundPort, n.AppAddress = xds.KindGateway, 0, 0, ""
			return n
		}, "it claims kind gateway, the Workload registers a sidecar (spec.gateway false)"},
		{"inbound address", webCreds, func(n xds.Node) xds.Node { n.InboundAddress = "127.0.0.9"; return n }, "it claims inbound address 127.0.0.9, the Workload has 127.0.0.1"},
		{"inbound port", webCreds, func(n xds.Node) xds.Node { n.InboundPort = 15007; return n }, "it claims inbound port 15007, the Workload has 15006"},
		{"gateway registered as a sidecar", gwCreds, func(xds.Node) xds.Node { return gw }, "it claims kind gateway, the Workload registers a sidecar"},
	} {
		_, err := m.stream(tc.creds, tc.node(n), nil)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "does not match its Workload "+claimsNS+"/") {
			t.Errorf("%s: stream error %v; want PermissionDenied saying %q", tc.name, err, tc.want)
		}
	}

	defer anchor.SetWorkloadClaimWait(200 * time.Millisecond)()
	stranger := n
	stranger.ID = "web-v1-unregistered"
	_, err := m.stream(webCreds, stranger, nil)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "has no Workload web-v1-unregistered registered in "+claimsNS) {
		t.Errorf("unregistered sidecar: stream error %v; want FailedPrecondition saying it has no Workload", err)
	}
}
