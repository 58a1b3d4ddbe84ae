package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/proxy/xdsclient"
)

func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		ok, msg := p.Ready()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, msg)
	})
	mux.Handle("GET /stats/prometheus", p.metrics.Handler())
	mux.HandleFunc("GET /config_dump", p.configDump)
	mux.HandleFunc("GET /clusters", p.clustersDump)
	return mux
}

// configDump writes the accepted xDS resources as JSON, by type, with their versions. Private keys are
// redacted.
func (p *Proxy) configDump(w http.ResponseWriter, r *http.Request) {
	s := p.snap.Load()
	out := map[string]any{}
	st := p.xds.Status()
	out["xds"] = map[string]any{"connected": st.Connected, "server": st.Server, "last_update": st.LastUpdate,
		"accepted": st.Accepted, "rejected": st.Rejected, "last_error": st.LastError}
	for _, t := range xdsclient.Types {
		res := s.state.Resources[t]
		items := make([]json.RawMessage, 0, len(res))
		for _, name := range sortedNames(res) {
			m, err := res[name].Message()
			if err != nil {
				http.Error(w, "decode "+name+": "+err.Error(), http.StatusInternalServerError)
				return
			}
			if sec, ok := m.(*tlsv3.Secret); ok {
				m = redact(sec)
			}
			b, err := protojson.Marshal(m)
			if err != nil {
				http.Error(w, "marshal "+name+": "+err.Error(), http.StatusInternalServerError)
				return
			}
			items = append(items, b)
		}
		out[resourceKind(t)] = map[string]any{"version": s.state.Versions[t], "resources": items}
	}
	// Secrets served by Options.LocalSecrets: names only, never their content.
	out["local secrets"] = slices.Sorted(mapKeys(p.local.Load().known))
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out) // the client may be gone
}

func redact(s *tlsv3.Secret) *tlsv3.Secret {
	c := proto.Clone(s).(*tlsv3.Secret)
	if tc := c.GetTlsCertificate(); tc != nil && tc.GetPrivateKey() != nil {
		tc.PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "[redacted]"}}
	}
	return c
}

// clustersDump writes one line per endpoint, like Envoy's /clusters.
func (p *Proxy) clustersDump(w http.ResponseWriter, r *http.Request) {
	s := p.snap.Load()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	names := make([]string, 0, len(s.clusters))
	for n := range s.clusters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := s.clusters[n]
		fmt.Fprintf(w, "%s::active_requests::%d\n", n, c.ActiveRequests())
		fmt.Fprintf(w, "%s::connections::%d\n", n, c.Connections())
		fmt.Fprintf(w, "%s::overflows::%d\n", n, c.Overflows.Load())
		for _, e := range c.Endpoints() {
			health := "healthy"
			switch {
			case !e.Healthy:
				health = "/failed_eds_health"
			case e.Ejected():
				health = "/failed_outlier_check"
			}
			fmt.Fprintf(w, "%s::%s::health_flags::%s\n", n, e.Addr, health)
			fmt.Fprintf(w, "%s::%s::priority::%d\n", n, e.Addr, e.Priority)
			fmt.Fprintf(w, "%s::%s::weight::%d\n", n, e.Addr, e.Weight)
			fmt.Fprintf(w, "%s::%s::rq_active::%d\n", n, e.Addr, e.Active())
			fmt.Fprintf(w, "%s::%s::rq_total::%d\n", n, e.Addr, e.Requests.Load())
			fmt.Fprintf(w, "%s::%s::rq_error::%d\n", n, e.Addr, e.Failures.Load())
			fmt.Fprintf(w, "%s::%s::ejections::%d\n", n, e.Addr, e.Ejections())
		}
	}
}
