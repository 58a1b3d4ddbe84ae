package cli

import (
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/demo"
)

func demoCmd(e *env) *cobra.Command {
	var opts demo.Options
	var verbose, ratingsGRPC bool
	cmd := &cobra.Command{
		Use:   "demo [--data DIR] [--http ADDR] [--no-traffic] [--scenario NAME] [--ratings-http]",
		Short: "Run a whole mesh on loopback: three anchors, the bookinfo sample behind sidecars, traffic and Istio task flows",
		Long: `Run a whole mesh on loopback until Ctrl-C: three anchors replicating the root scope and
the bookinfo scope, the bookinfo services each behind its own sidecar, the sample's Istio YAML
(every reviews request to v1) and a traffic generator with a live one-line summary.

--scenario runs Istio task flows once the mesh is up and prints the expected outcome beside
the measured one: ` + strings.Join(demo.Scenarios, ", ") + `, a comma-separated list, or all.

reviews v2 and v3 call ratings with gRPC through the sidecars (mTLS HTTP/2 between them, h2c
to the ratings app); --ratings-http makes them use GET /ratings/<id> (JSON) instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Out = e.stdout
			if cmd.Flags().Changed("ratings-grpc") && !ratingsGRPC {
				opts.RatingsHTTP = true
			}
			if verbose {
				opts.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			return demo.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Data, "data", "", "data directory (default: a temporary one, removed at exit); reusing one resumes the mesh")
	f.StringVar(&opts.HTTP, "http", "", "HOST:PORT of anchor a1's HTTP side (dashboard) (default: a free port on 127.0.0.1)")
	f.BoolVar(&opts.NoTraffic, "no-traffic", false, "send no background traffic (scenarios still send their own requests)")
	f.Float64Var(&opts.Rate, "rate", 20, "background product page requests per second (0..1000)")
	f.StringVar(&opts.Scenario, "scenario", "", "Istio task flow(s) to run: "+strings.Join(demo.Scenarios, ", ")+", a comma-separated list, or all")
	f.BoolVar(&opts.RatingsHTTP, "ratings-http", false, "reviews v2/v3 call ratings with HTTP/JSON (GET /ratings/<id>) instead of gRPC, the default")
	// --ratings-grpc chose gRPC when HTTP/JSON was the default; it is kept
	// so that scripts and docs naming it still run.
	f.BoolVar(&ratingsGRPC, "ratings-grpc", true, "reviews call ratings with gRPC (the default)")
	_ = f.MarkDeprecated("ratings-grpc", "gRPC is the default now; --ratings-http chooses HTTP/JSON")
	f.BoolVar(&verbose, "verbose", false, "log anchors and sidecars to stderr")
	return cmd
}
