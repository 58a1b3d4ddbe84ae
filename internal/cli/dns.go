package cli

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/dns"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resolve"
)

func dnsCmd(e *env) *cobra.Command {
	var (
		listen   string
		search   string
		upstream string
		maxStale time.Duration
		vips     bool
	)
	cmd := &cobra.Command{
		Use:   "dns [--listen 127.0.0.1:15053] [--search NAMESPACE,...] [--upstream HOST:PORT,...] [--vips]",
		Short: "Serve DNS for mesh names on loopback (A/AAAA/SRV from the anchors), forwarding other names upstream",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			mesh := c.Mesh()
			if mesh == "" {
				return fmt.Errorf("dns: use credentials of the mesh's admin (a workload's do not name the mesh)")
			}
			// Every answer is verified against the credentials' mesh trust bundle (never empty:
			// LoadCredentials checks) before it is cached (docs/design/0004); one that fails is
			// never served.
			creds, err := identity.LoadCredentials(e.credentials)
			if err != nil {
				return err
			}
			var searches []string
			for _, s := range splitList(search) {
				searches = append(searches, namespace(s, mesh))
			}
			srv, err := dns.New(resolve.New(resolve.FromClient(c, creds.Bundle...), maxStale), dns.Options{
				Listen:        listen,
				Mesh:          mesh,
				SearchDomains: searches,
				Upstream:      splitList(upstream),
				VIPs:          vips,
				Logger:        slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
			})
			if err != nil {
				return fmt.Errorf("dns: %w", err)
			}
			fmt.Fprintf(e.stdout, "dns for %s on %s (udp and tcp); other names -> %s\n", mesh, srv.Addr(), dash(upstream))
			return srv.Serve(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", dns.DefaultListen, "UDP and TCP address to serve on")
	cmd.Flags().StringVar(&search, "search", "", "namespaces short names are tried in, in order (e.g. bookinfo)")
	cmd.Flags().StringVar(&upstream, "upstream", "", "resolvers for names outside the mesh, HOST:PORT,... (empty: SERVFAIL)")
	cmd.Flags().DurationVar(&maxStale, "max-stale", time.Hour, "how long the last answer is served while no anchor answers")
	cmd.Flags().BoolVar(&vips, "vips", false, "answer services with their VIPs (for hosts whose sidecar captures connections to 240.0.0.0/5: canton proxy --capture)")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
