// Package xds translates one scope's committed state (Canton Services and Workloads plus the
// Istio networking and security resources users write) into the Envoy v3 resources a proxy of
// that scope needs: Listeners, RouteConfigurations, Clusters, ClusterLoadAssignments and
// Secrets.
//
// Generate is a pure function: the same Input and Node give the same Resources, byte for byte,
// on every anchor. It does no I/O, reads no clock and iterates maps in sorted order. It is built
// from small generators run in a fixed order (see outboundGenerators and nodeGenerators in
// generate.go); each wraps its errors with its name. A Snapshot generates the outbound part
// (clusters, endpoints, outbound routes) once per distinct namespace, kind, capabilities and
// selected labels, and shares it, with its versions and encodings, between proxies; the rest
// is generated per proxy. Istio semantics, and where Canton deliberately differs, are documented
// in docs/xds-translation.md.
//
// Security policies (authz.go, authz_rule.go, authz_custom.go, requestauthn.go, listener.go)
// become part of the inbound listener of a sidecar and of every listener of a gateway.
// PeerAuthentication chooses the inbound listener's filter chains (STRICT: mTLS only;
// PERMISSIVE: TLS and plaintext told apart per connection by the TLS inspector; DISABLE:
// plaintext), with mesh, namespace, workload and port-level precedence. RequestAuthentication
// becomes one envoy.filters.http.jwt_authn filter (a token must verify if present; a rule whose
// keys cannot be used rejects its tokens); AuthorizationPolicy becomes RBAC filters evaluated
// CUSTOM (ext_authz, for the requests an RBAC filter's shadow rules select; an unknown or
// second provider is enforced as DENY, fail closed), DENY, ALLOW, AUDIT. The mesh root
// namespace's policies apply mesh-wide: the root scope holds them and the anchors send them to
// every scope (internal/anchor, meshwide.go), so every scope's snapshot has them.
//
// TCP and TLS (tcp.go, upstream.go): each Node.Upstreams binding (canton proxy --upstream) gets
// a loopback listener for one service port: a tcp_proxy following the VirtualService's tcp
// routes, TLS passthrough by SNI following its tls routes, or, for HTTP ports, the outbound
// routes of that host. The inbound listener serves TCP ports with tcp_proxy chains (mTLS
// terminated, bytes to the application), told apart from HTTP by the ALPN mesh TCP clients
// offer.
//
// Config that a proxy cannot apply (a feature missing from Node.Capabilities) or that the
// translation does not support is not sent; every such omission is reported in
// Resources.Skipped with the object, the field and the reason, never dropped silently.
//
// Server (server.go) serves the resources over ADS, state of the world and delta, with its
// own per-stream cache: subset subscriptions are answered, NACKed content is never re-sent
// (the type is parked until its resources change), and scope changes (Notify) are pushed
// at once after a quiet period and at most once per debounce during a burst, only where a
// proxy's resources changed.
//
// Who may import it: internal/anchor (which serves the resources to proxies) and tests. It
// imports internal/resource, istio.io/api and the Envoy API types of go-control-plane; never
// the proxy, raft or the scope store.
package xds
