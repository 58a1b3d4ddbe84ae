package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resource"
)

func renameCmd(e *env) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "rename service OLD NEW [-n NAMESPACE]",
		Short: "Rename a Service, keeping its UID; the old name stays as an alias",
		Long: "Rename moves a Service to a new name in its namespace in one committed mutation: the\n" +
			"Service keeps its UID, an Alias with the old name points at the UID (for resolve and\n" +
			"invoke, so callers and policies keep working) and the Workloads of the old name move\n" +
			"to the new one.",
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, ok := resource.Lookup(args[0])
			if !ok || k.Name != "Service" {
				return fmt.Errorf("rename: only services can be renamed, not %q", args[0])
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n := namespace(ns, c.Mesh())
			resp, err := c.Raw().Rename(cmd.Context(), &apipb.RenameRequest{Namespace: n, Kind: k.Name, Name: args[1], NewName: args[2]})
			if err != nil {
				return fmt.Errorf("rename: %w", api.Err(err))
			}
			fmt.Fprintf(e.stdout, "service/%s renamed to service/%s in %s (uid %s, revision %d); %s is now an alias\n",
				args[1], args[2], relative(n, c.Mesh()), resp.Uid, resp.Revision, strings.ToLower(args[1]))
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (relative to the mesh or absolute; default \"default\")")
	return cmd
}
