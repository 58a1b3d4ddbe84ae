package cli

import (
	"github.com/spf13/cobra"

	"canton.dev/canton/internal/demo"
)

func demoCmd(e *env) *cobra.Command {
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo [--data DIR]",
		Short: "Run a whole mesh on loopback: three anchors, the bookinfo scope and its Istio YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Out = e.stdout
			return demo.Run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Data, "data", "", "data directory (default: a temporary one, removed at exit); reusing one resumes the mesh")
	return cmd
}
