package cli

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/workload"
	"canton.dev/canton/internal/xds"
)

func proxyCmd(e *env) *cobra.Command {
	var (
		opts      workload.Options
		anchors   string
		labels    string
		tokenFile string
		upstreams string
		dnsUp     string
		tlsCreds  string
	)
	cmd := &cobra.Command{
		Use:   "proxy --service NAME --scope NAMESPACE --app HOST:PORT --anchors HOST:PORT,... --join-token FILE",
		Short: "Run a workload's sidecar (or, with --gateway, an ingress gateway): identity, registration under a lease, and the xDS-driven data plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if opts.Upstreams, err = xds.ParseUpstreams(upstreams); err != nil {
				return fmt.Errorf("proxy: --upstream: %w", err)
			}
			if anchors == "" {
				anchors = e.server
			}
			for _, a := range strings.Split(anchors, ",") {
				if a = strings.TrimSpace(a); a != "" {
					opts.Anchors = append(opts.Anchors, a)
				}
			}
			if !strings.Contains(opts.Namespace, ".") {
				return fmt.Errorf("proxy: --scope %q: give the absolute namespace, e.g. %s.demo.mesh", opts.Namespace, opts.Namespace)
			}
			opts.Namespace = strings.ToLower(strings.TrimSuffix(opts.Namespace, "."))
			if labels != "" {
				opts.Labels = map[string]string{}
				for _, kv := range strings.Split(labels, ",") {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return fmt.Errorf("proxy: --labels: %q: want key=value", kv)
					}
					opts.Labels[k] = v
				}
			}
			if err := opts.CheckCertTTL(); err != nil {
				return err
			}
			if opts.TLSCredentials, err = workload.ParseTLSCredentials(tlsCreds); err != nil {
				return fmt.Errorf("proxy: --tls-credential: %w", err)
			}
			if err := opts.CheckGateway(); err != nil {
				return err
			}
			if tokenFile == "" {
				return fmt.Errorf("proxy: --join-token FILE is required (join.token in the bootstrap anchor's data dir)")
			}
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("proxy: --join-token: %w", err)
			}
			opts.JoinToken = strings.TrimSpace(string(b))
			opts.DNSUpstream = splitList(dnsUp)
			opts.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			opts.Ready = func(w *workload.Workload) {
				if opts.Gateway {
					fmt.Fprintf(e.stdout, "gateway %s.%s (labels %s): listens on %s at the ports of the Gateways selecting these labels\n",
						opts.Service, opts.Namespace, labelList(w.Labels()), w.GatewayAddress())
					if d := w.DNS(); d != "" {
						fmt.Fprintf(e.stdout, "dns for mesh names on %s (udp and tcp); other names -> %s\n", d, dash(dnsUp))
					}
					return
				}
				fmt.Fprintf(e.stdout, "proxy for %s.%s: inbound %s (mTLS) -> app %s; outbound %s\n", opts.Service, opts.Namespace, w.Inbound(), opts.App, w.Outbound())
				if c := w.Capture(); c != "" {
					fmt.Fprintf(e.stdout, "capture %s: connections redirected to service VIPs (240.0.0.0/5) are routed by their service\n", c)
				}
				for _, u := range w.Upstreams() {
					fmt.Fprintf(e.stdout, "upstream %s (listening)\n", u)
				}
				if d := w.DNS(); d != "" {
					fmt.Fprintf(e.stdout, "dns for mesh names on %s (udp and tcp); other names -> %s\n", d, dash(dnsUp))
				}
			}
			return workload.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Service, "service", "", "service name (required)")
	f.StringVar(&opts.Namespace, "scope", "", "the workload's namespace, absolute (e.g. bookinfo.demo.mesh)")
	f.StringVar(&opts.App, "app", "", "HOST:PORT of the local application (empty: client-only proxy)")
	f.StringVar(&opts.Version, "version", "", "version label (subsets select on it)")
	f.StringVar(&labels, "labels", "", "more workload labels, k=v,...")
	f.StringVar(&anchors, "anchors", "", "anchors of the scope, HOST:PORT,... (default --server)")
	f.StringVar(&opts.Inbound, "inbound", "", "HOST:PORT other proxies reach this one on, mTLS (default 127.0.0.1:<free>)")
	f.StringVar(&opts.Outbound, "outbound", "", "HOST:PORT of the outbound HTTP listener that routes by Host (default 127.0.0.1:<free>)")
	f.BoolVar(&opts.Gateway, "gateway", false, "run as an ingress gateway: serve the Gateways whose selector matches --labels (no --app, --inbound, --outbound or --upstream)")
	f.StringVar(&tlsCreds, "tls-credential", "", "with --gateway: NAME=CERT,KEY[,CA];... PEM files served for the HTTPS Gateway servers whose tls.credentialName is NAME (CA: client CAs for mode MUTUAL); re-read when they change")
	f.StringVar(&opts.GatewayAddress, "gateway-address", "", "with --gateway: the IP its listeners bind, at the Gateways' ports (default 127.0.0.1; 0.0.0.0 for every interface)")
	f.StringVar(&opts.Capture, "capture", "", "127.0.0.1:PORT for transparent capture: iptables redirects the app's connections to service VIPs (240.0.0.0/5) here; --dns then answers VIPs (docs/transparent-capture.md)")
	f.StringVar(&upstreams, "upstream", "", "NAME[:PORT]=HOST:PORT,... a loopback port per remote service (TCP, TLS passthrough, or HTTP routed as the mesh routes it); PORT 0 picks one")
	f.StringVar(&opts.Admin, "admin", "", "HOST:PORT for /ready, /stats/prometheus, /config_dump")
	f.StringVar(&tokenFile, "join-token", "", "join token file, for the first identity")
	f.StringVar(&opts.NodeID, "id", "", "proxy ID (default <service>-<version>-<random>)")
	f.StringVar(&opts.DNS, "dns", "", "HOST:PORT to serve DNS for mesh names on, e.g. 127.0.0.1:15053 (empty: no DNS)")
	f.StringVar(&dnsUp, "dns-upstream", "", "resolvers for names outside the mesh, HOST:PORT,... (empty: SERVFAIL)")
	f.DurationVar(&opts.DNSMaxStale, "dns-max-stale", time.Hour, "how long DNS serves the last answer while no anchor answers")
	f.DurationVar(&opts.LeaseTTL, "lease-ttl", 0, "registration lease TTL (default 10s)")
	f.DurationVar(&opts.CertTTL, "cert-ttl", 24*time.Hour, "lifetime of the workload certificates (SVIDs) asked for, 1s to 168h; renewed at half-life")
	cmd.MarkFlagRequired("service")
	cmd.MarkFlagRequired("scope")
	return cmd
}

// labelList renders labels as k=v,... sorted by key.
func labelList(l map[string]string) string {
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
