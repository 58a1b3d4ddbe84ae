package anchor

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"canton.dev/canton/internal/dashboard"
)

// serveHTTP serves the anchor's plain-HTTP side: the dashboard at /,
// /healthz for liveness probes and /status as JSON.
func (a *Anchor) serveHTTP() error {
	lis, err := net.Listen("tcp", a.cfg.HTTP)
	if err != nil {
		return fmt.Errorf("anchor: --http: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, _ := (&server{a: a}).Status(r.Context(), nil)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	mux.Handle("/", dashboard.New(dashSource{a: a}, dashboard.Options{Logger: a.log.With("component", "dashboard")}))
	a.httpAddr = lis.Addr().String()
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.http.Serve(lis)
	}()
	return nil
}

// HTTPAddr is where the HTTP side listens, or "" when it is off.
func (a *Anchor) HTTPAddr() string {
	if a.http == nil {
		return ""
	}
	return a.httpAddr
}
