package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

func statusCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show anchors, the scopes they host, leaders and replication progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			first, err := c.Status(cmd.Context())
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			creds, err := identity.LoadCredentials(e.credentials)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintf(tw, "mesh %s\n\n", first.Mesh)
			fmt.Fprintln(tw, "ANCHOR\tADDRESS\tSCOPE\tROLE\tLEADER\tTERM\tAPPLIED\tREVISION\tLINEAGE HEAD")
			for _, a := range first.Anchors {
				st := first
				if a.Id != first.AnchorId {
					st, err = statusOf(cmd.Context(), a.Address, creds)
				}
				if err != nil {
					fmt.Fprintf(tw, "%s\t%s\t-\tunreachable\t-\t-\t-\t-\t%s\n", a.Id, a.Address, oneLine(err.Error()))
					continue
				}
				if len(st.Scopes) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t-\t(no scopes)\t-\t-\t-\t-\t-\n", a.Id, a.Address)
				}
				for _, s := range st.Scopes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", a.Id, a.Address, s.Domain, role(st.AnchorId, s), dash(s.Leader), s.Term, s.Applied, s.Revision, short(s.LineageHead))
				}
			}
			return tw.Flush()
		},
	}
}

func role(self string, s *apipb.ScopeStatus) string {
	switch {
	case s.Leader == self:
		return "leader"
	case contains(s.Learners, self):
		return "learner"
	case contains(s.Voters, self):
		return "follower"
	}
	return "removed"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func statusOf(ctx context.Context, addr string, creds *identity.Credentials) (*apipb.StatusResponse, error) {
	c, err := api.Dial(addr, creds)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Status(ctx)
}
