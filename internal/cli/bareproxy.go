package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/proxy"
)

// bareProxyCmd is the hidden "canton bare-proxy": the data plane alone, configured over plain-text
// ADS by any xDS server, with no identity, registration or DNS. It exists so that bench/dataplane
// measures the canton binary itself; it is not a way to run a mesh proxy.
func bareProxyCmd(e *env) *cobra.Command {
	var (
		opts       proxy.Options
		server     string
		listener   string
		cpuProfile string
		memProfile string
	)
	cmd := &cobra.Command{
		Use:    "bare-proxy --xds HOST:PORT --id NODE [--admin HOST:PORT] [--ready-listener NAME]",
		Short:  "Run the data plane alone against a plain-text xDS server (benchmarks only)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || opts.NodeID == "" {
				return fmt.Errorf("bare-proxy: --xds HOST:PORT and --id NODE are required")
			}
			opts.XDSServers = []string{server}
			opts.Delta = true // as canton proxy; a server without delta is used with state of the world
			opts.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("bare-proxy: --cpuprofile: %w", err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					f.Close()
					return fmt.Errorf("bare-proxy: --cpuprofile: %w", err)
				}
				defer func() {
					pprof.StopCPUProfile()
					f.Close()
				}()
			}
			p, err := proxy.New(opts)
			if err != nil {
				return fmt.Errorf("bare-proxy: %w", err)
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if memProfile != "" {
				// The proxy's context ends after the heap profile is written, so that the profile
				// shows the configured proxy rather than one shutting down.
				ctx, cancel = context.WithCancel(context.WithoutCancel(cmd.Context()))
				defer cancel()
				go func() {
					select {
					case <-cmd.Context().Done():
						if err := writeHeapProfile(memProfile); err != nil {
							fmt.Fprintf(e.stderr, "bare-proxy: --memprofile: %v\n", err)
						}
						cancel()
					case <-ctx.Done():
					}
				}()
			}
			errc := make(chan error, 1)
			go func() { errc <- p.Run(ctx) }()
			if listener != "" {
				t := time.NewTicker(10 * time.Millisecond)
				defer t.Stop()
				for p.ListenerAddr(listener) == "" {
					select {
					case err := <-errc:
						return fmt.Errorf("bare-proxy: stopped before listener %q ran: %v", listener, err)
					case <-t.C:
					}
				}
				fmt.Fprintf(e.stdout, "ready %s\n", p.ListenerAddr(listener))
			}
			if err := <-errc; err != nil && ctx.Err() == nil {
				return fmt.Errorf("bare-proxy: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "xds", "", "plain-text ADS server, HOST:PORT (required)")
	f.StringVar(&opts.NodeID, "id", "", "xDS node ID (required)")
	f.StringVar(&opts.NodeCluster, "cluster", "bench", "xDS node cluster")
	f.StringVar(&opts.AdminAddr, "admin", "", "HOST:PORT for /ready, /stats/prometheus, /config_dump (empty: none)")
	f.StringVar(&listener, "ready-listener", "", "print \"ready HOST:PORT\" on stdout once the listener of this name serves")
	f.DurationVar(&opts.DrainTime, "drain", 0, "how long connections may finish at shutdown (default 5s)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	f.StringVar(&memProfile, "memprofile", "", "write a heap profile (after a GC) to this file when stopped")
	return cmd
}

// writeHeapProfile writes the live heap, after a garbage collection, to path, and the same in text
// with the runtime's memory statistics to path.txt.
func writeHeapProfile(path string) error {
	runtime.GC()
	for _, debug := range []int{0, 1} {
		name := path
		if debug == 1 {
			name += ".txt"
		}
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		if err := pprof.Lookup("heap").WriteTo(f, debug); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
