package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api/apipb"
)

func scopeCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "scope", Short: "Create scopes (zone cuts) and change who anchors them"}
	var anchors string
	create := &cobra.Command{
		Use:   "create DOMAIN --anchors ID,ID,ID",
		Short: "Delegate DOMAIN to a new child scope run by the given anchors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ids := strings.Split(anchors, ",")
			if anchors == "" {
				ids = nil
			}
			domain := namespace(args[0], c.Mesh())
			resp, err := c.CreateScope(cmd.Context(), domain, ids)
			if err != nil {
				return fmt.Errorf("scope create: %w", err)
			}
			fmt.Fprintf(e.stdout, "scope %s created: delegated by %s at revision %d, anchors %s\n", domain, resp.Parent, resp.Revision, anchors)
			return nil
		},
	}
	create.Flags().StringVar(&anchors, "anchors", "", "anchor IDs that replicate the new scope (1, 3 or 5)")
	cmd.AddCommand(create,
		memberCmd(e, "add-anchor", "Add an anchor to a scope as a learner (it catches up, then can be promoted)", apipb.MembershipRequest_ADD_LEARNER),
		memberCmd(e, "promote", "Promote a learner of a scope to voter", apipb.MembershipRequest_PROMOTE),
		memberCmd(e, "remove-anchor", "Remove an anchor from a scope", apipb.MembershipRequest_REMOVE),
		rotateCACmd(e),
	)
	return cmd
}

func memberCmd(e *env, use, short string, change apipb.MembershipRequest_Change) *cobra.Command {
	return &cobra.Command{
		Use:   use + " DOMAIN ANCHOR_ID",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			domain := namespace(args[0], c.Mesh())
			resp, err := c.ChangeMembership(cmd.Context(), domain, args[1], change)
			if err != nil {
				return fmt.Errorf("scope %s: %w", use, err)
			}
			fmt.Fprintf(e.stdout, "scope %s: voters %s; learners %s\n", domain, strings.Join(resp.Voters, ","), dash(strings.Join(resp.Learners, ",")))
			return nil
		},
	}
}
