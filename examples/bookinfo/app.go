package bookinfo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// The sample's services.
const (
	ProductPage = "productpage"
	Details     = "details"
	Reviews     = "reviews"
	Ratings     = "ratings"
)

// Port is the service port every bookinfo service has in the mesh
// (services.yaml); callers name it in the Host header ("reviews:9080").
const Port = 9080

// Propagated are the request headers a service copies from its incoming
// request to the calls it makes, so routing by user (end-user) and tracing
// work across hops, as in Istio's bookinfo.
var Propagated = []string{
	"end-user", "x-request-id", "traceparent", "tracestate",
	"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
}

// Config describes one service instance. Zero values are documented defaults.
type Config struct {
	Service string       // required: ProductPage, Details, Reviews or Ratings
	Version string       // Reviews: v1, v2 or v3 (required); others: v1 when empty
	Addr    string       // listen address; default 127.0.0.1:0
	Logger  *slog.Logger // default: discard
	// RatingsOverHTTP makes reviews v2/v3 ask ratings with GET /ratings/<id>
	// (JSON over HTTP/1.1) instead of gRPC. Ratings serves both.
	RatingsOverHTTP bool
	// CallTimeout bounds each call to another service: productpage's calls
	// to details and reviews; reviews' calls to ratings get 10s (as in
	// Istio's sample). Default 5s: more than the fault scenario's 2s delay
	// of ratings, with room for a loaded machine.
	CallTimeout time.Duration
}

// App is one running sample service.
type App struct {
	cfg     Config
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	grpcSrv *grpc.Server // ratings only
	served  chan struct{}

	mu       sync.Mutex
	outbound string
	client   *http.Client     // to the sidecar's outbound listener
	ratings  *grpc.ClientConn // reviews v2/v3 with gRPC
}

// Start starts a service on cfg.Addr. It serves until Close or Shutdown.
func Start(cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	a := &App{cfg: cfg, served: make(chan struct{})}
	var h http.Handler
	switch cfg.Service {
	case ProductPage:
		h = a.productPageHandler()
	case Details:
		h = a.detailsHandler()
	case Reviews:
		if _, ok := reviewStyles[cfg.Version]; !ok {
			return nil, fmt.Errorf("bookinfo: reviews version %q: must be v1, v2 or v3", cfg.Version)
		}
		h = a.reviewsHandler()
	case Ratings:
		h = a.ratingsHandler()
	default:
		return nil, fmt.Errorf("bookinfo: unknown service %q", cfg.Service)
	}
	if a.cfg.Version == "" {
		a.cfg.Version = "v1"
	}
	a.log = cfg.Logger.With("service", cfg.Service, "version", a.cfg.Version)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bookinfo: %s %s: listen: %w", cfg.Service, a.cfg.Version, err)
	}
	a.ln = ln
	a.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	if cfg.Service == Ratings {
		// gRPC arrives as h2c with prior knowledge; JSON as HTTP/1.1.
		a.srv.Protocols = new(http.Protocols)
		a.srv.Protocols.SetHTTP1(true)
		a.srv.Protocols.SetUnencryptedHTTP2(true)
	}
	go func() {
		defer close(a.served)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("serve failed", "err", err)
		}
	}()
	return a, nil
}

// Service is the service's name.
func (a *App) Service() string { return a.cfg.Service }

// Version is the service's version label.
func (a *App) Version() string { return a.cfg.Version }

// Addr is where the service listens (its sidecar's app address).
func (a *App) Addr() string { return a.ln.Addr().String() }

// SetOutbound tells the service where its sidecar's outbound listener is.
// Until then, calls to other services fail with "no sidecar".
func (a *App) SetOutbound(addr string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.outbound != "" {
		return fmt.Errorf("bookinfo: %s %s: outbound already set to %s", a.cfg.Service, a.cfg.Version, a.outbound)
	}
	a.outbound = addr
	a.client = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // the sidecar is addressed directly, the callee by Host
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}}
	if a.cfg.Service == Reviews && a.cfg.Version != "v1" && !a.cfg.RatingsOverHTTP {
		conn, err := DialRatings(addr)
		if err != nil {
			return fmt.Errorf("bookinfo: reviews %s: ratings client: %w", a.cfg.Version, err)
		}
		a.ratings = conn
	}
	return nil
}

func (a *App) sidecar() (string, *http.Client, *grpc.ClientConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.outbound, a.client, a.ratings
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes the clients.
func (a *App) Shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	if a.grpcSrv != nil {
		a.grpcSrv.Stop() // its streams ride on srv's connections, closed above
	}
	<-a.served
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client != nil {
		a.client.CloseIdleConnections()
	}
	if a.ratings != nil {
		err = errors.Join(err, a.ratings.Close())
		a.ratings = nil
	}
	return err
}

// Close shuts the service down, giving in-flight requests one second.
func (a *App) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := a.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return a.srv.Close()
	}
	return err
}

// callError is a failed call to another service, as the page reports it.
type callError struct {
	service string
	status  int // 0: no response
	err     error
}

func (e *callError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("%s answered %d", e.service, e.status)
	}
	return fmt.Sprintf("%s: %v", e.service, e.err)
}

// get calls GET path on service through the sidecar, propagating the
// headers of in, and returns the body of a 200 answer.
func (a *App) get(ctx context.Context, in http.Header, service, path string) ([]byte, error) {
	outbound, client, _ := a.sidecar()
	if client == nil {
		return nil, &callError{service: service, err: errors.New("no sidecar")}
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+outbound+path, nil)
	if err != nil {
		return nil, &callError{service: service, err: err}
	}
	req.Host = fmt.Sprintf("%s:%d", service, Port)
	for _, h := range Propagated {
		if v := in.Values(h); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &callError{service: service, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, &callError{service: service, status: resp.StatusCode}
	}
	if err != nil {
		return nil, &callError{service: service, err: err}
	}
	return b, nil
}

func health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}
