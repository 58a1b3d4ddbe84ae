package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/anchor"
)

func anchorCmd(e *env) *cobra.Command {
	var (
		cfg       anchor.Config
		peers     string
		tokenFile string
	)
	cmd := &cobra.Command{
		Use:   "anchor --id ID --data DIR --listen HOST:PORT [--max-stale DURATION] [--scope-ca-ttl DURATION] [--bootstrap --peers ID=HOST:PORT,... [--ca-cert FILE --ca-key FILE]] | [--join HOST:PORT --join-token FILE]",
		Short: "Run an anchor: replicas of scopes, the anchor API, replication and xDS on one port",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if (cfg.CACert != "" || cfg.CAKey != "") && !cfg.Bootstrap {
				return fmt.Errorf("--ca-cert and --ca-key are for --bootstrap only")
			}
			if cfg.MaxStale <= 0 {
				return fmt.Errorf("--max-stale %s: must be positive (e.g. 1h)", cfg.MaxStale)
			}
			if cfg.ScopeCATTL < time.Hour {
				return fmt.Errorf("--scope-ca-ttl %s: must be at least 1h (e.g. 8760h, a year)", cfg.ScopeCATTL)
			}
			if cfg.Peers, err = parsePeers(peers); err != nil {
				return err
			}
			if cfg.Join != "" {
				if tokenFile == "" {
					return fmt.Errorf("--join needs --join-token FILE (the join.token of the bootstrap anchor)")
				}
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--join-token: %w", err)
				}
				cfg.JoinToken = strings.TrimSpace(string(b))
			}
			cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			a, err := anchor.Start(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "anchor %s serving mesh %s on %s\n", a.ID(), a.Mesh(), a.Addr())
			<-cmd.Context().Done()
			return a.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "anchor ID (required)")
	f.StringVar(&cfg.DataDir, "data", "", "data directory (required); restarting with the same one resumes")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7001", "the one port for the anchor API, replication and xDS")
	f.StringVar(&cfg.HTTP, "http", "", "HOST:PORT for /healthz and /status")
	f.StringVar(&cfg.Mesh, "mesh", "demo.mesh", "mesh domain (at bootstrap)")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", false, "create the mesh (a no-op when --data already holds an anchor)")
	f.StringVar(&peers, "peers", "", "root scope voters at bootstrap: ID=HOST:PORT,... (default: this anchor alone)")
	f.StringVar(&cfg.CACert, "ca-cert", "", "at bootstrap: PEM certificate of an offline root CA to sign the mesh's CA (with --ca-key)")
	f.StringVar(&cfg.CAKey, "ca-key", "", "at bootstrap: PEM PKCS #8 key of --ca-cert; used once, never stored")
	f.StringVar(&cfg.Join, "join", "", "join the mesh through this anchor, HOST:PORT")
	f.StringVar(&tokenFile, "join-token", "", "join token file (join.token in the bootstrap anchor's data dir)")
	f.DurationVar(&cfg.MaxStale, "max-stale", time.Hour, "how long an imported service's last answer is served while its scope cannot be reached")
	f.DurationVar(&cfg.ScopeCATTL, "scope-ca-ttl", 365*24*time.Hour, "lifetime of the scope CAs this anchor creates and renews (renewed with a third left)")
	cmd.MarkFlagRequired("id")
	cmd.MarkFlagRequired("data")
	return cmd
}

func parsePeers(s string) ([]anchor.Peer, error) {
	if s == "" {
		return nil, nil
	}
	var out []anchor.Peer
	for _, p := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers: %q: want ID=HOST:PORT", p)
		}
		out = append(out, anchor.Peer{ID: id, Address: addr})
	}
	return out, nil
}
