package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"canton.dev/canton/internal/xds"
)

// typeIndex numbers the four types a client subscribes to (SDS is local to the proxy).
var typeIndex = map[string]int{xds.ClusterType: 0, xds.EndpointType: 1, xds.ListenerType: 2, xds.RouteType: 3}

var typeShort = [4]string{"cds", "eds", "lds", "rds"}

// counters are shared by all clients of a worker.
type counters struct {
	bytes     [4]atomic.Int64 // encoded DiscoveryResponse bytes received, by type
	responses [4]atomic.Int64
	nacks     atomic.Int64 // responses the client could not decode (it NACKs them)
	lastRecv  atomic.Int64 // unix nanos of the last response received by any client
	// changed counts the clients that ACKed a new route version since the last mark, and
	// wake is signalled (without blocking) when it grows: waitRound sleeps on it.
	changed atomic.Int64
	wake    chan struct{}
}

// simClient is one simulated proxy: an ADS stream (state of the world, or delta: runDelta) subscribing like
// internal/proxy does and ACKing every response.
type simClient struct {
	node *corev3.Node
	c    *counters

	mu        sync.Mutex
	acked     [4]bool
	route     string // version of the last ACKed RDS response
	baseline  string // route version at the last mark
	changedAt int64  // unix nanos of the first ACK of a route version != baseline; 0: none yet
	err       error
}

// typeState is the per-type subscription state, owned by the stream goroutine.
type typeState struct {
	names   []string // nil: wildcard
	version string   // last ACKed version
	nonce   string   // nonce of the last response
}

// run keeps the stream open until ctx ends or the stream fails. ready is called once all
// four types have been ACKed.
func (sc *simClient) run(ctx context.Context, conn *grpc.ClientConn, ready func()) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("client %s: open ads stream: %w", sc.node.GetId(), err)
	}
	types := map[string]*typeState{}
	send := func(typeURL string, withNode bool) error {
		t := types[typeURL]
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: t.version, ResponseNonce: t.nonce, ResourceNames: t.names}
		if withNode {
			req.Node = sc.node
		}
		return stream.Send(req)
	}
	// Like the proxy: CDS and LDS wildcard first; EDS and RDS once their names are known.
	types[xds.ClusterType] = &typeState{}
	types[xds.ListenerType] = &typeState{}
	if err := send(xds.ClusterType, true); err != nil {
		return fmt.Errorf("client %s: send cds: %w", sc.node.GetId(), err)
	}
	if err := send(xds.ListenerType, false); err != nil {
		return fmt.Errorf("client %s: send lds: %w", sc.node.GetId(), err)
	}
	readyCalled := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("client %s: recv: %w", sc.node.GetId(), err)
		}
		now := time.Now().UnixNano()
		typeURL := resp.GetTypeUrl()
		ti, err := sc.received(now, typeURL, proto.Size(resp))
		if err != nil {
			return err
		}
		t := types[typeURL]
		if t == nil {
			return fmt.Errorf("client %s: unsolicited %s response", sc.node.GetId(), typeShort[ti])
		}
		t.nonce = resp.GetNonce()
		// Follow-up subscriptions the response implies.
		var follow string
		var names []string
		switch typeURL {
		case xds.ClusterType:
			follow = xds.EndpointType
			names, err = edsNames(resp.GetResources())
		case xds.ListenerType:
			follow = xds.RouteType
			names, err = rdsNames(resp.GetResources())
		}
		if err != nil {
			sc.c.nacks.Add(1)
			return fmt.Errorf("client %s: decode %s: %w", sc.node.GetId(), typeShort[ti], err)
		}
		t.version = resp.GetVersionInfo()
		if err := send(typeURL, false); err != nil { // the ACK
			return fmt.Errorf("client %s: ack %s: %w", sc.node.GetId(), typeShort[ti], err)
		}
		ackAt := time.Now().UnixNano()
		if follow != "" {
			ft := types[follow]
			if ft == nil || !slices.Equal(ft.names, names) {
				if ft == nil {
					ft = &typeState{}
					types[follow] = ft
				}
				ft.names = names
				if err := send(follow, false); err != nil {
					return fmt.Errorf("client %s: subscribe %s: %w", sc.node.GetId(), typeShort[typeIndex[follow]], err)
				}
			}
		}
		if sc.ackedType(ti, t.version, ackAt) && !readyCalled {
			readyCalled = true
			ready()
		}
	}
}

// ackedType records that the client ACKed a response of type ti at version (for RDS, the route
// version it applies), ackAt, and reports whether all four types have been ACKed.
func (sc *simClient) ackedType(ti int, version string, ackAt int64) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.acked[ti] = true
	if ti == typeIndex[xds.RouteType] {
		sc.route = version
		if sc.changedAt == 0 && version != sc.baseline {
			sc.changedAt = ackAt
			sc.c.changed.Add(1)
			select {
			case sc.c.wake <- struct{}{}:
			default:
			}
		}
	}
	return sc.acked[0] && sc.acked[1] && sc.acked[2] && sc.acked[3]
}

// runDelta is run over a delta (incremental) ADS stream, as canton proxy uses: CDS and LDS
// wildcard, then EDS and RDS by name, ACKing every response. A response carries only what
// changed; the client keeps every type's resources to follow the names they imply. The route
// version is the system version of the last RDS response.
func (sc *simClient) runDelta(ctx context.Context, conn *grpc.ClientConn, ready func()) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("client %s: open delta ads stream: %w", sc.node.GetId(), err)
	}
	known := map[string]map[string]*anypb.Any{} // type -> name -> resource
	subscribed := map[string][]string{}         // EDS and RDS names, sorted
	for i, typeURL := range []string{xds.ClusterType, xds.ListenerType} {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL}
		if i == 0 {
			req.Node = sc.node
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("client %s: send %s: %w", sc.node.GetId(), typeShort[typeIndex[typeURL]], err)
		}
		known[typeURL] = map[string]*anypb.Any{}
	}
	readyCalled := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("client %s: recv: %w", sc.node.GetId(), err)
		}
		typeURL := resp.GetTypeUrl()
		ti, err := sc.received(time.Now().UnixNano(), typeURL, proto.Size(resp))
		if err != nil {
			return err
		}
		res := known[typeURL]
		if res == nil {
			return fmt.Errorf("client %s: unsolicited %s response", sc.node.GetId(), typeShort[ti])
		}
		for _, r := range resp.GetResources() {
			res[r.GetName()] = r.GetResource()
		}
		for _, n := range resp.GetRemovedResources() {
			delete(res, n)
		}
		var follow string
		var names []string
		switch typeURL {
		case xds.ClusterType, xds.ListenerType:
			all := make([]*anypb.Any, 0, len(res))
			for _, a := range res {
				all = append(all, a)
			}
			if typeURL == xds.ClusterType {
				follow = xds.EndpointType
				names, err = edsNames(all)
			} else {
				follow = xds.RouteType
				names, err = rdsNames(all)
			}
		}
		if err != nil {
			sc.c.nacks.Add(1)
			return fmt.Errorf("client %s: decode %s: %w", sc.node.GetId(), typeShort[ti], err)
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}); err != nil { // the ACK
			return fmt.Errorf("client %s: ack %s: %w", sc.node.GetId(), typeShort[ti], err)
		}
		ackAt := time.Now().UnixNano()
		if follow != "" && !slices.Equal(subscribed[follow], names) {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: follow}
			for _, n := range names {
				if _, ok := slices.BinarySearch(subscribed[follow], n); !ok {
					req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
				}
			}
			for _, n := range subscribed[follow] {
				if _, ok := slices.BinarySearch(names, n); !ok {
					req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
				}
			}
			subscribed[follow] = names
			if known[follow] == nil {
				known[follow] = map[string]*anypb.Any{}
			}
			if err := stream.Send(req); err != nil {
				return fmt.Errorf("client %s: subscribe %s: %w", sc.node.GetId(), typeShort[typeIndex[follow]], err)
			}
		}
		if sc.ackedType(ti, resp.GetSystemVersionInfo(), ackAt) && !readyCalled {
			readyCalled = true
			ready()
		}
	}
}

// mark takes the current route version as the baseline of a round.
// received counts a response of typeURL (size bytes) received at now and returns the index of its
// type; a type the benchmark does not subscribe to is an error.
func (sc *simClient) received(now int64, typeURL string, size int) (int, error) {
	sc.c.lastRecv.Store(now)
	ti, ok := typeIndex[typeURL]
	if !ok {
		return 0, fmt.Errorf("client %s: response of unexpected type %q", sc.node.GetId(), typeURL)
	}
	sc.c.bytes[ti].Add(int64(size))
	sc.c.responses[ti].Add(1)
	return ti, nil
}

func (sc *simClient) mark() {
	sc.mu.Lock()
	sc.baseline, sc.changedAt = sc.route, 0
	sc.mu.Unlock()
}

// changed returns when the client ACKed a route version other than the baseline (0: not yet).
func (sc *simClient) changed() int64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.changedAt
}

// edsNames lists the EDS service names of the clusters in a CDS response, sorted.
func edsNames(resources []*anypb.Any) ([]string, error) {
	var names []string
	for _, a := range resources {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			return nil, err
		}
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		n := c.GetEdsClusterConfig().GetServiceName()
		if n == "" {
			n = c.GetName()
		}
		names = append(names, n)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// rdsNames lists the route configurations the HTTP connection managers of an LDS response
// fetch over RDS, sorted.
func rdsNames(resources []*anypb.Any) ([]string, error) {
	var names []string
	for _, a := range resources {
		var l listenerv3.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			return nil, err
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				if tc == nil {
					continue
				}
				var h hcmv3.HttpConnectionManager
				if !tc.MessageIs(&h) {
					continue
				}
				if err := tc.UnmarshalTo(&h); err != nil {
					return nil, err
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" {
					names = append(names, n)
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
