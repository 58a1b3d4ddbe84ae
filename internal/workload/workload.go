package workload

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/dns"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/proxy"
	"canton.dev/canton/internal/resolve"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/xds"
)

// Options configures a workload's proxy. Zero values are documented defaults.
type Options struct {
	Service   string            // required: the service this workload serves
	Namespace string            // required: absolute namespace, e.g. bookinfo.demo.mesh
	Version   string            // label "version"; empty: none
	Labels    map[string]string // more labels of the workload
	App       string            // host:port of the local application; empty: client-only
	Anchors   []string          // required: anchors of the scope, tried in order
	JoinToken string            // required: join token text (first identity)
	Inbound   string            // where other proxies reach this one (mTLS); default 127.0.0.1:<free>
	Outbound  string            // the local outbound HTTP listener; default 127.0.0.1:<free>
	Admin     string            // admin listener; empty: none
	NodeID    string            // default <service>-<version>-<random>
	LeaseTTL  time.Duration     // default 10s; at least 1s, granted in whole seconds (rounded down); a dead workload vanishes within it
	CertTTL   time.Duration     // default 24h; rotated at half-life
	DrainTime time.Duration     // how long connections may finish at shutdown; default 5s
	Logger    *slog.Logger
	// DNS, if set, is where the sidecar serves DNS for mesh names (UDP and TCP, e.g.
	// 127.0.0.1:15053; port 0 picks one, see Workload.DNS): answers come from the anchors
	// through a cache over the workload's own API client, each verified against the
	// workload's trust bundle before it is cached (docs/design/0004); short names are tried
	// in the workload's namespace, then in the mesh. Empty: no DNS.
	DNS string
	// DNSUpstream are the resolvers (host:port) for names outside the mesh; empty: such
	// names get SERVFAIL. Mesh names are never sent there.
	DNSUpstream []string
	// DNSMaxStale bounds how long the last answer is served while no anchor answers;
	// default 1h.
	DNSMaxStale time.Duration
	// Capture is where the transparent-capture listener binds, 127.0.0.1:PORT (port 0 picks
	// one, see Workload.Capture): iptables redirects the workload's connections to service
	// VIPs there, and the proxy routes each by the service its original destination is the
	// VIP of (docs/transparent-capture.md). With DNS, mesh names are answered with their VIPs.
	// Empty: no capture.
	Capture string
	// Upstreams bind loopback ports to one service each (--upstream, xds.ParseUpstreams); an
	// address with port 0 gets a free port (see Workload.Upstreams).
	Upstreams []xds.Upstream
	// Gateway runs the proxy as an ingress gateway (canton proxy --gateway): its xDS node is of
	// kind gateway and its Workload records it, so the anchors give it a listener per port of
	// the Gateways whose selector matches its labels (set them with Labels, e.g. istio:
	// ingressgateway) and no inbound, outbound or upstream listener: App, Inbound, Outbound
	// and Upstreams must be empty. A port that cannot be bound is rejected by the proxy
	// (a NACK naming the address: Proxy().Ready and canton get proxies show it).
	Gateway bool
	// TLSCredentials are the key pairs the gateway serves for HTTPS Gateway servers, by their
	// tls.credentialName (see TLSCredential). Only with Gateway.
	TLSCredentials []TLSCredential
	// GatewayAddress is the IP the gateway's listeners bind (the ports are the Gateway
	// servers'); it is also the Workload's address. Default 127.0.0.1; 0.0.0.0 or :: listens on
	// every interface. Only with Gateway.
	GatewayAddress string
	// Ready, if set, is called once the workload is registered and its proxy runs.
	Ready func(w *Workload)
}

// CheckCertTTL refuses a certificate lifetime the anchors would not issue (1 s to 7 days); zero
// means the default.
func (o *Options) CheckCertTTL() error {
	if o.CertTTL != 0 && (o.CertTTL < time.Second || o.CertTTL > 7*24*time.Hour) {
		return fmt.Errorf("proxy: --cert-ttl %s: must be 1s to 168h", o.CertTTL)
	}
	return nil
}

// Workload is a running sidecar or gateway.
type Workload struct {
	opts     Options
	log      *slog.Logger
	mesh     string
	id       identity.ID
	secrets  *proxy.StaticSecrets
	proxy    *proxy.Proxy
	inbound  string
	outbound string
	capture  string
	upstream []xds.Upstream // Options.Upstreams with their bound addresses
	dns      *dns.Server

	// crash, when set before Run's context ends, makes the shutdown skip the
	// deregistration, as a crash would: the lease is left to expire. Only tests set it
	// (export_test.go), to show that a dead workload vanishes within its lease TTL.
	crash atomic.Bool

	mu     sync.Mutex
	creds  *identity.Credentials
	issued time.Time // when creds were received; rotation is due at half their remaining life
	lease  uint64
}

// Credentials are the workload's current SVID, its chain, key and bundle.
// The caller must not modify them.
func (w *Workload) Credentials() *identity.Credentials { return w.credentials() }

// Capture is the address of the transparent-capture listener; empty without Options.Capture.
func (w *Workload) Capture() string { return w.capture }

// Outbound is the address of the outbound HTTP listener; empty for a gateway.
func (w *Workload) Outbound() string { return w.outbound }

// Labels are the labels the workload registers and its proxy describes itself with: app (the
// service), version when set, and Options.Labels.
func (w *Workload) Labels() map[string]string { return w.labels() }

// GatewayAddress is the IP a gateway's listeners bind; empty unless Options.Gateway.
func (w *Workload) GatewayAddress() string {
	if !w.opts.Gateway {
		return ""
	}
	return w.opts.GatewayAddress
}

// Upstreams are the --upstream bindings with the addresses bound (a port 0 resolved).
func (w *Workload) Upstreams() []xds.Upstream { return w.upstream }

// Inbound is the address other proxies reach this workload on. A gateway (like a client-only
// proxy) registers it but nothing listens there.
func (w *Workload) Inbound() string { return w.inbound }

// Admin is the address of the proxy's admin listener (/ready, /stats/prometheus,
// /config_dump, /clusters); empty without Options.Admin. It is bound before Ready is
// called, so it is known then (the proxy's own AdminAddr only once its Run started).
func (w *Workload) Admin() string { return w.opts.Admin }

// DNS is the address of the sidecar's DNS server; empty without Options.DNS.
func (w *Workload) DNS() string {
	if w.dns == nil {
		return ""
	}
	return w.dns.Addr()
}

// Proxy is the running data plane.
func (w *Workload) Proxy() *proxy.Proxy { return w.proxy }

// Run runs the workload's proxy until ctx ends, then deregisters and drains.
func Run(ctx context.Context, opts Options) error {
	if opts.Service == "" || opts.Namespace == "" || len(opts.Anchors) == 0 || opts.JoinToken == "" {
		return errors.New("proxy: --service, --scope, --anchors and --join-token are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 10 * time.Second
	}
	if opts.LeaseTTL < time.Second { // anchors grant whole seconds: less would ask for 0
		return fmt.Errorf("proxy: --lease-ttl %s: must be at least 1s", opts.LeaseTTL)
	}
	if err := opts.CheckGateway(); err != nil {
		return err
	}
	if opts.CertTTL == 0 {
		opts.CertTTL = 24 * time.Hour
	}
	if err := opts.CheckCertTTL(); err != nil {
		return err
	}
	if opts.NodeID == "" {
		b := make([]byte, 3)
		rand.Read(b)
		opts.NodeID = strings.Trim(opts.Service+"-"+opts.Version, "-") + "-" + hex.EncodeToString(b)
	}
	w := &Workload{opts: opts, log: opts.Logger.With("workload", opts.NodeID), secrets: proxy.NewStaticSecrets()}
	w.id = identity.WorkloadID(opts.Namespace, opts.Service)
	// The proxy's sockets are bound now, before the addresses go into the
	// workload's registration and node metadata; until the proxy owns them
	// (proxy.New), they are closed on every way out.
	bound := map[string]net.Listener{}
	handedOver := false
	defer func() {
		if !handedOver {
			for _, ln := range bound {
				ln.Close()
			}
		}
	}()
	bind := func(flag, addr string) (string, error) {
		a, ln, err := bindAddr(addr)
		if err != nil {
			return "", fmt.Errorf("proxy: %s: %w", flag, err)
		}
		bound[a] = ln
		return a, nil
	}
	var err error
	inbound, inboundFlag := opts.Inbound, "--inbound"
	if opts.Gateway { // the gateway's address, checked by binding it once; the port is a placeholder
		inbound, inboundFlag = net.JoinHostPort(opts.GatewayAddress, "0"), "--gateway-address"
	}
	if w.inbound, err = bind(inboundFlag, inbound); err != nil {
		return err
	}
	if opts.App == "" { // client only or gateway: the address is registered, nothing listens on it
		bound[w.inbound].Close()
		delete(bound, w.inbound)
	}
	if !opts.Gateway {
		if w.outbound, err = bind("--outbound", opts.Outbound); err != nil {
			return err
		}
	}
	if opts.Capture != "" {
		if ap, perr := netip.ParseAddrPort(opts.Capture); perr != nil || ap.Addr() != netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
			return fmt.Errorf("proxy: --capture %q: want 127.0.0.1:PORT (iptables REDIRECT sends the workload's own connections to 127.0.0.1)", opts.Capture)
		}
		if w.capture, err = bind("--capture", opts.Capture); err != nil {
			return err
		}
	}
	for _, u := range opts.Upstreams {
		if u.Address, err = bind("--upstream "+u.String(), u.Address); err != nil {
			return err
		}
		w.upstream = append(w.upstream, u)
	}
	if opts.Admin != "" {
		if w.opts.Admin, err = bind("--admin", opts.Admin); err != nil {
			return err
		}
	}
	credentials, err := w.loadCredentials(nil)
	if err != nil {
		return err
	}
	if err := w.obtainIdentity(ctx); err != nil {
		return err
	}
	client, err := w.dial()
	if err != nil {
		return err
	}
	defer client.Close()
	if err := w.register(ctx, client); err != nil {
		return err
	}

	node := w.node()
	meta := xds.NodeMetadata(node)
	meta[proxy.CapabilitiesKey] = proxy.Capabilities
	creds := w.credentials()
	mesh := w.mesh
	w.proxy, err = proxy.New(proxy.Options{
		XDSServers:   opts.Anchors,
		NodeID:       opts.NodeID,
		NodeCluster:  opts.Service + "." + opts.Namespace,
		NodeMetadata: meta,
		XDSTLS:       identity.ClientTLS(creds, identity.AcceptAnchors(mesh)),
		AdminAddr:    w.opts.Admin,
		Logger:       w.log,
		LocalSecrets: w.secrets,
		DrainTime:    opts.DrainTime,
		Delta:        true, // anchors serve incremental xDS; only changed resources travel
		Bound:        bound,
		Workload:     w.telemetryWorkload(),
	})
	if err != nil {
		w.deregister(client)
		return err
	}
	handedOver = true
	if opts.DNS != "" {
		if w.dns, err = w.newDNS(client); err != nil {
			w.deregister(client)
			return err
		}
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- w.proxy.Run(runCtx) }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); w.keepAlive(runCtx, client) }()
	go func() { defer wg.Done(); w.rotate(runCtx) }()
	if len(credentials) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); w.reloadCredentials(runCtx, credentials) }()
	}
	if w.dns != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.dns.Serve(runCtx); err != nil {
				w.log.Error("dns server failed", "addr", w.dns.Addr(), "err", err)
			}
		}()
	}
	if opts.Ready != nil {
		opts.Ready(w)
	}
	select {
	case <-ctx.Done():
	case err = <-proxyDone:
		stop()
		wg.Wait()
		w.deregister(client)
		return err
	}
	// Clean shutdown: leave the endpoint sets first, then drain.
	if !w.crash.Load() {
		w.deregister(client)
	}
	stop()
	wg.Wait()
	w.log.Debug("agent loops stopped; draining the proxy")
	return <-proxyDone
}

// bindAddr binds addr (default 127.0.0.1:0) and returns the socket with its
// address; the proxy serves on that very socket (proxy.Options.Bound), so the
// port cannot be taken by another process between choosing and serving.
func bindAddr(addr string) (string, net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	return ln.Addr().String(), ln, nil
}

// CheckGateway checks the options of a gateway (Gateway, GatewayAddress) and sets
// GatewayAddress's default: a gateway serves the Gateways selecting it and nothing else. Run
// calls it; the CLI calls it first to refuse bad flags before anything starts.
func (opts *Options) CheckGateway() error {
	if !opts.Gateway {
		if opts.GatewayAddress != "" {
			return errors.New("proxy: --gateway-address needs --gateway")
		}
		if len(opts.TLSCredentials) > 0 {
			return errors.New("proxy: --tls-credential needs --gateway (sidecars get their certificates from the mesh)")
		}
		return nil
	}
	for _, f := range []struct{ flag, value string }{
		{"--app", opts.App}, {"--inbound", opts.Inbound}, {"--outbound", opts.Outbound}, {"--capture", opts.Capture},
	} {
		if f.value != "" {
			return fmt.Errorf("proxy: --gateway: %s does not apply: a gateway has no application and no inbound or outbound listener, only the listeners of the Gateways selecting its labels", f.flag)
		}
	}
	if len(opts.Upstreams) > 0 {
		return errors.New("proxy: --gateway: --upstream does not apply: a gateway has only the listeners of the Gateways selecting its labels")
	}
	if opts.GatewayAddress == "" {
		opts.GatewayAddress = "127.0.0.1"
	}
	a, err := netip.ParseAddr(opts.GatewayAddress)
	if err != nil || a.Zone() != "" {
		return fmt.Errorf("proxy: --gateway-address %q: want an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface); the ports come from the Gateways", opts.GatewayAddress)
	}
	opts.GatewayAddress = a.Unmap().String()
	return nil
}

func splitPort(addr string) (string, uint32) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return host, uint32(p)
}

func (w *Workload) labels() map[string]string {
	l := map[string]string{"app": w.opts.Service}
	if w.opts.Version != "" {
		l["version"] = w.opts.Version
	}
	for k, v := range w.opts.Labels {
		l[k] = v
	}
	return l
}

// telemetryWorkload is what the proxy reports as this workload in Istio's metric labels and tells
// the proxies it talks to: the workload is the service and version (Istio's deployment, e.g.
// reviews-v2), app and version its labels.
func (w *Workload) telemetryWorkload() proxy.Workload {
	l := w.labels()
	return proxy.Workload{Name: strings.Trim(w.opts.Service+"-"+w.opts.Version, "-"), Namespace: w.opts.Namespace,
		App: l["app"], Version: l["version"], Principal: w.id.String()}
}

// node is how the proxy describes itself to the anchors; they check it against the Workload
// register recorded (kind, labels, inbound address and port).
func (w *Workload) node() xds.Node {
	n := xds.Node{ID: w.opts.NodeID, Service: w.opts.Service, Namespace: w.opts.Namespace, Labels: w.labels(), Kind: xds.KindSidecar, AdminAddress: w.opts.Admin}
	if w.opts.Gateway {
		// No outbound, inbound or upstream listener: InboundAddress is where the Gateways'
		// listeners bind (xds: gatewayAddress).
		n.Kind, n.InboundAddress = xds.KindGateway, w.opts.GatewayAddress
		return n
	}
	_, n.OutboundPort = splitPort(w.outbound)
	_, n.CapturePort = splitPort(w.capture)
	n.Upstreams = w.upstream
	if w.opts.App != "" {
		n.InboundAddress, n.InboundPort = splitPort(w.inbound)
		n.AppAddress = w.opts.App
	}
	return n
}

func (w *Workload) credentials() *identity.Credentials {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.creds
}

// obtainIdentity gets the first SVID with the join token, verifying the anchor
// against the token's CA pin.
func (w *Workload) obtainIdentity(ctx context.Context) error {
	tok, err := identity.ParseJoinToken(strings.TrimSpace(w.opts.JoinToken))
	if err != nil {
		return fmt.Errorf("proxy: --join-token: %w", err)
	}
	// A scope that is just starting has no CA for a moment: retry what is
	// unavailable, give up on what is refused.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := w.obtainIdentityOnce(ctx, tok)
		if err == nil || api.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (w *Workload) obtainIdentityOnce(ctx context.Context, tok identity.JoinToken) error {
	var errs []string
	var last error
	for _, addr := range w.opts.Anchors {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(identity.PinnedClientTLS(tok.CAPin))))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		err = w.issue(ctx, apipb.NewAnchorClient(conn), tok.String())
		conn.Close()
		if err == nil {
			return nil
		}
		last = err
		errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
	}
	return &api.Error{Code: api.Code(last), Msg: fmt.Sprintf("proxy: no identity for %s: %s", w.id, strings.Join(errs, "; "))}
}

// issue asks an anchor to sign a CSR for this workload's identity.
func (w *Workload) issue(ctx context.Context, c apipb.AnchorClient, token string) error {
	key, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	csr, err := identity.NewCSR(w.id, key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.IssueCertificate(ctx, &apipb.IssueCertificateRequest{Csr: csr, Token: token, TtlSeconds: uint32(w.opts.CertTTL / time.Second)})
	if err != nil {
		return api.Err(err)
	}
	creds := &identity.Credentials{Key: key}
	for _, der := range resp.Chain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("anchor sent a bad certificate: %w", err)
		}
		creds.Chain = append(creds.Chain, cert)
	}
	for _, der := range resp.Bundle {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("anchor sent a bad bundle: %w", err)
		}
		creds.Bundle = append(creds.Bundle, cert)
	}
	if err := creds.Verify(time.Now()); err != nil {
		return fmt.Errorf("anchor sent unusable credentials: %w", err)
	}
	if got, err := creds.ID(); err != nil || got != w.id {
		return fmt.Errorf("anchor issued %v, not %s", got, w.id)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	var chainPEM, bundlePEM []byte
	for _, c := range creds.Chain {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, c := range creds.Bundle {
		bundlePEM = append(bundlePEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	w.secrets.Set(proxy.CertificateSecret(xds.CertSecretName, chainPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	w.secrets.Set(proxy.ValidationSecret(xds.RootSecretName, bundlePEM))
	w.mu.Lock()
	w.creds, w.issued = creds, time.Now()
	if resp.Mesh != "" {
		w.mesh = resp.Mesh
	}
	w.mu.Unlock()
	w.log.Info("identity issued", "id", w.id.String(), "not_after", creds.NotAfter())
	return nil
}

// rotate renews the SVID at half its lifetime, authenticating with the
// current one. The lifetime counts from when the SVID arrived, not from its
// NotBefore, which the CA backdates for clock skew. Failures retry every few
// seconds (sooner for short-lived SVIDs); the old certificate keeps serving
// until it expires (then handshakes fail: never plaintext).
func (w *Workload) rotate(ctx context.Context) {
	retry := min(5*time.Second, max(w.opts.CertTTL/10, 100*time.Millisecond))
	for {
		w.mu.Lock()
		c, issued := w.creds, w.issued
		w.mu.Unlock()
		wait := time.Until(issued.Add(c.NotAfter().Sub(issued) / 2))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		client, err := w.dial()
		if err == nil {
			err = w.issue(ctx, client.Raw(), "")
			client.Close()
		}
		if err != nil {
			w.log.Warn("identity rotation failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
		}
	}
}

// newDNS binds the sidecar's DNS server: the anchors answer through a cache over client
// (the workload's identity, so it sees what its scope may see) that keeps only answers
// verified against the workload's trust bundle; short names expand in the workload's
// namespace, then in the mesh.
func (w *Workload) newDNS(client *api.Client) (*dns.Server, error) {
	if w.mesh == "" {
		return nil, errors.New("proxy: --dns: the anchors did not name the mesh in the certificate response")
	}
	search := []string{w.opts.Namespace}
	if w.opts.Namespace != w.mesh {
		search = append(search, w.mesh)
	}
	srv, err := dns.New(resolve.New(verifiedLookup(client, func() []*x509.Certificate { return w.credentials().Bundle }), w.opts.DNSMaxStale), dns.Options{
		Listen:        w.opts.DNS,
		Mesh:          w.mesh,
		SearchDomains: search,
		Upstream:      w.opts.DNSUpstream,
		VIPs:          w.capture != "", // connections to a VIP are captured; to an endpoint they would bypass the proxy
		Logger:        w.log,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: --dns %s: %w", w.opts.DNS, err)
	}
	w.log.Info("serving dns", "addr", srv.Addr(), "search", strings.Join(search, ","))
	return srv, nil
}

// verifiedLookup asks the anchors through client and verifies every answer's proof against
// the trust bundle that bundle returns at the time of the answer (the workload's current
// one: it changes when the mesh root rotates), so the DNS cache only ever holds answers
// the hierarchy signed (docs/design/0004); one that does not verify is an error, and the
// cache serves the last verified answer instead. The verifier, with its cache of verified
// chains, is kept while the bundle stays the same.
func verifiedLookup(client *api.Client, bundle func() []*x509.Certificate) resolve.Lookuper {
	var (
		mu       sync.Mutex
		current  []*x509.Certificate
		verified resolve.Lookuper
	)
	return func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		b := bundle()
		if len(b) == 0 { // never answer unverified: FromClient without a bundle would
			return nil, &resolve.UnverifiedError{Name: name, Err: errors.New("no trust bundle to verify answers against")}
		}
		mu.Lock()
		if verified == nil || !slices.EqualFunc(current, b, (*x509.Certificate).Equal) {
			current, verified = b, resolve.FromClient(client, b...)
		}
		lookup := verified
		mu.Unlock()
		return lookup(ctx, name)
	}
}

// dial connects to the scope's anchors with the workload's identity.
func (w *Workload) dial() (*api.Client, error) {
	return api.DialAny(w.opts.Anchors, w.credentials())
}

// register grants a lease and records this workload in its scope.
func (w *Workload) register(ctx context.Context, c *api.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	lease, err := c.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: w.opts.Namespace, TtlSeconds: uint32(w.opts.LeaseTTL / time.Second)})
	if err != nil {
		return fmt.Errorf("proxy: lease: %w", api.Err(err))
	}
	addr, port := splitPort(w.inbound)
	if w.opts.Gateway {
		addr = w.opts.GatewayAddress // as given: a wildcard's socket may report another spelling ([::] for 0.0.0.0)
	}
	spec, _ := json.Marshal(resource.WorkloadSpec{Service: w.opts.Service, Address: addr, Port: port, Labels: w.labels(), Proxy: w.opts.NodeID, Lease: lease.LeaseId, Gateway: w.opts.Gateway})
	obj := resource.Object{Kind: "Workload", Namespace: w.opts.Namespace, Name: w.opts.NodeID, Spec: spec}
	if _, err := c.Apply(ctx, []resource.Object{obj}, false, nil); err != nil {
		return fmt.Errorf("proxy: register workload %s: %w", w.opts.NodeID, err)
	}
	w.mu.Lock()
	w.lease = lease.LeaseId
	w.mu.Unlock()
	w.log.Info("workload registered", "namespace", w.opts.Namespace, "address", w.inbound, "lease", lease.LeaseId)
	return nil
}

// keepAlive heartbeats the lease; if it expired (a long partition), the
// workload registers again.
func (w *Workload) keepAlive(ctx context.Context, c *api.Client) {
	t := time.NewTicker(w.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		id := w.lease
		w.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, w.opts.LeaseTTL/3)
		_, err := c.Raw().KeepAlive(cctx, &apipb.KeepAliveRequest{Scope: w.opts.Namespace, LeaseId: id})
		cancel()
		switch {
		case err == nil:
		case api.Code(api.Err(err)) == 5: // NotFound: expired
			w.log.Warn("lease expired; registering again", "lease", id)
			if err := w.register(ctx, c); err != nil {
				w.log.Warn("re-registration failed", "err", err)
			}
		default:
			w.log.Warn("keepalive failed", "err", err)
		}
	}
}

// deregister revokes the lease, which removes the workload from every
// proxy's endpoints at once.
func (w *Workload) deregister(c *api.Client) {
	w.mu.Lock()
	id := w.lease
	w.mu.Unlock()
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Raw().RevokeLease(ctx, &apipb.RevokeLeaseRequest{Scope: w.opts.Namespace, LeaseId: id}); err != nil {
		w.log.Warn("deregistration failed; the lease will expire", "err", err)
		return
	}
	w.log.Info("workload deregistered", "lease", id)
}
